"""Small PNGs of a model's calibration for its card folder: the reliability diagram
(before / after) and the risk–coverage curve with the flag's operating points."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..store.files import atomic_path  # noqa: E402

RELIABILITY_PNG = "reliability.png"
RISK_COVERAGE_PNG = "risk_coverage.png"


def _finish(fig: plt.Figure, ax: plt.Axes, xlim: float, ylim: float, xlabel: str, ylabel: str, title: str,
            path: str | Path) -> Path:
    """Limits, labels, title and legend of ``ax``; then write ``fig`` as PNG via a
    temporary file and rename (never half-written), close it and return the path."""
    ax.set_xlim(0, xlim)
    ax.set_ylim(0, ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    out = Path(path)
    try:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=90, format="png")
    finally:
        plt.close(fig)
    return out


def draw_reliability(before: list[dict[str, Any]], after: list[dict[str, Any]], ece_before: float,
                     ece_after: float, path: str | Path, title: str) -> Path:
    """Reliability diagram from two :func:`~inkapp.calibration.measures.reliability_bins`
    lists (accuracy against mean confidence per non-empty bin; marker area ∝ count)."""
    fig, ax = plt.subplots(figsize=(4.4, 4.0))
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfect calibration")
    for bins, ece, colour, name in ((before, ece_before, "tab:red", "raw"), (after, ece_after, "tab:blue", "calibrated")):
        full = [b for b in bins if b["count"]]
        x = [b["confidence"] for b in full]
        y = [b["accuracy"] for b in full]
        n = np.array([b["count"] for b in full], dtype=float)
        ax.plot(x, y, color=colour, linewidth=1.2, label=f"{name} (ECE {ece:.3f})")
        ax.scatter(x, y, s=15 + 185 * n / max(n.max(), 1), color=colour, alpha=0.6)
    return _finish(fig, ax, 1.02, 1.02, "top-1 confidence (bin mean)", "accuracy in bin", title, path)


def draw_risk_coverage(coverage: np.ndarray, risk: np.ndarray, target_accuracy: float,
                       points: dict[str, tuple[float, float]], path: str | Path, title: str) -> Path:
    """Risk (error rate of the kept predictions) against coverage (share kept, most
    confident first), the target risk 1 − ``target_accuracy`` as a line and the named
    operating ``points`` (coverage, risk) of flags."""
    fig, ax = plt.subplots(figsize=(4.4, 3.6))
    ax.plot(coverage, risk, color="tab:blue", linewidth=1.4, label="calibrated confidence order")
    ax.axhline(1 - target_accuracy, color="0.5", linestyle="--", linewidth=1,
               label=f"target risk {1 - target_accuracy:.0%}")
    for (name, (c, r)), marker in zip(points.items(), ("o", "s", "^", "D")):
        ax.plot([c], [r], marker=marker, linestyle="none", markersize=7, label=f"{name}: {c:.0%} kept, {r:.1%} errors")
    top = max(float(risk.max()) if len(risk) else 0.0, 1 - target_accuracy) * 1.15 + 1e-3
    return _finish(fig, ax, 1.01, top, "coverage (share not flagged)", "risk (error rate of those kept)", title, path)
