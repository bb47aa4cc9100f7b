"""Scoring the finder and the page vote on synthetic pages with known answers.

Pages come from one part (``train``/``val``/``test``) of a model's ``split.json`` so
that calibration uses validation characters and measurement test characters only.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from inkapp.pages.layout import Box
from inkapp.pages.synthetic import PageSpec, compose_page, random_spec


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes, in [0, 1]."""
    w = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
    h = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
    inter = max(0, w) * max(0, h)
    return inter / float(a.w * a.h + b.w * b.h - inter)


def matched(truth: list[Box], found: list[Box], min_iou: float = 0.5) -> int:
    """Number of one-to-one matches with IoU ≥ ``min_iou`` (greedy, best pairs first):
    recall = matched / len(truth), precision = matched / len(found)."""
    pairs = sorted(((iou(t, f), i, j) for i, t in enumerate(truth) for j, f in enumerate(found)), reverse=True)
    used_t: set[int] = set()
    used_f: set[int] = set()
    for score, i, j in pairs:
        if score < min_iou:
            break
        if i not in used_t and j not in used_f:
            used_t.add(i)
            used_f.add(j)
    return len(used_t)


def characters_by_label(split_file: str | Path, part: str, root: str | Path = ".") -> dict[str, list[Path]]:
    """label -> character image paths of one part of a ``split.json`` (paths in the
    file are relative to ``root``, the repository root). Raises FileNotFoundError
    when none of the listed images exists."""
    rows = json.loads(Path(split_file).read_text())[part]
    out: dict[str, list[Path]] = {}
    for r in rows:
        path = Path(root) / r["path"]
        if path.is_file():
            out.setdefault(r["label"], []).append(path)
    if not out:
        raise FileNotFoundError(f"none of the {len(rows)} '{part}' images of {split_file} exists under {root}")
    return out


@dataclass(frozen=True)
class EvalPage:
    """A synthetic page with its master, true boxes (reading order) and spec."""

    image: Image.Image
    label: str
    truth: list[Box]
    spec: PageSpec


def evaluation_pages(by_label: dict[str, list[Path]], n_values: tuple[int, ...], pages_per_n: int,
                     seed: int) -> Iterator[EvalPage]:
    """``pages_per_n`` pages for each n in ``n_values``, masters in turn, each page of
    n distinct characters of one master drawn at random (seeded) with a random spec."""
    rng = np.random.default_rng(seed)
    labels = sorted(by_label)
    for n in n_values:
        for k in range(pages_per_n):
            label = labels[k % len(labels)]
            pool = by_label[label]
            if len(pool) < n:
                raise ValueError(f"{label} has {len(pool)} characters, a page needs {n}")
            chars = [Image.open(pool[i]).convert("L") for i in rng.choice(len(pool), n, replace=False)]
            spec = random_spec(n, rng)
            image, truth = compose_page(chars, spec, rng)
            yield EvalPage(image, label, truth, spec)
