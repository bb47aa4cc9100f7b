"""The upload matrix of issue 7: files every entry point must reject with a one-line
message (and store nothing for), and unusual but valid files it must accept.

Shared by the in-process UI test, the ``inkapp predict`` test and the launched-app
client test. All files are generated with PIL; none is larger than a few KiB except
the one over :data:`conftest.TEST_UPLOAD_LIMIT_MB`.
"""
from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import TEST_UPLOAD_LIMIT_MB


@dataclass(frozen=True)
class BadUpload:
    """A file to reject and a fragment its message must contain."""

    path: Path
    message: str


@dataclass(frozen=True)
class GoodUpload:
    """A file to accept and its size after decoding (EXIF orientation applied)."""

    path: Path
    size: tuple[int, int]


def _encode(image: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def _textured(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """A small image with some structure (not a flat colour)."""
    rng = np.random.default_rng(width * 31 + height)
    arr = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(arr).convert(mode)


def _png_claiming(width: int, height: int) -> bytes:
    """A valid tiny PNG whose IHDR claims ``width``×``height`` (a decompression bomb header)."""
    data = bytearray(_encode(Image.new("1", (16, 16)), "PNG"))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def bad_uploads(folder: Path) -> dict[str, BadUpload]:
    """Write the files to reject into ``folder``; keyed by case name."""
    folder.mkdir(parents=True, exist_ok=True)
    jpeg = _encode(_textured(64, 48), "JPEG", quality=90)
    png = _encode(_textured(64, 48), "PNG")
    corrupt_png = bytearray(png)
    corrupt_png[60] ^= 0xFF  # inside IDAT: checksum mismatch
    cases = {
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "truncated JPEG"),
        "truncated.png": (png[: len(png) // 2], "truncated PNG"),
        "corrupt.png": (bytes(corrupt_png), "corrupt PNG"),
        "text.jpg": (b"just some text, not a picture\n", "not a recognised image"),
        "empty.png": (b"", "file is empty"),
        "tiny.png": (_encode(Image.new("RGB", (1, 1)), "PNG"), "too small to classify"),
        "bomb.png": (_png_claiming(50_000, 50_000), "decompression bomb"),
        "huge.png": (b"\x89PNG\r\n\x1a\n" + bytes(int(TEST_UPLOAD_LIMIT_MB * 1.5 * 2**20)), "file is too large"),
    }
    out = {}
    for name, (data, message) in cases.items():
        (folder / name).write_bytes(data)
        out[name] = BadUpload(folder / name, message)
    return out


def good_uploads(folder: Path) -> dict[str, GoodUpload]:
    """Write the unusual but valid files into ``folder``; keyed by case name."""
    folder.mkdir(parents=True, exist_ok=True)
    sixteen = Image.fromarray((np.arange(64 * 40, dtype=np.uint16).reshape(40, 64) * 25).astype(np.uint16))
    rgba = _textured(64, 40).convert("RGBA")
    rgba.putalpha(128)
    frames = [_textured(48, 32), Image.new("RGB", (48, 32), (0, 255, 0))]
    pages = [_textured(40, 56, "L"), Image.new("L", (30, 30), 0)]
    rotated = _textured(64, 32)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90° clockwise
    files = {
        "sixteen-bit.png": (_encode(sixteen, "PNG"), (64, 40)),
        "cmyk.jpg": (_encode(_textured(48, 40).convert("CMYK"), "JPEG"), (48, 40)),
        "rgba.png": (_encode(rgba, "PNG"), (64, 40)),
        "palette.png": (_encode(_textured(40, 40).convert("P"), "PNG"), (40, 40)),
        "animated.gif": (_encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0),
                         (48, 32)),
        "multipage.tif": (_encode(pages[0], "TIFF", save_all=True, append_images=pages[1:]), (40, 56)),
        "exif-rotated.jpg": (_encode(rotated, "JPEG", exif=exif.tobytes()), (32, 64)),
        "grayscale.png": (_encode(_textured(50, 30, "L"), "PNG"), (50, 30)),
    }
    out = {}
    for name, (data, size) in files.items():
        (folder / name).write_bytes(data)
        out[name] = GoodUpload(folder / name, size)
    return out


def stored_state(data_dir: Path) -> tuple[list[Path], bytes, bytes]:
    """What an upload may add to a data dir: image files, corrections CSV, analysis log."""
    images = sorted(p for p in (data_dir / "images").rglob("*") if p.is_file()) if (data_dir / "images").exists() \
        else []
    csv = (data_dir / "corrections.csv").read_bytes() if (data_dir / "corrections.csv").exists() else b""
    log = (data_dir / "analysed.jsonl").read_bytes() if (data_dir / "analysed.jsonl").exists() else b""
    return images, csv, log
