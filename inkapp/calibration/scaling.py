"""Post-hoc scaling of a classifier's log-probabilities, fitted by minimum negative
log-likelihood on a validation split (Guo et al., "On Calibration of Modern Neural
Networks", ICML 2017):

* ``temperature`` — one scalar T: ``softmax(z / T)``;
* ``vector`` — per-class scale a and bias b: ``softmax(a ⊙ z + b)`` (the paper's vector scaling;
  matrix scaling, K² + K parameters, is left out: the smallest validation split has 57 images).

``z`` is the log of the model's probabilities (after any flip-TTA averaging), floored at
:data:`PROB_FLOOR`; without TTA that equals the logits up to a per-image constant, which
softmax ignores, so temperature scaling on ``z`` IS temperature scaling on the logits.
Parameter bounds (T in [0.05, 20]; a in [0.01, 100]; b in [−50, 50]) keep a fit on a
separable fold finite. The method is chosen per model by pooled out-of-fold NLL of a
:data:`CV_FOLDS`-fold (stratified where every class has that many images) cross-validation
on the validation split; ties go to temperature (fewer parameters).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.model_selection import KFold, StratifiedKFold

from .inputs import CalibrationError

PROB_FLOOR = 1e-12
CV_FOLDS = 5
METHODS = ("temperature", "vector")
_T_BOUNDS = (0.05, 20.0)
_SCALE_BOUNDS = (0.01, 100.0)
_BIAS_BOUNDS = (-50.0, 50.0)


def as_logits(probs: np.ndarray) -> np.ndarray:
    """N×K probabilities -> N×K log-probabilities (floored at ``log(PROB_FLOOR)``)."""
    return np.log(np.clip(probs, PROB_FLOOR, 1.0))


def _nll(logits: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood (nats) of labels ``y`` under ``softmax(logits)``."""
    return float(-log_softmax(logits, axis=1)[np.arange(len(y)), y].mean())


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """NLL-optimal temperature T (bounded 1-D search over log T) -> ``{"temperature": T}``."""
    res = minimize_scalar(lambda log_t: _nll(logits / np.exp(log_t), y), bounds=np.log(_T_BOUNDS),
                          method="bounded", options={"xatol": 1e-6})
    return {"temperature": float(np.exp(res.x))}


def fit_vector(logits: np.ndarray, y: np.ndarray) -> dict[str, list[float]]:
    """NLL-optimal per-class scale and bias (L-BFGS-B with the analytic gradient) ->
    ``{"scale": [K], "bias": [K]}``."""
    n, k = logits.shape
    onehot = np.eye(k)[y]

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        a, b = theta[:k], theta[k:]
        z = logits * a + b
        resid = (softmax(z, axis=1) - onehot) / n  # d mean-NLL / dz
        return _nll(z, y), np.concatenate([(resid * logits).sum(0), resid.sum(0)])

    res = minimize(loss, np.concatenate([np.ones(k), np.zeros(k)]), jac=True, method="L-BFGS-B",
                   bounds=[_SCALE_BOUNDS] * k + [_BIAS_BOUNDS] * k)
    return {"scale": [float(v) for v in res.x[:k]], "bias": [float(v) for v in res.x[k:]]}


_FITTERS = {"temperature": fit_temperature, "vector": fit_vector}


def apply_scaling(logits: np.ndarray, method: str, parameters: dict[str, Any]) -> np.ndarray:
    """N×K log-probabilities -> N×K calibrated probabilities under a fitted ``method``."""
    if method == "temperature":
        z = logits / float(parameters["temperature"])
    elif method == "vector":
        z = logits * np.asarray(parameters["scale"], dtype=np.float64) + np.asarray(parameters["bias"], dtype=np.float64)
    else:
        raise CalibrationError(f"unknown calibration method '{method}' ({' | '.join(METHODS)})")
    return softmax(z, axis=1)


def fit_scaling(logits: np.ndarray, y: np.ndarray, method: str) -> dict[str, Any]:
    """Parameters of ``method`` fitted on (``logits``, ``y``)."""
    if method not in _FITTERS:
        raise CalibrationError(f"unknown calibration method '{method}' ({' | '.join(METHODS)})")
    return _FITTERS[method](logits, y)


def cross_validated_nll(logits: np.ndarray, y: np.ndarray, folds: int = CV_FOLDS, seed: int = 0) -> dict[str, float]:
    """Pooled out-of-fold mean NLL (nats) of each method in :data:`METHODS` (same folds for all)."""
    counts = np.bincount(y, minlength=logits.shape[1])
    n_splits = min(folds, len(y))
    if n_splits < 2:
        raise CalibrationError(f"cross-validating the calibration needs at least 2 validation images, got {len(y)}")
    stratify = counts[counts > 0].min() >= n_splits
    splitter = (StratifiedKFold if stratify else KFold)(n_splits=n_splits, shuffle=True, random_state=seed)
    out = {}
    for method in METHODS:
        held_out = np.empty_like(logits)
        for train, test in splitter.split(logits, y):
            held_out[test] = np.log(np.clip(apply_scaling(logits[test], method, fit_scaling(logits[train], y[train], method)),
                                            PROB_FLOOR, 1.0))
        out[method] = _nll(held_out, y)
    return out


def select_method(cv_nll: dict[str, float]) -> str:
    """The method with the lowest cross-validated NLL (ties -> the first of :data:`METHODS`)."""
    return min(METHODS, key=lambda m: (cv_nll[m], METHODS.index(m)))
