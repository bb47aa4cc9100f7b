"""A work's record as one self-contained HTML page (and PDF through WeasyPrint).

Self-contained: every picture (the work, each heat map overlay, the colour legend,
similar works' thumbnails) is embedded as a ``data:`` URI, the style sheet is inline, and
nothing is fetched when the page is opened or printed. Every text that came from outside
(file names, notes, expert names, labels) is HTML-escaped. Layout is for one A4 page in
print (two columns on screen); a very long corrections history may flow onto a second.

PDF: :func:`write_record` renders the same HTML with WeasyPrint. Chinese names need a
CJK font on the machine (``fonts-wqy-microhei`` on Debian, installed by
``scripts/setup.sh --test``); without one WeasyPrint still writes the PDF, with the
Chinese characters missing.
"""
from __future__ import annotations

import base64
import io
from html import escape
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

from inkapp.curation.analysis import COLORMAP
from inkapp.explain.overlay import colorize, overlay
from inkapp.store.files import atomic_write_bytes
from inkapp.tasks import class_name, get

from .content import SimilarWork, TaskResult, WorkRecord

HEAT_OPACITY = 0.5
THUMB_SIDE = 96  # px, similar works' thumbnails
_FONTS = '"WenQuanYi Micro Hei", "Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "DejaVu Sans", sans-serif'
_CSS = f"""
@page {{ size: A4; margin: 12mm; }}
body {{ font-family: {_FONTS}; font-size: 9.5pt; color: #222; margin: 0; }}
h1 {{ font-size: 15pt; margin: 0 0 2pt 0; }} h2 {{ font-size: 11pt; margin: 8pt 0 3pt 0; border-bottom: 1px solid #999; }}
.meta {{ color: #555; font-size: 8pt; word-break: break-all; }}
.cols {{ display: flex; gap: 10pt; }} .cols > div {{ flex: 1; min-width: 0; }}
img.work {{ max-width: 100%; max-height: 95mm; display: block; }}
.heat {{ display: inline-block; max-width: 32%; vertical-align: top; margin-right: 1%; }}
.heat img {{ max-width: 100%; max-height: 70mm; display: block; }}
.legend {{ width: 60%; }} .legend img {{ width: 100%; height: 8pt; display: block; }}
.legend span {{ font-size: 7pt; color: #555; }}
.legend .r {{ float: right; }}
table {{ border-collapse: collapse; width: 100%; font-size: 8pt; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 1.5pt 3pt; text-align: left; vertical-align: top; }}
.bar {{ background: #3b6ea5; height: 6pt; }} .num {{ text-align: right; white-space: nowrap; }}
.uncertain {{ color: #a33; }} .revoked {{ color: #888; text-decoration: line-through; }}
.similar {{ display: inline-block; width: {THUMB_SIDE + 10}px; margin: 0 4pt 4pt 0; font-size: 7pt; vertical-align: top; }}
"""


def data_uri(image: Image.Image, fmt: str = "JPEG") -> str:
    """``data:`` URI of ``image`` encoded as JPEG (quality 88) or PNG."""
    buf = io.BytesIO()
    if fmt == "JPEG":
        image.convert("RGB").save(buf, "JPEG", quality=88)
    else:
        image.save(buf, fmt)
    mime = "image/jpeg" if fmt == "JPEG" else f"image/{fmt.lower()}"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def legend_image(width: int = 256, height: int = 10) -> Image.Image:
    """The heat maps' colour scale (:data:`COLORMAP`) from 0 (left) to 1 (right)."""
    ramp = np.tile(np.linspace(0.0, 1.0, width, dtype=np.float32), (height, 1))
    return Image.fromarray(colorize(ramp, COLORMAP))


def _name(task: str, key: str) -> str:
    n = class_name(task, key)
    return f"{escape(n.en)} {escape(n.zh)}"


def _task_title(task: str) -> str:
    try:
        t = get(task).title
        return f"{escape(t.en)} {escape(t.zh)}"
    except ValueError:
        return escape(task)


def _result_rows(r: TaskResult) -> str:
    rows = []
    for key, p in sorted(r.probabilities.items(), key=lambda kv: -kv[1]):
        rows.append(f'<tr><td>{_name(r.task, key)} <span class="meta">{escape(key)}</span></td>'
                    f'<td style="width:35%"><div class="bar" style="width:{100 * p:.1f}%"></div></td>'
                    f'<td class="num">{p:.3f}</td></tr>')
    flag = ' <span class="uncertain">(uncertain)</span>' if r.uncertain else ""
    return (f"<h2>{_task_title(r.task)}</h2><p><b>{_name(r.task, r.label)}</b> "
            f"<span class='meta'>{escape(r.label)}</span> — {r.confidence:.3f}{flag}</p>"
            f"<table>{''.join(rows)}</table>")


def _heat_block(record: WorkRecord, r: TaskResult) -> str:
    picture = overlay(record.image, r.heat, HEAT_OPACITY, COLORMAP)
    return (f'<div class="heat"><img src="{data_uri(picture)}" alt="heat map {escape(r.task)}">'
            f'<div class="meta">{escape(r.cam_method)} for {_name(r.task, r.cam_target)}</div></div>')


def _corrections(record: WorkRecord) -> str:
    if not record.corrections:
        return "<p class='meta'>No expert has corrected this image.</p>"
    revoked = record.revoked_ids
    rows = []
    for c in record.corrections:
        if c.get("corrected_label"):
            cls = ' class="revoked"' if c["id"] in revoked else ""
            change = f"{_name(c['task'], c['predicted_label'])} → <b>{_name(c['task'], c['corrected_label'])}</b>"
        else:
            cls, change = "", f"revokes correction {escape(c['note'][len('revoke:'):][:8])}…"
        rows.append(f"<tr{cls}><td>{escape(c['timestamp'])}</td><td>{escape(c['task'])}</td><td>{change}</td>"
                    f"<td>{escape(c.get('expert', ''))}</td><td>{escape(c.get('note', ''))}</td>"
                    f"<td class='meta'>{escape(c.get('model_version', ''))}</td></tr>")
    return ("<table><tr><th>time (UTC)</th><th>task</th><th>change</th><th>expert</th><th>note</th>"
            f"<th>model</th></tr>{''.join(rows)}</table>")


def _similar(record: WorkRecord) -> str:
    if record.similar is None:
        return "<p class='meta'>No collection index was available for this record.</p>"
    parts = []
    for task, works in record.similar.items():
        parts.append(f"<p><b>{_task_title(task)}</b></p>")
        if not works:
            parts.append("<p class='meta'>No similar works indexed yet.</p>")
        for w in works:
            parts.append(_similar_work(task, w))
    return "".join(parts)


def _similar_work(task: str, w: SimilarWork) -> str:
    thumb = ""
    if w.thumbnail is not None:
        t = w.thumbnail.convert("RGB")
        t.thumbnail((THUMB_SIDE, THUMB_SIDE))
        thumb = f'<img src="{data_uri(t)}" alt="">'
    return (f'<div class="similar">{thumb}<div>{escape(w.name)}</div><div>{_name(task, w.label)} '
            f'({escape(w.label_source)})</div><div>similarity {w.similarity:.3f}</div></div>')


def _models(record: WorkRecord) -> str:
    rows = []
    for r in record.results:
        m = r.metrics
        figures = ", ".join(f"{k} {m[k]:.3f}" if k != "n" else f"n = {int(m[k])}" for k in ("accuracy", "macro_f1", "n")
                            if k in m)
        rows.append(f"<tr><td>{_task_title(r.task)}</td><td>{escape(r.model_version)}</td>"
                    f"<td>{escape(figures) or '—'}</td></tr>")
    return ("<table><tr><th>task</th><th>model version</th><th>held-out test figures (model card)</th></tr>"
            f"{''.join(rows)}</table>")


def render_record(record: WorkRecord) -> str:
    """The record as one self-contained HTML document (UTF-8 text)."""
    w, h = record.size
    heat = "".join(_heat_block(record, r) for r in record.results)
    legend = (f'<div class="legend"><img src="{data_uri(legend_image(), "PNG")}" alt="colour scale">'
              '<span>0 — no evidence</span><span class="r">1 — strongest evidence (map maximum)</span></div>')
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Record: {escape(record.name)}</title>
<style>{_CSS}</style></head><body>
<h1>{escape(record.name)}</h1>
<div class="meta">{w}×{h} px · SHA-256 {escape(record.sha256)} · record made {escape(record.created)} by inkapp</div>
<div class="cols"><div><img class="work" src="{data_uri(record.image)}" alt="{escape(record.name)}"></div>
<div>{''.join(_result_rows(r) for r in record.results)}</div></div>
<h2>Where the models looked · 热力图</h2>{heat}{legend}
<h2>Corrections history · 专家更正</h2>{_corrections(record)}
<h2>Similar works · 相似作品</h2>{_similar(record)}
<h2>Model versions · 模型版本</h2>{_models(record)}
</body></html>
"""


def html_to_pdf(html: str) -> bytes:
    """PDF bytes of an HTML document through WeasyPrint (a ValueError if it is missing)."""
    truncated = ImageFile.LOAD_TRUNCATED_IMAGES
    try:
        try:
            from weasyprint import HTML
        except (ImportError, OSError) as e:  # OSError: pango or its libraries missing
            raise ValueError(f"PDF output needs WeasyPrint and Pango ({e}); write .html instead") from None
        return HTML(string=html).write_pdf()
    finally:
        # WeasyPrint's image module turns Pillow's process-wide LOAD_TRUNCATED_IMAGES on
        # when it is imported; the app's decoder must keep refusing truncated uploads
        ImageFile.LOAD_TRUNCATED_IMAGES = truncated


def write_record(record: WorkRecord, out: str | Path) -> Path:
    """Write ``record`` to ``out``: PDF when it ends in ``.pdf``, else HTML, atomically
    (:func:`inkapp.store.files.atomic_write_bytes`)."""
    dest = Path(out)
    html = render_record(record)
    payload = html_to_pdf(html) if dest.suffix.lower() == ".pdf" else html.encode("utf-8")
    atomic_write_bytes(dest, payload)  # mode 0644: a record is meant to be shared
    return dest
