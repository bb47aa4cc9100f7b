"""The Review tab: the corrections table with filters and CSV download, the queue
of analysed images no expert has reviewed yet (least confident first), the collection's
near-duplicate pairs (pairs whose labels disagree first) and the suspect-label queue
(confirm the model's view or keep the given label; either writes a correction row)."""
from __future__ import annotations

import base64
import csv
import html
import io
import tempfile
from pathlib import Path

import gradio as gr
import pandas as pd
from PIL import Image

from inkapp.data.images import ImageError, load_image
from inkapp.curation.wording import confidence_word
from inkapp.tasks import class_name, get as get_task

from inkapp.tasks import TASKS
from inkapp.store.corrections import FIELDS, escape_cell

from inkapp.collection.duplicates import DuplicatePair
from inkapp.collection.suspects import Suspect
from inkapp.curation.actions import Credentials, CurationActions
from inkapp.curation.exports import ExportFolders
from inkapp.curation.review_lists import duplicates_report, suspect_caption, suspect_list
from inkapp.curation.similar_view import letterboxed_thumbnail
from typing import Any

from .analyse_tab import AnalyseTab
from .i18n import I18N, Relabel, pick
from inkapp.curation.review import QUEUE_FIELDS, pending_review

ALL = "all"
THUMB_SIDE = 160  # px, longest side of a queue / corrections thumbnail (letterboxed, never cropped)
#: Display-name columns added to the CSV export after the stable :data:`FIELDS`.
EXPORT_NAME_FIELDS = ("predicted_en", "predicted_zh", "corrected_en", "corrected_zh")


def filter_corrections(rows: list[dict[str, str]], task: str | None, expert: str | None,
                       label: str | None) -> list[dict[str, str]]:
    """Rows of ``task`` (or all), whose expert contains ``expert`` and whose corrected or
    predicted label contains ``label`` (case-insensitive; empty filters match everything)."""
    who, lab = (expert or "").strip().lower(), (label or "").strip().lower()
    return [r for r in rows
            if (task in (None, "", ALL) or r["task"] == task)
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


def _thumb_of(path: str | Path) -> str:
    buf = io.BytesIO()
    letterboxed_thumbnail(path, 96).save(buf, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def duplicates_html(pairs: list[DuplicatePair], task: str, lang: str) -> str:
    """The near-duplicate pairs as a table: both thumbnails (letterboxed), their labels in
    both languages with where each comes from, the similarity, and a flag where the labels
    disagree."""
    zh = lang == "zh"
    if not pairs:
        return "<p>没有高于阈值的近似重复。</p>" if zh else "<p>No pairs above the near-duplicate threshold.</p>"
    heads = ("图像 A", "图像 B", "相似度", "标签", "") if zh else ("Image A", "Image B", "Similarity", "Labels", "")
    rows = []
    for p in pairs:
        names = " / ".join(html.escape(f"{class_name(task, n.label).text(lang)} ({n.label_source})") if n.label
                           else "—" for n in (p.a, p.b))
        flag = ('<b class="ink-uncertain">' + ("标签不一致，请复核" if zh else "labels disagree — please review")
                + "</b>") if p.labels_disagree else ""
        rows.append(f'<tr><td><img class="ink-thumb" src="{_thumb_of(p.a.image_path)}" alt="" /></td>'
                    f'<td><img class="ink-thumb" src="{_thumb_of(p.b.image_path)}" alt="" /></td>'
                    f"<td>{p.similarity:.1%}</td><td>{names}</td><td>{flag}</td></tr>")
    head = "".join(f"<th>{h}</th>" for h in heads)
    return (f'<table class="ink-corrections-view ink-duplicates"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


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
        relabel.value(gr.Markdown(I18N("duplicates_title")), "duplicates_title")
        with gr.Row():
            dup_task = relabel.label(gr.Dropdown(list(TASKS), value=TASKS[0], label=I18N("task"),
                                                 elem_id="ink-dup-task"), "task")
            find_dups = relabel.value(gr.Button(I18N("find_duplicates"), elem_id="ink-find-duplicates"),
                                      "find_duplicates")
        dup_view = gr.HTML(elem_id="ink-duplicates")
        relabel.value(gr.Markdown(I18N("suspects_title")), "suspects_title")
        suspect_task = relabel.label(gr.Dropdown(list(TASKS), value=TASKS[0], label=I18N("task"),
                                                 elem_id="ink-suspect-task"), "task")
        suspect_view = relabel.label(gr.Gallery(label=I18N("suspects"), columns=6, height="auto",
                                                object_fit="contain", allow_preview=False, fit_columns=False,
                                                elem_id="ink-suspects"), "suspects")
        with gr.Row():
            confirm = relabel.value(gr.Button(I18N("suspect_confirm"), variant="primary",
                                              elem_id="ink-suspect-confirm"), "suspect_confirm")
            keep = relabel.value(gr.Button(I18N("suspect_keep"), elem_id="ink-suspect-keep"), "suspect_keep")
        suspect_message = gr.Markdown(elem_id="ink-suspect-message")
    pending_keys = gr.State([])
    shown_suspects = gr.State([])  # the Suspect rows in the gallery, in order
    chosen_suspect = gr.State(None)  # index into shown_suspects, set by a click
    exports = ExportFolders(Path(tempfile.mkdtemp(prefix="inkapp-exports-")))

    def rows_for(task_name: str, who: str, lab: str, only_active: bool) -> list[dict[str, str]]:
        return filter_corrections(store.active() if only_active else store.rows(), task_name, who, lab)

    def corrections(task_name: str, who: str, lab: str, only_active: bool) -> tuple[pd.DataFrame, str]:
        rows = rows_for(task_name, who, lab, only_active)
        out = exports.new() / "corrections.csv"
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

    def duplicates(task_name: str, code: str) -> str:
        return duplicates_html(duplicates_report(store.data_dir, task_name), task_name, code)

    def suspects(task_name: str, code: str) -> list[Any]:
        """Gallery of the task's pending suspects, the rows shown, no selection, a message."""
        listed = suspect_list(task_name, store.data_dir)
        items = [(letterboxed_thumbnail(s.absolute_path()), suspect_caption(task_name, s, code))
                 for s in listed.suspects]
        message = pick(listed.message, code) or pick((f"{listed.pending} awaiting an expert.",
                                                      f"{listed.pending} 张待专家确认。"), code)
        return [items, listed.suspects, None, message]

    def choose_suspect(evt: gr.SelectData, rows: list[Suspect], task_name: str, code: str) -> list[Any]:
        if evt.index is None or not 0 <= int(evt.index) < len(rows):
            return [None, ""]
        chosen = rows[int(evt.index)]
        return [int(evt.index), pick(("Chosen: ", "已选："), code) + suspect_caption(task_name, chosen, code)]

    def decide(keep_label: bool, task_name: str, index: int | None, rows: list[Suspect], who: str, secret: str,
               code: str, profile: gr.OAuthProfile | None) -> list[Any]:
        if index is None or not 0 <= index < len(rows):
            return [gr.update(), gr.update(), None,
                    pick(("Click a suspect first.", "请先点击一张可疑图像。"), code)]
        message = actions.decide_suspect(task_name, rows[index], keep_label,
                                         Credentials.from_form(who, secret, profile))
        (gr.Success if message.startswith("Saved") else gr.Warning)(message.replace("**", ""))
        items, shown, _, _ = suspects(task_name, code)
        return [items, shown, None, message]

    def on_confirm(task_name: str, index: int | None, rows: list[Suspect], who: str, secret: str, code: str,
                   profile: gr.OAuthProfile | None) -> list[Any]:
        return decide(False, task_name, index, rows, who, secret, code, profile)

    def on_keep(task_name: str, index: int | None, rows: list[Suspect], who: str, secret: str, code: str,
                profile: gr.OAuthProfile | None) -> list[Any]:
        return decide(True, task_name, index, rows, who, secret, code, profile)

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
    find_dups.click(duplicates, [dup_task, lang], dup_view, api_name="duplicates")
    suspect_outputs = [suspect_view, shown_suspects, chosen_suspect, suspect_message]
    for trigger in (suspect_task.change, tab.select):
        trigger(suspects, [suspect_task, lang], suspect_outputs, api_name=False)
    suspect_view.select(choose_suspect, [shown_suspects, suspect_task, lang], [chosen_suspect, suspect_message],
                        api_name=False)
    decision_inputs = [suspect_task, chosen_suspect, shown_suspects, *analyse.credentials, lang]
    confirm.click(on_confirm, decision_inputs, suspect_outputs, api_name="confirm_suspect")
    keep.click(on_keep, decision_inputs, suspect_outputs, api_name="keep_suspect")
    return tab
