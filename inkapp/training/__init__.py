"""inkapp.training"""
