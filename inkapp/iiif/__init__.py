"""IIIF in, W3C Web Annotations out.

* :func:`open_source` — a file, an IIIF Image API URL or an IIIF Presentation 3
  manifest URL -> :class:`SourceItem` list (one per canvas), fetched at the model's size
  within byte and time limits (:mod:`inkapp.iiif.source`, :mod:`inkapp.iiif.fetch`);
* :func:`annotation_page` — predictions and experts' corrections -> a W3C Web Annotation
  ``AnnotationPage`` (``motivation: classifying``) (:mod:`inkapp.iiif.annotations`).
"""
from .fetch import SourceError
from .source import SourceItem, is_url, open_source

__all__ = ["SourceError", "SourceItem", "is_url", "open_source"]
