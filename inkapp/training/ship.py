"""Turn a training run into a shipped model folder ``weights/<task>/``.

The weights are stored as fp16 safetensors (large tensors only, see
:data:`inkapp.models.serialization.HALF_MIN_NUMEL`) when that keeps the probabilities on
the run's own test split within ``tolerance`` of fp32 and changes no prediction (so the
test accuracy is identical); otherwise fp32. The measured difference is written into the card (``storage_check``), with the
split file and the figure PNGs copied beside it.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..models import load_model, save_model
from ..models.serialization import WEIGHTS_FILE
from ..scoring import score_files

FIGURES = ("confusion_counts.png", "confusion_normalised.png", "roc.png", "curves.png", "reliability.png",
           "risk_coverage.png")
#: The calibration section of a README sits between these lines (replaced in place by train/calibrate.py).
CALIBRATION_START, CALIBRATION_END = "<!-- calibration:start -->", "<!-- calibration:end -->"
#: How each ``split.grouping`` (inkapp.data.splits.GROUPINGS) is described in a model README.
_GROUPING_NOTE = {
    "strict": "pHash within 8 bits",
    "loose": "pHash within 12 bits or 256-bit dHash within 12 bits, pages of one source work together",
    "loose-dhash": "pHash within 8 bits or 256-bit dHash within 12 bits, pages of one source work together",
}


def _test_probs(model: torch.nn.Module, card: dict[str, Any], run: Path) -> np.ndarray:
    split = json.loads((run / "split.json").read_text())
    return score_files(model, card, [e["path"] for e in split["test"]], torch.device("cpu"))[0]


def ship(run: str | Path, dest: str | Path, tolerance: float = 5e-3) -> dict[str, Any]:
    """Copy the model of ``run`` into ``dest`` (fp16 when lossless within ``tolerance``);
    returns the storage check written into the card."""
    run, dest = Path(run), Path(dest)
    model, card = load_model(run)
    p32 = _test_probs(model, card, run)
    tmp = dest.with_name(dest.name + ".fp16-check")
    save_model(model, tmp, {k: v for k, v in card.items() if k not in ("model", "weights_dtype")}, half=True)
    half_model, _ = load_model(tmp)
    p16 = _test_probs(half_model, card, run)
    shutil.rmtree(tmp)
    diff = float(np.abs(p32 - p16).max()) if len(p32) else 0.0
    changed = int((p32.argmax(1) != p16.argmax(1)).sum()) if len(p32) else 0
    half = diff <= tolerance and changed == 0
    check = {"test_images": int(len(p32)), "max_abs_prob_diff_fp16": diff, "predictions_changed_fp16": changed,
             "stored_as": "float16" if half else "float32", "tolerance": tolerance,
             "fp32_bytes": (run / WEIGHTS_FILE).stat().st_size}
    keep = {k: v for k, v in card.items() if k not in ("model", "weights_dtype")}
    save_model(model, dest, {**keep, "storage_check": check}, half=half)
    check["stored_bytes"] = (dest / WEIGHTS_FILE).stat().st_size
    shutil.copy(run / "split.json", dest / "split.json")
    for f in FIGURES:
        if (run / "figures" / f).exists():
            shutil.copy(run / "figures" / f, dest / f)
    card_path = dest / "card.json"
    final = json.loads(card_path.read_text())
    final["storage_check"] = check
    card_path.write_text(json.dumps(final, indent=2, ensure_ascii=False))
    (dest / "README.md").write_text(model_card_markdown(final), encoding="utf-8")
    return check


def _crop_note(training: dict[str, Any]) -> str:
    crop = training.get("train", {}).get("crop", 0)
    return (f"\n* **Training views:** random {crop} px windows of the canvas centred on the image content; "
            "evaluation and the app see the whole canvas in one forward") if crop else ""


def _split_note(split: dict[str, Any]) -> str:
    """How the split was made: the config's grouping, or the split file a run reused (``--split``)."""
    if split.get("reused_from"):
        return (f"the split of `{split['reused_from']}` reused as it is (its own near-duplicate grouping "
                "applies; images it does not list went to train)")
    grouping = split.get("grouping", "strict")
    return f"near-duplicates grouped\n  ({_GROUPING_NOTE.get(grouping, grouping)}) so none crosses the split"


def _flag_note(card: dict[str, Any]) -> str:
    if card.get("calibration"):
        return "on calibrated probabilities, see the calibration section below"
    return (f"predictions below confidence {card['uncertainty_threshold']} are flagged; chosen on\n"
            f"  validation data so that predictions at or above it were ≥ {card['uncertainty']['target']:.0%} right\n"
            f"  (coverage {card['uncertainty']['coverage']:.0%} of validation images).")


def model_card_markdown(card: dict[str, Any]) -> str:
    """A human-readable model card rendered from ``card.json``."""
    m, t, d = card["metrics"], card["training"], card["data"]
    per = "\n".join(f"| {c} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |"
                     for c, v in m["per_class"].items())
    splits = ", ".join(f"{part}: {sum(v.values())}" for part, v in d["split_counts"].items())
    dyn = f"\nDynasty of each class: {card['dynasty']}.\n" if card.get("dynasty") else ""
    sc = card.get("storage_check", {})
    return f"""# {card['task']} — model card

* **Version:** `{card['version']}` (created {card['created']}, inkapp {card['inkapp_version']})
* **Architecture:** `{card['model']['arch']}` on `{card['model']['backbone']}` (ImageNet weights: {card['model']['pretrained']}),
  options {card['model']['options'] or 'default'}; {card['architecture']}
* **Input:** letterboxed to {card['preprocessing']['image_size']} px square, white padding,
  {'grayscale replicated to 3 channels' if card['preprocessing']['grayscale'] else 'RGB'},
  normalised with mean {card['preprocessing']['mean']} / std {card['preprocessing']['std']};
  flip test-time augmentation: {card['preprocessing'].get('tta_hflip', False)}{_crop_note(t)}
* **Classes:** {', '.join(card['classes'])}{dyn}
* **Data:** {d['source']} — {d['used']} images used; split {splits}; {_split_note(t.get('split', {}))}
  ({d['near_duplicate_groups']} groups). Third-party research images,
  not redistributed.
* **Training:** {t['epochs_run']} epochs run (best epoch {t['best_epoch']}), {t['wall_seconds']:.0f} s wall on the
  machine that trained it; full config in `card.json`.
* **Uncertainty flag:** {_flag_note(card)}
* **Stored as:** {sc.get('stored_as', card.get('weights_dtype'))} (fp16 max probability change on the test split:
  {sc.get('max_abs_prob_diff_fp16', float('nan')):.2e}, predictions changed: {sc.get('predictions_changed_fp16', 'n/a')})

## Test split (held out, never seen in training)

n = {m['n']}; accuracy **{m['accuracy']:.4f}**; macro precision {m['macro_precision']:.4f}; macro recall
{m['macro_recall']:.4f}; macro F1 **{m['macro_f1']:.4f}**; macro one-vs-rest AUC {m['macro_auc']:.4f}.

| class | precision | recall | F1 | support |
|---|---|---|---|---|
{per}

Confusion matrices, ROC curves and training curves: the PNGs in this folder.
""" + (f"\n{calibration_markdown(card)}" if card.get("calibration") else "")


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _flag_row(name: str, f: dict[str, Any]) -> str:
    threshold = "all flagged" if f["threshold"] is None else f"{f['threshold']:.4f}"
    return (f"| {name} | {threshold} | {_share(f['flagged_share'])} ({f['flagged']} of {f['n']}) | "
            f"{f['errors_caught']} of {f['errors']} | {_share(f['accuracy_not_flagged'])} |")


def calibration_markdown(card: dict[str, Any]) -> str:
    """The README's calibration section (between :data:`CALIBRATION_START` and
    :data:`CALIBRATION_END`) rendered from ``card["calibration"]``."""
    c = card["calibration"]
    t, flag, conf = c["test"], c["flag"], c["conformal"]
    params = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} [{', '.join(f'{x:.3g}' for x in v)}]"
                       for k, v in c["parameters"].items())
    cv = ", ".join(f"{m} {v:.4f}" for m, v in c["selection"].get("cv_nll", {}).items())
    rows = [_flag_row(f"before: raw confidence < {t['old_flag']['threshold']}", t["old_flag"])] if "old_flag" in t else []
    rows.append(_flag_row("after: calibrated confidence < threshold", t["flag"]))
    sizes = ", ".join(f"{k}: {v}" for k, v in t["sets"]["size_counts"].items())
    met = ("met" if flag["target_met"] else "NOT met — every prediction is flagged")
    return f"""{CALIBRATION_START}
## Calibration, uncertainty flag and answer sets (fitted on validation, measured on test)

* **Calibration:** {c['method']} scaling ({params}) of the {c['input']}; chosen over the alternative by
  {c['selection'].get('cv_folds')}-fold cross-validated NLL on the validation split ({cv}; lower is better).
* **Test ECE** ({c['ece_binning']}): {t['ece_before']:.4f} raw -> **{t['ece_after']:.4f}** calibrated;
  NLL {t['nll_before']:.4f} -> {t['nll_after']:.4f} nats. Reliability diagram: `reliability.png`.
* **Flag:** a prediction is flagged "uncertain" when its calibrated confidence is below
  {'—' if flag['threshold'] is None else f"{flag['threshold']:.4f}"}, chosen on validation so that the
  predictions not flagged are ≥ {flag['target_accuracy']:.0%} right (target {met}; validation: {_share(flag['validation_coverage'])}
  not flagged, {_share(flag['validation_accuracy'])} right). Risk–coverage curve: `risk_coverage.png`.
* **Answer sets:** split-conformal, {conf['score'].upper()} score ({conf['library']}), level {conf['level']:.0%}, quantile
  {conf['quantile']:.4f}; test set coverage **{t['sets']['coverage']:.1%}**, mean set size {t['sets']['mean_size']:.2f}
  (sizes {sizes}).

Test split, n = {t['n']} (accuracy {t['accuracy']:.1%}):

| flag | threshold | flagged | errors caught | accuracy where not flagged |
|---|---|---|---|---|
{chr(10).join(rows)}
{CALIBRATION_END}
"""


if __name__ == "__main__":
    import sys

    print(json.dumps(ship(sys.argv[1], sys.argv[2]), indent=1))
