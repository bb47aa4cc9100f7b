"""Hugging Face Space entry point: serve the curation app (see ``inkapp.ui.app``)."""
from inkapp.ui.app import launch

if __name__ == "__main__":
    launch()
