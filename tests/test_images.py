"""Tests for inkapp.data.images: every accepted and rejected input is generated with PIL."""
from __future__ import annotations

import hashlib
import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, features

import inkapp.data.images as images_module
from inkapp.data.images import (
    FORMAT_EXTENSIONS,
    MAX_FILE_BYTES,
    MAX_PIXELS,
    ImageError,
    decode_image,
    effective_max_bytes,
    effective_max_pixels,
    load_image,
    sha256_bytes,
    sha256_file,
)


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def png_with_size(width: int, height: int) -> bytes:
    """A valid small PNG whose IHDR claims ``width``×``height`` (CRC recomputed)."""
    data = bytearray(encode(Image.new("1", (16, 16)), "PNG"))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def gradient_rgb(w: int = 64, h: int = 48) -> Image.Image:
    x = np.linspace(0, 255, w, dtype=np.uint8)[None, :, None]
    return Image.fromarray(np.broadcast_to(x, (h, w, 3)).copy())


@pytest.fixture(autouse=True)
def _no_env_limits(monkeypatch):
    monkeypatch.delenv("INKAPP_MAX_UPLOAD_MB", raising=False)
    monkeypatch.delenv("INKAPP_MAX_PIXELS", raising=False)


# ---------------------------------------------------------------- accepted inputs

@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF", "WEBP", "GIF", "BMP"])
def test_formats_round_trip(tmp_path: Path, fmt: str):
    if fmt == "WEBP" and not features.check("webp"):
        pytest.skip("Pillow built without WebP")
    path = tmp_path / f"img.{FORMAT_EXTENSIONS[fmt]}"
    gradient_rgb().save(path, fmt)
    for source in (path, str(path), path.read_bytes()):
        im, detected = decode_image(source)
        assert detected == fmt
        assert im.mode == "RGB" and im.size == (64, 48)
        im.load()  # already loaded; must not need the (closed) file


def test_grayscale_stays_l():
    im = load_image(encode(Image.new("L", (20, 10), 77), "PNG"))
    assert im.mode == "L" and im.getpixel((3, 3)) == 77


def test_one_bit_becomes_l():
    src = Image.new("1", (16, 16), 0)
    src.paste(1, (0, 0, 8, 16))
    im = load_image(encode(src, "PNG"))
    assert im.mode == "L"
    assert im.getpixel((2, 2)) == 255 and im.getpixel((12, 2)) == 0


def test_sixteen_bit_png_is_scaled_not_clipped():
    values = np.array([0, 1000, 128 * 257, 65535], dtype=np.uint16)
    arr = np.tile(values, (8, 4))  # 8×16
    src = Image.fromarray(arr)
    assert src.mode == "I;16"
    im = load_image(encode(src, "PNG"))
    assert im.mode == "L"
    assert list(np.asarray(im)[0, :4]) == [0, 4, 128, 255]


def test_sixteen_bit_tiff_is_scaled():
    arr = np.tile(np.array([0, 257 * 10, 65535], dtype=np.uint16), (9, 3))
    im = load_image(encode(Image.fromarray(arr), "TIFF"))
    assert im.mode == "L" and list(np.asarray(im)[0, :3]) == [0, 10, 255]


def test_cmyk_jpeg_becomes_rgb():
    src = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # red
    im = load_image(encode(src, "JPEG", quality=95))
    assert im.mode == "RGB"
    r, g, b = im.getpixel((16, 16))
    assert r > 200 and g < 60 and b < 60


def test_rgba_composited_on_white():
    src = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    src.paste((0, 0, 0, 255), (0, 0, 8, 16))
    src.paste((0, 0, 0, 128), (8, 0, 16, 8))
    im = load_image(encode(src, "PNG"))
    assert im.mode == "RGB"
    assert im.getpixel((2, 2)) == (0, 0, 0)
    assert im.getpixel((12, 12)) == (255, 255, 255)
    assert all(abs(c - 127) <= 2 for c in im.getpixel((12, 2)))


def test_la_composited_on_white():
    src = Image.new("LA", (16, 16), (0, 0))
    src.paste((0, 255), (0, 0, 8, 16))
    im = load_image(encode(src, "PNG"))
    assert im.mode == "L"
    assert im.getpixel((2, 2)) == 0 and im.getpixel((12, 2)) == 255


def test_palette_with_transparency_on_white():
    src = Image.new("P", (16, 16), 0)
    src.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    src.paste(1, (8, 0, 16, 16))
    im = load_image(encode(src, "PNG", transparency=1))
    assert im.mode == "RGB"
    assert im.getpixel((2, 2)) == (255, 0, 0)
    assert im.getpixel((12, 2)) == (255, 255, 255)


def test_palette_without_transparency_to_rgb():
    src = Image.new("P", (16, 16), 1)
    src.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    im = load_image(encode(src, "PNG"))
    assert im.mode == "RGB" and im.getpixel((5, 5)) == (0, 0, 255)


def test_animated_gif_first_frame():
    frames = [Image.new("RGB", (16, 16), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    im = load_image(data)
    assert im.mode == "RGB" and im.getpixel((8, 8)) == (255, 0, 0)


def test_multipage_tiff_first_page():
    pages = [Image.new("L", (16, 16), 255), Image.new("L", (24, 24), 0)]
    data = encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    assert Image.open(io.BytesIO(data)).n_frames == 2
    im = load_image(data)
    assert im.size == (16, 16) and im.getpixel((8, 8)) == 255


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation_applied(fmt: str):
    src = Image.new("L", (40, 20), 255)
    src.paste(0, (0, 0, 20, 20))  # left half black
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90° clockwise
    im = load_image(encode(src, fmt, exif=exif.tobytes()))
    assert im.size == (20, 40)
    assert im.getpixel((10, 5)) < 50 and im.getpixel((10, 35)) > 200  # black went to the top


def test_minimum_size_accepted():
    assert load_image(encode(Image.new("RGB", (8, 8)), "PNG")).size == (8, 8)


# ---------------------------------------------------------------- rejected inputs

def test_zero_bytes(tmp_path: Path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    for source in (empty, b""):
        with pytest.raises(ImageError, match="empty"):
            load_image(source)


def test_missing_file_is_image_error(tmp_path: Path):
    with pytest.raises(ImageError, match="cannot read"):
        load_image(tmp_path / "nope.png")


def test_text_file_named_jpg(tmp_path: Path):
    fake = tmp_path / "notes.jpg"
    fake.write_text("this is a shopping list, not a painting\n")
    with pytest.raises(ImageError, match="not a recognised image"):
        load_image(fake)


def test_unsupported_format_rejected():
    with pytest.raises(ImageError, match="not a recognised image"):
        load_image(encode(Image.new("RGB", (16, 16)), "ICO"))


class _ReadCounter:
    """A file opened by ``inkapp.data.images`` that counts the bytes read from it."""

    def __init__(self, path, mode, counts: list[int]):
        self._file = open(path, mode)
        self._counts = counts

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()

    def fileno(self) -> int:
        return self._file.fileno()

    def read(self, n: int = -1) -> bytes:
        data = self._file.read(n)
        self._counts.append(len(data))
        return data


def test_size_limit_checked_before_reading(tmp_path: Path, monkeypatch):
    counts: list[int] = []
    monkeypatch.setattr(images_module, "open", lambda path, mode="r": _ReadCounter(path, mode, counts), raising=False)
    small = tmp_path / "small.png"
    small.write_bytes(encode(gradient_rgb(), "PNG"))
    assert load_image(small).size == (64, 48)
    assert sum(counts) == small.stat().st_size  # the counter sees what a read takes
    counts.clear()
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as f:  # sparse: 1 GiB on paper, nothing on disk
        f.truncate(1024 * 1024 * 1024)
    with pytest.raises(ImageError, match=r"file is too large \(1024\.0 MiB; limit 50\.0 MiB\)"):
        load_image(huge)
    assert counts == []  # refused from its size alone: not one byte read


def test_size_limit_kwarg_and_env(tmp_path: Path, monkeypatch):
    data = encode(gradient_rgb(), "PNG")
    with pytest.raises(ImageError, match="too large"):
        load_image(data, max_bytes=len(data) - 1)
    assert load_image(data, max_bytes=len(data)).size == (64, 48)
    monkeypatch.setenv("INKAPP_MAX_UPLOAD_MB", str(len(data) / 2 / 1024 / 1024))
    path = tmp_path / "a.png"
    path.write_bytes(data)
    with pytest.raises(ImageError, match="too large"):
        load_image(path)
    assert load_image(path, max_bytes=10**9).size == (64, 48)  # kwarg beats env


def test_limit_defaults_and_bad_env(monkeypatch):
    assert effective_max_bytes() == MAX_FILE_BYTES == 50 * 1024 * 1024
    assert effective_max_pixels() == MAX_PIXELS == 80_000_000
    monkeypatch.setenv("INKAPP_MAX_PIXELS", "1234")
    assert effective_max_pixels() == 1234
    monkeypatch.setenv("INKAPP_MAX_PIXELS", "lots")
    with pytest.raises(ValueError, match="INKAPP_MAX_PIXELS"):
        effective_max_pixels()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("load_truncated", [False, True])
def test_truncated_rejected_even_with_load_truncated_images(fmt, load_truncated, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", load_truncated)
    rng = np.random.default_rng(0)
    noisy = Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8))
    data = encode(noisy, fmt)
    with pytest.raises(ImageError, match="truncated"):
        load_image(data[: len(data) // 2])


def _jpeg_walk_bytewise(data: bytes) -> str | None:
    """The JPEG structure walk one byte at a time (the implementation before the regex
    search): the oracle the fast walk must agree with."""
    n, pos = len(data), 2
    if not data.startswith(b"\xff\xd8"):
        return "soi"
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= n:
            return "truncated"
        marker = data[pos + 1]
        if marker == 0xD9:
            return None
        if marker == 0xFF:
            pos += 1
        elif marker in (0x00, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
        else:
            if pos + 4 > n:
                return "truncated"
            pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")


def test_jpeg_walk_agrees_with_the_bytewise_walk_on_every_cut():
    """Restart markers, byte stuffing, fill bytes and an EOI inside a comment segment (which
    must be skipped by its length) — the fast walk and the byte loop give the same verdict
    for the whole file and for every truncation of it."""
    rng = np.random.default_rng(1)
    noisy = Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))
    data = encode(noisy, "JPEG", quality=95, restart_marker_blocks=1, comment=b"ends with \xff\xd9 early")
    assert b"\xff\xd9" in data[:-2]  # the comment's false EOI is there
    assert b"\xff\xd0" in data and b"\xff\x00" in data  # restart markers and byte stuffing
    fill = data[:-2] + b"\xff\xff\xd9"  # fill bytes before the EOI
    for blob in (data, fill):
        cuts = range(2, len(blob) + 1)
        verdicts = [(images_module._jpeg_problem(blob[:c]) is None, _jpeg_walk_bytewise(blob[:c]) is None)
                    for c in cuts]
        assert all(fast == slow for fast, slow in verdicts)
        assert verdicts[-1] == (True, True)
        assert sum(fast for fast, _ in verdicts) == 1  # only the complete file passes


def test_an_8bit_decode_is_returned_as_is_and_stays_usable():
    data = encode(Image.new("RGB", (40, 30), (10, 20, 30)), "JPEG")
    img = load_image(data)
    assert img.mode == "RGB" and img.size == (40, 30)
    assert np.asarray(img).mean() > 5  # pixels alive after decode_image returned (no closed core)
    assert np.asarray(img.convert("L").resize((4, 3))).shape == (3, 4)


@pytest.mark.parametrize("load_truncated", [False, True])
def test_corrupt_png_rejected(load_truncated, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", load_truncated)
    data = bytearray(encode(gradient_rgb(), "PNG"))
    idat = data.index(b"IDAT")
    data[idat + 10] ^= 0xFF
    with pytest.raises(ImageError, match="corrupt"):
        load_image(bytes(data))


def test_jpeg_with_trailing_data_accepted():
    # e.g. motion photos append a video after the JPEG's end-of-image marker
    data = encode(gradient_rgb(), "JPEG") + b"\xff\xda junk without an end marker" * 10
    assert load_image(data).size == (64, 48)


def test_module_does_not_enable_truncated_loading():
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_decompression_bomb_header_rejected_before_decoding(monkeypatch):
    decoders: list[str] = []
    real = Image._getdecoder

    def observed_getdecoder(mode, decoder_name, *args, **kwargs):
        decoders.append(decoder_name)
        return real(mode, decoder_name, *args, **kwargs)

    monkeypatch.setattr(Image, "_getdecoder", observed_getdecoder)
    assert load_image(encode(gradient_rgb(), "PNG")).size == (64, 48)
    assert "zip" in decoders  # the observer sees the PNG being decoded
    decoders.clear()
    bomb = png_with_size(50_000, 50_000)
    assert len(bomb) < 200
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(bomb)
    assert decoders == []  # refused from the header: no pixel decoder was created


def test_above_our_limit_below_pillow_error_no_warning_leaks():
    # 9500×9500 = 90.25 MP: above our 80 MP and Pillow's warning threshold (~89.5 MP)
    bomb = png_with_size(9_500, 9_500)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageError, match="80 megapixel limit"):
            load_image(bomb)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


def test_pixel_limit_kwarg_and_env(monkeypatch):
    data = encode(gradient_rgb(), "PNG")  # 64×48 = 3072 px
    with pytest.raises(ImageError, match="too large"):
        load_image(data, max_pixels=3071)
    assert load_image(data, max_pixels=3072).size == (64, 48)
    monkeypatch.setenv("INKAPP_MAX_PIXELS", "1000")
    with pytest.raises(ImageError, match="too large"):
        load_image(data)


@pytest.mark.parametrize("size", [(1, 1), (7, 100), (100, 7)])
def test_too_small(size):
    with pytest.raises(ImageError, match="too small to classify"):
        load_image(encode(Image.new("RGB", size), "PNG"))


def test_error_message_is_one_line(tmp_path: Path):
    fake = tmp_path / "x.png"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(ImageError, match="not a recognised image") as info:
        load_image(fake)
    assert "\n" not in str(info.value) and str(info.value)
    assert isinstance(info.value, ValueError)


# ---------------------------------------------------------------- hashing

def test_sha256(tmp_path: Path):
    data = bytes(range(256)) * 9000  # > 1 MiB chunk
    path = tmp_path / "blob"
    path.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert sha256_bytes(data) == expected
    assert sha256_file(path) == expected
    assert sha256_file(str(path)) == expected
