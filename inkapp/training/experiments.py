"""Cross-validation and ablation: many runs sharing one decoded data set and split."""
from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..data.splits import kfold_splits, split_indices
from ..models import resolve_config
from ..store.files import atomic_write_text
from .config import TrainConfig, load_config
from .data import prepare_data
from .run import run

METRIC_KEYS = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "macro_auc")


def _log(s: str) -> None:
    print(s, file=sys.stderr, flush=True)


def _summary(results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    return {k: {"mean": float(np.mean([r[k] for r in results])), "std": float(np.std([r[k] for r in results], ddof=0)),
                "n": len(results)} for k in METRIC_KEYS}


def _finished(folder: Path) -> dict[str, Any] | None:
    """Test metrics of a run folder that already finished (so a stopped experiment resumes)."""
    path = folder / "metrics.json"
    return json.loads(path.read_text())["test"] if path.exists() else None


def _prepare(cfg: TrainConfig):
    m = resolve_config(cfg.model)
    return prepare_data(cfg.data, cfg.task, m.image_size, m.grayscale, cfg.split.phash_threshold,
                        grouping=cfg.split.grouping)


def cross_validate(config: str | Path, folds: int, out: str | Path | None, overrides: dict[str, Any],
                   data: str | None = None) -> dict[str, Any]:
    """k-fold CV (stratified, near-duplicate groups kept together): fold i is the test set,
    fold i+1 validation. Writes ``cv.json`` and ``cv.md``; returns the summary."""
    if data:
        overrides = {**overrides, "data": data}
    cfg = load_config(config, overrides)
    out = Path(out) if out else Path("runs") / f"cv-{cfg.task}-{datetime.now():%Y%m%d-%H%M%S}"
    prepared = _prepare(cfg)
    splits = kfold_splits([s.label for s in prepared.samples], prepared.groups, folds, cfg.split.seed, cfg.split.grouping)
    per_fold = []
    for i, split in enumerate(splits):
        _log(f"fold {i + 1}/{folds}")
        metrics = _finished(out / f"fold{i:02d}") or run(cfg, out / f"fold{i:02d}", split=split, data=prepared, log=_log)["metrics"]
        per_fold.append({k: metrics[k] for k in METRIC_KEYS})
    summary = {"task": cfg.task, "folds": folds, "per_fold": per_fold, "summary": _summary(per_fold)}
    atomic_write_text(out / "cv.json", json.dumps(summary, indent=1))
    lines = [f"# {folds}-fold cross-validation: {cfg.task} ({cfg.model.get('arch')})", "",
             "| metric | mean | std |", "|---|---|---|"]
    lines += [f"| {k} | {v['mean']:.4f} | {v['std']:.4f} |" for k, v in summary["summary"].items()]
    atomic_write_text(out / "cv.md", "\n".join(lines) + "\n")
    print(json.dumps(summary["summary"]))
    return summary


def ablate(config: str | Path, variants: list[str], seeds: int, out: str | Path | None, overrides: dict[str, Any],
           data: str | None = None) -> dict[str, Any]:
    """Train every variant with ``seeds`` seeds on one shared split; writes ``ablation.json``
    and ``ablation.md`` (mean ± std of the test metrics per variant). Runs whose folder
    already holds ``metrics.json`` are reused, so a stopped ablation resumes."""
    if data:
        overrides = {**overrides, "data": data}
    cfg = load_config(config, overrides)
    out = Path(out) if out else Path("runs") / f"ablate-{cfg.task}-{datetime.now():%Y%m%d-%H%M%S}"
    prepared = _prepare(cfg)
    split = split_indices([s.label for s in prepared.samples], prepared.groups, cfg.split.ratios, cfg.split.seed,
                          cfg.split.grouping)
    table: dict[str, Any] = {}
    for variant in variants:
        vcfg = resolve_config({**cfg.model, "arch": variant})
        if (vcfg.image_size, vcfg.grayscale) != (resolve_config(cfg.model).image_size, resolve_config(cfg.model).grayscale):
            raise ValueError(f"variant {variant} changes the input size or colour; ablations share one input")
        runs = []
        for seed in range(seeds):
            _log(f"{variant} seed {seed}")
            c = load_config(config, {**overrides, "train.seed": seed})
            c.model = {**cfg.model, "arch": variant}
            folder = out / f"{variant}-s{seed}"
            metrics = _finished(folder) or run(c, folder, split=split, data=prepared, log=_log)["metrics"]
            runs.append({k: metrics[k] for k in METRIC_KEYS})
        table[variant] = {"runs": runs, "summary": _summary(runs)}
    doc = {"task": cfg.task, "seeds": seeds, "split": {k: len(v) for k, v in split.items()}, "variants": table}
    atomic_write_text(out / "ablation.json", json.dumps(doc, indent=1))
    lines = [f"# Ablation: {cfg.task}, {seeds} seed(s), test n = {len(split['test'])}", "",
             "| variant | accuracy | macro-F1 | macro-AUC |", "|---|---|---|---|"]
    for v, t in table.items():
        s = t["summary"]
        lines.append(f"| {v} | {s['accuracy']['mean']:.4f} ± {s['accuracy']['std']:.4f} | "
                     f"{s['macro_f1']['mean']:.4f} ± {s['macro_f1']['std']:.4f} | "
                     f"{s['macro_auc']['mean']:.4f} ± {s['macro_auc']['std']:.4f} |")
    atomic_write_text(out / "ablation.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return doc
