"""Calibrated probabilities, an uncertainty flag with a stated meaning, and split-conformal
answer sets (issue 17). :class:`Calibrator` is the one entry point for scoring code; the
modules hold the parts: ``scaling`` (temperature / vector scaling), ``measures`` (ECE,
reliability bins, flag threshold, risk–coverage), ``conformal`` (MAPIE LAC sets),
``figures`` (reliability and risk–coverage PNGs)."""
from .calibrator import TARGET_ACCURACY, Calibrator
from .conformal import CONFORMAL_LEVEL
from .inputs import CalibrationError
from .measures import ECE_BINS

__all__ = ["Calibrator", "CalibrationError", "TARGET_ACCURACY", "CONFORMAL_LEVEL", "ECE_BINS"]
