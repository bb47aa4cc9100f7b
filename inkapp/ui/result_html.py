"""HTML of one task's result as a curator reads it: the label in both languages, a plain
confidence word beside the percentage, the dynasty, the heat map's one-line reading and
its colour legend; the long-scroll viewer; the researchers' notes."""
from __future__ import annotations

import base64
import html
import io
from typing import Any

from PIL import Image

from inkapp.curation.analysis import COLORMAP, TaskView
from inkapp.curation.wording import STRIP_ASPECT, confidence_key, version_name
from inkapp.explain.overlay import legend_stops
from inkapp.tasks import class_name, dynasty_name

from .i18n import lang_of, pick

#: Paper tone under the legend's gradient (the colour a cold area of a typical work keeps).
LEGEND_PAPER = "#ece4d2"
#: Height (CSS px) at which a wide scroll is shown; width (CSS px) of a tall scroll.
SCROLL_VIEW_PX = 360

_WORDS = {"dynasty": ("Dynasty", "朝代"), "legend_low": ("little attention", "关注少"),
          "legend_high": ("most attention", "关注多"), "model": ("model", "模型"),
          "heat_for": ("heat map for", "热力图对应"), "original": ("original", "原图"),
          "heat": ("heat map", "热力图"), "scroll_hint": ("scroll to pan; both rows move together",
                                                        "滚动即可平移，两行同步移动")}


def both_names(task: str, key: str, card: dict[str, Any] | None, lang: str) -> str:
    """``"山水 landscape"`` (Chinese first on a Chinese page, English first otherwise)."""
    return class_name(task, key, card).text(lang_of(lang))


def legend_html(lang: str) -> str:
    """The heat map's colour legend: a gradient bar from little to most attention, drawn
    like the overlay (:func:`inkapp.explain.overlay.legend_stops`: transparent at no heat,
    the colour map's colour at full heat) over a paper tone, with a thin border so the pale
    hottest end stays visible on a white page."""
    stops = ", ".join(f"rgba({r}, {g}, {b}, {a:.2f}) {h:.0%}" for h, (r, g, b), a in legend_stops(COLORMAP, 8))
    style = f"background: linear-gradient(to right, {stops}), {LEGEND_PAPER}; border: 1px solid #8a8a8a"
    return (f'<div class="ink-legend"><span>{pick(_WORDS["legend_low"], lang)}</span>'
            f'<span class="ink-legend-bar" style="{style}"></span>'
            f'<span>{pick(_WORDS["legend_high"], lang)}</span></div>')


def summary_html(view: TaskView, card: dict[str, Any] | None, lang: str) -> str:
    """Label (both languages), percentage + confidence word, dynasty, heat-map reading,
    legend and which model (by date and accuracy) said so."""
    key = confidence_key(view.confidence, view.threshold)
    dynasty = ""
    if view.dynasties:
        parts = " · ".join(f"{html.escape(dynasty_name(d).text(lang_of(lang)))} {p:.0%}" for d, p in view.dynasties)
        dynasty = f'<div class="ink-dynasty">{pick(_WORDS["dynasty"], lang)}: {parts}</div>'
    model = pick(version_name(card or {"version": view.model_version}), lang)
    target = both_names(view.task, view.cam_target, card, lang) if view.cam_target else ""
    return (f'<div class="ink-result"><span class="ink-label">{html.escape(both_names(view.task, view.label, card, lang))}'
            f'</span> <span class="ink-confidence">{view.confidence:.1%}</span> '
            f'<span class="ink-word ink-{key}">{html.escape(pick(view.confidence_word, lang))}</span>{dynasty}'
            f'<div class="ink-reading">{html.escape(pick(view.cam_reading, lang))}</div>{legend_html(lang)}'
            f'<div class="ink-meta">{pick(_WORDS["model"], lang)} {html.escape(model)} · '
            f'{pick(_WORDS["heat_for"], lang)} “{html.escape(target)}” ({html.escape(view.cam_method)})</div></div>')


def is_scroll(size: tuple[int, int]) -> bool:
    """A long scroll (long side ≥ :data:`inkapp.curation.wording.STRIP_ASPECT` × short side)."""
    w, h = size
    return max(w, h) >= STRIP_ASPECT * min(w, h)


def _data_uri(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=88)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def scroll_html(original: Image.Image, heat: Image.Image, lang: str) -> str:
    """A long scroll whole, at a readable size, original and heat map side by side in one
    panning frame: a handscroll as two rows :data:`SCROLL_VIEW_PX` px tall (scroll
    sideways), a hanging scroll as two columns that wide (scroll down). Empty for an
    image that is not a long scroll."""
    if not is_scroll(original.size):
        return ""
    wide = original.width >= original.height
    style = f"height:{SCROLL_VIEW_PX}px;width:auto" if wide else f"width:{SCROLL_VIEW_PX}px;height:auto"
    cells = "".join(
        f'<figure class="ink-scroll-cell"><img class="ink-scroll-{name}" src="{_data_uri(img)}" '
        f'alt="{pick(_WORDS[name], lang)}" style="{style};max-width:none;display:block" />'
        f'<figcaption>{pick(_WORDS[name], lang)}</figcaption></figure>'
        for name, img in (("original", original), ("heat", heat)))
    direction = "column" if wide else "row"
    return (f'<div class="ink-scroll-hint">{pick(_WORDS["scroll_hint"], lang)}</div>'
            f'<div class="ink-scroll-frame" style="overflow:auto;max-height:{2 * SCROLL_VIEW_PX + 80}px">'
            f'<div style="display:flex;flex-direction:{direction};gap:6px;width:max-content">{cells}</div></div>')


def researcher_notes(view: TaskView, lang: str) -> str:
    """Markdown: each declared attention output's caption, its value for gates, and one
    sentence of what it means (from the model's explanation contract)."""
    i = 1 if lang_of(lang) == "zh" else 0
    lines = [f"- **{html.escape(info.caption[i])}** — {html.escape(info.meaning[i])}" for _, info in
             view.attention_maps]
    lines += [f"- **{html.escape(info.caption[i])} = {value:.2f}** — {html.escape(info.meaning[i])}"
              for info, value in view.gates]
    lines += [f"- **{html.escape(info.caption[i])}** — {html.escape(info.meaning[i])}"
              for info, _ in view.channel_weights]
    return "\n".join(lines)
