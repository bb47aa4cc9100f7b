"""One model's calibration: fitted on its validation split, carried in its card under
``calibration``, applied wherever the model's probabilities are shown.

Card section (``to_card``; the fitting script adds the test-split figures under ``test``)::

    "calibration": {
      "input": <what the scaling is applied to>,
      "method": "temperature" | "vector", "parameters": {...},
      "selection": {"cv_folds": 5, "cv_nll": {"temperature": ..., "vector": ...}},
      "flag": {"target_accuracy": 0.97, "threshold": t | null, "target_met": bool,
               "validation_coverage": ..., "validation_accuracy": ...},
      "conformal": {"score": "lac", "library": "MAPIE 1.6.0", "level": 0.95, "quantile": q},
      "ece_binning": <the binning>,
      "fitted_on": {"split": "val", "n": n}
    }

The conformal quantile is computed on the same validation images the scaling was fitted
on (1 or 2K fitted parameters against n ≥ 57 images); the test split checks the coverage.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .conformal import CONFORMAL_LEVEL, answer_sets, conformal_quantile
from .inputs import CalibrationError, check_probabilities
from .measures import (ECE_BINS, expected_calibration_error, flag_effect, flag_threshold, negative_log_likelihood,
                       reliability_bins, risk_coverage)
from .scaling import CV_FOLDS, METHODS, apply_scaling, as_logits, cross_validated_nll, fit_scaling, select_method

#: Accuracy the predictions that are NOT flagged should have (one constant for every task).
TARGET_ACCURACY = 0.97
INPUT_NOTE = ("log of the model's class probabilities (averaged over the flipped canvas when "
              "preprocessing.tta_hflip is true), used as logits")
ECE_BINNING = f"{ECE_BINS} equal-width bins of top-1 confidence over [0, 1], right-closed (first bin includes 0)"


@dataclass(frozen=True)
class Calibrator:
    """Calibrated probabilities, the uncertainty flag and conformal answer sets of one model.

    ``threshold`` — calibrated top-1 confidence below which a prediction is flagged (None:
    the target accuracy was not reached on validation, so everything is flagged);
    ``quantile`` — the LAC conformal quantile at ``level``; ``num_classes`` — K.
    """

    method: str
    parameters: dict[str, Any]
    threshold: float | None
    target_accuracy: float
    quantile: float
    level: float
    num_classes: int
    fit_info: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def fit(cls, val_probs: np.ndarray, val_labels: np.ndarray, target_accuracy: float = TARGET_ACCURACY,
            level: float = CONFORMAL_LEVEL) -> "Calibrator":
        """Fit scaling (method chosen by cross-validated NLL), flag threshold and conformal
        quantile on raw validation probabilities N×K and labels N (class indices).

        Raises :class:`CalibrationError` for an empty split, fewer than 2 classes, labels of
        a single class, or too few images for the conformal level.
        """
        p, y = check_probabilities(val_probs, val_labels)
        if len(y) == 0:
            raise CalibrationError("the validation split is empty; calibration is fitted on validation images")
        if len(np.unique(y)) < 2:
            raise CalibrationError(f"validation labels cover one class only (class {y[0]}); calibration needs two or more")
        logits = as_logits(p)
        cv_nll = cross_validated_nll(logits, y, CV_FOLDS)
        method = select_method(cv_nll)
        parameters = fit_scaling(logits, y, method)
        calibrated = apply_scaling(logits, method, parameters)
        flag = flag_threshold(calibrated, y, target_accuracy)
        quantile = conformal_quantile(calibrated, y, level)
        info = {"selection": {"cv_folds": CV_FOLDS, "cv_nll": cv_nll},
                "validation": {"n": int(len(y)), "flag_coverage": flag["coverage"], "flag_accuracy": flag["accuracy"],
                               "target_met": flag["target_met"]}}
        return cls(method, parameters, flag["threshold"], target_accuracy, quantile, level, p.shape[1], info)

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> "Calibrator | None":
        """The calibration of a card, or None when the card has no ``calibration`` section.
        Raises :class:`CalibrationError` when the section is malformed."""
        section = card.get("calibration")
        if section is None:
            return None
        try:
            flag, conformal = section["flag"], section["conformal"]
            threshold = flag["threshold"]
            out = cls(method=str(section["method"]), parameters=dict(section["parameters"]),
                      threshold=None if threshold is None else float(threshold),
                      target_accuracy=float(flag["target_accuracy"]), quantile=float(conformal["quantile"]),
                      level=float(conformal["level"]), num_classes=len(card["classes"]),
                      fit_info={"selection": section.get("selection", {}),
                                "validation": {"n": section.get("fitted_on", {}).get("n"),
                                               "flag_coverage": flag.get("validation_coverage"),
                                               "flag_accuracy": flag.get("validation_accuracy"),
                                               "target_met": flag.get("target_met")}})
        except (KeyError, TypeError, ValueError) as err:
            raise CalibrationError(f"card 'calibration' section is malformed: {err!r}") from err
        out._check_parameters()
        return out

    def _check_parameters(self) -> None:
        """Raise :class:`CalibrationError` unless the method's parameters fit K classes."""
        if self.method == "temperature":
            if not float(self.parameters.get("temperature", 0)) > 0:
                raise CalibrationError("temperature scaling needs a positive 'temperature'")
        elif self.method == "vector":
            if not len(self.parameters.get("scale", [])) == len(self.parameters.get("bias", [])) == self.num_classes:
                raise CalibrationError(f"vector scaling needs {self.num_classes} scales and {self.num_classes} biases")
        else:
            raise CalibrationError(f"unknown calibration method '{self.method}' ({' | '.join(METHODS)})")

    def to_card(self) -> dict[str, Any]:
        """The card's ``calibration`` section (JSON-ready; see the module docstring)."""
        val = self.fit_info.get("validation", {})
        return {
            "input": INPUT_NOTE,
            "method": self.method,
            "parameters": self.parameters,
            "selection": self.fit_info.get("selection", {}),
            "flag": {"target_accuracy": self.target_accuracy, "threshold": self.threshold,
                     "target_met": self.threshold is not None, "validation_coverage": val.get("flag_coverage"),
                     "validation_accuracy": val.get("flag_accuracy"),
                     "rule": "flagged when the calibrated top-1 probability is below threshold (all flagged when null)"},
            "conformal": {"score": "lac", "library": "MAPIE 1.6.0", "level": self.level, "quantile": self.quantile,
                          "rule": "class k in the set when 1 - p_k <= quantile; an empty set becomes the top class"},
            "ece_binning": ECE_BINNING,
            "fitted_on": {"split": "val", "n": val.get("n")},
        }

    def probabilities(self, raw_probs: np.ndarray) -> np.ndarray:
        """Raw model probabilities N×K -> calibrated probabilities N×K (float64, rows sum to 1)."""
        p, _ = check_probabilities(raw_probs, num_classes=self.num_classes)
        return apply_scaling(as_logits(p), self.method, self.parameters)

    def uncertain(self, calibrated: np.ndarray) -> np.ndarray:
        """Boolean N: the calibrated top-1 probability is below the flag threshold."""
        p, _ = check_probabilities(calibrated, num_classes=self.num_classes)
        if self.threshold is None:
            return np.ones(len(p), dtype=bool)
        return p.max(1) < self.threshold

    def answer_sets(self, calibrated: np.ndarray) -> list[list[int]]:
        """Per image, the class indices of its conformal set at ``level``, most likely first."""
        p, _ = check_probabilities(calibrated, num_classes=self.num_classes)
        return answer_sets(p, self.quantile)

    def evaluate(self, raw_probs: np.ndarray, labels: np.ndarray,
                 old_threshold: float | None = None) -> dict[str, Any]:
        """Figures on held-out images (raw probabilities N×K, labels N): ECE and NLL before /
        after, the flag's effect (and the old raw-confidence flag's when ``old_threshold`` is
        given), set coverage and size, reliability bins before / after, AURC after."""
        raw, y = check_probabilities(raw_probs, labels, self.num_classes)
        if len(y) == 0:
            raise CalibrationError("nothing to evaluate: no images")
        cal = self.probabilities(raw)
        sets = self.answer_sets(cal)
        sizes = np.array([len(s) for s in sets])
        out: dict[str, Any] = {
            "n": int(len(y)), "accuracy": float((cal.argmax(1) == y).mean()),
            "ece_before": expected_calibration_error(raw, y), "ece_after": expected_calibration_error(cal, y),
            "nll_before": negative_log_likelihood(raw, y), "nll_after": negative_log_likelihood(cal, y),
            "flag": {"threshold": self.threshold, "target_accuracy": self.target_accuracy,
                     **flag_effect(cal, y, self.uncertain(cal))},
            "sets": {"level": self.level, "coverage": float(np.mean([t in s for t, s in zip(y, sets)])),
                     "mean_size": float(sizes.mean()),
                     "size_counts": {str(k): int((sizes == k).sum()) for k in range(1, self.num_classes + 1)}},
            "aurc": float(risk_coverage(cal, y)[1].mean()),
            "reliability": {"before": reliability_bins(raw, y), "after": reliability_bins(cal, y)},
        }
        if old_threshold is not None:
            out["old_flag"] = {"threshold": float(old_threshold), "on": "raw probabilities",
                               **flag_effect(raw, y, raw.max(1) < old_threshold)}
        return out
