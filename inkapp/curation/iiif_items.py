"""Open an image in the Analyse tab by URL: an IIIF Image API URL (a service, its
``info.json`` or an image request, optionally ``#xywh=``) or an IIIF Presentation 3
manifest, whose every canvas becomes one item of the gallery.

Downloads go through :func:`inkapp.iiif.open_source`: http(s) only, each download
within the upload byte limit and :data:`TIMEOUT_S` seconds, at most :data:`MAX_CANVASES`
canvases, each image requested at :data:`FETCH_SIDE` px on its longest side (the display
size, not the master). The fetched bytes are written into a fresh folder so each item
is read like an uploaded file (:class:`~inkapp.curation.uploads.UploadItem`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from inkapp.iiif import SourceError, open_source
from inkapp.iiif.fetch import check_url

from .analysis import DISPLAY_MAX_SIDE
from .exports import Target
from .uploads import UploadItem

FETCH_SIDE = DISPLAY_MAX_SIDE  # px, longest side asked of an Image API
TIMEOUT_S = 20.0  # seconds, each download (info.json, manifest, image)
MAX_CANVASES = 100  # canvases of one manifest put in the gallery
MAX_URL_CHARS = 2000


@dataclass(frozen=True)
class OpenedItem:
    """One gallery item opened from a URL and the annotation :class:`Target` it stands for."""

    item: UploadItem
    target: Target


def _file_name(name: str, index: int) -> str:
    """A safe file name for item ``index`` named ``name`` (the image's format is found
    from its bytes, so the suffix only helps people)."""
    stem = re.sub(r"[^\w.-]+", "_", name).strip("._")[:60] or "image"
    return f"{index:03d}-{stem}"


def open_url(url: str, folder: Path, side: int = FETCH_SIDE, timeout_s: float = TIMEOUT_S,
             max_items: int = MAX_CANVASES) -> list[OpenedItem]:
    """Fetch ``url`` (see the module docstring) into ``folder`` (created; one file per
    item) and return the items in manifest order. Raises :class:`inkapp.iiif.SourceError`
    (a ValueError) with a one-line message for an empty, overlong, non-http(s) or
    unreachable URL, a download over a limit, a bad manifest or info.json, or an
    image that does not decode."""
    url = (url or "").strip()
    if not url:
        raise SourceError("enter an IIIF image or manifest URL")
    if len(url) > MAX_URL_CHARS:
        raise SourceError(f"the URL is too long ({len(url)} characters; at most {MAX_URL_CHARS})")
    check_url(url)  # http(s) only: a local path is not opened from this box
    items = open_source(url, side, timeout_s=timeout_s, max_items=max_items)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, it in enumerate(items):
        path = folder / _file_name(it.name, i)
        path.write_bytes(it.data)
        out.append(OpenedItem(UploadItem(it.name, path), Target(it.target, it.region, it.target_size)))
    return out
