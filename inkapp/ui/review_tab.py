"""The Review tab: the corrections table with filters and CSV download, and the queue
of analysed images no expert has reviewed yet (least confident first)."""
from __future__ import annotations

import base64
import csv
import html
import io
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import gradio as gr
import pandas as pd
from PIL import Image

from inkapp.data.images import ImageError, load_image
from inkapp.curation.wording import confidence_word
from inkapp.tasks import class_name, get as get_task

from inkapp.tasks import TASKS
from inkapp.store.corrections import FIELDS, escape_cell

from inkapp.curation.actions import CurationActions
from typing import Any

from .analyse_tab import AnalyseTab
from .i18n import I18N, Relabel
from inkapp.curation.review import QUEUE_FIELDS, pending_review

ALL = "all"
EXPORT_MAX_AGE_S = 3600  # filtered CSV exports older than this are deleted (gradio serves its own copy)
THUMB_SIDE = 160  # px, longest side of a queue / corrections thumbnail (letterboxed, never cropped)
#: Display-name columns added to the CSV export after the stable :data:`FIELDS`.
EXPORT_NAME_FIELDS = ("predicted_en", "predicted_zh", "corrected_en", "corrected_zh")


def filter_corrections(rows: list[dict[str, str]], task: str, expert: str, label: str) -> list[dict[str, str]]:
    """Rows of ``task`` (or all), whose expert contains ``expert`` and whose corrected or
    predicted label contains ``label`` (case-insensitive; empty filters match everything)."""
    who, lab = expert.strip().lower(), label.strip().lower()
    return [r for r in rows
            if (task in ("", ALL) or r["task"] == task)
            and (not who or who in r["expert"].lower())
            and (not lab or lab in r["corrected_label"].lower() or lab in r["predicted_label"].lower())]


def display_names(row: dict[str, str]) -> list[str]:
    """English and Chinese names of a row's predicted and corrected label (empty for a
    revocation row), in :data:`EXPORT_NAME_FIELDS` order."""
    out = []
    for key in ("predicted_label", "corrected_label"):
        name = class_name(row["task"], row[key]) if row.get(key) else None
        out += [name.en, name.zh] if name else ["", ""]
    return out


def write_csv(rows: list[dict[str, str]], path: Path) -> Path:
    """Write ``rows`` with the corrections columns (stable class keys; formula cells
    escaped) and then the labels' display names (:data:`EXPORT_NAME_FIELDS`) to ``path``."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow([*FIELDS, *EXPORT_NAME_FIELDS])
        writer.writerows([escape_cell(v) for v in [*(r.get(f, "") for f in FIELDS), *display_names(r)]] for r in rows)
    return path


def thumbnail(path: Path) -> Image.Image:
    """A letterboxed RGB thumbnail (longest side :data:`THUMB_SIDE`) of a stored image; a
    grey tile when it cannot be read."""
    try:
        image = load_image(path).convert("RGB")
    except (ImageError, OSError):
        return Image.new("RGB", (THUMB_SIDE, THUMB_SIDE), (200, 200, 200))
    image.thumbnail((THUMB_SIDE, THUMB_SIDE))
    return image


def _thumb_uri(path: Path) -> str:
    buf = io.BytesIO()
    thumbnail(path).save(buf, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def corrections_html(rows: list[dict[str, str]], data_dir: Path, lang: str) -> str:
    """The corrections as a curator reads them, newest first: thumbnail, task, before →
    after (both languages), expert, time, note; undo rows say what they undid."""
    heads = (("Image", "Task", "Before → after", "Expert", "Time (UTC)", "Note") if lang != "zh"
             else ("图像", "任务", "原标签 → 更正", "专家", "时间（UTC）", "备注"))
    body = []
    for r in reversed(rows):
        task = get_task(r["task"]).title.text(lang) if r["task"] in TASKS else r["task"]
        if r["corrected_label"]:
            before = class_name(r["task"], r["predicted_label"]).text(lang)
            change = f"{html.escape(before)} → <b>{html.escape(class_name(r['task'], r['corrected_label']).text(lang))}</b>"
            note = html.escape(r["note"])
        else:
            change = "<i>undone</i>" if lang != "zh" else "<i>已撤销</i>"
            note = ""
        body.append(f'<tr><td><img class="ink-thumb" src="{_thumb_uri(data_dir / r["image_path"])}" alt="" /></td>'
                    f"<td>{html.escape(task)}</td><td>{change}</td><td>{html.escape(r['expert'])}</td>"
                    f"<td>{html.escape(r['timestamp'].replace('T', ' ').rstrip('Z'))}</td><td>{note}</td></tr>")
    if not body:
        return "<p>No corrections yet.</p>" if lang != "zh" else "<p>尚无更正。</p>"
    head = "".join(f"<th>{h}</th>" for h in heads)
    return f'<table class="ink-corrections-view"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def queue_caption(record: dict[str, Any], lang: str) -> str:
    """``山水 landscape · 41.0% · uncertain — please review · Painting subject`` for a queue entry."""
    task = record["task"]
    conf = float(record.get("confidence", 0.0))
    name = class_name(task, str(record.get("predicted_label", ""))).text(lang)
    title = get_task(task).title.text(lang) if task in TASKS else task
    word = confidence_word(conf, None)[1 if lang == "zh" else 0]
    return f"{name} · {conf:.1%} · {word} · {title}"


def remove_old_exports(folder: Path, max_age_s: float = EXPORT_MAX_AGE_S) -> None:
    """Delete export sub-folders of ``folder`` last modified more than ``max_age_s`` ago."""
    cutoff = time.time() - max_age_s
    for sub in folder.iterdir():
        if sub.is_dir() and sub.stat().st_mtime < cutoff:
            shutil.rmtree(sub, ignore_errors=True)


def build_review_tab(actions: CurationActions, relabel: Relabel, lang: gr.Radio, analyse: AnalyseTab,
                     tabs: gr.Tabs) -> gr.Tab:
    """Lay out the Review tab and wire its events; returns the tab (refreshed when selected).
    Clicking a queue entry opens it in ``analyse`` (the Analyse tab of ``tabs``)."""
    store = actions.store
    with gr.Tab(I18N("tab_review"), id="review") as tab:
        relabel.value(gr.Markdown(I18N("queue_title")), "queue_title")
        queue_view = relabel.label(gr.Gallery(label=I18N("queue"), columns=6, height="auto", object_fit="contain",
                                              allow_preview=False, elem_id="ink-queue-gallery"), "queue")
        relabel.value(gr.Markdown(I18N("corrections_title")), "corrections_title")
        with gr.Row():
            task = relabel.label(gr.Dropdown([ALL, *TASKS], value=ALL, label=I18N("task")), "task")
            expert = relabel.label(gr.Textbox(label=I18N("expert_contains")), "expert_contains")
            label = relabel.label(gr.Textbox(label=I18N("label_contains")), "label_contains")
            in_effect = relabel.label(gr.Checkbox(value=True, label=I18N("show_revoked"), elem_id="ink-in-effect"),
                                      "show_revoked")
        with gr.Row():
            refresh = relabel.value(gr.Button(I18N("refresh")), "refresh")
            download = relabel.value(gr.DownloadButton(I18N("download"), elem_id="ink-download"), "download")
        view = gr.HTML(elem_id="ink-corrections-view")
        with gr.Accordion(I18N("all_columns"), open=False) as raw:
            relabel.label(raw, "all_columns")
            table = gr.Dataframe(headers=list(FIELDS), interactive=False, wrap=True, elem_id="ink-corrections")
            queue = gr.Dataframe(headers=list(QUEUE_FIELDS), interactive=False, wrap=True, elem_id="ink-queue")
    pending_keys = gr.State([])
    exports = Path(tempfile.mkdtemp(prefix="inkapp-exports-"))

    def rows_for(task_name: str, who: str, lab: str, only_active: bool) -> list[dict[str, str]]:
        return filter_corrections(store.active() if only_active else store.rows(), task_name, who, lab)

    def corrections(task_name: str, who: str, lab: str, only_active: bool) -> tuple[pd.DataFrame, str]:
        rows = rows_for(task_name, who, lab, only_active)
        remove_old_exports(exports)
        out = exports / uuid.uuid4().hex / "corrections.csv"
        out.parent.mkdir()
        return pd.DataFrame(rows, columns=list(FIELDS)), str(write_csv(rows, out))

    def corrections_view(task_name: str, who: str, lab: str, only_active: bool, code: str) -> str:
        return corrections_html(rows_for(task_name, who, lab, only_active), store.data_dir, code)

    def review_queue() -> pd.DataFrame:
        pending = pending_review(actions.analysed_log.records(), store.active())
        return pd.DataFrame([[r.get(f, "") for f in QUEUE_FIELDS] for r in pending], columns=list(QUEUE_FIELDS))

    def queue_gallery(code: str) -> list[Any]:
        pending = pending_review(actions.analysed_log.records(), store.active())
        items = [(thumbnail(store.data_dir / r["image_path"]), queue_caption(r, code)) for r in pending]
        return [items, [[r["task"], r["image_sha256"]] for r in pending]]

    def open_entry(evt: gr.SelectData, keys: list[list[str]], domain_choice: str, method: str, alpha: float,
                   code: str, state: Any) -> list[Any]:
        if evt.index is None or not 0 <= int(evt.index) < len(keys):
            return [gr.Tabs(), *[gr.update() for _ in analyse.outputs]]
        task_name, sha = keys[int(evt.index)]
        return [gr.Tabs(selected="analyse"),
                *analyse.open_stored(state, task_name, sha, domain_choice, method, alpha, code)]

    filters = [task, expert, label, in_effect]
    for trigger in (task.change, expert.submit, label.submit, in_effect.change, tab.select):
        trigger(corrections, filters, [table, download], api_name=False)
    for trigger in (task.change, expert.submit, label.submit, in_effect.change, tab.select, refresh.click,
                    lang.change):
        trigger(corrections_view, [*filters, lang], view, api_name=False)
        trigger(queue_gallery, lang, [queue_view, pending_keys], api_name=False)
    refresh.click(corrections, filters, [table, download], api_name="corrections_table")
    tab.select(review_queue, None, queue, api_name=False)
    refresh.click(review_queue, None, queue, api_name="review_queue")
    queue_view.select(open_entry, [pending_keys, *analyse.options], [tabs, *analyse.outputs], api_name=False)
    return tab
