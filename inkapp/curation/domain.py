"""Which domain an image belongs to: painting or calligraphy.

The curator's explicit choice always wins. With "auto", the painting-vs-calligraphy
model (task ``domain``, classes ``calligraphy`` / ``painting``) decides when one is
installed. Without it a documented fallback heuristic guesses from two colour
statistics of a ≤256 px copy of the image:

* colourfulness (Hasler & Süsstrunk 2003) of the RGB pixels — rubbings and ink
  calligraphy are essentially achromatic, most paintings carry some colour;
* the share of near-black or near-white pixels (luminance < 80 or > 175) — rubbings
  and written characters are two-toned, paintings have many mid-tone washes.

An image is called calligraphy when colourfulness < 12 AND at least 75 % of its
pixels are near-black or near-white, else painting. This is a rough guess (an
ink-only sketch on white paper can pass as calligraphy); the decision and its reason
are shown so the curator can override it.

The reason is written in English and Simplified Chinese (a :data:`~.wording.Bilingual`
pair); the app shows the page language's side.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from inkapp.tasks import DOMAIN_TASK, DOMAINS, class_name

from .hub import ModelHub
from .wording import Bilingual

AUTO = "auto"
COLOURFULNESS_MAX = 12.0
TWO_TONE_MIN = 0.75
_DARK, _LIGHT = 80, 175


@dataclass(frozen=True)
class DomainDecision:
    """The domain used for an image and a short human reason as an (English, Chinese) pair."""

    domain: str
    reason: Bilingual


def colour_statistics(image: Image.Image) -> tuple[float, float]:
    """(colourfulness, share of near-black/near-white pixels) of a ≤256 px copy of ``image``."""
    small = image.convert("RGB")
    small.thumbnail((256, 256))
    rgb = np.asarray(small, dtype=np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    rg, yb = r - g, 0.5 * (r + g) - b
    colourfulness = float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))
    luminance = 0.299 * r + 0.587 * g + 0.114 * b
    two_tone = float(((luminance < _DARK) | (luminance > _LIGHT)).mean())
    return colourfulness, two_tone


def heuristic_domain(image: Image.Image) -> DomainDecision:
    """The fallback guess described in the module docstring."""
    colourfulness, two_tone = colour_statistics(image)
    calligraphy = colourfulness < COLOURFULNESS_MAX and two_tone >= TWO_TONE_MIN
    return DomainDecision("calligraphy" if calligraphy else "painting",
                          (f"colour heuristic (no domain model installed): colourfulness {colourfulness:.0f}, "
                           f"{two_tone:.0%} near-black/white pixels",
                           f"颜色估计（未安装类别模型）：色彩度 {colourfulness:.0f}，"
                           f"{two_tone:.0%} 的像素接近纯黑或纯白"))


def decide_domain(hub: ModelHub, image: Image.Image, choice: str) -> DomainDecision:
    """The domain for ``image``: ``choice`` when it names one, else (``"auto"``) the
    domain model's prediction, else :func:`heuristic_domain`."""
    if choice in DOMAINS:
        return DomainDecision(choice, ("chosen by the curator", "由策展人选定"))
    if choice != AUTO:
        raise ValueError(f"unknown domain {choice!r}; choose auto, {' or '.join(DOMAINS)}")
    model = hub.domain_predictor
    if model is not None:
        prediction = model.predict([image])[0]
        if prediction.label in DOMAINS:
            name = class_name(DOMAIN_TASK, prediction.label).zh
            return DomainDecision(prediction.label, (f"domain model: {prediction.label} {prediction.confidence:.0%}",
                                                     f"类别模型：{name} {prediction.confidence:.0%}"))
    return heuristic_domain(image)
