"""Turning what the curator uploads (image files, or .zip archives of them) into a list
of named items that are read lazily, one at a time.

Zip archives are never extracted to disk: an item remembers the archive and member
name and reads that member on demand, after checking its declared size against the
upload limit (a zip bomb cannot make us inflate more than the limit). Only members
with an image extension are listed; folders, hidden files (``__MACOSX``, ``.*``) and
nested archives are skipped.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from inkapp.data.images import IMAGE_SUFFIXES, ImageError, effective_max_bytes

#: What the upload widget accepts.
UPLOAD_TYPES = [*IMAGE_SUFFIXES, ".zip"]
MAX_ITEMS = 500  # images per upload (files + zip members)


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


def expand_uploads(paths: list[str | Path]) -> tuple[list[UploadItem], list[str]]:
    """Items for the uploaded files, in upload order (zip members in archive order), and
    one-line problems (unreadable archive, too many files). At most :data:`MAX_ITEMS` items.

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
                    members = [i.filename for i in archive.infolist() if _is_listed_member(i)]
            except (OSError, zipfile.BadZipFile) as err:
                problems.append(f"{path.name}: not a readable zip archive ({err})")
                continue
            if not members:
                problems.append(f"{path.name}: no JPEG, PNG, TIFF, WebP, GIF or BMP images in the archive")
            items.extend(UploadItem(f"{path.name}/{m}", path, m) for m in members)
        else:
            items.append(UploadItem(path.name, path))
    if len(items) > MAX_ITEMS:
        problems.append(f"{len(items)} images uploaded; only the first {MAX_ITEMS} are kept")
        items = items[:MAX_ITEMS]
    return items, problems
