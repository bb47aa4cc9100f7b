"""Figures of a run: confusion matrices, ROC curves and per-epoch curves.

Each figure is written twice: an interactive plotly HTML file and a static PNG
(matplotlib, so no browser is needed to render it).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import plotly.graph_objects as go  # noqa: E402

from .metrics import roc_curve  # noqa: E402


def _confusion(out: Path, cm: np.ndarray, classes: list[str], title: str, stem: str, fmt: str) -> None:
    go.Figure(go.Heatmap(z=cm[::-1], x=classes, y=classes[::-1], colorscale="Blues", text=cm[::-1],
                         texttemplate=fmt)).update_layout(
        title=title, xaxis_title="predicted", yaxis_title="true").write_html(out / f"{stem}.html", include_plotlyjs="directory")
    fig, ax = plt.subplots(figsize=(1.2 * len(classes) + 2.5, 1.1 * len(classes) + 2))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, format(v, fmt.strip("%{}z:") or "g"), ha="center", va="center",
                color="white" if v > cm.max() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out / f"{stem}.png", dpi=110)
    plt.close(fig)


def write_figures(out: str | Path, metrics: dict[str, Any], y_true: np.ndarray, probs: np.ndarray,
                  history: list[dict[str, float]]) -> list[str]:
    """Write all figures of a run into ``out``; returns the file names written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    classes = metrics["classes"]
    cm = np.array(metrics["confusion_matrix"])
    _confusion(out, cm, classes, "Confusion matrix (test, counts)", "confusion_counts", "%{z}")
    _confusion(out, np.array(metrics["confusion_matrix_normalised"]), classes,
               "Confusion matrix (test, row-normalised)", "confusion_normalised", "%{z:.2f}")

    roc = go.Figure()
    fig, ax = plt.subplots(figsize=(5, 5))
    for c, name in enumerate(classes):
        fpr, tpr = roc_curve(y_true == c, probs[:, c])
        auc = metrics["per_class"][name]["auc"]
        label = f"{name} (AUC {auc:.3f})" if auc is not None else name
        roc.add_trace(go.Scatter(x=fpr, y=tpr, mode="lines", name=label))
        ax.plot(fpr, tpr, label=label)
    roc.update_layout(title="ROC, one vs rest (test)", xaxis_title="false positive rate", yaxis_title="true positive rate")
    roc.write_html(out / "roc.html", include_plotlyjs="directory")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, one vs rest (test)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "roc.png", dpi=110)
    plt.close(fig)

    epochs = [h["epoch"] for h in history]
    curves = go.Figure()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for key, axis in (("train_loss", a1), ("val_loss", a1), ("train_acc", a2), ("val_acc", a2)):
        ys = [h.get(key) for h in history]
        curves.add_trace(go.Scatter(x=epochs, y=ys, mode="lines+markers", name=key))
        axis.plot(epochs, ys, marker="o", label=key)
    curves.update_layout(title="Loss and accuracy per epoch", xaxis_title="epoch")
    curves.write_html(out / "curves.html", include_plotlyjs="directory")
    a1.set(xlabel="epoch", title="loss")
    a2.set(xlabel="epoch", title="accuracy")
    a1.legend()
    a2.legend()
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=110)
    plt.close(fig)
    return ["confusion_counts", "confusion_normalised", "roc", "curves"]
