"""The card's ``calibration`` section of one model, end to end: fit on validation, measure
on test, draw the two figures. Used by every training run and by ``train/calibrate.py``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .calibrator import Calibrator
from .figures import RELIABILITY_PNG, RISK_COVERAGE_PNG, draw_reliability, draw_risk_coverage
from .measures import risk_coverage


def calibration_section(val_probs: np.ndarray, val_labels: np.ndarray, test_probs: np.ndarray,
                        test_labels: np.ndarray, old_threshold: float | None = None,
                        figures: str | Path | None = None, title: str = "") -> dict[str, Any]:
    """Fit a :class:`Calibrator` on raw validation probabilities N×K (labels N) and return
    its card section with the test-split figures under ``test`` (see
    :meth:`Calibrator.evaluate`; ``old_threshold`` — the previous raw-confidence flag, for
    the before/after table). With ``figures`` (a folder) also writes
    ``reliability.png`` and ``risk_coverage.png`` there (test split)."""
    calibrator = Calibrator.fit(val_probs, val_labels)
    test = calibrator.evaluate(test_probs, test_labels, old_threshold)
    if figures is not None:
        folder = Path(figures)
        draw_reliability(test["reliability"]["before"], test["reliability"]["after"], test["ece_before"],
                         test["ece_after"], folder / RELIABILITY_PNG, f"{title} — test split, n = {test['n']}")
        coverage, risk = risk_coverage(calibrator.probabilities(test_probs), np.asarray(test_labels))
        flags = {"flag": test["flag"], "old flag (raw)": test.get("old_flag")}
        points = {name: (f["coverage"], 1 - f["accuracy_not_flagged"]) for name, f in flags.items()
                  if f is not None and f["accuracy_not_flagged"] is not None}  # a flag on everything keeps no point
        draw_risk_coverage(coverage, risk, calibrator.target_accuracy, points, folder / RISK_COVERAGE_PNG,
                           f"{title} — test split, n = {test['n']}")
    return {**calibrator.to_card(), "test": test}
