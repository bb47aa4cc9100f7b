"""Fit and write the calibration of every shipped model (issue 17).

    python train/calibrate.py [TASK ...]     # default: every folder in weights/ with a split.json

For each model: score the ``val`` and ``test`` parts of ``weights/<task>/split.json`` with
the shipped model (``Predictor.probabilities``, which applies the card's flip TTA), fit
the calibration on VAL, measure it on TEST, then

* add / replace the ``calibration`` key of ``weights/<task>/card.json`` (the card is
  re-read just before writing and every other key is kept; temp file + rename);
* draw ``reliability.png`` and ``risk_coverage.png`` into ``weights/<task>/``;
* put the calibration section into ``weights/<task>/README.md`` between
  ``<!-- calibration:start -->`` and ``<!-- calibration:end -->`` (appended the first time);
* print the issue's table (flagged %, errors caught, accuracy where not flagged) for the
  old raw-confidence flag (``uncertainty_threshold``) and the new one.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from inkapp.calibration.section import calibration_section
from inkapp.data.dataset import decode_canvases
from inkapp.inference import Predictor
from inkapp.store.files import atomic_write_text
from inkapp.paths import weights_root
from inkapp.training.ship import CALIBRATION_END, CALIBRATION_START, calibration_markdown

REPO = Path(__file__).resolve().parent.parent


def score_part(predictor: Predictor, entries: list[dict[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """Raw probabilities N×K and label indices N of split entries (paths relative to the repo)."""
    paths = [str(REPO / e["path"]) for e in entries]
    canvases, errors = decode_canvases(paths, predictor.preprocessor.size, predictor.preprocessor.grayscale,
                                       progress=False)
    bad = [p for p, e in zip(paths, errors) if e]
    if bad:
        raise ValueError(f"{len(bad)} split images could not be read, e.g. {bad[0]}")
    labels = np.array([predictor.classes.index(e["label"]) for e in entries], dtype=np.int64)
    return predictor.probabilities(canvases).numpy(), labels


def write_card_key(card_path: Path, key: str, value: Any) -> None:
    """Set ``card[key] = value`` in a card file, keeping every other key as it is on disk now."""
    card = json.loads(card_path.read_text(encoding="utf-8"))
    card[key] = value
    atomic_write_text(card_path, json.dumps(card, indent=2, ensure_ascii=False))


def write_readme_section(readme: Path, section: str) -> None:
    """Replace the calibration section of a README (between the markers), or append it."""
    text = readme.read_text(encoding="utf-8") if readme.exists() else ""
    start, end = text.find(CALIBRATION_START), text.find(CALIBRATION_END)
    if start >= 0 and end > start:
        text = text[:start] + section.rstrip("\n") + text[end + len(CALIBRATION_END):]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    atomic_write_text(readme, text if text.endswith("\n") else text + "\n")


def calibrate(folder: Path) -> dict[str, Any]:
    """Fit, measure and write the calibration of one shipped model folder; returns the section."""
    predictor = Predictor.from_folder(folder)
    split = json.loads((folder / "split.json").read_text(encoding="utf-8"))
    val_probs, val_y = score_part(predictor, split["val"])
    test_probs, test_y = score_part(predictor, split["test"])
    section = calibration_section(val_probs, val_y, test_probs, test_y, predictor.card.get("uncertainty_threshold"),
                                  figures=folder, title=predictor.task or folder.name)
    write_card_key(folder / "card.json", "calibration", section)
    write_readme_section(folder / "README.md", calibration_markdown({"calibration": section}))
    return section


def _row(task: str, f: dict[str, Any]) -> str:
    threshold = "all" if f["threshold"] is None else f"{f['threshold']:.3f}"
    acc = "n/a" if f["accuracy_not_flagged"] is None else f"{f['accuracy_not_flagged']:.1%} ({f['n'] - f['flagged']} works)"
    return f"| {task} (threshold {threshold}) | {f['flagged_share']:.0%} | {f['errors_caught']} of {f['errors']} | {acc} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tasks", nargs="*", help="task folders under weights/ (default: all with a split.json)")
    args = ap.parse_args()
    root = weights_root()
    tasks = args.tasks or sorted(p.parent.name for p in root.glob("*/split.json"))
    sections = {task: calibrate(root / task) for task in tasks}
    head = "| task | flagged \"uncertain\" | errors caught by the flag | accuracy where not flagged |\n|---|---|---|---|"
    for name, key in (("before (raw confidence < uncertainty_threshold)", "old_flag"), ("after (calibrated)", "flag")):
        print(f"\n{name}\n{head}")
        for task, s in sections.items():
            if key in s["test"]:
                print(_row(task, s["test"][key]))
    print("\n| task | method | ECE before -> after | set coverage @95% | mean set size |\n|---|---|---|---|---|")
    for task, s in sections.items():
        t = s["test"]
        print(f"| {task} | {s['method']} | {t['ece_before']:.4f} -> {t['ece_after']:.4f} | "
              f"{t['sets']['coverage']:.1%} | {t['sets']['mean_size']:.2f} |")


if __name__ == "__main__":
    main()
