"""Tables for docs/RESULTS.md from the shipped cards and the ablation / CV outputs.

    python train/report.py [--weights weights] [--runs runs] > docs/results_tables.md

Prints markdown: the shipped models' test-split figures against the targets, the
ablation tables (mean ± std over seeds) and the cross-validation summary. Missing
inputs are reported as missing, never invented.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

TARGETS = {"painting-subject": ("accuracy", 0.95), "calligraphy-script": ("accuracy", 0.98),
           "calligrapher": ("accuracy", 0.97), "painting-technique": ("macro_f1", 0.90)}


def shipped(weights: Path) -> list[str]:
    lines = ["| task | model | test n | accuracy | macro-F1 | macro-AUC | target | gap | epochs | train wall |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for task, (metric, target) in TARGETS.items():
        card_file = weights / task / "card.json"
        if not card_file.exists():
            lines.append(f"| {task} | (not shipped) | | | | | {metric} ≥ {target} | | | |")
            continue
        c = json.loads(card_file.read_text())
        m, t = c["metrics"], c["training"]
        gap = m[metric] - target
        lines.append(f"| {task} | {c['model']['arch']} / {c['model']['backbone']} @ {c['preprocessing']['image_size']} px | "
                     f"{m['n']} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} | {m['macro_auc']:.4f} | "
                     f"{metric} ≥ {target} | {gap:+.4f} | {t['epochs_run']} | {t['wall_seconds'] / 60:.0f} min |")
    return lines


def ablation(path: Path) -> list[str]:
    if not path.exists():
        return [f"(no results at {path})"]
    doc = json.loads(path.read_text())
    lines = [f"Task {doc['task']}, {doc['seeds']} seeds, split {doc['split']}.", "",
             "| variant | accuracy | macro-F1 | macro-AUC |", "|---|---|---|---|"]
    for v, t in doc["variants"].items():
        s = t["summary"]
        lines.append(f"| {v} | {s['accuracy']['mean']:.4f} ± {s['accuracy']['std']:.4f} | "
                     f"{s['macro_f1']['mean']:.4f} ± {s['macro_f1']['std']:.4f} | "
                     f"{s['macro_auc']['mean']:.4f} ± {s['macro_auc']['std']:.4f} |")
    return lines


def cv(path: Path) -> list[str]:
    if not path.exists():
        return [f"(no results at {path})"]
    doc = json.loads(path.read_text())
    lines = [f"{doc['folds']}-fold cross-validation, {doc['task']}.", "", "| metric | mean | std |", "|---|---|---|"]
    lines += [f"| {k} | {v['mean']:.4f} | {v['std']:.4f} |" for k, v in doc["summary"].items()]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default="weights")
    ap.add_argument("--runs", default="runs")
    a = ap.parse_args()
    runs = Path(a.runs)
    out = ["## Shipped models (held-out test split)", "", *shipped(Path(a.weights)), "",
           "## Paper A ablation", "", *ablation(runs / "ablation-paper-a" / "ablation.json"), "",
           "## Paper B ablation", "", *ablation(runs / "ablation-paper-b" / "ablation.json"), "",
           "## Cross-validation", "", *cv(runs / "cv-calligraphy-script" / "cv.json")]
    print("\n".join(out))


if __name__ == "__main__":
    main()
