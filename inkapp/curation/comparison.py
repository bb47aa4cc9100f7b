"""Candidate vs current model on the same test images.

A candidate trained with ``--split <current>/split.json`` keeps the current model's
test files in its test part (corrections only ever go to train), so its
``metrics.json`` test metrics and the current model's metrics on the files listed in
the candidate's ``split.json`` test part are a like-for-like comparison. The result is
cached as ``comparison.json`` in the candidate folder.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from inkapp.models import load_model, read_card
from inkapp.store.files import atomic_write_text
from inkapp.device import default_device
from inkapp.scoring import score_files
from inkapp.training.metrics import classification_metrics


COMPARED_METRICS = ("accuracy", "macro_f1", "macro_precision", "macro_recall", "macro_auc")
RESULT_FILE = "comparison.json"


def _summary(metrics: dict[str, Any]) -> dict[str, float | None]:
    return {k: (None if metrics.get(k) is None else float(metrics[k])) for k in COMPARED_METRICS}


def compare_with_current(current_model: Path, candidate: Path, base_dir: Path | None = None) -> dict[str, Any]:
    """Metrics of ``candidate`` (from its metrics.json) and of ``current_model`` evaluated
    on the candidate's split test files (relative paths are relative to ``base_dir``, the
    training working directory: by default the data directory the candidate lives in,
    ``<data_dir>/models/<task>/candidates/<name>``). Test files whose label the current model does not know or that
    cannot be read are counted in ``skipped``. Writes and returns the comparison.
    """
    cached = candidate / RESULT_FILE
    if cached.is_file():
        result = json.loads(cached.read_text(encoding="utf-8"))
        if result.get("current_folder") == str(current_model):
            return result
    candidate_metrics = json.loads((candidate / "metrics.json").read_text(encoding="utf-8"))["test"]
    entries = json.loads((candidate / "split.json").read_text(encoding="utf-8")).get("test", [])
    device = default_device()
    model, card = load_model(current_model, device)
    classes: list[str] = list(card["classes"])
    known = [e for e in entries if e["label"] in classes]
    base = Path(base_dir) if base_dir is not None else candidate.resolve().parents[3]
    paths = [str(p if (p := Path(e["path"])).is_absolute() else base / p) for e in known]
    probs, errors = score_files(model, card, paths, device)
    keep = [i for i, err in enumerate(errors) if not err]
    current: dict[str, float | None] = dict.fromkeys(COMPARED_METRICS)
    if keep:
        y = np.array([classes.index(known[i]["label"]) for i in keep])
        current = _summary(classification_metrics(y, probs, classes))
    result = {
        "current_folder": str(current_model),
        "current_version": str(card.get("version", "")),
        "candidate_version": str(read_card(candidate).get("version", "")),
        "n_test": len(entries),
        "n_compared": len(keep),
        "skipped": len(entries) - len(keep),
        "current": current,
        "candidate": _summary(candidate_metrics),
    }
    atomic_write_text(cached, json.dumps(result, indent=1))
    return result


def comparison_rows(result: dict[str, Any]) -> list[list[Any]]:
    """Table rows ``[metric, current, candidate, difference]`` (values rounded to 4 places)."""
    rows = []
    for metric in COMPARED_METRICS:
        cur, cand = result["current"].get(metric), result["candidate"].get(metric)
        diff = None if cur is None or cand is None or np.isnan(cur) or np.isnan(cand) else round(cand - cur, 4)
        rows.append([metric, None if cur is None else round(cur, 4), None if cand is None else round(cand, 4), diff])
    return rows
