"""Full-resolution pixels held once per server, not once per visitor.

A browser session keeps only a :class:`ShownImage` (name, content hash, display copy of
at most a few MiB); the decoded full-resolution image lives in one server-wide
:class:`PixelCache` with a byte budget (``INKAPP_PIXEL_CACHE_MB``, default 1024 MiB),
least recently used first out. When a session needs the full image again (another heat
map method, another explained class) and it has been evicted, it is decoded again from
its source. Session state itself expires :data:`SESSION_TTL_S` seconds after its last
update (``gr.State(time_to_live=...)``), so what a visitor leaves behind is bounded in
size and in time.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from inkapp.data.images import decode_image, env_number

from .analysis import LoadedImage
from .uploads import UploadItem

ENV_PIXEL_CACHE_MB = "INKAPP_PIXEL_CACHE_MB"
PIXEL_CACHE_MB = 1024  # default byte budget of the server-wide cache, MiB
ENV_SESSION_TTL_S = "INKAPP_SESSION_TTL_S"
SESSION_TTL_S = 1800  # default: a session's state is dropped 30 min after its last update


def image_bytes(image: Image.Image) -> int:
    """Bytes of an 8-bit image's pixels: width × height × bands."""
    return image.width * image.height * len(image.getbands())


def session_ttl_s() -> float:
    """Seconds a session's state lives after its last update (``INKAPP_SESSION_TTL_S``, default 1800)."""
    return env_number(ENV_SESSION_TTL_S) or SESSION_TTL_S


@dataclass(frozen=True)
class ShownImage:
    """What a session keeps of the image on screen: its name, the SHA-256 of its bytes
    (the key into the :class:`PixelCache`) and the display copy."""

    name: str
    sha256: str
    display: Image.Image


class PixelCache:
    """Thread-safe LRU of full-resolution decoded images keyed by content SHA-256, holding
    at most ``budget_bytes`` of pixels (an image larger than the whole budget is not kept)."""

    def __init__(self, budget_bytes: int | None = None) -> None:
        self.budget_bytes = int(budget_bytes if budget_bytes is not None
                                else (env_number(ENV_PIXEL_CACHE_MB) or PIXEL_CACHE_MB) * 2**20)
        self._lock = threading.Lock()
        self._images: OrderedDict[str, Image.Image] = OrderedDict()
        self.nbytes = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._images)

    def put(self, sha256: str, image: Image.Image) -> None:
        """Keep ``image`` under ``sha256``, evicting the least recently used beyond the budget."""
        size = image_bytes(image)
        with self._lock:
            old = self._images.pop(sha256, None)
            if old is not None:
                self.nbytes -= image_bytes(old)
            if size > self.budget_bytes:
                return
            self._images[sha256] = image
            self.nbytes += size
            while self.nbytes > self.budget_bytes:
                _, evicted = self._images.popitem(last=False)
                self.nbytes -= image_bytes(evicted)

    def get(self, sha256: str) -> Image.Image | None:
        """The cached image of ``sha256`` (now most recently used), or None."""
        with self._lock:
            image = self._images.get(sha256)
            if image is not None:
                self._images.move_to_end(sha256)
            return image

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
