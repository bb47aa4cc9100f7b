"""Robust image decoding shared by the CLI, the app and training.

:func:`load_image` turns untrusted bytes (an upload, a file from a scraped data set)
into a fully decoded 8-bit ``RGB`` or ``L`` image, or raises :class:`ImageError` with
a one-line message the caller can show next to the file name. Limits are enforced
before any expensive work: the byte size before reading a file, and the pixel count
from the header before decoding (decompression bombs).

Truncated or corrupt JPEG and PNG files are rejected by our own structural checks
(PNG chunk CRCs up to ``IEND``; JPEG segment walk up to ``EOI``) in addition to
Pillow's, so they are rejected even if some other module has switched on Pillow's
process-wide ``ImageFile.LOAD_TRUNCATED_IMAGES``. This module never changes it.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import threading
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 50 * 1024 * 1024  # default byte limit (50 MiB); env INKAPP_MAX_UPLOAD_MB
MAX_PIXELS = 80_000_000  # default pixel limit (width × height); env INKAPP_MAX_PIXELS
MIN_SIDE = 8  # pixels; anything smaller on either side is too small to classify
CONVERT_STRIP_PIXELS = 1 << 18  # pixels per strip when converting high-bit-depth images
LARGE_DECODE_PIXELS = 16_000_000  # decodes of at least this many pixels take a slot of LARGE_DECODES
LARGE_DECODE_SLOTS = 2  # default number of such decodes at once; env INKAPP_LARGE_DECODES
LARGE_DECODE_WAIT_S = 120.0  # a decode waiting longer than this for a slot is refused

ENV_MAX_UPLOAD_MB = "INKAPP_MAX_UPLOAD_MB"
ENV_MAX_PIXELS = "INKAPP_MAX_PIXELS"
ENV_LARGE_DECODES = "INKAPP_LARGE_DECODES"

# Pillow format name -> file extension used when storing the original bytes.
# MPO is how Pillow reports multi-picture JPEGs written by many cameras.
FORMAT_EXTENSIONS: dict[str, str] = {
    "JPEG": "jpg",
    "MPO": "jpg",
    "PNG": "png",
    "TIFF": "tif",
    "WEBP": "webp",
    "GIF": "gif",
    "BMP": "bmp",
}
OPEN_FORMATS = ("JPEG", "PNG", "TIFF", "WEBP", "GIF", "BMP")  # MPO is opened via JPEG
_SUPPORTED = "JPEG, PNG, TIFF, WebP, GIF, BMP"

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# warnings.catch_warnings mutates process-wide state; serialise our own uses of it.
_WARNINGS_LOCK = threading.Lock()
_HASH_CHUNK = 1024 * 1024


#: File endings of the image formats inkapp reads (folders, uploads, archives).
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".gif", ".bmp")


class ImageError(ValueError):
    """The input is not an acceptable image; ``str()`` is a one-line human message."""


def env_number(name: str) -> float | None:
    """The positive number in environment variable ``name``, None when unset or empty
    (ValueError with a one-line message when it is not a positive number)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not a number") from None
    if not value > 0:
        raise ValueError(f"environment variable {name}={raw!r} must be positive")
    return value


def effective_max_bytes(override: int | None = None) -> int:
    """Effective byte limit: ``override``, else ``INKAPP_MAX_UPLOAD_MB`` (MiB), else 50 MiB."""
    if override is not None:
        return int(override)
    mib = env_number(ENV_MAX_UPLOAD_MB)
    return MAX_FILE_BYTES if mib is None else int(mib * 1024 * 1024)


def effective_max_pixels(override: int | None = None) -> int:
    """Effective pixel limit (width × height): ``override``, else ``INKAPP_MAX_PIXELS``, else 80 MP."""
    if override is not None:
        return int(override)
    px = env_number(ENV_MAX_PIXELS)
    return MAX_PIXELS if px is None else int(px)


class DecodeSlots:
    """At most ``slots`` decodes of ``min_pixels`` or more at once, process-wide.

    A decode's peak memory grows with its pixel count (Pillow's decoded image, up to
    4 bytes per pixel for 32-bit modes, plus the 8-bit result and an EXIF-rotated copy),
    so bounding how many large ones run together makes the worst case a known figure:
    ``slots`` × the peak of one decode at the pixel limit (see docs/SECURITY.md).
    Smaller decodes do not wait. ``peak`` is the most large decodes seen at once.
    """

    def __init__(self, slots: int, min_pixels: int = LARGE_DECODE_PIXELS,
                 wait_s: float = LARGE_DECODE_WAIT_S) -> None:
        self.slots, self.min_pixels, self.wait_s = int(slots), int(min_pixels), float(wait_s)
        self._semaphore = threading.BoundedSemaphore(self.slots)
        self._count_lock = threading.Lock()
        self.in_use = 0
        self.peak = 0

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        """Hold a slot while decoding an image of ``pixels`` pixels (none below ``min_pixels``)."""
        if pixels < self.min_pixels:
            yield
            return
        if not self._semaphore.acquire(timeout=self.wait_s):
            raise ImageError(f"the server is busy decoding other large images; try again "
                             f"(waited {self.wait_s:g} s)")
        try:
            with self._count_lock:
                self.in_use += 1
                self.peak = max(self.peak, self.in_use)
            yield
        finally:
            with self._count_lock:
                self.in_use -= 1
            self._semaphore.release()


def _slots_from_env() -> int:
    value = env_number(ENV_LARGE_DECODES)
    return LARGE_DECODE_SLOTS if value is None else max(1, int(value))


#: The process-wide bound on concurrent large decodes (``INKAPP_LARGE_DECODES``, default 2).
LARGE_DECODES = DecodeSlots(_slots_from_env())


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"


def _read_source(source: str | Path | bytes, limit: int) -> bytes:
    """Return the bytes of ``source``, checking the size against ``limit`` before reading."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if len(data) > limit:
            raise ImageError(f"file is too large ({_mib(len(data))}; limit {_mib(limit)})")
        return data
    try:
        with open(source, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                raise ImageError(f"file is too large ({_mib(size)}; limit {_mib(limit)})")
            data = f.read(limit + 1)  # bounded even if the file grows meanwhile
    except ImageError:
        raise
    except OSError as e:
        raise ImageError(f"cannot read file: {e.strerror or e}") from None
    if len(data) > limit:
        raise ImageError(f"file is too large (more than {_mib(limit)})")
    return data


def _png_problem(data: bytes) -> str | None:
    """Walk the PNG chunks up to IEND checking lengths and CRCs; describe the first problem."""
    view = memoryview(data)
    pos, n = len(_PNG_SIGNATURE), len(data)
    while True:
        if pos + 12 > n:
            return "truncated PNG (file ends before the IEND chunk)"
        length = int.from_bytes(view[pos:pos + 4], "big")
        ctype = bytes(view[pos + 4:pos + 8])
        end = pos + 12 + length
        if end > n:
            return f"truncated PNG (file ends inside a {ctype.decode('latin-1')} chunk)"
        if zlib.crc32(view[pos + 4:end - 4]) != int.from_bytes(view[end - 4:end], "big"):
            return f"corrupt PNG (checksum mismatch in {ctype.decode('latin-1')} chunk)"
        if ctype == b"IEND":
            return None
        pos = end


#: The next marker that is not byte stuffing (FF 00), a fill byte (FF FF), TEM (FF 01) or
#: a restart marker (FF D0-D7): those are all the walk below steps over one by one.
_JPEG_MARKER = re.compile(rb"\xff[^\x00\x01\xd0-\xd7\xff]")


def _jpeg_problem(data: bytes) -> str | None:
    """Walk the JPEG marker segments and entropy-coded data up to the first EOI marker.

    Segments are skipped by their declared length (an EXIF thumbnail's own EOI is not
    the end); between segments :data:`_JPEG_MARKER` finds the next real marker in C
    (about 0.1 ms for a 3-megapixel photo, where a byte loop in Python took 2 ms).
    """
    n = len(data)
    if not data.startswith(b"\xff\xd8"):
        return "corrupt JPEG (missing start-of-image marker)"
    pos = 2
    while True:
        found = _JPEG_MARKER.search(data, pos)
        if found is None:
            return "truncated JPEG (file ends before the end-of-image marker)"
        pos = found.start()
        if data[pos + 1] == 0xD9:  # EOI
            return None
        # a segment with a 2-byte big-endian length that counts itself
        if pos + 4 > n:
            return "truncated JPEG (file ends inside a marker segment)"
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")


def _strips(h: int, w: int) -> Iterator[tuple[int, int]]:
    """Row ranges ``[y0, y1)`` of about :data:`CONVERT_STRIP_PIXELS` pixels each."""
    rows = max(1, CONVERT_STRIP_PIXELS // max(w, 1))
    return ((y, min(h, y + rows)) for y in range(0, h, rows))


def _finite_strip(im: Image.Image, y0: int, y1: int) -> np.ndarray:
    """Rows ``y0..y1`` of a 32-bit ``I`` / ``F`` image as float64, NaN and ±inf -> 0."""
    strip = np.asarray(im.crop((0, y0, im.width, y1)), dtype=np.float64)
    return np.nan_to_num(strip, copy=False, nan=0.0, posinf=0.0, neginf=0.0)


def _to_l_from_high_bit_depth(im: Image.Image) -> Image.Image:
    """16-bit / 32-bit integer or float grayscale -> 8-bit L, scaled rather than clipped.

    Works on strips of :data:`CONVERT_STRIP_PIXELS` pixels, so besides Pillow's own
    image it allocates the W×H-byte result plus at most 8 MiB of strip temporaries
    (measured 5.2 MiB: one strip as float64 and its raw bytes), never a whole-image
    float copy (before: ~31 bytes per pixel, 2.4 GiB at 80 MP). 16-bit samples
    map to ``round(v·255/65535)``; 32-bit ``I`` within 0..65535 to ``round(v/257)``;
    ``F`` within [0, 1] to ``round(v·255)``; any other range is stretched to 0..255
    (NaN and ±inf count as 0).
    """
    w, h = im.size
    out = np.empty((h, w), dtype=np.uint8)
    if im.mode.startswith("I;16"):
        for y0, y1 in _strips(h, w):
            strip = np.asarray(im.crop((0, y0, w, y1))).astype(np.uint32)
            out[y0:y1] = (strip * 255 + 32767) // 65535
        return Image.fromarray(out)
    lo, hi = np.inf, -np.inf
    for y0, y1 in _strips(h, w):
        strip = _finite_strip(im, y0, y1)
        lo, hi = min(lo, float(strip.min())), max(hi, float(strip.max()))
    if im.mode == "I" and lo >= 0 and hi <= 65535:  # 16-bit samples widened to 32 bits
        offset, scale = 0.0, 1 / 257.0
    elif im.mode == "F" and lo >= 0 and hi <= 1:  # normalised floats
        offset, scale = 0.0, 255.0
    else:  # arbitrary range: stretch to 0..255 (a constant image becomes black)
        offset, scale = lo, (255.0 / (hi - lo) if hi > lo else 0.0)
    for y0, y1 in _strips(h, w):
        strip = _finite_strip(im, y0, y1)
        if offset:
            strip -= offset
        strip *= scale
        out[y0:y1] = np.clip(np.rint(strip, out=strip), 0, 255, out=strip)
    return Image.fromarray(out)


def _on_white(im: Image.Image, mode: str) -> Image.Image:
    """Composite an image with alpha (``RGBA`` or ``LA``) onto paper white -> ``mode``."""
    rgba = im.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert(mode)


def _normalise_mode(im: Image.Image) -> Image.Image:
    """An 8-bit ``RGB`` or ``L`` image (alpha composited on white): ``im`` itself when it
    already is one (no 9 MB copy of a 3-megapixel photo), else a new image."""
    mode = im.mode
    if mode in ("RGB", "L"):
        return im
    if mode == "1":
        return im.convert("L")
    if mode in ("LA", "La"):
        return _on_white(im.convert("LA"), "L")
    if mode in ("RGBA", "RGBa", "PA") or (mode == "P" and "transparency" in im.info):
        return _on_white(im, "RGB")
    if mode.startswith("I") or mode == "F":
        return _to_l_from_high_bit_depth(im)
    return im.convert("RGB")  # P, CMYK, YCbCr, LAB, HSV, RGBX, ...


def _decode_opened(im: Image.Image, fmt: str) -> Image.Image:
    """Decode an opened, checked image: first frame, EXIF orientation, 8-bit RGB or L."""
    try:
        im.load()  # Image.open leaves multi-frame files (GIF, WebP, TIFF) on frame 0
    except Exception as e:
        raise ImageError(f"corrupt or truncated {fmt} image: {e}") from None
    try:
        ImageOps.exif_transpose(im, in_place=True)
    except Exception as e:  # a broken EXIF block should not cost the image
        log.warning("ignoring unreadable EXIF orientation (%s: %s)", type(e).__name__, e)
    try:
        return _normalise_mode(im)
    except Exception as e:
        raise ImageError(f"cannot convert {fmt} image in mode {im.mode}: {e}") from None


def decode_image(
    source: str | Path | bytes,
    *,
    max_bytes: int | None = None,
    max_pixels: int | None = None,
    reduce_to: int | None = None,
) -> tuple[Image.Image, str]:
    """Decode ``source`` like :func:`load_image` and also return Pillow's format name.

    The format name (e.g. ``"JPEG"``, ``"PNG"``) is a key of :data:`FORMAT_EXTENSIONS`.
    With ``reduce_to`` (pixels) the result is a preview whose longest side is at most
    ``reduce_to``: JPEGs are decoded in draft mode (libjpeg's DCT scaling, 1/2 to 1/8 of
    the size, several times faster and smaller); other formats are decoded in full and
    shrunk. All checks (size, pixel limit, truncation) are the same.
    """
    byte_limit = effective_max_bytes(max_bytes)
    pixel_limit = effective_max_pixels(max_pixels)
    data = _read_source(source, byte_limit)
    if not data:
        raise ImageError("file is empty (0 bytes)")

    # Header only. Pillow's own DecompressionBombWarning is silenced here because the
    # configured pixel limit below is the policy; its hard error (2× its limit) stays.
    try:
        with _WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=OPEN_FORMATS)
    except UnidentifiedImageError:
        raise ImageError(f"not a recognised image (supported: {_SUPPORTED})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"image is too large to decode safely, possible decompression bomb: {e}") from None
    except Exception as e:  # plugins raise many types (SyntaxError, struct.error, ...)
        raise ImageError(f"corrupt image header: {e}") from None

    fmt = im.format or "unknown"
    out: Image.Image | None = None
    try:
        w, h = im.size
        if w * h > pixel_limit:
            raise ImageError(
                f"image is too large: {w}×{h} px = {w * h / 1e6:.1f} megapixels exceeds the "
                f"{pixel_limit / 1e6:g} megapixel limit (possible decompression bomb)")
        if w < MIN_SIDE or h < MIN_SIDE:
            raise ImageError(f"image is too small to classify ({w}×{h} px; "
                             f"at least {MIN_SIDE} px on each side needed)")
        problem = (_png_problem(data) if fmt == "PNG"
                   else _jpeg_problem(data) if fmt in ("JPEG", "MPO") else None)
        if problem:
            raise ImageError(problem)
        if reduce_to is not None and fmt in ("JPEG", "MPO"):
            im.draft(im.mode, (reduce_to, reduce_to))  # decoded size: at least reduce_to a side
        with LARGE_DECODES.hold(im.width * im.height):
            out = _decode_opened(im, fmt)
        if reduce_to is not None:
            out.thumbnail((reduce_to, reduce_to))
        if out is im:
            im.fp = None  # decoded: the image no longer needs (or keeps alive) a reader of the source bytes
    finally:
        if out is not im:  # a decoded RGB/L image is returned as it is: its pixels stay alive
            im.close()
    return out, fmt


def load_image(
    source: str | Path | bytes,
    *,
    max_bytes: int | None = None,
    max_pixels: int | None = None,
) -> Image.Image:
    """Decode an untrusted image file or byte string into a fully loaded PIL image.

    Args:
        source: a path or the raw bytes of a JPEG, PNG, TIFF, WebP, GIF or BMP file.
        max_bytes: size limit in bytes; default ``INKAPP_MAX_UPLOAD_MB`` (MiB) or 50 MiB,
            read at call time. Checked before the file is read.
        max_pixels: limit on width × height; default ``INKAPP_MAX_PIXELS`` or 80 000 000,
            read at call time. Checked from the header before decoding.

    Returns:
        An ``RGB`` or ``L`` image with 8 bits per channel, EXIF orientation applied,
        transparency composited on white, first frame only for animations/multi-page
        files, 16-bit samples scaled to 8 bits, CMYK and palette converted to RGB,
        1-bit converted to L. Size W×H is at least 8×8 px.

    Raises:
        ImageError: for any unacceptable input (empty, too large, not an image,
            corrupt or truncated, decompression bomb, smaller than 8 px on a side).
    """
    return decode_image(source, max_bytes=max_bytes, max_pixels=max_pixels)[0]


def sha256_bytes(data: bytes) -> str:
    """Lower-case hex SHA-256 (64 chars) of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Lower-case hex SHA-256 (64 chars) of a file, streamed in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_HASH_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()
