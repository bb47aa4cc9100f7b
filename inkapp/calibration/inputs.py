"""Checks of the arrays every calibration function takes: probabilities N×K and labels N."""
from __future__ import annotations

import numpy as np


class CalibrationError(ValueError):
    """Input that calibration cannot work from (the message says what and why)."""


#: Rows of a probability matrix must sum to 1 within this (fp16 weights, float32 softmax).
SUM_TOLERANCE = 1e-3


def check_probabilities(probs: np.ndarray, labels: np.ndarray | None = None,
                        num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate class probabilities ``probs`` (N×K, rows summing to 1, K ≥ 2) and, if given,
    integer ``labels`` (N, values in [0, K)); returns them as float64 / int64 arrays.

    ``num_classes`` — the K the caller expects (a card's class count). Raises
    :class:`CalibrationError` with a one-line reason otherwise.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise CalibrationError(f"probabilities must be a 2-D N×K array, got shape {p.shape}")
    if p.shape[1] < 2:
        raise CalibrationError(f"calibration needs at least 2 classes, got {p.shape[1]}")
    if num_classes is not None and p.shape[1] != num_classes:
        raise CalibrationError(f"probabilities have {p.shape[1]} classes, the calibration was fitted for {num_classes}")
    if not np.isfinite(p).all() or (p < 0).any():
        raise CalibrationError("probabilities must be finite and non-negative")
    if len(p) and np.abs(p.sum(1) - 1).max() > SUM_TOLERANCE:
        raise CalibrationError(f"probability rows must sum to 1 (worst row sums to {p.sum(1)[np.abs(p.sum(1) - 1).argmax()]:.4f})")
    if labels is None:
        return p, None
    y = np.asarray(labels)
    if y.shape != (len(p),):
        raise CalibrationError(f"labels must have shape ({len(p)},), got {y.shape}")
    if len(y) and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= p.shape[1]):
        raise CalibrationError(f"labels must be class indices in [0, {p.shape[1]})")
    return p, y.astype(np.int64)
