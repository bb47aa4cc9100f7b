"""Atomic image outputs in Gradio's file cache.

Gradio 6 (``gradio.processing_utils.save_pil_to_cache``) stores every PIL output under
``<cache>/<hash of its bytes>/image.<format>`` and rewrites that file in place each time
the same image is returned again. When two requests return an identical image at the same
moment (a similar work shown to two curators, the same scan uploaded twice), one response
can be streaming the file while the other truncates it: the client then gets "peer closed
connection" and the server logs ``Too little data for declared Content-Length`` (seen in
the 4-client soak test). Gradio's own ``save_file_to_cache`` already writes a temporary
file and renames it into place; :func:`install` gives PIL outputs the same treatment:
the first caller writes ``<name>.<format>`` atomically (:func:`inkapp.store.files.atomic_path`),
later callers with the same bytes reuse it and never rewrite it.
"""
from __future__ import annotations

from pathlib import Path

from gradio import processing_utils
from PIL import Image

from inkapp.store.files import atomic_path


def save_pil_to_cache(img: Image.Image, cache_dir: str, name: str = "image", format: str = "webp") -> str:
    """Gradio's ``save_pil_to_cache`` contract (returns the cached file's absolute path),
    written atomically and never rewritten once it exists."""
    data = processing_utils.encode_pil_to_bytes(img, format)
    path = (Path(cache_dir) / processing_utils.hash_bytes(data) / f"{name}.{format}").resolve()
    if not path.exists():
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    return str(path)


def install() -> None:
    """Route Gradio's PIL outputs through :func:`save_pil_to_cache` (idempotent)."""
    processing_utils.save_pil_to_cache = save_pil_to_cache
