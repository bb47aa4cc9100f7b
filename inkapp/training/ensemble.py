"""Build an ensemble model folder from finished training runs (issue 15).

    python -m inkapp.training.ensemble RUN1 RUN2 ... OUT [--no-tta-hflip]

The runs must be of one task and share one split (the same train/val/test file lists
in their ``split.json``) and one preprocessing. The ensemble (:mod:`inkapp.models.ensemble`)
averages its members' probabilities, with the horizontal-flip view unless
``--no-tta-hflip``; its calibration (:func:`inkapp.calibration.section.calibration_section`),
uncertainty threshold and CAM member are fitted on the shared VALIDATION part, its
figures measured on the TEST part. OUT gets the ensemble folder (loadable by
:func:`inkapp.models.load_model`, members stored fp16 and checked against fp32: the
card's ``storage_check``), ``split.json``, ``metrics.json`` (ensemble and every member,
val and test, with and without the flip) and ``figures/``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..calibration import CalibrationError
from ..calibration.section import calibration_section
from ..data.dataset import decode_canvases
from ..models import load_model
from ..models.ensemble import Ensemble, EnsembleError, cam_member_index, check_members, save_ensemble
from ..scoring import ScoringSpec, score_canvases
from ..store.files import atomic_write_text
from .figures import write_figures
from .metrics import classification_metrics
from .run import uncertainty_threshold
from .ship import calibration_markdown

FIGURE_KEYS = ("n", "accuracy", "macro_precision", "macro_recall", "macro_f1", "macro_auc", "per_class",
               "confusion_matrix", "confusion_matrix_normalised")


def _short(m: dict[str, Any]) -> dict[str, float]:
    return {k: m[k] for k in ("n", "accuracy", "macro_f1")}


def split_part(run: Path, split: dict[str, list[dict[str, str]]], part: str, classes: list[str], size: int,
               grayscale: bool) -> tuple[torch.Tensor, np.ndarray]:
    """uint8 canvases N×3×size×size and label indices N of one part of a run's split."""
    paths = [e["path"] for e in split[part]]
    canvases, errors = decode_canvases(paths, size, grayscale, progress=False)
    bad = [p for p, e in zip(paths, errors) if e]
    if bad:
        raise EnsembleError(f"{run}/split.json: {len(bad)} {part} images unreadable, e.g. {bad[0]}")
    return canvases, np.array([classes.index(e["label"]) for e in split[part]], dtype=np.int64)


def view_figures(model: torch.nn.Module, data: dict[str, tuple[torch.Tensor, np.ndarray]], classes: list[str],
                 spec: ScoringSpec) -> tuple[dict[str, Any], dict[tuple[str, bool], np.ndarray]]:
    """Accuracy / macro-F1 / n of ``model`` on each part of ``data`` (part -> (canvases, labels))
    with the upright view only (``<part>``) and with the flip view (``<part>_hflip``), and the
    probabilities by (part, flip)."""
    entry: dict[str, Any] = {}
    probs: dict[tuple[str, bool], np.ndarray] = {}
    for part, (canvases, y) in data.items():
        for flip in (False, True):
            p = probs[(part, flip)] = score_canvases(model, canvases, replace(spec, tta_hflip=flip)).numpy()
            entry[f"{part}{'_hflip' if flip else ''}"] = _short(classification_metrics(y, p, classes))
    return entry, probs


def _figure(entry: dict[str, Any] | None) -> str:
    return "–" if not entry else f"{entry['accuracy']:.4f} / {entry['macro_f1']:.4f}"


def ensemble_card_markdown(card: dict[str, Any], figures: dict[str, Any]) -> str:
    """The ensemble folder's README: members with recipe, seed and figures (validation and
    test, with and without the flip view), the ensemble's test figures, calibration."""
    m = card["metrics"]
    view = "upright + mirrored" if card["preprocessing"].get("tta_hflip") else "upright only"
    rows = []
    for i, (entry, member) in enumerate(zip(card["members"], figures["members"])):
        train = (entry.get("recipe") or {}).get("train", {})
        rows.append(f"| {i} | `{entry['folder']}` | {entry['seed']} | {entry['arch']} / {entry['backbone']}, "
                    f"{train.get('epochs')} epochs, augment {train.get('augment')}, class balance "
                    f"{train.get('class_balance')} | {_figure(member.get('val'))} | "
                    f"{_figure(member.get('val_hflip'))} | {_figure(member.get('test'))} | "
                    f"{_figure(member.get('test_hflip'))} |")
    per = "\n".join(f"| {c} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |"
                    for c, v in m["per_class"].items())
    e = figures["ensemble"]
    sc = card.get("storage_check", {})
    return f"""# {card['task']} — seed ensemble, model card

* **Version:** `{card['version']}` (created {card['created']}, inkapp {card['inkapp_version']})
* **What it is:** the mean of {len(card['members'])} members' softmax probabilities, each member scoring
  {view}; {card['architecture']}. Heat maps come from member {card['ensemble']['cam_member']}
  ({card['ensemble']['cam_member_rule']}).
* **Use:** `inkapp scan DIR --task {card['task']} --ensemble --out results.csv` (or `--weights` with this folder
  for `evaluate` and `predict`). It costs about {len(card['members']) * (2 if card['preprocessing'].get('tta_hflip') else 1)}
  forward passes per image, so the app keeps the single model one folder up.
* **Split:** the single model's (`split.json`, identical): every figure below is on the same held-out test images.
* **Stored as:** float16 members (largest {sc.get('largest_member_bytes', 0) / 2**20:.1f} MiB; fp16 max probability
  change on the test split {sc.get('max_abs_prob_diff_fp16', float('nan')):.2e}, predictions changed
  {sc.get('predictions_changed_fp16', 'n/a')}).

## Members (accuracy / macro-F1)

| # | folder | seed | recipe | val | val, flip | test | test, flip |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}
| | **ensemble** ({view}) | | | **{_figure(e['val'])}** | | **{_figure(e['test'])}** | |

## Test split (held out, never seen in training)

n = {m['n']}; accuracy **{m['accuracy']:.4f}**; macro precision {m['macro_precision']:.4f}; macro recall
{m['macro_recall']:.4f}; macro F1 **{m['macro_f1']:.4f}**; macro one-vs-rest AUC {m['macro_auc']:.4f}.

| class | precision | recall | F1 | support |
|---|---|---|---|---|
{per}
""" + (f"\n{calibration_markdown(card)}" if card.get("calibration") else "")


def build_ensemble(runs: list[str | Path], out: str | Path, tta_hflip: bool = True,
                   log: Any = print) -> dict[str, Any]:
    """Write the ensemble of ``runs`` to ``out``; returns the metrics written to ``out/metrics.json``."""
    runs = [Path(r) for r in runs]
    out = Path(out)
    tmp = out.with_name(out.name + ".building")  # written whole, then renamed to ``out``
    if len(runs) < 2:
        raise EnsembleError(f"an ensemble needs at least two runs, got {len(runs)}")
    loaded = [load_model(r) for r in runs]
    members, cards = [m for m, _ in loaded], [c for _, c in loaded]
    check_members(cards)
    splits = [json.loads((r / "split.json").read_text(encoding="utf-8")) for r in runs]
    for r, s in zip(runs[1:], splits[1:]):
        for part in ("train", "val", "test"):
            if [e["path"] for e in s[part]] != [e["path"] for e in splits[0][part]]:
                raise EnsembleError(f"{r}: its {part} split differs from {runs[0]}'s; members must share one split")
    first = cards[0]
    classes, pre = first["classes"], first["preprocessing"]
    spec = replace(ScoringSpec.from_card(first), tta_hflip=tta_hflip)
    data = {part: split_part(runs[0], splits[0], part, classes, pre["image_size"], pre["grayscale"])
            for part in ("val", "test")}

    figures: dict[str, Any] = {"members": []}
    member_val = []
    for run, model, card in zip(runs, members, cards):
        entry, probs = view_figures(model, data, classes, spec)
        figures["members"].append({"run": str(run), "seed": (card.get("training") or {}).get("train", {}).get("seed"),
                                   **entry})
        member_val.append(probs[("val", tta_hflip)])
    cam = cam_member_index(np.stack(member_val))
    ensemble = Ensemble(members, cam).eval()
    probs = {part: score_canvases(ensemble, canvases, spec).numpy() for part, (canvases, _) in data.items()}
    y = {part: labels for part, (_, labels) in data.items()}
    test_m = classification_metrics(y["test"], probs["test"], classes)
    val_m = classification_metrics(y["val"], probs["val"], classes)
    threshold = uncertainty_threshold(probs["val"], y["val"])
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        calibration = calibration_section(probs["val"], y["val"], probs["test"], y["test"], threshold["threshold"],
                                          figures=tmp / "figures", title=f"{first['task']} ensemble")
    except CalibrationError as err:
        calibration = None
        log(f"no calibration in the card: {err}")
    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    card = {
        "task": first["task"], "domain": first.get("domain"), "classes": classes,
        "version": f"{first['task']}-ensemble{len(runs)}-{created.replace(':', '').replace('-', '')}",
        "created": created, "inkapp_version": __version__,
        "preprocessing": {**pre, "tta_hflip": tta_hflip},
        "uncertainty_threshold": threshold["threshold"], "uncertainty": threshold,
        **({"calibration": calibration} if calibration else {}),
        "dynasty": first.get("dynasty"),
        "metrics": {k: test_m[k] for k in FIGURE_KEYS},
        "val_metrics": _short(val_m),
        "data": first.get("data"), "split_file": "split.json",
        "training": {"ensemble_of": [str(r) for r in runs]},
        "architecture": f"inkapp.models.ensemble.Ensemble of {len(runs)} × {first['architecture']}",
    }
    save_ensemble(members, cards, tmp, card, cam, half=True)
    half, _ = load_model(tmp)
    p16 = score_canvases(half, data["test"][0], spec).numpy()
    check = {"test_images": int(len(p16)), "max_abs_prob_diff_fp16": float(np.abs(p16 - probs["test"]).max()),
             "predictions_changed_fp16": int((p16.argmax(1) != probs["test"].argmax(1)).sum()),
             "stored_as": "float16",
             "largest_member_bytes": max((tmp / "members" / str(i) / "model.safetensors").stat().st_size
                                         for i in range(len(runs)))}
    card_doc = json.loads((tmp / "card.json").read_text(encoding="utf-8"))
    atomic_write_text(tmp / "card.json", json.dumps({**card_doc, "storage_check": check}, indent=2, ensure_ascii=False))
    shutil.copy(runs[0] / "split.json", tmp / "split.json")
    write_figures(tmp / "figures", test_m, y["test"], probs["test"], [])
    figures.update(ensemble={"val": _short(val_m), "test": _short(test_m), "tta_hflip": tta_hflip, "cam_member": cam},
                   storage_check=check, calibration=calibration and calibration["test"])
    atomic_write_text(tmp / "metrics.json", json.dumps(figures, indent=1))
    atomic_write_text(tmp / "README.md", ensemble_card_markdown({**card_doc, "storage_check": check}, figures))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    log(f"ensemble of {len(runs)}: val accuracy {val_m['accuracy']:.4f} macro-F1 {val_m['macro_f1']:.4f}; "
        f"test accuracy {test_m['accuracy']:.4f} macro-F1 {test_m['macro_f1']:.4f} -> {out}")
    return figures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m inkapp.training.ensemble", description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="run folders (inkapp train --out), then the output folder")
    ap.add_argument("--no-tta-hflip", action="store_true", help="score the upright view only")
    args = ap.parse_args(argv)
    if len(args.runs) < 3:
        ap.error("give at least two run folders and the output folder")
    try:
        build_ensemble(args.runs[:-1], args.runs[-1], tta_hflip=not args.no_tta_hflip,
                       log=lambda s: print(s, file=sys.stderr, flush=True))
    except EnsembleError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
