"""What a curator can read off calibrated probabilities: ECE and reliability-diagram bins,
the uncertainty flag's threshold and its effect, and the risk–coverage curve.

Confidence is the top-1 probability throughout; a prediction is "right" when its arg-max
is the label.
"""
from __future__ import annotations

from typing import Any

import numpy as np

ECE_BINS = 15


def negative_log_likelihood(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean −log p(label) in nats (probabilities floored at 1e-12)."""
    return float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0)).mean())


def reliability_bins(probs: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> list[dict[str, Any]]:
    """Reliability-diagram data: ``bins`` equal-width confidence bins over [0, 1], right-closed
    ``(i/bins, (i+1)/bins]`` (the first also takes 0, as in Guo et al. 2017). Per bin: ``lower``,
    ``upper``, ``count``, mean ``confidence`` and ``accuracy`` (both None when empty)."""
    conf = probs.max(1)
    right = probs.argmax(1) == y
    index = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    out = []
    for b in range(bins):
        member = index == b
        n = int(member.sum())
        out.append({"lower": b / bins, "upper": (b + 1) / bins, "count": n,
                    "confidence": float(conf[member].mean()) if n else None,
                    "accuracy": float(right[member].mean()) if n else None})
    return out


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE = Σ_b (n_b / N) · |accuracy_b − confidence_b| over :func:`reliability_bins`."""
    total = len(y)
    return float(sum(b["count"] / total * abs(b["accuracy"] - b["confidence"])
                     for b in reliability_bins(probs, y, bins) if b["count"]))


def flag_threshold(probs: np.ndarray, y: np.ndarray, target: float) -> dict[str, Any]:
    """The lowest confidence t such that the predictions with confidence ≥ t are at least
    ``target`` accurate (point estimate on these data); below t a prediction is flagged.

    Images with equal confidence are kept on the same side. Returns ``threshold``,
    ``target``, ``target_met``, ``coverage`` (share at or above t) and ``accuracy`` (theirs).
    When no such t exists (even the most confident group is less accurate than
    ``target``) ``threshold`` is None and ``target_met`` False: every prediction is flagged.
    """
    conf = probs.max(1)
    order = np.argsort(-conf, kind="stable")
    c, right = conf[order], (probs.argmax(1) == y)[order]
    accuracy = np.cumsum(right) / np.arange(1, len(c) + 1)
    group_end = np.r_[c[1:] < c[:-1], True]  # the next image is strictly less confident
    ok = np.nonzero(group_end & (accuracy >= target))[0]
    if not len(ok):
        return {"threshold": None, "target": target, "target_met": False, "coverage": 0.0, "accuracy": None}
    k = int(ok.max())
    return {"threshold": float(c[k]), "target": target, "target_met": True, "coverage": (k + 1) / len(c),
            "accuracy": float(accuracy[k])}


def flag_effect(probs: np.ndarray, y: np.ndarray, flagged: np.ndarray) -> dict[str, Any]:
    """The issue table's row for a flag: ``n``, ``flagged`` (count), ``flagged_share``,
    ``errors`` (top-1 mistakes), ``errors_caught`` (mistakes that are flagged), ``coverage``
    (share not flagged) and ``accuracy_not_flagged`` (None when everything is flagged)."""
    wrong = probs.argmax(1) != y
    kept = ~flagged
    return {"n": int(len(y)), "flagged": int(flagged.sum()), "flagged_share": float(flagged.mean()),
            "errors": int(wrong.sum()), "errors_caught": int((wrong & flagged).sum()),
            "coverage": float(kept.mean()),
            "accuracy_not_flagged": float(1 - wrong[kept].mean()) if kept.any() else None}


def risk_coverage(probs: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Risk–coverage curve: keep the k most confident predictions, k = 1..N; returns
    coverage k/N and risk (error rate of the kept ones), both length N. Its mean risk is
    the AURC (area under the curve)."""
    order = np.argsort(-probs.max(1), kind="stable")
    wrong = (probs.argmax(1) != y)[order]
    k = np.arange(1, len(y) + 1)
    return k / len(y), np.cumsum(wrong) / k
