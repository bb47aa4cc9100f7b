"""Evaluate a model folder on any ImageFolder tree whose class folders are the model's classes."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..data.dataset import Sample, scan_imagefolder
from ..models import load_model
from ..device import default_device
from ..scoring import score_files
from .metrics import classification_metrics


def evaluate_probabilities(model_dir: str | Path, data: str | Path,
                           task: str | None = None) -> tuple[dict[str, Any], list[Sample], np.ndarray]:
    """(card, the scored samples, their N×K probabilities) of the model in ``model_dir`` on
    ``data`` (``<data>/<class>/<image>``), through :func:`inkapp.scoring.score_files`.

    A class folder the model does not know raises ValueError naming it; unreadable
    images are reported on stderr and skipped.
    """
    device = default_device()
    model, card = load_model(model_dir, device)
    if task and card.get("task") != task:
        raise ValueError(f"model in {model_dir} is for task '{card.get('task')}', not '{task}'")
    classes = card["classes"]
    samples = scan_imagefolder(data)
    unknown = sorted({s.label for s in samples} - set(classes))
    if unknown:
        raise ValueError(f"class folder(s) {', '.join(unknown)} in {data} unknown to the model; "
                         f"it knows {', '.join(classes)}")
    if not samples:
        raise ValueError(f"no images under {data}")
    probs, errors = score_files(model, card, [s.path for s in samples], device)
    for s, e in zip(samples, errors):
        if e:
            print(f"{s.path}: {e} (skipped)", file=sys.stderr)
    return card, [s for s, e in zip(samples, errors) if not e], probs


def evaluate_folder(model_dir: str | Path, data: str | Path, task: str | None = None) -> dict[str, Any]:
    """Metrics of the model in ``model_dir`` on ``data`` (see :func:`evaluate_probabilities`).

    Returns ``task, n, accuracy, macro_precision, macro_recall, macro_f1, macro_auc,
    classes, confusion_matrix``.
    """
    card, samples, probs = evaluate_probabilities(model_dir, data, task)
    classes = card["classes"]
    y = np.array([classes.index(s.label) for s in samples])
    m = classification_metrics(y, probs, classes)
    return {"task": card.get("task"), **{k: m[k] for k in ("n", "accuracy", "macro_precision", "macro_recall",
                                                           "macro_f1", "macro_auc", "classes", "confusion_matrix")}}
