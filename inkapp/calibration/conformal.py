"""Split-conformal answer sets with MAPIE's LAC score (Sadinle, Lei & Wasserman, JASA 2019).

The fit uses MAPIE 1.6 (``mapie.conformity_scores.LACConformityScore``): conformity score
s = 1 − p(label) on the calibration (validation) split, q = the ⌈(n+1)·level⌉-th smallest
score (MAPIE's finite-sample-corrected quantile). A class k is in an image's set when
1 − p_k − q ≤ 1e-8, MAPIE's own inclusion rule (``LACConformityScore.get_prediction_sets``);
only q is persisted, so applying a card needs no library object. Under exchangeability
of calibration and new images the set holds the true class with probability ≥ level.

LAC can return an empty set (no class reaches 1 − q); the app gets the arg-max class then
— adding a class can only raise coverage, so the guarantee still holds. Sets are ordered
most likely first.

Library choice (measured/checked in this environment): MAPIE and crepes install without
touching torch; torchcp would pull transformers, torch-geometric and torchsort. MAPIE
exposes the fitted quantile, which a card can carry; crepes' ``ConformalClassifier`` keeps
every calibration score and computes (by default randomly smoothed) p-values.
"""
from __future__ import annotations

from decimal import Decimal

import numpy as np
from mapie.conformity_scores import LACConformityScore

from .inputs import CalibrationError

CONFORMAL_LEVEL = 0.95
_INCLUDE_TOLERANCE = 1e-8  # MAPIE's EPSILON in the LAC inclusion rule


def _alpha(level: float) -> float:
    """Miscoverage 1 − level, computed in decimal as MAPIE does (0.95 -> exactly 0.05)."""
    return float(Decimal("1") - Decimal(str(level)))


def min_calibration_size(level: float) -> int:
    """Smallest n for which the split-conformal quantile at ``level`` is finite:
    ⌈(n+1)·(1−α)⌉ ≤ n (19 at 0.95), in MAPIE's arithmetic."""
    n = 1
    while np.ceil((n + 1) * (1 - _alpha(level))) / n > 1:
        n += 1
    return n


def conformal_quantile(probs: np.ndarray, y: np.ndarray, level: float = CONFORMAL_LEVEL) -> float:
    """LAC quantile q of calibration probabilities N×K with labels N (MAPIE's formula)."""
    if not 0 < level < 1:
        raise CalibrationError(f"conformal level must be in (0, 1), got {level}")
    if len(y) < min_calibration_size(level):
        raise CalibrationError(f"conformal sets at level {level} need at least {min_calibration_size(level)} "
                               f"calibration images, got {len(y)}")
    score = LACConformityScore()
    scores = score.get_conformity_scores(y, probs, y_enc=y)
    return float(score.get_conformity_score_quantiles(scores, np.array([_alpha(level)]), cv="prefit")[0])


def answer_sets(probs: np.ndarray, quantile: float) -> list[list[int]]:
    """Class indices in each image's set, most likely first (never empty, see module doc)."""
    member = (1 - probs) - quantile <= _INCLUDE_TOLERANCE
    out = []
    for row, inside in zip(probs, member):
        order = np.argsort(-row, kind="stable")
        chosen = [int(k) for k in order if inside[k]]
        out.append(chosen or [int(order[0])])
    return out
