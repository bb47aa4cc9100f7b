"""Assemble a training set: base images + experts' corrections, decoded once, grouped
for leakage-free splitting, with every skipped item counted in a summary."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..data.dataset import Sample, decode_canvases, load_samples
from ..data.images import sha256_file
from ..data.splits import group_samples
from ..store.corrections import read_corrections


@dataclass
class PreparedData:
    """Samples with their decoded canvases (uint8 N×3×S×S), label indices and groups."""

    samples: list[Sample]
    classes: list[str]
    targets: list[int]
    canvases: torch.Tensor
    groups: list[int]
    summary: dict[str, Any] = field(default_factory=dict)


def merge_corrections(samples: list[Sample], classes: list[str], task: str, corrections_csv: str | Path,
                      summary: dict[str, Any]) -> list[Sample]:
    """Apply the active corrections of ``task`` (latest valid per image wins, revocations
    honoured) to ``samples``: a base image whose sha256 matches gets the corrected
    label; a corrected image absent from the base set is added. Counts go to ``summary``."""
    csv_path = Path(corrections_csv)
    active, counts = read_corrections(csv_path, {task: classes})
    summary["corrections"] = dict(counts)
    by_sha = {}
    for row in active:
        if row["task"] == task:
            by_sha[row["image_sha256"]] = row
    relabelled = added = missing = 0
    out = []
    seen = set()
    for s in samples:
        try:
            sha = sha256_file(s.path)
        except OSError:
            out.append(s)
            continue
        seen.add(sha)
        row = by_sha.get(sha)
        if row is not None and row["corrected_label"] != s.label:
            s = Sample(s.path, row["corrected_label"], s.group)
            relabelled += 1
        out.append(s)
    for sha, row in by_sha.items():
        if sha in seen:
            continue
        path = csv_path.parent / row["image_path"]
        if not path.is_file():
            missing += 1
            continue
        out.append(Sample(str(path), row["corrected_label"], ""))
        added += 1
    summary["corrections"].update(relabelled=relabelled, added=added, missing_image=missing)
    return out


def prepare_data(data: str | Path, task: str, image_size: int, grayscale: bool, phash_threshold: int,
                 corrections_csv: str | Path | None = None, classes: list[str] | None = None,
                 progress: bool = True, grouping: str = "strict") -> PreparedData:
    """Load samples, merge corrections, decode, drop unusable items and group near-duplicates
    (``grouping``: see :func:`inkapp.data.splits.group_samples`).

    ``classes`` defaults to the sorted labels of the base data; samples with other
    labels are counted as ``unknown_label`` and skipped.
    """
    samples = load_samples(data)
    summary: dict[str, Any] = {"source": str(data), "base_images": len(samples)}
    classes = list(classes) if classes else sorted({s.label for s in samples})
    if corrections_csv:
        samples = merge_corrections(samples, classes, task, corrections_csv, summary)
    known = [s for s in samples if s.label in classes]
    summary["unknown_label"] = len(samples) - len(known)
    exists = [s for s in known if Path(s.path).is_file()]
    summary["missing_file"] = len(known) - len(exists)
    canvases, errors = decode_canvases([s.path for s in exists], image_size, grayscale, progress)
    keep = [i for i, e in enumerate(errors) if not e]
    summary["undecodable"] = [{"path": exists[i].path, "reason": errors[i]} for i, e in enumerate(errors) if e]
    samples = [exists[i] for i in keep]
    canvases = canvases[keep] if len(keep) != len(exists) else canvases
    summary["used"] = len(samples)
    summary["per_class"] = dict(Counter(s.label for s in samples))
    groups = group_samples(samples, phash_threshold, grouping)
    summary["near_duplicate_groups"] = len(set(groups))
    targets = [classes.index(s.label) for s in samples]
    return PreparedData(samples, classes, targets, canvases, groups, summary)
