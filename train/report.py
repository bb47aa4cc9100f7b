"""Tables and figures for docs/RESULTS.md from the shipped cards and the ablation / CV outputs.

    python train/report.py [--weights weights] [--runs runs] [--results docs/results] > tables.md

The finished ``ablation.json`` / ``cv.json`` of ``--runs`` (which is not in git) are
copied to ``--results`` (which is), so the tables can be rebuilt from the repository
alone; a result missing from ``--runs`` is read from ``--results``. Prints markdown: the
shipped models' test-split figures against the targets, the ablation tables (mean ± std
over seeds) and the cross-validation summary, and draws one bar chart (PNG, mean ± std
accuracy per variant) per ablation into ``--results``. Missing inputs are reported as
missing, never invented.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from inkapp.tasks import all_tasks

#: Ablation run folders under ``--runs`` and their titles.
ABLATIONS = {"ablation-paper-a": "Paper A ablation (painting-subject)",
             "ablation-paper-b": "Paper B ablation (calligrapher, 4 epochs)",
             "ablation-paper-b-long": "Paper B ablation (calligrapher, 10 epochs, cosine)"}
#: Cross-validation run folders under ``--runs`` and their titles.
CVS = {"cv-calligraphy-script": "Cross-validation: calligraphy-script (paper B's protocol)",
       "cv-painting-technique": "Cross-validation: painting-technique (the shipped recipe)"}
TARGETS = {t.name: (t.target.metric, t.target.value) for t in all_tasks() if t.target is not None}


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
        crop = t["train"].get("crop", 0)
        views = f", trained on {crop} px windows" if crop else ""
        lines.append(f"| {task} | {c['model']['arch']} / {c['model']['backbone']} @ {c['preprocessing']['image_size']} px{views} | "
                     f"{m['n']} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} | {m['macro_auc']:.4f} | "
                     f"{metric} ≥ {target} | {gap:+.4f} | {t['epochs_run']} | {t['wall_seconds'] / 60:.0f} min |")
    return lines


def dynasty_view(weights: Path) -> list[str]:
    """Dynasty-level accuracy of every shipped model whose card maps classes to dynasties,
    from its test confusion matrix folded to dynasties (a class confused with another of
    the same dynasty still names the right dynasty)."""
    lines = []
    for card_file in sorted(weights.glob("*/card.json")):
        c = json.loads(card_file.read_text())
        dyn = c.get("dynasty")
        if not dyn:
            continue
        names = sorted(set(dyn.values()))
        folded = {(t, p): 0 for t in names for p in names}  # (true dynasty, predicted dynasty) -> count
        for a, row in zip(c["classes"], c["metrics"]["confusion_matrix"]):
            for b, n in zip(c["classes"], row):
                folded[dyn[a], dyn[b]] += n
        right, total = sum(folded[d, d] for d in names), sum(folded.values())
        per = "; ".join(f"{d}: {folded[d, d]}/{sum(folded[d, p] for p in names)} right" for d in names)
        lines.append(f"{c['task']}: dynasty ({'/'.join(names)}) accuracy on the test split "
                     f"{right / total:.4f} ({right}/{total}; {per}).")
    return lines


def _from_run_folders(folder: Path) -> dict | None:
    """Rebuild an ablation document from ``<variant>-s<seed>/metrics.json`` folders (an
    ablation still running, or stopped, has no ablation.json yet)."""
    import numpy as np

    runs: dict[str, list[dict]] = {}
    for m in sorted(folder.glob("*-s*/metrics.json")):
        variant = m.parent.name.rsplit("-s", 1)[0]
        runs.setdefault(variant, []).append(json.loads(m.read_text())["test"])
    if not runs:
        return None
    keys = ("accuracy", "macro_f1", "macro_auc")
    first = next(iter(runs.values()))[0]
    return {"task": folder.name, "seeds": f"{min(map(len, runs.values()))}-{max(map(len, runs.values()))}",
            "split": {"test": first["n"]}, "partial": True,
            "variants": {v: {"summary": {k: {"mean": float(np.mean([r[k] for r in rs])), "std": float(np.std([r[k] for r in rs]))}
                                         for k in keys}, "n_seeds": len(rs)} for v, rs in runs.items()}}


def ablation(path: Path) -> list[str]:
    doc = json.loads(path.read_text()) if path.exists() else _from_run_folders(path.parent)
    if doc is None:
        return [f"(no results at {path.parent})"]
    note = " (partial: built from the finished runs)" if doc.get("partial") else ""
    lines = [f"Task {doc['task']}, {doc['seeds']} seeds, split {doc['split']}{note}.", "",
             "| variant | seeds | accuracy | macro-F1 | macro-AUC |", "|---|---|---|---|---|"]
    for v, t in doc["variants"].items():
        s = t["summary"]
        lines.append(f"| {v} | {t.get('n_seeds', len(t.get('runs', [])))} | {s['accuracy']['mean']:.4f} ± {s['accuracy']['std']:.4f} | "
                     f"{s['macro_f1']['mean']:.4f} ± {s['macro_f1']['std']:.4f} | "
                     f"{s['macro_auc']['mean']:.4f} ± {s['macro_auc']['std']:.4f} |")
    return lines


def collect(runs: Path, results: Path, names: dict[str, str]) -> dict[str, Path]:
    """For each ``name -> run-relative file``, the file to read: the run's own copy when it
    exists (then also copied to ``results/<name>.json``), else the saved copy."""
    results.mkdir(parents=True, exist_ok=True)
    found = {}
    for name, rel in names.items():
        src, saved = runs / rel, results / f"{name}.json"
        if src.exists():
            shutil.copyfile(src, saved)
        found[name] = saved if saved.exists() else src
    return found


def ablation_chart(path: Path, title: str, out: Path) -> Path | None:
    """Bar chart of mean test accuracy ± std (over seeds) per variant; None without results."""
    if not path.exists():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    doc = json.loads(path.read_text())
    names = list(doc["variants"])
    means = [doc["variants"][v]["summary"]["accuracy"]["mean"] for v in names]
    stds = [doc["variants"][v]["summary"]["accuracy"]["std"] for v in names]
    fig, ax = plt.subplots(figsize=(1.1 * len(names) + 2, 3.6))
    ax.bar(range(len(names)), means, yerr=stds, capsize=4, color="#555")
    for i, (m, sd) in enumerate(zip(means, stds)):
        ax.text(i, m + sd + 0.004, f"{m:.3f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_ylim(max(0.0, min(means) - 0.15), min(1.0, max(means) + 0.08))
    ax.set_ylabel(f"test accuracy (mean ± std, {doc['seeds']} seeds)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def cv(path: Path) -> list[str]:
    if not path.exists():
        return [f"(no results at {path})"]
    doc = json.loads(path.read_text())
    lines = [f"{doc['folds']}-fold cross-validation, {doc['task']}.", "", "| metric | mean | std |", "|---|---|---|"]
    lines += [f"| {k} | {v['mean']:.4f} | {v['std']:.4f} |" for k, v in doc["summary"].items()]
    accs = ", ".join(f"{f['accuracy']:.3f}" for f in doc.get("per_fold", []))
    return lines + ["", f"Per-fold accuracy: {accs}."] if accs else lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default="weights")
    ap.add_argument("--runs", default="runs")
    ap.add_argument("--results", default="docs/results")
    a = ap.parse_args()
    results = Path(a.results)
    files = collect(Path(a.runs), results, {**{name: f"{name}/ablation.json" for name in ABLATIONS},
                                            **{name: f"{name}/cv.json" for name in CVS}})
    out = ["## Shipped models (held-out test split)", "", *shipped(Path(a.weights)), "", *dynasty_view(Path(a.weights)), ""]
    for name, title in ABLATIONS.items():
        ablation_chart(files[name], title, results / f"{name}.png")
        out += [f"## {title}", "", *ablation(files[name]), ""]
    for name, title in CVS.items():
        out += [f"## {title}", "", *cv(files[name]), ""]
    print("\n".join(out))


if __name__ == "__main__":
    main()
