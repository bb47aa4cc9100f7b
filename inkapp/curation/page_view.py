"""Page attribution in the Analyse tab: a calligraphy image of several characters is
attributed by the votes of its characters (:func:`inkapp.pages.attribute.attribute_page`),
and the curator sees the page with numbered boxes coloured by each character's leading
master, the characters that speak most for the page's master with their heat maps, the
vote and — when it abstains — why, in English and Chinese.

An image in which the page finder finds fewer than :data:`MIN_PAGE_CHARACTERS`
characters (a single character, or an image of ≤ 128 px, which
:func:`~inkapp.pages.attribute.attribute_page` always treats as one character) is *not*
a page: :func:`page_view` returns None and the calligrapher result is shown as for one
character.
"""
from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from inkapp.explain.overlay import overlay
from inkapp.inference import Predictor
from inkapp.pages.attribute import REASONS, PageAttribution, PageSettings, attribute_page, evidence_characters
from inkapp.pages.draw import draw_boxes
from inkapp.tasks import class_name, dynasty_name

from .analysis import COLORMAP, DISPLAY_MAX_SIDE, DEFAULT_CAM

MIN_PAGE_CHARACTERS = 2  # characters found from which an image is a page
EVIDENCE_K = 4  # evidence characters shown
EVIDENCE_SIDE = 192  # px, side at which an evidence character and its heat map are shown (64 px × 3)
#: Chinese wording of every abstain / attribute reason of :data:`inkapp.pages.attribute.REASONS`.
REASONS_ZH: dict[str, str] = {
    "attributed": "各字的合并投票超过了验证集确定的证据阈值",
    "not_calligraphy": "不是水墨书法：颜色或形状属于绘画或照片",
    "no_characters": "页面上没有找到字",
    "too_few_characters": "找到的字太少，无法归属书家",
    "not_regular_script": "此页不是楷书；四位书家的模型只认识楷书",
    "weak_evidence": "无可靠归属：合并证据低于验证集确定的阈值",
}


@dataclass(frozen=True)
class EvidenceCharacter:
    """One evidence character: its number on the page (1-based, reading order), the
    crop enlarged to :data:`EVIDENCE_SIDE` (nearest neighbour) and its heat map for the
    page's leading master over it, and its probability for that master."""

    number: int
    crop: Image.Image
    heat: Image.Image
    probability: float


@dataclass(frozen=True)
class PageView:
    """What the page section shows: ``attribution`` (the full result), ``boxes`` (RGB
    page, ≤ :data:`DISPLAY_MAX_SIDE` px, numbered boxes), ``evidence``, the
    ``threshold`` the leading master's page probability had to clear."""

    attribution: PageAttribution
    boxes: Image.Image
    evidence: list[EvidenceCharacter]
    threshold: float

    @property
    def abstained(self) -> bool:
        return self.attribution.attribution is None

    def reason(self, lang: str) -> str:
        """The decision's reason in ``lang`` (``en``/``zh``)."""
        return REASONS_ZH[self.attribution.reason] if lang == "zh" else REASONS[self.attribution.reason]

    def verdict(self, lang: str) -> str:
        """One line: the attributed master (both languages) with its page probability and
        dynasty, or "no confident attribution" with the reason; plus how many characters
        voted."""
        a = self.attribution
        zh = lang == "zh"
        count = (f"{len(a.characters)} 字参与投票（共找到 {a.found} 字）" if zh
                 else f"{len(a.characters)} characters voted ({a.found} found)")
        if a.attribution is None:
            head = "无可靠归属" if zh else "No confident attribution"
            return f"{head} — {self.reason(lang)} · {count}"
        name = class_name("calligrapher", a.attribution).text(lang)
        dynasty = ""
        if a.dynasty is not None and a.dynasty_probability is not None:
            dynasty = f" · {'朝代' if zh else 'dynasty'} {dynasty_name(a.dynasty).text(lang)} {a.dynasty_probability:.0%}"
        return f"{name} {a.probabilities[a.attribution]:.1%}{dynasty} · {count}"

    def caption(self, e: EvidenceCharacter, lang: str) -> str:
        """Caption of an evidence character: its number and its vote for the leading master."""
        master = max(self.attribution.probabilities, key=self.attribution.probabilities.__getitem__)
        name = class_name("calligrapher", master).text(lang)
        return f"#{e.number} · {name} {e.probability:.0%}" if lang != "zh" else f"第 {e.number} 字 · {name} {e.probability:.0%}"


def page_view(image: Image.Image, calligrapher: Predictor, script: Predictor | None, opacity: float = 0.5,
              cam_method: str = DEFAULT_CAM, k: int = EVIDENCE_K) -> PageView | None:
    """Attribute ``image`` as a page (see the module docstring); None when it is not one.
    ``script`` — the calligraphy-script model for the regular-script check (None skips
    it); ``opacity`` — of the evidence heat maps; ``k`` — evidence characters shown
    (each costs one forward + backward pass of the calligrapher model on 64×64)."""
    result = attribute_page(image, calligrapher, script)
    if len(result.characters) < MIN_PAGE_CHARACTERS:
        return None
    evidence = []
    if result.probabilities:
        master = max(result.probabilities, key=result.probabilities.__getitem__)
        for i in evidence_characters(result, k):
            c = result.characters[i]
            crop = c.crop.convert("RGB").resize((EVIDENCE_SIDE, EVIDENCE_SIDE), Image.Resampling.NEAREST)
            cam = calligrapher.analyse(c.crop, cam_method, master, map_size=crop.size).cam
            evidence.append(EvidenceCharacter(i + 1, crop, overlay(crop, cam, opacity, COLORMAP),
                                              c.probabilities[master]))
    settings = PageSettings.from_card(calligrapher.card)
    return PageView(result, draw_boxes(image, result, DISPLAY_MAX_SIDE), evidence, settings.evidence_threshold)
