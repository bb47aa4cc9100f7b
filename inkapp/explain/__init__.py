"""inkapp.explain"""
