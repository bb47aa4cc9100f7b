"""Plotly figures shown by the app: class probabilities, top attention channels,
confusion matrices."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from inkapp.explain.overlay import top_channels

_PREDICTED = "#b03a2e"  # seal-paste red
_OTHER = "#7f8c8d"
_LAYOUT = dict(template="plotly_white", margin=dict(l=10, r=10, t=36, b=10), font=dict(size=12))


def probability_chart(probabilities: dict[str, float], threshold: float | None = None,
                      title: str = "Class probabilities") -> go.Figure:
    """Horizontal bars of every class probability (highest on top, the top class in red);
    a dotted line marks the card's uncertainty threshold when there is one."""
    ordered = sorted(probabilities.items(), key=lambda kv: kv[1])
    labels = [k for k, _ in ordered]
    values = [v for _, v in ordered]
    colours = [_OTHER] * len(values)
    if colours:
        colours[-1] = _PREDICTED
    fig = go.Figure(go.Bar(x=values, y=labels, orientation="h", marker_color=colours,
                           text=[f"{v:.1%}" for v in values], textposition="auto",
                           hovertemplate="%{y}: %{x:.2%}<extra></extra>"))
    if threshold is not None:
        fig.add_vline(x=threshold, line_dash="dot", line_color="#34495e",
                      annotation_text="uncertainty threshold", annotation_position="top")
    fig.update_layout(title=title, xaxis=dict(range=[0, 1], tickformat=".0%"),
                      height=max(180, 60 + 32 * len(labels)), **_LAYOUT)
    return fig


def channel_chart(weights: np.ndarray, name: str, k: int = 10) -> go.Figure:
    """Bar chart of the ``k`` strongest channel-attention weights of ``name``."""
    top = top_channels(weights, k)
    fig = go.Figure(go.Bar(x=[f"#{i}" for i, _ in top], y=[w for _, w in top], marker_color="#2e4053",
                           hovertemplate="channel %{x}: %{y:.3f}<extra></extra>"))
    fig.update_layout(title=f"Top {len(top)} of {np.asarray(weights).size} channels ({name})",
                      yaxis=dict(range=[0, 1], title="weight"), xaxis=dict(type="category"), height=240, **_LAYOUT)
    return fig


def confusion_heatmap(matrix: Sequence[Sequence[float]], classes: Sequence[str], title: str) -> go.Figure:
    """Heat map of a confusion matrix (rows: true class, columns: predicted class)."""
    z = np.asarray(matrix, dtype=float)
    fig = go.Figure(go.Heatmap(z=z, x=list(classes), y=list(classes), colorscale="Greys", showscale=False,
                               text=[[f"{v:g}" for v in row] for row in z], texttemplate="%{text}",
                               hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>"))
    fig.update_layout(title=title, xaxis=dict(title="predicted", type="category"),
                      yaxis=dict(title="true", type="category", autorange="reversed"),
                      height=max(260, 120 + 45 * len(classes)), **_LAYOUT)
    return fig
