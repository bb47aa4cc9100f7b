"""inkapp.ui"""
