"""Plain words for a curator, in English and Simplified Chinese (no Gradio, no plotly).

Every function returns an ``(English, Chinese)`` pair (:data:`Bilingual`); the app picks
one by the page language, exports may keep both. Nothing here formats a class name: those
come from :mod:`inkapp.tasks`.
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np

Bilingual = tuple[str, str]

#: Confidence at or above which a prediction is called "very likely".
VERY_LIKELY = 0.9
#: Threshold used when a model card declares none.
DEFAULT_THRESHOLD = 0.6
#: Aspect ratio (long side / short side) from which a map is read in thirds along its
#: long side (a scroll) instead of a 3×3 grid.
STRIP_ASPECT = 2.5
#: A region must hold at least this multiple of an even share of the heat to be named;
#: below it the reading says the model looked across the whole image.
FOCUS_FACTOR = 1.5

CONFIDENCE_WORDS: dict[str, Bilingual] = {
    "very_likely": ("very likely", "很可能"),
    "likely": ("likely", "较可能"),
    "uncertain": ("uncertain — please review", "不确定——请专家复核"),
}

_GRID: dict[tuple[int, int], Bilingual] = {
    (0, 0): ("upper left", "左上部"), (0, 1): ("top centre", "上部中间"), (0, 2): ("upper right", "右上部"),
    (1, 0): ("left middle", "左侧中部"), (1, 1): ("centre", "中央"), (1, 2): ("right middle", "右侧中部"),
    (2, 0): ("lower left", "左下部"), (2, 1): ("bottom centre", "下部中间"), (2, 2): ("lower right", "右下部"),
}
_WIDE: tuple[Bilingual, ...] = (("left third", "左段"), ("middle third", "中段"), ("right third", "右段"))
_TALL: tuple[Bilingual, ...] = (("top third", "上段"), ("middle third", "中段"), ("bottom third", "下段"))


def confidence_key(confidence: float, threshold: float | None) -> str:
    """``"uncertain"`` below the card's uncertainty ``threshold`` (:data:`DEFAULT_THRESHOLD`
    when None), ``"very_likely"`` at or above ``max(VERY_LIKELY, threshold)``, else ``"likely"``.
    ``confidence`` is the top class probability in [0, 1]."""
    limit = DEFAULT_THRESHOLD if threshold is None else float(threshold)
    if confidence < limit:
        return "uncertain"
    return "very_likely" if confidence >= max(VERY_LIKELY, limit) else "likely"


def confidence_word(confidence: float, threshold: float | None) -> Bilingual:
    """The plain word beside the percentage: very likely / likely / uncertain — please review."""
    return CONFIDENCE_WORDS[confidence_key(confidence, threshold)]


def heat_region(heat: np.ndarray) -> tuple[Bilingual | None, float]:
    """The region holding most of a heat map's mass and the share of the mass it holds.

    ``heat`` is H×W, non-negative (any scale). A map whose long side is at least
    :data:`STRIP_ASPECT` times its short side (a scroll) is cut in thirds along the long
    side, any other map in a 3×3 grid. Returns ``(None, share)`` when the heaviest region
    holds less than :data:`FOCUS_FACTOR` times an even share (the heat is spread out),
    and ``(None, 0.0)`` for an all-zero map.
    """
    h = np.clip(np.asarray(heat, dtype=np.float64), 0.0, None)
    if h.ndim != 2 or min(h.shape) < 1:
        raise ValueError(f"expected a non-empty 2-D heat map, got shape {h.shape}")
    total = float(h.sum())
    if total <= 0.0:
        return None, 0.0
    rows, cols = h.shape
    if cols >= STRIP_ASPECT * rows:
        sums = [float(part.sum()) for part in np.array_split(h, 3, axis=1)]
        names: tuple[Bilingual, ...] = _WIDE
    elif rows >= STRIP_ASPECT * cols:
        sums = [float(part.sum()) for part in np.array_split(h, 3, axis=0)]
        names = _TALL
    else:
        sums = [float(cell.sum()) for band in np.array_split(h, 3, axis=0) for cell in np.array_split(band, 3, axis=1)]
        names = tuple(_GRID[(i // 3, i % 3)] for i in range(9))
    best = int(np.argmax(sums))
    share = sums[best] / total
    return (names[best] if share >= FOCUS_FACTOR / len(sums) else None), share


def heat_reading(heat: np.ndarray) -> Bilingual:
    """One line saying where the model looked, e.g. "The model looked mostly at the upper
    left of the image (41% of the heat)." (see :func:`heat_region` for how regions are cut)."""
    region, share = heat_region(heat)
    if region is None:
        return ("The model looked across the whole image, with no single region standing out.",
                "模型的注意力分布在整幅图像上，没有特别集中的区域。")
    return (f"The model looked mostly at the {region[0]} of the image ({share:.0%} of the heat).",
            f"模型主要关注图像的{region[1]}（占热度的 {share:.0%}）。")


def percent(value: float) -> str:
    """``0.9594`` -> ``"95.9%"`` (one decimal)."""
    return f"{100.0 * float(value):.1f}%"


def metrics_line(metrics: dict[str, Any]) -> Bilingual:
    """Test accuracy as a percentage with the test size: "92.0% accuracy on 236 held-out
    works" (macro F1 added when present). Empty strings when the card has no accuracy."""
    acc = metrics.get("accuracy")
    if not isinstance(acc, (int, float)):
        return "", ""
    n = metrics.get("n")
    on_en = f" on {int(n)} held-out works" if isinstance(n, (int, float)) else " on held-out works"
    on_zh = f"在 {int(n)} 件未参与训练的作品上" if isinstance(n, (int, float)) else "在未参与训练的作品上"
    en, zh = f"{percent(acc)} accuracy{on_en}", f"{on_zh}准确率 {percent(acc)}"
    f1 = metrics.get("macro_f1")
    if isinstance(f1, (int, float)):
        en, zh = f"{en} (balanced F1 {percent(f1)})", f"{zh}（各类平均 F1 {percent(f1)}）"
    return en, zh


_STAMP = re.compile(r"(\d{4})-?(\d\d)-?(\d\d)T?")


def version_date(card: dict[str, Any]) -> str:
    """``YYYY-MM-DD`` a model was made: the card's ``created``, else a date stamp inside its
    ``version`` string (``…-20261123T181038Z``); "" when neither has one."""
    for text in (str(card.get("created") or ""), str(card.get("version") or "")):
        match = _STAMP.search(text)
        if match:
            return "-".join(match.groups())
    return ""


def version_name(card: dict[str, Any], shipped: bool = False) -> Bilingual:
    """A version as a curator names it: "2026-11-23 · 95.9% accuracy" (+ "· shipped" for
    the weights that came with the app); the date or accuracy part is left out when the
    card lacks it, and the raw version string is used when it lacks both."""
    date = version_date(card)
    acc = (card.get("metrics") or {}).get("accuracy")
    en = [date] if date else []
    zh = [date] if date else []
    if isinstance(acc, (int, float)):
        en.append(f"{percent(acc)} accuracy")
        zh.append(f"准确率 {percent(acc)}")
    if not en:
        en, zh = [str(card.get("version") or "?")], [str(card.get("version") or "?")]
    if shipped:
        en.append("shipped")
        zh.append("随应用发布")
    return " · ".join(en), " · ".join(zh)
