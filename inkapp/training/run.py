"""A training run, end to end: data -> leakage-free split -> train -> test metrics,
uncertainty threshold, calibration (``card["calibration"]``, :mod:`inkapp.calibration`: fitted on
the validation split, measured on the test split), figures and a model folder (weights +
card) in one run folder.

Run folder layout::

    <out>/model.safetensors, card.json      the trained model (loadable by inkapp.models.load_model)
    <out>/split.json                        train/val/test file lists with labels
    <out>/data_summary.json                 counts of used and skipped items and why
    <out>/metrics.json                      test metrics (+ validation metrics, history)
    <out>/figures/*.html, *.png             confusion matrices, ROC, curves, reliability, risk–coverage
    <out>/checkpoints/                      resumable state of the last epoch and the best one
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import __version__
from ..calibration import CalibrationError
from ..calibration.measures import flag_threshold
from ..calibration.section import calibration_section
from ..data.preprocess import Preprocessor
from ..data.splits import load_split, save_split, split_indices
from ..models import build_model, normalisation, resolve_config, save_model
from ..store.files import atomic_write_text
from ..scoring import ScoringSpec, score_canvases
from .config import TrainConfig
from .data import PreparedData, prepare_data
from .figures import write_figures
from ..device import default_device
from ..device import init_distributed
from .loop import train_model
from .metrics import classification_metrics

#: Predictions at or above the uncertainty threshold should be right this often on validation data.
TARGET_PRECISION = 0.98


def uncertainty_threshold(probs: np.ndarray, y: np.ndarray, target: float = TARGET_PRECISION) -> dict[str, float]:
    """The card's legacy ``uncertainty_threshold`` on RAW probabilities (read by
    ``Predictor`` until it applies ``card["calibration"]``): the smallest confidence t such
    that validation predictions with confidence ≥ t are at least ``target`` accurate
    (:func:`inkapp.calibration.measures.flag_threshold`); when no t reaches it, the highest
    confidence seen. Also reports the share of validation images at or above t (coverage)
    and their accuracy.
    """
    if len(y) == 0:
        return {"threshold": 0.5, "coverage": 0.0, "accuracy_above": float("nan"), "target": target}
    conf = probs.max(1)
    right = probs.argmax(1) == y
    found = flag_threshold(probs, y, target)["threshold"]
    t = float(conf.max()) if found is None else found
    above = conf >= t
    return {"threshold": round(t, 4), "coverage": float(above.mean()), "accuracy_above": float(right[above].mean()),
            "target": target}


def _split_counts(data: PreparedData, split: dict[str, list[int]]) -> dict[str, dict[str, int]]:
    return {part: {c: sum(1 for i in idx if data.targets[i] == k) for k, c in enumerate(data.classes)}
            for part, idx in split.items()}


def run(cfg: TrainConfig, out: str | Path, corrections: str | Path | None = None,
        split: dict[str, list[int]] | None = None, data: PreparedData | None = None, resume: bool = False,
        split_file: str | Path | None = None,
        progress: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train and evaluate one model as ``cfg`` says; returns {"metrics", "card", "out"}.

    ``split`` (indices into the prepared data) and ``data`` may be passed in to share them
    between runs (cross-validation, ablations); otherwise ``split_file`` (a saved split.json,
    e.g. the shipped model's) is reused, recorded in the card as ``training.split.reused_from``;
    otherwise a stratified near-duplicate-aware split is made with ``cfg.split``.
    """
    t0 = time.time()
    out = Path(out)
    info = init_distributed()
    mcfg = resolve_config(cfg.model)
    if data is None:
        data = prepare_data(cfg.data, cfg.task, mcfg.image_size, mcfg.grayscale, cfg.split.phash_threshold,
                            corrections, progress=progress and info.main, grouping=cfg.split.grouping)
    mcfg.num_classes = len(data.classes)
    reused_from = str(split_file) if split is None and split_file else None
    if reused_from:
        split = load_split(split_file, data.samples)
    if split is None:
        split = split_indices([data.samples[i].label for i in range(len(data.samples))], data.groups,
                              cfg.split.ratios, cfg.split.seed, cfg.split.grouping)
    mean, std = normalisation(mcfg.backbone) if mcfg.arch != "smallcnn" else ((0.5,) * 3, (0.5,) * 3)
    pre = Preprocessor(mcfg.image_size, mcfg.grayscale, mean, std)
    spec = ScoringSpec(tuple(mean), tuple(std), cfg.train.tta_hflip)
    if info.main:
        out.mkdir(parents=True, exist_ok=True)
        save_split(out / "split.json", data.samples, split)
        atomic_write_text(out / "data_summary.json", json.dumps(
            {**data.summary, "split_counts": _split_counts(data, split)}, indent=1, ensure_ascii=False))
        log(f"{cfg.task}: {len(data.samples)} images, classes {data.classes}, "
            f"train/val/test {len(split['train'])}/{len(split['val'])}/{len(split['test'])}")
    model = build_model(mcfg)
    model, history = train_model(model, data.canvases, data.targets, split, len(data.classes), spec, cfg.train,
                                 out / "checkpoints", resume=resume, progress=progress, log=log)
    result: dict[str, Any] = {"out": str(out)}
    if not info.main:
        return result
    device = default_device()
    model.eval()
    val_probs = score_canvases(model, data.canvases[split["val"]], spec, device).numpy()
    val_y = np.array([data.targets[i] for i in split["val"]])
    test_probs = score_canvases(model, data.canvases[split["test"]], spec, device).numpy()
    test_y = np.array([data.targets[i] for i in split["test"]])
    metrics = classification_metrics(test_y, test_probs, data.classes)
    val_metrics = classification_metrics(val_y, val_probs, data.classes)
    threshold = uncertainty_threshold(val_probs, val_y)
    try:
        calibration = calibration_section(val_probs, val_y, test_probs, test_y, threshold["threshold"],
                                          figures=out / "figures", title=cfg.task)
    except CalibrationError as err:  # e.g. a validation split too small for the 95 % sets
        calibration = None
        log(f"no calibration in the card: {err}")
    training = cfg.to_dict()
    if reused_from:
        training["split"] = {**training["split"], "reused_from": reused_from}
    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    card = {
        "task": cfg.task,
        "domain": cfg.domain,
        "classes": data.classes,
        "version": f"{cfg.task}-{mcfg.arch}-{created.replace(':', '').replace('-', '')}",
        "created": created,
        "inkapp_version": __version__,
        "preprocessing": {**pre.to_card(), "tta_hflip": spec.tta_hflip},
        "uncertainty_threshold": threshold["threshold"],
        "uncertainty": threshold,
        **({"calibration": calibration} if calibration else {}),
        "dynasty": cfg.dynasty,
        "metrics": {k: metrics[k] for k in ("n", "accuracy", "macro_precision", "macro_recall", "macro_f1", "macro_auc",
                                            "per_class", "confusion_matrix", "confusion_matrix_normalised")},
        "val_metrics": {k: val_metrics[k] for k in ("n", "accuracy", "macro_f1")},
        "training": {**training, "best_epoch": max(history, key=lambda h: h["val_acc"])["epoch"] if history else 0,
                     "epochs_run": len(history), "wall_seconds": round(time.time() - t0, 1)},
        "data": {"source": data.summary.get("source"), "used": data.summary.get("used"),
                 "split_counts": _split_counts(data, split), "near_duplicate_groups": data.summary.get("near_duplicate_groups"),
                 "corrections": data.summary.get("corrections")},
        "split_file": "split.json",
        "architecture": f"{type(model).__module__}.{type(model).__name__} (interpretations of the paper in its module docstring)",
    }
    save_model(model, out, card)
    write_figures(out / "figures", metrics, test_y, test_probs, history)
    atomic_write_text(out / "metrics.json", json.dumps({"test": metrics, "val": val_metrics, "uncertainty": threshold,
                                                        "calibration": calibration and calibration["test"],
                                                        "history": history, "wall_seconds": card["training"]["wall_seconds"]},
                                                       indent=1))
    log(f"test accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}, "
        f"wall {card['training']['wall_seconds']:.0f}s -> {out}")
    if calibration:
        t = calibration["test"]
        log(f"calibration ({calibration['method']}): test ECE {t['ece_before']:.4f} -> {t['ece_after']:.4f}; flag "
            f"{t['flag']['flagged_share']:.0%} flagged, {t['flag']['errors_caught']} of {t['flag']['errors']} errors; "
            f"sets cover {t['sets']['coverage']:.1%}, mean size {t['sets']['mean_size']:.2f}")
    result.update(metrics=metrics, card=card)
    return result
