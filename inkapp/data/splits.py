"""Leakage-free splits: near-duplicates are grouped by perceptual hash, then groups are
split stratified by class (train/val/test or k folds), so no image has a twin on the
other side of a split.

Two groupings (:data:`GROUPINGS`, the ``split.grouping`` key of a training config):

* ``strict`` — the original one: two images are near-duplicates when the Hamming
  distance of their 64-bit pHash is at most ``threshold`` (default 8 of 64 bits).
* ``loose`` (the default for new configs, issue 15's "harder own test") — two images
  are linked when their 64-bit pHash differ in at most :data:`LOOSE_PHASH` bits OR their
  256-bit dHash (16×16 gradient signs) in at most :data:`LOOSE_DHASH` bits (either
  criterion suffices, so it is looser than each), AND images of one source work are
  linked: :func:`source_works` reads the data folder's ``manifest.csv`` (columns ``file``
  and ``source_path``) and takes the pages of one scanned work — file names such as
  ``<title>_<page label>_017.jpg`` whose name carries a non-ASCII title — as one group.
  Names that are only a repository's numbering (``00000293.jpg``, ``gong_bi_hua_910.jpg``,
  ``人物182.jpg`` without the ``_<n>`` page suffix) carry no work and are not linked;
  a data folder without a manifest (e.g. the calligrapher's ``.mat`` indices carry no
  page) gets the hash links only.
* ``loose-dhash`` — ``loose`` with the pHash link kept at the strict ``threshold`` (8), for
  calligraphy: a 64-bit pHash does not tell a duplicate page or character from one that
  merely looks alike — on the calligrapher's 64-px characters pHash ≤ 12 links 2064 of the
  2371 images and chains 1988 of them into one component (≤ 8: largest group 174); on
  calligraphy-script's pages it chains the three largest works, of three different
  scripts, into one component of 366 (≤ 8: largest 145, the biggest work), while
  dHash-256 ≤ 12 links 22 and 0 images (measured 2026-11-25).

With a loose grouping, a group too big for one fold goes to train whole
(:func:`oversized_groups`).

Groups are the connected components of these links plus any caller-given group ids
(``Sample.group``). Unreadable images get a group of their own.
"""
from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path
from typing import Callable

import imagehash
import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from .dataset import Sample, _cache_dir, _cache_key
from .images import ImageError, load_image
from ..store.files import atomic_write_text

DEFAULT_THRESHOLD = 8
#: ``loose`` grouping: pHash (64 bits) and dHash (256 bits) link thresholds, in bits.
LOOSE_PHASH = 12
LOOSE_DHASH = 12
DHASH_SIZE = 16  # 16×16 = 256 bits
GROUPINGS = ("strict", "loose", "loose-dhash")
#: A page of a scanned work: a file name holding a non-ASCII title, then ``_<page number>``;
#: group 1 (directory + name without the number) names the work.
SOURCE_PAGE_PATTERN = r"^(.*[^\x00-\x7f][^/]*)_\d+\.[A-Za-z]+$"


def _hashes(paths: list[str], kind: str, hasher: Callable[[object], object]) -> list[int | None]:
    cache = _cache_dir() / f"{kind}-{_cache_key(paths, 0, False)}.json"
    if cache.exists():
        try:
            return json.loads(cache.read_text())
        except ValueError:
            pass
    out: list[int | None] = []
    for p in paths:
        try:
            img = load_image(p)
            out.append(int(str(hasher(img.convert("L"))), 16))
        except (ImageError, OSError):
            out.append(None)
    cache.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cache, json.dumps(out))
    return out


def phashes(paths: list[str]) -> list[int | None]:
    """64-bit perceptual hashes (None for unreadable files), cached on disk like the canvases."""
    return _hashes(paths, "phash", imagehash.phash)


def dhashes(paths: list[str]) -> list[int | None]:
    """256-bit difference hashes (16×16 horizontal gradient signs; None for unreadable
    files), cached on disk like the canvases."""
    return _hashes(paths, "dhash256", lambda img: imagehash.dhash(img, hash_size=DHASH_SIZE))


def _bit_rows(hashes: list[int], nbits: int) -> np.ndarray:
    """Hashes as packed rows: len×(nbits/8) uint8."""
    nbytes = (nbits + 7) // 8
    return np.frombuffer(b"".join(h.to_bytes(nbytes, "big") for h in hashes), dtype=np.uint8).reshape(-1, nbytes)


def hamming_links(hashes: list[int | None], threshold: int, nbits: int = 64) -> list[tuple[int, int]]:
    """Index pairs (a < b) whose ``nbits``-bit hashes differ in at most ``threshold`` bits
    (None entries link to nothing)."""
    valid = [i for i, h in enumerate(hashes) if h is not None]
    if not valid:
        return []
    rows = _bit_rows([hashes[i] for i in valid], nbits)
    links = []
    for a in range(len(valid)):
        dist = np.bitwise_count(rows[a + 1:] ^ rows[a]).sum(1)
        links.extend((valid[a], valid[a + 1 + int(b)]) for b in np.nonzero(dist <= threshold)[0])
    return links


def source_works(samples: list[Sample], pattern: str = SOURCE_PAGE_PATTERN) -> list[str]:
    """Per sample, the source work it is a page of ("" when none): the first group of
    ``pattern`` matched against the ``source_path`` column of ``manifest.csv`` in the
    sample's data folder (``<data>/<class>/<file>`` -> ``<data>/manifest.csv``, row
    ``file`` = ``<class>/<file>``), prefixed by the ``source`` column."""
    rx = re.compile(pattern)
    tables: dict[Path, dict[str, str]] = {}
    out = []
    for s in samples:
        path = Path(s.path)
        root = path.parent.parent
        if root not in tables:
            tables[root] = _manifest_works(root / "manifest.csv", rx)
        out.append(tables[root].get(f"{path.parent.name}/{path.name}", ""))
    return out


def _manifest_works(csv_path: Path, rx: re.Pattern[str]) -> dict[str, str]:
    if not csv_path.is_file():
        return {}
    with csv_path.open(newline="", encoding="utf-8", errors="replace") as fh:
        rows = list(csv.DictReader(fh))
    works = {}
    for row in rows:
        m = rx.match(row.get("source_path") or "")
        if m and row.get("file"):
            works[row["file"]] = f"{row.get('source', '')}:{m.group(1)}"
    return works


def label_links(labels: list[str]) -> list[tuple[int, int]]:
    """Index pairs that tie every item with a non-empty label to the first item with the same label."""
    first: dict[str, int] = {}
    links = []
    for i, g in enumerate(labels):
        if g:
            links.append((first.setdefault(g, i), i))
    return [(a, b) for a, b in links if a != b]


def near_duplicate_groups(hashes: list[int | None], threshold: int = DEFAULT_THRESHOLD, given: list[str] | None = None,
                          links: list[tuple[int, int]] | None = None) -> list[int]:
    """Group id per image: connected components of "64-bit Hamming distance ≤ threshold",
    merged with the caller's ``given`` group labels (non-empty strings) and any extra
    ``links`` (index pairs, e.g. from :func:`hamming_links` on another hash)."""
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

    for a, b in hamming_links(hashes, threshold) + label_links(given or []) + list(links or ()):
        union(a, b)
    return [find(i) for i in range(n)]


def loose_links(samples: list[Sample], threshold: int = DEFAULT_THRESHOLD, grouping: str = "loose") -> list[tuple[int, int]]:
    """Direct links (index pairs) of the ``loose`` / ``loose-dhash`` groupings: dHash-256
    within :data:`LOOSE_DHASH` bits, pages of one source work, and pHash within
    max(``threshold``, :data:`LOOSE_PHASH`) bits (``loose``) or ``threshold`` bits, the strict
    link (``loose-dhash``), so every grouping contains the strict one."""
    paths = [s.path for s in samples]
    links = hamming_links(dhashes(paths), LOOSE_DHASH, DHASH_SIZE * DHASH_SIZE) + label_links(source_works(samples))
    return links + hamming_links(phashes(paths), max(threshold, LOOSE_PHASH) if grouping == "loose" else threshold)


def group_samples(samples: list[Sample], threshold: int = DEFAULT_THRESHOLD, grouping: str = "strict") -> list[int]:
    """Group id of each sample under ``grouping`` (see the module docstring): ``strict``
    links pHash within ``threshold`` bits; ``loose`` / ``loose-dhash`` use
    :func:`loose_links`. Caller-given ``Sample.group`` ids are honoured by all."""
    if grouping not in GROUPINGS:
        raise ValueError(f"unknown grouping '{grouping}'; known: {', '.join(GROUPINGS)}")
    given = [s.group for s in samples]
    if grouping == "strict":
        return near_duplicate_groups(phashes([s.path for s in samples]), threshold, given)
    return near_duplicate_groups([None] * len(samples), threshold, given, loose_links(samples, threshold, grouping))


def split_indices(labels: list[str], groups: list[int], ratios: tuple[float, float, float] = (0.7, 0.2, 0.1), seed: int = 0,
                  grouping: str = "strict") -> dict[str, list[int]]:
    """Stratified group split into train/val/test index lists.

    The data are cut into ``k = round(1 / min(ratio))`` stratified group folds (10 for
    7:2:1) and whole folds are assigned to test, val and train in proportion to
    ``ratios``. With a ``loose`` grouping, groups too big for a fold
    (:func:`oversized_groups`) go to train.
    """
    k = max(3, round(1 / min(r for r in ratios if r > 0)))
    folds = fold_assignment(labels, groups, k, seed, grouping)
    n_test = max(1, round(ratios[2] * k))
    n_val = max(1, round(ratios[1] * k))
    out: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for i, f in enumerate(folds):
        out["train" if f < 0 else "test" if f < n_test else "val" if f < n_test + n_val else "train"].append(i)
    return out


def oversized_groups(groups: list[int], k: int) -> set[int]:
    """Groups larger than half a fold (``len(groups) / k / 2`` items). A loose grouping keeps
    whole source works together, and one work can hold a third of a class (145 of the 445
    regular-script pages are one book); put in a test or validation fold, it would make that
    fold mostly one work. Such groups are trained on and never tested on."""
    limit = max(1, len(groups) // (2 * k))
    sizes = Counter(groups)
    return {g for g, c in sizes.items() if c > limit}


def fold_assignment(labels: list[str], groups: list[int], k: int, seed: int = 0, grouping: str = "strict") -> list[int]:
    """Fold index (0..k−1) per sample from a stratified group k-fold; −1 (always train) for
    the :func:`oversized_groups` of a non-``strict`` grouping."""
    big = set() if grouping == "strict" else oversized_groups(groups, k)
    rest = [i for i, g in enumerate(groups) if g not in big]
    folds = [-1] * len(labels)
    sgkf = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    for f, (_, test) in enumerate(sgkf.split(np.zeros(len(rest)), [labels[i] for i in rest], [groups[i] for i in rest])):
        for i in test:
            folds[rest[i]] = f
    return folds


def kfold_splits(labels: list[str], groups: list[int], k: int, seed: int = 0,
                 grouping: str = "strict") -> list[dict[str, list[int]]]:
    """k train/val/test splits: fold i is the test set, fold i+1 (mod k) validation, the rest
    train (with the oversized groups of a loose ``grouping``, see :func:`fold_assignment`)."""
    folds = fold_assignment(labels, groups, k, seed, grouping)
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
