"""Evaluate a model folder on any ImageFolder tree whose class folders are the model's classes."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..data.dataset import decode_canvases, scan_imagefolder
from ..data.preprocess import Preprocessor
from ..models import load_model
from ..device import default_device
from ..scoring import ScoringSpec, score_canvases
from .metrics import classification_metrics


def evaluate_folder(model_dir: str | Path, data: str | Path, task: str | None = None) -> dict[str, Any]:
    """Metrics of the model in ``model_dir`` on ``data`` (``<data>/<class>/<image>``).

    Returns ``task, n, accuracy, macro_precision, macro_recall, macro_f1, macro_auc,
    classes, confusion_matrix``. A class folder the model does not know raises
    ValueError naming it; unreadable images are reported on stderr and skipped.
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
    pre = Preprocessor.from_card(card)
    canvases, errors = decode_canvases([s.path for s in samples], pre.size, pre.grayscale, progress=False)
    for s, e in zip(samples, errors):
        if e:
            print(f"{s.path}: {e} (skipped)", file=sys.stderr)
    keep = [i for i, e in enumerate(errors) if not e]
    probs = score_canvases(model.eval(), canvases[keep], ScoringSpec.from_card(card), device).numpy()
    y = np.array([classes.index(samples[i].label) for i in keep])
    m = classification_metrics(y, probs, classes)
    return {"task": card.get("task"), **{k: m[k] for k in ("n", "accuracy", "macro_precision", "macro_recall",
                                                           "macro_f1", "macro_auc", "classes", "confusion_matrix")}}
