"""Attribute a page to a master by the votes of its characters; abstain when weak.

Rule (stated, as the issue asks): every found character is classified by the
calligrapher model on its 64×64 crop (:mod:`inkapp.pages.crops`). An image whose long
side is ≤ :data:`SINGLE_CHARACTER_SIDE` px is one character and goes to the model
whole, exactly as ``inkapp predict`` sends it (re-framing a lone character costs the
shipped model ~9 points, see :mod:`inkapp.pages.crops`). The page score of a
master is the **sum of the characters' log-probabilities** for that master, each
probability floored at :data:`CHAR_PROB_FLOOR` (0.02), and the page probabilities are
the softmax of those sums — the product rule of independent votes, where the floor
caps what one confidently wrong character can take away (log 50 ≈ 3.9 nats) and so
acts as a confidence weight. One character gives its own probabilities (up to the
floor). The page dynasty is the summed page probability of the masters of each
dynasty (``dynasty`` table of the card).

Abstain (``attribution`` is None) — checked in this order, the first that holds is
the ``reason``:

1. ``not_calligraphy`` — more than :data:`MAX_COLOURFUL` of the page is cool-coloured
   (green to violet; paper tints and seals are warm), or ≥ 3 shapes were found that
   are not a page of characters (:func:`inkapp.pages.layout.irregular`): a painting or
   a photograph, not ink calligraphy;
2. ``no_characters`` — nothing character-like was found;
3. ``too_few_characters`` — fewer than ``min_characters`` were found;
4. ``not_regular_script`` — the script model (on the whole page) gives regular
   script (``kaishu_regular``) less than ``script_threshold``; the four masters wrote
   regular script only, so the vote means nothing on clerical or seal script. This
   check only applies from ``script_min_characters`` characters up: the script model
   was trained on whole pages and is unreliable on an image of one character;
5. ``weak_evidence`` — the leading master's page probability is below
   ``evidence_threshold``.

The thresholds are read from the calligrapher card's ``page_attribution`` key, set on
validation pages by ``train/calibrate_pages.py``; a card without that key uses the
card's single-character ``uncertainty_threshold`` and the defaults below.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from inkapp.inference import Predictor
from inkapp.pages.crops import character_crop
from inkapp.pages.ink import find_ink
from inkapp.pages.layout import Box, character_boxes, irregular

CHAR_PROB_FLOOR = 0.02
MAX_CHARACTERS = 128  # characters classified per page; more are sampled evenly in reading order
SINGLE_CHARACTER_SIDE = 128  # px: an image this small (≤ 2× the 64 px training characters) is one character
MAX_COLOURFUL = 0.01  # fraction of cool-coloured pixels above which a page is not calligraphy
REGULAR = "kaishu_regular"
REASONS: dict[str, str] = {
    "attributed": "the characters' combined vote clears the evidence threshold",
    "not_calligraphy": "not ink calligraphy: the colours or the shapes of a painting or photograph",
    "no_characters": "no characters found on the page",
    "too_few_characters": "too few characters found for an attribution",
    "not_regular_script": "the page is not regular script; the four masters' model only knows regular script",
    "weak_evidence": "no confident attribution: the combined evidence is below the validated threshold",
}


@dataclass(frozen=True)
class PageSettings:
    """Abstain thresholds (see the module docstring)."""

    evidence_threshold: float
    min_characters: int = 1
    script_threshold: float = 0.5
    script_min_characters: int = 2

    @classmethod
    def from_card(cls, card: dict) -> "PageSettings":
        """The card's ``page_attribution`` settings, else the single-character
        ``uncertainty_threshold`` (0.5 if absent) and the defaults."""
        page = card.get("page_attribution")
        if page:
            return cls(float(page["evidence_threshold"]), int(page["min_characters"]),
                       float(page["script_threshold"]), int(page["script_min_characters"]))
        return cls(float(card.get("uncertainty_threshold") or 0.5))


@dataclass(frozen=True)
class PageCharacter:
    """One found character: ``box`` in original-image pixels, ``crop`` the 64×64 ``L``
    model input, ``label``/``confidence``/``probabilities`` the model's answer."""

    box: Box
    crop: Image.Image
    label: str
    confidence: float
    probabilities: dict[str, float]


@dataclass(frozen=True)
class PageAttribution:
    """A page's attribution.

    ``characters`` — classified characters in reading order; ``found`` — characters
    found (more than ``len(characters)`` when the page exceeded
    :data:`MAX_CHARACTERS`); ``layout`` — ``"columns"`` or ``"rows"``;
    ``light_on_dark`` — the page was read as a rubbing; ``probabilities`` — master ->
    page probability (empty when nothing was classified); ``dynasty`` /
    ``dynasty_probability`` — the leading dynasty of the page probabilities;
    ``attribution`` — a master's class key, or None when abstaining; ``reason`` — a key
    of :data:`REASONS` (``"attributed"`` when not abstaining); ``script`` — the script
    model's probabilities for the whole page when it was consulted.
    """

    characters: list[PageCharacter]
    found: int
    layout: str
    light_on_dark: bool
    probabilities: dict[str, float]
    dynasty: str | None
    dynasty_probability: float | None
    attribution: str | None
    reason: str
    script: dict[str, float] | None = field(default=None)

    @property
    def message(self) -> str:
        """One line for people: the reason in words."""
        return REASONS[self.reason]

    def to_json(self) -> dict:
        """The CLI's JSON shape: characters (box [x, y, w, h], label, confidence),
        probabilities, attribution, reason (+ message, dynasty, found, layout)."""
        return {
            "characters": [{"box": c.box.as_list(), "label": c.label, "confidence": round(c.confidence, 6)}
                           for c in self.characters],
            "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()},
            "attribution": self.attribution,
            "reason": self.reason,
            "message": self.message,
            "dynasty": self.dynasty,
            "dynasty_probability": None if self.dynasty_probability is None else round(self.dynasty_probability, 6),
            "found": self.found,
            "layout": self.layout,
        }


def combine_votes(probabilities: np.ndarray, floor: float = CHAR_PROB_FLOOR) -> np.ndarray:
    """N×K per-character probabilities -> K page probabilities: softmax over masters of
    Σ_i log max(p_ik, floor). N = 0 raises ValueError."""
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0:
        raise ValueError(f"need an N×K array of character probabilities with N ≥ 1, got shape {p.shape}")
    scores = np.log(np.maximum(p, floor)).sum(axis=0)
    e = np.exp(scores - scores.max())
    return e / e.sum()


def decide(page_probabilities: dict[str, float], n_characters: int, script_regular: float | None,
           not_calligraphy: bool, settings: PageSettings) -> tuple[str | None, str]:
    """(attribution or None, reason key) by the rules of the module docstring;
    ``script_regular`` is the script model's regular-script probability (None when
    not consulted); ``not_calligraphy`` — the page's colours or shapes are a
    painting's (see :func:`attribute_page`)."""
    if not_calligraphy:
        return None, "not_calligraphy"
    if n_characters == 0:
        return None, "no_characters"
    if n_characters < settings.min_characters:
        return None, "too_few_characters"
    if script_regular is not None and n_characters >= settings.script_min_characters \
            and script_regular < settings.script_threshold:
        return None, "not_regular_script"
    best = max(page_probabilities, key=page_probabilities.__getitem__)
    if page_probabilities[best] < settings.evidence_threshold:
        return None, "weak_evidence"
    return best, "attributed"


def _ink_box(ink: np.ndarray) -> Box:
    """The box around all the ink of a non-empty mask."""
    ys, xs = np.nonzero(ink)
    return Box(int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))


def _evenly(n: int, k: int) -> list[int]:
    """k indices spread evenly over range(n) (all of them when n ≤ k)."""
    return list(range(n)) if n <= k else np.linspace(0, n - 1, k).round().astype(int).tolist()


def attribute_page(image: Image.Image, calligrapher: Predictor, script: Predictor | None = None,
                   settings: PageSettings | None = None, max_characters: int = MAX_CHARACTERS) -> PageAttribution:
    """Find the characters of ``image`` (a page, a rubbing or a single character; any
    size — large pages are shrunk to ≤ 4 MP first), classify each with
    ``calligrapher``, combine the votes and decide (module docstring). ``script`` —
    the calligraphy-script predictor for the regular-script check (skipped when None);
    ``settings`` — default: from the calligrapher card; ``max_characters`` — at most
    this many characters are classified, spread evenly in reading order."""
    settings = settings or PageSettings.from_card(calligrapher.card)
    page = find_ink(image)
    if max(image.size) <= SINGLE_CHARACTER_SIDE:  # one character, classified whole as by `inkapp predict`
        layout, boxes = "columns", [_ink_box(page.ink)] if page.ink.any() else []
        chosen, crops = boxes, [image.convert("L")] * len(boxes)
    else:
        boxes, layout = character_boxes(page.ink)
        chosen = [boxes[i] for i in _evenly(len(boxes), max_characters)]
        crops = [character_crop(page, b) for b in chosen]
    predictions = calligrapher.predict(crops, batch_size=64) if crops else []
    characters = [PageCharacter(b.scaled(1 / page.scale), crop, p.label, p.confidence, p.probabilities)
                  for b, crop, p in zip(chosen, crops, predictions)]
    probabilities: dict[str, float] = {}
    dynasty = dynasty_p = None
    if characters:
        matrix = np.array([[c.probabilities[k] for k in calligrapher.classes] for c in characters])
        probabilities = {k: float(v) for k, v in zip(calligrapher.classes, combine_votes(matrix))}
        if calligrapher.dynasties:
            by_dynasty: dict[str, float] = {}
            for k, v in probabilities.items():
                name = calligrapher.dynasties.get(k, "unknown")
                by_dynasty[name] = by_dynasty.get(name, 0.0) + v
            dynasty = max(by_dynasty, key=by_dynasty.__getitem__)
            dynasty_p = by_dynasty[dynasty]
    not_calligraphy = page.colourful > MAX_COLOURFUL or irregular(boxes)
    script_probs = None
    if script is not None and not not_calligraphy and len(characters) >= settings.script_min_characters:
        script_probs = script.predict([image])[0].probabilities
    attribution, reason = decide(probabilities, len(characters), None if script_probs is None else
                                 script_probs.get(REGULAR, 0.0), not_calligraphy, settings)
    return PageAttribution(characters, len(boxes), layout, page.light_on_dark, probabilities, dynasty, dynasty_p,
                           attribution, reason, script_probs)


def evidence_characters(attribution: PageAttribution, k: int = 4) -> list[int]:
    """Indices into ``attribution.characters`` of the ≤ k characters that speak most
    for the page's leading master (highest probability for it, ties in reading
    order) — the ones to show with their heat maps
    (``calligrapher.analyse(character.crop, target=master)``). Empty when nothing
    was classified."""
    if not attribution.probabilities:
        return []
    master = max(attribution.probabilities, key=attribution.probabilities.__getitem__)
    ranked = sorted(range(len(attribution.characters)),
                    key=lambda i: (-attribution.characters[i].probabilities[master], i))
    return ranked[:k]
