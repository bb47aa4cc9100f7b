"""Leakage-free splits: near-duplicates are grouped by perceptual hash, then groups are
split stratified by class (train/val/test or k folds), so no image has a twin on the
other side of a split.

Two images are near-duplicates when the Hamming distance of their 64-bit pHash is at
most ``threshold`` (default 8 of 64 bits); groups are the connected components of that
relation (plus any caller-given group ids). Unreadable images get a group of their own.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import imagehash
import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from .dataset import Sample, _cache_dir, _cache_key
from .images import ImageError, load_image
from ..store.files import atomic_write_text

DEFAULT_THRESHOLD = 8


def phashes(paths: list[str]) -> list[int | None]:
    """64-bit perceptual hashes (None for unreadable files), cached on disk like the canvases."""
    cache = _cache_dir() / f"phash-{_cache_key(paths, 0, False)}.json"
    if cache.exists():
        try:
            return json.loads(cache.read_text())
        except ValueError:
            pass
    out: list[int | None] = []
    for p in paths:
        try:
            img = load_image(p)
            out.append(int(str(imagehash.phash(img.convert("L"))), 16))
        except (ImageError, OSError):
            out.append(None)
    cache.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cache, json.dumps(out))
    return out


def near_duplicate_groups(hashes: list[int | None], threshold: int = DEFAULT_THRESHOLD, given: list[str] | None = None) -> list[int]:
    """Group id per image: connected components of "Hamming distance ≤ threshold",
    merged with the caller's ``given`` group labels (non-empty strings)."""
    n = len(hashes)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    valid = [i for i, h in enumerate(hashes) if h is not None]
    if valid:
        bits = np.unpackbits(np.array([hashes[i] for i in valid], dtype=np.uint64).view(np.uint8).reshape(-1, 8), axis=1)
        bits = bits.astype(np.int16)
        for a in range(len(valid)):
            dist = np.abs(bits[a + 1:] - bits[a]).sum(1)
            for b in np.nonzero(dist <= threshold)[0]:
                union(valid[a], valid[a + 1 + int(b)])
    if given:
        first: dict[str, int] = {}
        for i, g in enumerate(given):
            if g:
                if g in first:
                    union(i, first[g])
                else:
                    first[g] = i
    return [find(i) for i in range(n)]


def group_samples(samples: list[Sample], threshold: int = DEFAULT_THRESHOLD) -> list[int]:
    """Near-duplicate group id of each sample."""
    return near_duplicate_groups(phashes([s.path for s in samples]), threshold, [s.group for s in samples])


def split_indices(labels: list[str], groups: list[int], ratios: tuple[float, float, float] = (0.7, 0.2, 0.1), seed: int = 0) -> dict[str, list[int]]:
    """Stratified group split into train/val/test index lists.

    The data are cut into ``k = round(1 / min(ratio))`` stratified group folds (10 for
    7:2:1) and whole folds are assigned to test, val and train in proportion to
    ``ratios``.
    """
    k = max(3, round(1 / min(r for r in ratios if r > 0)))
    folds = fold_assignment(labels, groups, k, seed)
    n_test = max(1, round(ratios[2] * k))
    n_val = max(1, round(ratios[1] * k))
    out: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for i, f in enumerate(folds):
        out["test" if f < n_test else "val" if f < n_test + n_val else "train"].append(i)
    return out


def fold_assignment(labels: list[str], groups: list[int], k: int, seed: int = 0) -> list[int]:
    """Fold index (0..k−1) per sample from a stratified group k-fold."""
    sgkf = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = [0] * len(labels)
    for f, (_, test) in enumerate(sgkf.split(np.zeros(len(labels)), labels, groups)):
        for i in test:
            folds[i] = f
    return folds


def kfold_splits(labels: list[str], groups: list[int], k: int, seed: int = 0) -> list[dict[str, list[int]]]:
    """k train/val/test splits: fold i is the test set, fold i+1 (mod k) validation, the rest train."""
    folds = fold_assignment(labels, groups, k, seed)
    splits = []
    for i in range(k):
        v = (i + 1) % k
        splits.append({
            "train": [j for j, f in enumerate(folds) if f not in (i, v)],
            "val": [j for j, f in enumerate(folds) if f == v],
            "test": [j for j, f in enumerate(folds) if f == i],
        })
    return splits


def save_split(path: str | Path, samples: list[Sample], split: dict[str, list[int]]) -> None:
    """Write the split as JSON: part -> list of {path, label}."""
    doc = {part: [{"path": samples[i].path, "label": samples[i].label} for i in idx] for part, idx in split.items()}
    Path(path).write_text(json.dumps(doc, indent=1, ensure_ascii=False))


def load_split(path: str | Path, samples: list[Sample]) -> dict[str, list[int]]:
    """Indices of ``samples`` per part of a saved split. Files are matched by their last
    two path components (``<class>/<file>``), so a split stays valid when the data folder
    moves. Samples the file does not list (e.g. newly corrected images) go to train."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    part_of = {_tail(e["path"]): part for part, entries in doc.items() for e in entries}
    out: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for i, s in enumerate(samples):
        out[part_of.get(_tail(s.path), "train")].append(i)
    return out


def _tail(path: str) -> str:
    p = Path(path)
    return f"{p.parent.name}/{p.name}"
