"""The harder own test (issue 15): how the shipped models do on test works that have no
loose near-duplicate or same-source partner in what they were trained and tuned on.

    python train/harder_test.py [TASK ...]      # default: every folder in weights/ with a split.json
    -> docs/results/harder-test.json (and a table on stdout)

A shipped model was trained on its OLD split (``weights/<task>/split.json``, grouped by
``strict`` pHash ≤ 8). For it, "unseen works" can only mean a subset of that old test
split: the test images with no DIRECT ``loose`` link (:func:`inkapp.data.splits.loose_links`:
pHash ≤ 12 or dHash-256 ≤ 12 bits, same source work) to a train or val image — for the
calligraphy tasks ``loose-dhash`` (pHash kept at 8 bits; see the splits module for why).
For each task this reports

* ``old_test`` — the card's test part, scored afresh (accuracy, macro-F1, n);
* ``unseen_test`` — the same figures on that subset, and how many test images were
  dropped and why (``linked_by``: hash or source work);
* ``ensemble`` — the same two figures for the task's shipped seed ensemble
  (``weights/<task>/ensemble``, trained on the same old split), where there is one;
* ``new_split`` — the size of the test part a NEW model gets when trained with the
  ``loose`` grouping (seed 0, 7:2:1; what the new configs use), so later figures can
  be read against it.

Scores come from :meth:`inkapp.inference.Predictor.probabilities` (raw probabilities,
the card's test-time views), as in ``train/calibrate.py``.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from calibrate import REPO, score_part  # train/ is on sys.path when this script runs
from inkapp.data.dataset import Sample, load_samples
from inkapp.data.splits import group_samples, loose_links, oversized_groups, source_works, split_indices
from inkapp.inference import Predictor
from inkapp.paths import shipped_ensemble, weights_root
from inkapp.store.files import atomic_write_text
from inkapp.training.metrics import classification_metrics

OUT = REPO / "docs" / "results" / "harder-test.json"
#: The grouping each task's new configs use (inkapp.data.splits): at 12 bits pHash chains look-alike
#: characters and text pages, so the calligraphy tasks keep the strict pHash link and loosen dHash only.
TASK_GROUPING = {"calligrapher": "loose-dhash", "calligraphy-script": "loose-dhash"}


def _figures(probs: np.ndarray, y: np.ndarray, classes: list[str]) -> dict[str, Any]:
    if len(y) == 0:
        return {"n": 0, "accuracy": None, "macro_f1": None}
    m = classification_metrics(y, probs, classes)
    return {"n": int(m["n"]), "accuracy": round(float(m["accuracy"]), 4), "macro_f1": round(float(m["macro_f1"]), 4),
            "per_class_n": {c: int((y == k).sum()) for k, c in enumerate(classes)}}


def unseen_subset(split: dict[str, list[dict[str, str]]], grouping: str) -> tuple[list[int], dict[str, int]]:
    """Indices into ``split["test"]`` with no DIRECT ``grouping`` link
    (:func:`inkapp.data.splits.loose_links`) to a train or val image, and the count of
    dropped test images by what linked them (``source_work`` when a seen image shares the
    work, else ``hash``). Direct, not transitive: a chain of look-alikes through other
    test images does not make an image seen."""
    parts = [part for part in ("train", "val", "test") for _ in split[part]]
    entries = [e for part in ("train", "val", "test") for e in split[part]]
    samples = [Sample(str((REPO / e["path"]).resolve()), e["label"]) for e in entries]
    works = source_works(samples)
    seen_by: dict[int, str] = {}
    for a, b in loose_links(samples, grouping=grouping):
        for t, other in ((a, b), (b, a)):
            if parts[t] == "test" and parts[other] != "test":
                same_work = bool(works[t]) and works[t] == works[other]
                if same_work or t not in seen_by:
                    seen_by[t] = "source_work" if same_work else "hash"
    offset = len(split["train"]) + len(split["val"])
    keep = [i for i in range(len(split["test"])) if offset + i not in seen_by]
    return keep, dict(Counter(seen_by.values()))


def new_split_sizes(data: Path, grouping: str) -> dict[str, Any]:
    """Train/val/test sizes (and test per class) of a ``grouping`` 7:2:1 split of ``data`` (seed 0)."""
    samples = load_samples(data)
    groups = group_samples(samples, grouping=grouping)
    labels = [s.label for s in samples]
    split = split_indices(labels, groups, seed=0, grouping=grouping)
    return {"images": len(samples), "groups": len(set(groups)),
            "largest_groups": sorted(Counter(groups).values())[-3:],
            "oversized_groups_to_train": len(oversized_groups(groups, 10)),
            **{part: len(idx) for part, idx in split.items()},
            "test_per_class": dict(Counter(labels[i] for i in split["test"]))}


def measure(task: str) -> dict[str, Any]:
    folder = weights_root() / task
    split = json.loads((folder / "split.json").read_text(encoding="utf-8"))
    predictor = Predictor.from_folder(folder, device="cpu")
    probs, y = score_part(predictor, split["test"])
    grouping = TASK_GROUPING.get(task, "loose")
    keep, dropped = unseen_subset(split, grouping)
    card = predictor.card
    data = card.get("data", {}).get("source") or ""
    data_path = (REPO / data).resolve() if data else None
    out = {
        "card_test": {"accuracy": card["metrics"]["accuracy"], "macro_f1": card["metrics"]["macro_f1"],
                      "n": card["metrics"]["n"]},
        "old_test": _figures(probs, y, predictor.classes),
        "unseen_test": _figures(probs[keep], y[keep], predictor.classes),
        "dropped_from_test": dropped,
        "grouping": grouping,
    }
    if grouping != "loose":  # what the pHash link would have said, for the record
        keep_p, dropped_p = unseen_subset(split, "loose")
        out["unseen_test_loose_phash"] = {**_figures(probs[keep_p], y[keep_p], predictor.classes),
                                          "dropped_from_test": dropped_p}
    ensemble = shipped_ensemble(task)
    if (ensemble / "card.json").is_file():  # the seed ensemble shipped beside the single model, same split
        ens = Predictor.from_folder(ensemble, device="cpu")
        ens_probs, ens_y = score_part(ens, split["test"])
        out["ensemble"] = {"members": len(ens.card["members"]), "tta_hflip": ens.scoring.tta_hflip,
                           "old_test": _figures(ens_probs, ens_y, ens.classes),
                           "unseen_test": _figures(ens_probs[keep], ens_y[keep], ens.classes)}
    if data_path is not None and data_path.exists():
        out["new_split"] = {"grouping": grouping, **new_split_sizes(data_path, grouping)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tasks", nargs="*")
    args = ap.parse_args(argv)
    tasks = args.tasks or sorted(p.name for p in weights_root().iterdir() if (p / "split.json").is_file())
    doc = json.loads(OUT.read_text()) if OUT.exists() else {}
    doc.setdefault("tasks", {})
    doc["grouping"] = ("loose: pHash-64 <= 12 or dHash-256 <= 12 bits, pages of one source work; loose-dhash: the same "
                       "with pHash <= 8 (inkapp.data.splits); unseen_test = old test images with no direct link to train+val; "
                       "new_split: 7:2:1, seed 0, groups bigger than half a fold in train")
    for task in tasks:
        r = measure(task)
        doc["tasks"][task] = r
        o, u = r["old_test"], r["unseen_test"]
        print(f"{task:20s} old test {o['accuracy']:.4f} (F1 {o['macro_f1']:.4f}, n={o['n']})  unseen "
              f"{u['accuracy'] if u['n'] else float('nan'):.4f} (F1 {u['macro_f1'] if u['n'] else float('nan'):.4f}, "
              f"n={u['n']})  dropped {r['dropped_from_test']}  new split {r.get('new_split')}", flush=True)
        if "ensemble" in r:
            eo, eu = r["ensemble"]["old_test"], r["ensemble"]["unseen_test"]
            print(f"{task:20s} ensemble of {r['ensemble']['members']}: old test {eo['accuracy']:.4f} "
                  f"(F1 {eo['macro_f1']:.4f})  unseen {eu['accuracy']:.4f} (F1 {eu['macro_f1']:.4f}, n={eu['n']})",
                  flush=True)
    atomic_write_text(OUT, json.dumps(doc, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
