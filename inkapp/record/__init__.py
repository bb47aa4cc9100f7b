"""A printable record per work: image, both-language labels, probabilities, heat maps
with their colour legend, similar works, corrections history and model versions.

``inkapp report IMAGE --out FILE`` and the app's "Export record" call
:func:`build_record` then :func:`write_record` (or :func:`render_record` for the HTML
text).
"""
from .content import (SimilarWork, TaskResult, WorkRecord, build_record, collection_similar,
                      image_corrections)
from .render import render_record, write_record

__all__ = ["SimilarWork", "TaskResult", "WorkRecord", "build_record", "collection_similar", "image_corrections",
           "render_record", "write_record"]
