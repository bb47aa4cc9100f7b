"""Turning what the curator uploads (image files, or .zip archives of them) into a list
of named items that are read lazily, one at a time.

Zip archives are never extracted to disk: an item remembers the archive and member
name and reads that member on demand, after checking its declared size against the
upload limit (a zip bomb cannot make us inflate more than the limit). Only members
with an image extension are listed; folders, hidden files (``__MACOSX``, ``.*``) and
nested archives are skipped.

What one archive may cost is bounded, because a few kilobytes of zip can name many
large images: its listed members may declare at most :data:`MAX_ARCHIVE_BYTES` in all
and hold at most :data:`MAX_ARCHIVE_PIXELS` pixels in all (read from each member's
header; a header that cannot be read counts as the pixel limit); members beyond either
budget are dropped with a one-line message. Gallery previews (:func:`thumbnails`) are
draft-mode decodes where the format allows (JPEG), and stop after
:data:`THUMBNAIL_BUDGET_S` seconds per upload (the rest get a plain tile; each image is
still analysed when chosen).
"""
from __future__ import annotations

import io
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image

from inkapp.data.images import (IMAGE_SUFFIXES, OPEN_FORMATS, ImageError, decode_image, effective_max_bytes,
                                effective_max_pixels)

#: What the upload widget accepts.
UPLOAD_TYPES = [*IMAGE_SUFFIXES, ".zip"]
MAX_ITEMS = 500  # images per upload (files + zip members)
MAX_ARCHIVE_BYTES = 256 * 2**20  # declared uncompressed bytes of one archive's listed members
MAX_ARCHIVE_PIXELS = 400_000_000  # pixels of one archive's listed members (5 images at the 80 MP limit)
HEADER_BYTES = 128 * 1024  # bytes of a member read to find its image size
THUMBNAIL_SIDE = 192  # px, longest side of a gallery preview
THUMBNAIL_BUDGET_S = 15.0  # seconds of previews per upload


@dataclass(frozen=True)
class UploadItem:
    """One uploaded image: a file, or a member of an uploaded zip archive."""

    name: str
    path: Path
    member: str | None = None

    def read_bytes(self) -> bytes:
        """The image's bytes (ImageError when the file cannot be read or is too large)."""
        limit = effective_max_bytes()
        if self.member is None:
            try:
                size = self.path.stat().st_size
                if size > limit:
                    raise ImageError(f"file is too large ({size / 2**20:.1f} MiB; limit {limit / 2**20:.1f} MiB)")
                return self.path.read_bytes()
            except OSError as err:
                raise ImageError(f"cannot read file: {err.strerror or err}") from None
        try:
            with zipfile.ZipFile(self.path) as archive:
                info = archive.getinfo(self.member)
                if info.file_size > limit:
                    raise ImageError(f"file is too large ({info.file_size / 2**20:.1f} MiB; "
                                     f"limit {limit / 2**20:.1f} MiB)")
                with archive.open(info) as fh:
                    data = fh.read(limit + 1)
        except (OSError, KeyError, zipfile.BadZipFile, RuntimeError, NotImplementedError) as err:
            raise ImageError(f"cannot read {self.member} from the zip archive: {err}") from None
        if len(data) > limit:
            raise ImageError(f"file is too large (more than {limit / 2**20:.1f} MiB)")
        return data


def _is_listed_member(info: zipfile.ZipInfo) -> bool:
    parts = PurePosixPath(info.filename).parts
    return (not info.is_dir() and bool(parts) and not any(p.startswith((".", "__MACOSX")) for p in parts)
            and PurePosixPath(info.filename).suffix.lower() in IMAGE_SUFFIXES)


def _member_pixels(archive: zipfile.ZipFile, info: zipfile.ZipInfo, pixel_limit: int) -> int:
    """Width × height from a member's header (its first :data:`HEADER_BYTES`), or
    ``pixel_limit`` when the header cannot be read there."""
    try:
        with archive.open(info) as fh:
            head = fh.read(HEADER_BYTES)
        with Image.open(io.BytesIO(head), formats=OPEN_FORMATS) as im:
            return im.width * im.height
    except Exception:  # unreadable, unknown or cut-off header: assume the worst
        return pixel_limit


def _within_budget(archive: zipfile.ZipFile, name: str, members: list[zipfile.ZipInfo]) -> tuple[list[str], str]:
    """The members (in order) that fit the archive's byte and pixel budgets, and a one-line
    problem when some did not ("" otherwise)."""
    pixel_limit = effective_max_pixels()
    kept: list[str] = []
    total_bytes = total_pixels = 0
    for info in members:
        total_bytes += info.file_size
        if total_bytes > MAX_ARCHIVE_BYTES:
            return kept, (f"{name}: only the first {len(kept)} of {len(members)} images kept (the archive's "
                          f"images may hold {MAX_ARCHIVE_BYTES / 2**20:g} MiB in all)")
        total_pixels += _member_pixels(archive, info, pixel_limit)
        if total_pixels > MAX_ARCHIVE_PIXELS:
            return kept, (f"{name}: only the first {len(kept)} of {len(members)} images kept (the archive's "
                          f"images may hold {MAX_ARCHIVE_PIXELS / 1e6:g} megapixels in all)")
        kept.append(info.filename)
    return kept, ""


def thumbnail(item: UploadItem, side: int = THUMBNAIL_SIDE) -> tuple[Image.Image, str]:
    """A gallery preview of ``item`` (longest side ≤ ``side``; a reduced decode, see
    :func:`inkapp.data.images.decode_image`) and its caption; a grey tile captioned with
    the one-line reason for a bad file."""
    try:
        image, _ = decode_image(item.read_bytes(), reduce_to=side)
        return image.convert("RGB"), item.name
    except ImageError as err:
        return Image.new("RGB", (side, side), (200, 200, 200)), f"{item.name}: {err}"


def thumbnails(items: list[UploadItem], budget_s: float = THUMBNAIL_BUDGET_S,
               side: int = THUMBNAIL_SIDE) -> list[tuple[Image.Image, str]]:
    """Previews of ``items`` in order until ``budget_s`` seconds have passed; the rest get a
    plain tile captioned "no preview" (they are still analysed when chosen)."""
    deadline = time.monotonic() + budget_s
    out = []
    for item in items:
        if time.monotonic() < deadline:
            out.append(thumbnail(item, side))
        else:
            out.append((Image.new("RGB", (side, side), (225, 225, 225)), f"{item.name} (no preview)"))
    return out


def expand_uploads(paths: list[str | Path]) -> tuple[list[UploadItem], list[str]]:
    """Items for the uploaded files, in upload order (zip members in archive order), and
    one-line problems (unreadable archive, too many files, an archive over its byte or pixel
    budget). At most :data:`MAX_ITEMS` items.

    A file whose name does not end in ``.zip`` becomes an item whatever its extension;
    whether it is an acceptable image is decided when it is read.
    """
    items: list[UploadItem] = []
    problems: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.suffix.lower() == ".zip":
            try:
                with zipfile.ZipFile(path) as archive:
                    listed = [i for i in archive.infolist() if _is_listed_member(i)]
                    members, problem = _within_budget(archive, path.name, listed[:MAX_ITEMS])
            except (OSError, zipfile.BadZipFile) as err:
                problems.append(f"{path.name}: not a readable zip archive ({err})")
                continue
            if len(listed) > MAX_ITEMS:
                problems.append(f"{path.name}: {len(listed)} images; only the first {MAX_ITEMS} are considered")
            if problem:
                problems.append(problem)
            if not listed:
                problems.append(f"{path.name}: no JPEG, PNG, TIFF, WebP, GIF or BMP images in the archive")
            items.extend(UploadItem(f"{path.name}/{m}", path, m) for m in members)
        else:
            items.append(UploadItem(path.name, path))
    if len(items) > MAX_ITEMS:
        problems.append(f"{len(items)} images uploaded; only the first {MAX_ITEMS} are kept")
        items = items[:MAX_ITEMS]
    return items, problems
