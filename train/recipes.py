"""Compare finished training runs (recipes, seeds) and ensemble folders of ONE task on their
shared split, with and without the flip view (issue 15). Choose by validation; the test
figures are reported beside them, never used to choose.

    python train/recipes.py NAME=RUN_OR_ENSEMBLE ... --out docs/results/recipes-<task>.json

Every folder must hold a ``split.json`` with the same val and test lists (runs of one config
and split seed, and ensembles built from them). Prints a markdown table: validation and
test accuracy / macro-F1 per folder and view.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from calibrate import REPO  # train/ is on sys.path when this script runs
from inkapp.models import load_model
from inkapp.scoring import ScoringSpec
from inkapp.store.files import atomic_write_text
from inkapp.training.ensemble import split_part, view_figures


def compare(named: dict[str, Path]) -> dict[str, dict]:
    """name -> {val, val_hflip, test, test_hflip} figures (n, accuracy, macro_f1)."""
    out: dict[str, dict] = {}
    reference = None
    data = None
    for name, folder in named.items():
        split = json.loads((folder / "split.json").read_text(encoding="utf-8"))
        parts = {p: [e["path"] for e in split[p]] for p in ("val", "test")}
        if reference is None:
            reference = parts
        elif parts != reference:
            raise ValueError(f"{folder}: its val/test split differs from the first folder's")
        model, card = load_model(folder)
        pre = card["preprocessing"]
        if data is None:
            data = {p: split_part(folder, split, p, card["classes"], pre["image_size"], pre["grayscale"])
                    for p in ("val", "test")}
        entry, _ = view_figures(model, data, card["classes"], ScoringSpec.from_card(card))
        out[name] = {"folder": str(folder), "card_tta_hflip": bool(pre.get("tta_hflip", False)), **entry}
    return out


def markdown(figures: dict[str, dict]) -> str:
    rows = ["| model | val acc | val macro-F1 | val acc, flip | val macro-F1, flip | test acc | test macro-F1 | "
            "test acc, flip | test macro-F1, flip |", "|---|---|---|---|---|---|---|---|---|"]
    for name, f in figures.items():
        cells = [f"{f[k]['accuracy']:.4f} | {f[k]['macro_f1']:.4f}" for k in ("val", "val_hflip", "test", "test_hflip")]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    first = next(iter(figures.values()))
    return "\n".join(rows) + f"\n\nval n = {first['val']['n']}, test n = {first['test']['n']}\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", help="NAME=FOLDER")
    ap.add_argument("--out", help="JSON file for the figures")
    args = ap.parse_args(argv)
    named = {}
    for item in args.folders:
        name, sep, folder = item.partition("=")
        if not sep:
            ap.error(f"expected NAME=FOLDER, got {item!r}")
        named[name] = Path(folder)
    figures = compare(named)
    print(markdown(figures))
    if args.out:
        atomic_write_text(REPO / args.out if not Path(args.out).is_absolute() else args.out,
                          json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
