"""Near-duplicate pairs in the collection's generic index, and indexing a scan's output.

A pair is two stored images whose generic embeddings
(:class:`~inkapp.collection.embed.GenericEmbedder`) have cosine similarity at least
a threshold. :data:`THRESHOLDS` (per domain) come from ``train/retrieval_quality.py``
(``docs/results/retrieval.json``): re-encoded, resized and cropped copies of test
images against each test image's nearest distinct test image. For a task, a pair whose
labels differ (expert correction, else the stored label) is flagged
``labels_disagree`` — one of the two is probably mislabelled, or the works are not
duplicates; either way an expert should look. An image never seen under the task has
no label for it and is never flagged.
"""
from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from inkapp.collection.similar import (GENERIC_INDEX, Neighbour, add_embeddings, collection_index, embed_files,
                                       expert_labels, generic_embedder, generic_meta, neighbour, task_embedder)
from inkapp.inference import Predictor
from inkapp.paths import data_dir as default_data_dir
from inkapp.tasks import get as get_task

#: Cosine threshold of a near-duplicate pair, by domain: paintings differ a lot to an
#: ImageNet network, calligraphy (black strokes on paper) much less, so it needs a higher
#: one (``docs/results/retrieval.json``: copy recall and false pairs per threshold).
THRESHOLDS: dict[str, float] = {"painting": 0.85, "calligraphy": 0.95}
#: For an image seen under no known task: the strictest threshold.
DEFAULT_THRESHOLD = max(THRESHOLDS.values())


def threshold_for(task: str | None) -> float:
    """The near-duplicate threshold of ``task``'s domain (:data:`DEFAULT_THRESHOLD` for
    None or a task outside the registry)."""
    try:
        return THRESHOLDS.get(get_task(task).domain, DEFAULT_THRESHOLD) if task else DEFAULT_THRESHOLD
    except ValueError:
        return DEFAULT_THRESHOLD


def _pair_threshold(meta_a: dict[str, str], meta_b: dict[str, str]) -> float:
    """The strictest domain threshold among the tasks either image was seen under."""
    tasks = {k.split(":", 1)[1] for meta in (meta_a, meta_b) for k in meta if k.startswith("label:")}
    return max((threshold_for(t) for t in tasks), default=DEFAULT_THRESHOLD)


@dataclass(frozen=True)
class DuplicatePair:
    """Two stored images at ``similarity`` >= the threshold (``a``/``b`` carry the pair's
    similarity and the images' labels for the task asked about, "" when unknown);
    ``labels_disagree`` when both have a label for the task and the labels differ."""

    a: Neighbour
    b: Neighbour
    similarity: float
    labels_disagree: bool

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: similarity, flag, and per side sha256, image_path, label, label_source."""
        side = lambda n: {"sha256": n.sha256, "image_path": n.image_path, "label": n.label,  # noqa: E731
                          "label_source": n.label_source}
        return {"similarity": round(self.similarity, 6), "labels_disagree": self.labels_disagree,
                "a": side(self.a), "b": side(self.b)}


def duplicate_pairs(task: str | None = None, data_dir: str | Path | None = None, among: Iterable[str] | None = None,
                    threshold: float | None = None) -> list[DuplicatePair]:
    """Near-duplicate pairs in the collection with at least one image in ``among``
    (sha256s; default every stored image), most similar first. With ``task``, each side
    carries its label for that task and disagreeing labels are flagged. ``threshold``
    (cosine) defaults to :func:`threshold_for` ``task`` or, without a task, to the
    strictest domain threshold of the tasks each pair was seen under."""
    if threshold is not None and not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a cosine similarity in [-1, 1], got {threshold}")
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    index = collection_index(GENERIC_INDEX, root)
    items = index.items()
    experts = expert_labels(task, root) if task else {}
    if threshold is None and task:
        threshold = threshold_for(task)
    out = []
    for sha_a, sha_b, sim in index.pairs_above(min(THRESHOLDS.values()) if threshold is None else threshold,
                                               None if among is None else list(among)):
        if threshold is None and sim < _pair_threshold(items[sha_a], items[sha_b]):
            continue
        a = neighbour(sha_a, sim, items[sha_a], experts, root, task)
        b = neighbour(sha_b, sim, items[sha_b], experts, root, task)
        out.append(DuplicatePair(a, b, sim, bool(a.label and b.label and a.label != b.label)))
    return out


def index_scan(root: str | Path, scan_csv: str | Path, task: str, data_dir: str | Path | None = None,
               predictor: Predictor | None = None, batch_size: int = 32) -> tuple[list[str], list[str]]:
    """Add every image classified in an ``inkapp scan`` output CSV to ``task``'s index and
    to the generic index, recording the model's label (``label_source = model``).
    Images already in an index with the same embedding space are not embedded again.
    Returns (sha256s of the scan's indexed images, ``"path: reason"`` per unreadable file)."""
    root = Path(root)
    with open(scan_csv, encoding="utf-8", newline="") as fh:
        rows = list({r["sha256"]: r for r in csv.DictReader(fh) if r.get("sha256") and not r.get("error")}.values())
    failed: set[str] = set()
    errors: list[str] = []
    for name, embedder in ((task, task_embedder(task, predictor)), (GENERIC_INDEX, generic_embedder())):
        index = collection_index(name, data_dir)
        known = set(index.items()) if index.space == embedder.name else set()
        metas = {r["sha256"]: _scan_meta(name, task, r, root) for r in rows}
        stored = [s for s in metas if s in known]
        if stored:  # already embedded: refresh the metadata only
            index.add(stored, index.vectors(stored), [metas[s] for s in stored], embedder.name, merge_meta=True)
        todo = [r for r in rows if r["sha256"] not in known]
        ok, vectors, problems = embed_files([root / r["path"] for r in todo], embedder, batch_size)
        if ok:
            add_embeddings(index, embedder.name, [todo[i]["sha256"] for i in ok], vectors,
                           [metas[todo[i]["sha256"]] for i in ok], merge_meta=True)
        failed |= {todo[i]["sha256"] for i in set(range(len(todo))) - set(ok)}
        if not errors:  # the same files fail for both embedders: report them once
            errors = problems
    return sorted({r["sha256"] for r in rows} - failed), errors


def _scan_meta(index_name: str, task: str, row: dict[str, str], root: Path) -> dict[str, str]:
    path = str((root / row["path"]).resolve())
    if index_name == GENERIC_INDEX:
        return generic_meta(task, row["label"], "model", path)
    return {"label": row["label"], "label_source": "model", "predicted_label": row["label"],
            "confidence": row["confidence"], "image_path": path}
