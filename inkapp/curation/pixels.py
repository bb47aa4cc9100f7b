"""Full-resolution pixels held once per server, not once per visitor.

A browser session keeps only a :class:`ShownImage` (name, content hash, display copy of
at most a few MiB); the decoded full-resolution image lives in one server-wide
:class:`PixelCache` with a byte budget (``INKAPP_PIXEL_CACHE_MB``, default 512 MiB: two
images at the 80-megapixel limit, one per concurrent analysis of the app's queue),
least recently used first out, and an image unused for the session time to live
(:func:`inkapp.curation.memory.session_ttl_s`) is dropped, so the cache is empty once
every session that showed something has expired. When a session needs the full image
again (another heat map method, another explained class) and it has been evicted, it is
decoded again from its source. Session state itself expires :func:`session_ttl_s`
seconds after its last update (``gr.State(time_to_live=...)``), so what a visitor leaves
behind is bounded in size and in time.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from inkapp.data.images import decode_image, env_number

from .analysis import LoadedImage
from .memory import BudgetCache, session_ttl_s
from .uploads import UploadItem

ENV_PIXEL_CACHE_MB = "INKAPP_PIXEL_CACHE_MB"
PIXEL_CACHE_MB = 512  # default byte budget of the server-wide cache, MiB


def image_bytes(image: Image.Image) -> int:
    """Bytes of an 8-bit image's pixels: width × height × bands."""
    return image.width * image.height * len(image.getbands())


@dataclass(frozen=True)
class ShownImage:
    """What a session keeps of the image on screen: its name, the SHA-256 of its bytes
    (the key into the :class:`PixelCache`) and the display copy."""

    name: str
    sha256: str
    display: Image.Image


class PixelCache(BudgetCache[str, Image.Image]):
    """Thread-safe LRU of full-resolution decoded images keyed by content SHA-256, holding
    at most ``budget_bytes`` of pixels (default ``INKAPP_PIXEL_CACHE_MB``; an image larger
    than the whole budget is not kept) and none unused for ``idle_s`` seconds (default
    :func:`session_ttl_s`)."""

    def __init__(self, budget_bytes: int | None = None, idle_s: float | None = None) -> None:
        super().__init__(int(budget_bytes if budget_bytes is not None
                             else (env_number(ENV_PIXEL_CACHE_MB) or PIXEL_CACHE_MB) * 2**20),
                         image_bytes, idle_s if idle_s is not None else session_ttl_s())
        self.misses = 0

    def remember(self, loaded: LoadedImage) -> ShownImage:
        """Cache a freshly decoded upload's full pixels; return what its session keeps."""
        self.put(loaded.sha256, loaded.image)
        return ShownImage(loaded.name, loaded.sha256, loaded.display)

    def loaded(self, shown: ShownImage, decode: Callable[[], Image.Image]) -> LoadedImage:
        """A :class:`LoadedImage` for analysis (no bytes: the image is already stored) with
        the full pixels from the cache, or from ``decode()`` (then cached) after an eviction."""
        image = self.get(shown.sha256)
        if image is None:
            self.misses += 1
            image = decode()
            self.put(shown.sha256, image)
        return LoadedImage(shown.name, shown.sha256, b"", image, shown.display)


def decode_again(item: UploadItem, stored: Path | None) -> Image.Image:
    """The full pixels of an image on screen decoded again after an eviction: from its
    stored copy under the data directory when there is one (uploads in Gradio's cache
    are deleted after a while), else from the upload itself (ImageError when neither
    can be read)."""
    if stored is not None and stored.is_file():
        return decode_image(stored)[0]
    return decode_image(item.read_bytes())[0]


#: The server-wide cache (budget from ``INKAPP_PIXEL_CACHE_MB`` when first imported).
PIXELS = PixelCache()
