"""Retrieval quality of the embeddings on each task's held-out test split, written to
``docs/results/retrieval.json``.

    OMP_NUM_THREADS=1 python train/retrieval_quality.py [--tasks T ...] [--out FILE]

For each task and each embedder (the task model's own embedding and the generic
ImageNet EfficientNet-Lite0 embedding, :mod:`inkapp.collection.embed`), the test images
of ``weights/<task>/split.json`` (never seen in training) are put in a
:class:`inkapp.store.vectors.VectorIndex` and

* **precision@5** — for every test image, the share of its 5 nearest other test images
  with the same class, averaged over images;
* **near-duplicate recall** — every test image is altered three ways (``jpeg``: JPEG
  re-encoded at quality 60; ``resize``: scaled to 60 % per side then JPEG quality 90;
  ``crop``: 6 % cut from every edge) and each altered copy is a query: ``recall@1`` =
  its original is the nearest stored image, ``recall_at_threshold`` = the similarity to
  its original is at least the duplicate threshold;
* **false pairs at the threshold** — pairs of distinct test images (the data set was
  de-duplicated by perceptual hash) at or above the threshold, and the 99th percentile
  of every image's similarity to its nearest distinct image.

Thresholds reported: the duplicate threshold in use for the task's domain
(:func:`inkapp.collection.duplicates.threshold_for`), per embedder the threshold that
maximises F1 of "copy vs distinct nearest neighbour", and copy recall / false pairs
over a sweep of thresholds.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from inkapp.collection.duplicates import THRESHOLDS, threshold_for
from inkapp.collection.embed import GenericEmbedder, TaskEmbedder
from inkapp.data.images import load_image, sha256_file
from inkapp.inference import Predictor
from inkapp.store.vectors import VectorIndex

ROOT = Path(__file__).resolve().parents[1]
TASKS = ["painting-subject", "painting-technique", "calligraphy-script", "calligrapher"]
K = 5
SWEEP = (0.80, 0.85, 0.90, 0.93, 0.95, 0.97)


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return load_image(buf.getvalue())


def variants(img: Image.Image) -> dict[str, Image.Image]:
    """The three altered copies of ``img`` (see the module docstring)."""
    w, h = img.size
    dx, dy = max(1, round(0.06 * w)), max(1, round(0.06 * h))
    return {"jpeg": _jpeg(img, 60),
            "resize": _jpeg(img.resize((max(8, round(0.6 * w)), max(8, round(0.6 * h))), Image.Resampling.BICUBIC), 90),
            "crop": img.crop((dx, dy, w - dx, h - dy))}


def best_f1_threshold(copies: np.ndarray, distinct: np.ndarray) -> tuple[float, float]:
    """Threshold maximising F1 of "copy" (positives: copy-to-original similarities) vs
    "distinct" (negatives: nearest-distinct similarities); returns (threshold, F1)."""
    best = (1.0, 0.0)
    for t in np.unique(np.concatenate([copies, distinct])):
        tp, fp = float((copies >= t).sum()), float((distinct >= t).sum())
        f1 = 2 * tp / (2 * tp + fp + (len(copies) - tp))
        if f1 > best[1]:
            best = (float(t), f1)
    return round(best[0], 4), round(best[1], 4)


def evaluate(name: str, space: str, originals: np.ndarray, queries: dict[str, np.ndarray], shas: list[str],
             labels: list[str], folder: Path, threshold: float) -> dict:
    """Figures for one embedder on one task (see the module docstring)."""
    index = VectorIndex(folder, name)
    index.add(shas, originals, [{"label": lab} for lab in labels], space)
    n = len(shas)
    same = []
    nearest_distinct = []
    for i, hits in enumerate(index.search(originals, K + 1)):
        others = [h for h in hits if h.sha256 != shas[i]][:K]
        same.append(np.mean([h.meta["label"] == labels[i] for h in others]))
        nearest_distinct.append(others[0].similarity)
    out = {"space": space, "dim": int(originals.shape[1]), "precision_at_5": round(float(np.mean(same)), 4)}
    copies_all = []
    for kind, q in queries.items():
        hits = index.search(q, 1)
        to_original = np.sum(q / np.linalg.norm(q, axis=1, keepdims=True) * originals, axis=1)
        copies_all.append(to_original)
        out[f"near_duplicate_{kind}"] = {
            "recall_at_1": round(float(np.mean([h[0].sha256 == shas[i] for i, h in enumerate(hits)])), 4),
            "recall_at_threshold": round(float(np.mean(to_original >= threshold)), 4),
            "similarity_to_original_p5": round(float(np.percentile(to_original, 5)), 4),
            "similarity_to_original_median": round(float(np.median(to_original)), 4)}
    copies = np.concatenate(copies_all)
    distinct = np.asarray(nearest_distinct)
    out["near_duplicate_recall_at_threshold"] = round(float(np.mean(copies >= threshold)), 4)
    out["false_pairs_at_threshold"] = len(index.pairs_above(threshold))
    out["nearest_distinct_similarity_p99"] = round(float(np.percentile(distinct, 99)), 4)
    out["best_f1_threshold"], out["best_f1"] = best_f1_threshold(copies, distinct)
    out["threshold_sweep"] = {f"{t:.2f}": {"copy_recall": round(float(np.mean(copies >= t)), 4),
                                           "false_pairs": len(index.pairs_above(t))} for t in SWEEP}
    out["n"] = n
    return out


def run_task(task: str, generic: GenericEmbedder, folder: Path) -> dict:
    split = json.loads((ROOT / "weights" / task / "split.json").read_text())
    rows = split["test"]
    paths = [ROOT / r["path"] for r in rows]
    labels = [r["label"] for r in rows]
    shas = [sha256_file(p) for p in paths]
    images = [load_image(p) for p in paths]
    altered = [variants(im) for im in images]
    kinds = list(altered[0])
    task_embedder = TaskEmbedder(Predictor.from_folder(ROOT / "weights" / task, "cpu"))
    threshold = threshold_for(task)
    result = {"task": task, "n_test": len(rows), "threshold": threshold}
    for label, embed, space in (
            ("task_model", task_embedder.embed, task_embedder.name),
            ("generic", generic.embed, generic.name)):
        originals = embed(images)
        queries = {k: embed([a[k] for a in altered]) for k in kinds}
        result[label] = evaluate(f"{task}-{label}", space, originals, queries, shas, labels, folder, threshold)
        print(json.dumps({"task": task, "embedder": label, **result[label]}), flush=True)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", nargs="+", default=TASKS)
    ap.add_argument("--out", default=str(ROOT / "docs" / "results" / "retrieval.json"))
    args = ap.parse_args()
    generic = GenericEmbedder()
    with tempfile.TemporaryDirectory() as tmp:
        results = [run_task(t, generic, Path(tmp)) for t in args.tasks]
    doc = {"split": "test part of weights/<task>/split.json", "k": K, "duplicate_thresholds": THRESHOLDS,
           "tasks": results}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(f".{out.name}.tmp")
    tmp_out.write_text(json.dumps(doc, indent=1))
    os.replace(tmp_out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
