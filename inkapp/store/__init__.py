"""inkapp.store"""
