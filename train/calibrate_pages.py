"""Set the page-attribution thresholds on VALIDATION data and store them in the
calligrapher card under ``page_attribution`` (every other key kept as it is).

* ``script_threshold`` — the 5th percentile of the script model's regular-script
  probability over regular-script validation pages: synthetic pages of ≥ 2
  calligrapher VAL characters and the real ``kaishu_regular`` pages of the script
  model's VAL split (so ~95 % of regular pages pass);
* ``evidence_threshold`` — on the synthetic validation pages that pass the script
  check, the lowest page probability above which the page accuracy is ≥ 0.98
  (``--target``), and at least 0.5.

Usage: ``python train/calibrate_pages.py [--pages-per-n 30] [--seed 1] [--dry-run]``
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from inkapp.data.images import load_image
from inkapp.inference import Predictor
from inkapp.pages.attribute import REGULAR, PageSettings, attribute_page
from inkapp.pages.evaluate import characters_by_label, evaluation_pages
from inkapp.paths import shipped_weights

ROOT = Path(__file__).resolve().parents[1]
N_VALUES = (1, 4, 8, 16)
SCRIPT_MIN_CHARACTERS = 2


def evidence_threshold(confidence: np.ndarray, correct: np.ndarray, target: float) -> float:
    """Lowest t (a value of ``confidence``, or 1.0) with accuracy of {confidence ≥ t} ≥ target; ≥ 0.5."""
    order = np.argsort(confidence)
    conf, ok = confidence[order], correct[order].astype(float)
    for i in range(len(conf)):
        if ok[i:].mean() >= target:
            return max(0.5, float(conf[i]))
    return 1.0


def write_card_key(card_path: Path, key: str, value: dict) -> None:
    """Add/replace one top-level key of a JSON card: re-read right before writing,
    same indentation and trailing newline, atomic replace."""
    text = card_path.read_text()
    card = json.loads(text)
    card[key] = value
    out = json.dumps(card, indent=2, ensure_ascii=False) + ("\n" if text.endswith("\n") else "")
    fd, tmp = tempfile.mkstemp(dir=card_path.parent, prefix=".card-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        f.write(out)
    os.replace(tmp, card_path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages-per-n", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--target", type=float, default=0.98)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dry-run", action="store_true", help="print the settings, do not write the card")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.chdir(ROOT)
    folder = shipped_weights("calligrapher")
    calligrapher = Predictor.from_folder(folder, device="cpu")
    script = Predictor.from_folder(shipped_weights("calligraphy-script"), device="cpu")
    open_settings = PageSettings(evidence_threshold=0.0, min_characters=1, script_threshold=0.0,
                                 script_min_characters=SCRIPT_MIN_CHARACTERS)
    val = characters_by_label(folder / "split.json", "val")
    synthetic = []
    for page in evaluation_pages(val, N_VALUES, args.pages_per_n, args.seed):
        a = attribute_page(page.image, calligrapher, script, open_settings)
        if a.probabilities:
            top = max(a.probabilities, key=a.probabilities.__getitem__)
            synthetic.append((page.spec.n, len(a.characters), top == page.label, a.probabilities[top],
                              None if a.script is None else a.script[REGULAR]))
        print(f"synthetic val page n={page.spec.n}: {synthetic[-1] if a.probabilities else 'nothing found'}",
              file=sys.stderr, flush=True)
    script_rows = json.loads((shipped_weights("calligraphy-script") / "split.json").read_text())["val"]
    real: dict[str, list[float]] = {}
    for r in script_rows:
        p = script.predict([load_image(r["path"])])[0].probabilities[REGULAR]
        real.setdefault(r["label"], []).append(p)
    accept = [s for *_, s in synthetic if s is not None] + real.get(REGULAR, [])
    script_threshold = float(np.floor(np.percentile(accept, 5) * 100) / 100)
    passing = [(ok, conf) for n, found, ok, conf, s in synthetic if s is None or s >= script_threshold]
    correct = np.array([ok for ok, _ in passing])
    confidence = np.array([c for _, c in passing])
    t = evidence_threshold(confidence, correct, args.target)
    kept = confidence >= t
    settings = {
        "rule": "page probability = softmax over masters of the sum of log max(p, 0.02) over found characters",
        "evidence_threshold": round(t, 4),
        "min_characters": 1,
        "script_threshold": script_threshold,
        "script_min_characters": SCRIPT_MIN_CHARACTERS,
        "target_accuracy": args.target,
        "validation": {
            "synthetic_pages": len(synthetic),
            "characters_per_page": list(N_VALUES),
            "seed": args.seed,
            "coverage": round(float(kept.mean()), 4),
            "accuracy_above": round(float(correct[kept].mean()), 4) if kept.any() else None,
            "real_val_pages_rejected_as_not_regular": {
                k: round(float(np.mean(np.array(v) < script_threshold)), 4) for k, v in sorted(real.items())},
        },
        "model_version": calligrapher.version,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    print(json.dumps(settings, indent=1))
    if not args.dry_run:
        write_card_key(folder / "card.json", "page_attribution", settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
