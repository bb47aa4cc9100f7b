"""The Review tab: the corrections table with filters and CSV download, and the queue
of analysed images no expert has reviewed yet (least confident first)."""
from __future__ import annotations

import csv
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import gradio as gr
import pandas as pd

from inkapp.tasks import TASKS
from inkapp.store.corrections import FIELDS, escape_cell

from inkapp.curation.actions import CurationActions
from inkapp.curation.review import QUEUE_FIELDS, pending_review

ALL = "all"
EXPORT_MAX_AGE_S = 3600  # filtered CSV exports older than this are deleted (gradio serves its own copy)


def filter_corrections(rows: list[dict[str, str]], task: str, expert: str, label: str) -> list[dict[str, str]]:
    """Rows of ``task`` (or all), whose expert contains ``expert`` and whose corrected or
    predicted label contains ``label`` (case-insensitive; empty filters match everything)."""
    who, lab = expert.strip().lower(), label.strip().lower()
    return [r for r in rows
            if (task in ("", ALL) or r["task"] == task)
            and (not who or who in r["expert"].lower())
            and (not lab or lab in r["corrected_label"].lower() or lab in r["predicted_label"].lower())]


def write_csv(rows: list[dict[str, str]], path: Path) -> Path:
    """Write ``rows`` with the corrections columns (formula cells escaped) to ``path``."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(FIELDS)
        writer.writerows([escape_cell(r.get(f, "")) for f in FIELDS] for r in rows)
    return path


def remove_old_exports(folder: Path, max_age_s: float = EXPORT_MAX_AGE_S) -> None:
    """Delete export sub-folders of ``folder`` last modified more than ``max_age_s`` ago."""
    cutoff = time.time() - max_age_s
    for sub in folder.iterdir():
        if sub.is_dir() and sub.stat().st_mtime < cutoff:
            shutil.rmtree(sub, ignore_errors=True)


def build_review_tab(actions: CurationActions) -> gr.Tab:
    """Lay out the Review tab and wire its events; returns the tab (refreshed when selected)."""
    store = actions.store
    with gr.Tab("Review", id="review") as tab:
        gr.Markdown("### Corrections")
        with gr.Row():
            task = gr.Dropdown([ALL, *TASKS], value=ALL, label="Task")
            expert = gr.Textbox(label="Expert contains")
            label = gr.Textbox(label="Label contains")
            in_effect = gr.Checkbox(value=False, label="Only corrections in effect (undone and superseded rows hidden)")
        with gr.Row():
            refresh = gr.Button("Refresh")
            download = gr.DownloadButton("Download CSV", elem_id="ink-download")
        table = gr.Dataframe(headers=list(FIELDS), interactive=False, wrap=True, elem_id="ink-corrections")
        gr.Markdown("### Not reviewed yet (least confident first)")
        queue = gr.Dataframe(headers=list(QUEUE_FIELDS), interactive=False, wrap=True, elem_id="ink-queue")

    exports = Path(tempfile.mkdtemp(prefix="inkapp-exports-"))

    def corrections(task_name: str, who: str, lab: str, only_active: bool) -> tuple[pd.DataFrame, str]:
        rows = filter_corrections(store.active() if only_active else store.rows(), task_name, who, lab)
        remove_old_exports(exports)
        out = exports / uuid.uuid4().hex / "corrections.csv"
        out.parent.mkdir()
        return pd.DataFrame(rows, columns=list(FIELDS)), str(write_csv(rows, out))

    def review_queue() -> pd.DataFrame:
        pending = pending_review(actions.analysed_log.records(), store.active())
        return pd.DataFrame([[r.get(f, "") for f in QUEUE_FIELDS] for r in pending], columns=list(QUEUE_FIELDS))

    filters = [task, expert, label, in_effect]
    for trigger in (task.change, expert.submit, label.submit, in_effect.change, tab.select):
        trigger(corrections, filters, [table, download], api_name=False)
    refresh.click(corrections, filters, [table, download], api_name="corrections_table")
    tab.select(review_queue, None, queue, api_name=False)
    refresh.click(review_queue, None, queue, api_name="review_queue")
    return tab
