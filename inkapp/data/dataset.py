"""Labelled image lists (ImageFolder tree or CSV manifest) and a decode-once cache.

A sample is ``(path, label, group)``; ``group`` is an optional caller-given id that
keeps images together in splits (for example several photographs of one work).
Images are decoded, letterboxed and stored once as uint8 canvases; the cache lives
in memory and, keyed by the files' paths, sizes and modification times, on disk as
safetensors under ``$INKAPP_CACHE_DIR`` (default ``~/.cache/inkapp``).
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset
from tqdm import tqdm

from .images import IMAGE_SUFFIXES, ImageError, load_image
from .preprocess import letterbox, to_uint8_tensor
from ..store.files import atomic_path



@dataclass(frozen=True)
class Sample:
    """One labelled image. ``group`` ("" when none) keeps related images in one split."""

    path: str
    label: str
    group: str = ""


def scan_imagefolder(root: str | Path) -> list[Sample]:
    """``root/<class>/<file>`` -> samples, sorted by path. Files outside class folders
    (e.g. a ``manifest.csv`` at the root) and non-image files are ignored."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {root}")
    samples = []
    for cls_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in sorted(cls_dir.rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                samples.append(Sample(str(f), cls_dir.name))
    return samples


def read_manifest(csv_path: str | Path) -> list[Sample]:
    """CSV with columns ``path,label[,group]`` (header optional); relative paths are
    resolved against the CSV's folder."""
    csv_path = Path(csv_path)
    with csv_path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["path", "label"]:
        rows = rows[1:]
    samples = []
    for row in rows:
        if len(row) < 2 or not row[0].strip():
            continue
        p = Path(row[0].strip())
        if not p.is_absolute():
            p = csv_path.parent / p
        samples.append(Sample(str(p), row[1].strip(), row[2].strip() if len(row) > 2 else ""))
    return samples


def load_samples(source: str | Path) -> list[Sample]:
    """An ImageFolder directory or a CSV manifest."""
    source = Path(source)
    return read_manifest(source) if source.suffix.lower() == ".csv" else scan_imagefolder(source)


def _cache_dir() -> Path:
    return Path(os.environ.get("INKAPP_CACHE_DIR", Path.home() / ".cache" / "inkapp"))


def _cache_key(paths: Iterable[str], size: int, grayscale: bool) -> str:
    h = hashlib.sha256(f"v1|{size}|{grayscale}".encode())
    for p in paths:
        try:
            st = os.stat(p)
            h.update(f"{os.path.abspath(p)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}|missing\n".encode())
    return h.hexdigest()[:32]


def decode_canvases(
    paths: list[str], size: int, grayscale: bool, progress: bool = True
) -> tuple[torch.Tensor, list[str]]:
    """Decode and letterbox every image once: uint8 tensor N×3×size×size and, per path,
    "" or the reason it could not be read (its canvas is then blank white).

    Results are cached on disk; a second call with unchanged files reads the cache.
    """
    key = _cache_key(paths, size, grayscale)
    cache = _cache_dir() / f"canvases-{key}.safetensors"
    errors_file = cache.with_suffix(".json")
    if cache.exists() and errors_file.exists():
        try:
            return load_file(str(cache))["images"], json.loads(errors_file.read_text())
        except Exception:  # a damaged cache is rebuilt, never trusted
            pass
    out = torch.full((len(paths), 3, size, size), 255, dtype=torch.uint8)
    errors = [""] * len(paths)
    for i, p in enumerate(tqdm(paths, desc=f"decode {size}px", disable=not progress, leave=False)):
        try:
            canvas, _ = letterbox(load_image(p), size)
            out[i] = to_uint8_tensor(canvas, grayscale)
        except (ImageError, OSError) as err:
            errors[i] = str(err)
    cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache) as tmp:
        save_file({"images": out}, str(tmp))
    errors_file.write_text(json.dumps(errors))
    return out, errors


class CanvasDataset(Dataset):
    """Decoded canvases + integer labels, with an optional uint8 -> uint8 augmentation
    and a normalisation to float. Item: (float32 3×S×S, label index)."""

    def __init__(
        self,
        canvases: torch.Tensor,
        targets: list[int],
        normalise: Callable[[torch.Tensor], torch.Tensor],
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.canvases = canvases
        self.targets = list(targets)
        self.normalise = normalise
        self.augment = augment

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.canvases[i]
        if self.augment is not None:
            x = self.augment(x)
        return self.normalise(x), self.targets[i]
