"""inkapp: a curation studio for Chinese ink paintings and calligraphy rubbings."""
__version__ = "0.1.0"
