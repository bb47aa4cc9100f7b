"""The Models tab: each task's model card, retraining from corrections, candidate vs
current comparison, Promote and Discard."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from inkapp.tasks import TASKS

from inkapp.curation.actions import Credentials, CurationActions
from .charts import confusion_heatmap
from inkapp.curation.comparison import comparison_rows
from inkapp.paths import weights_root
from inkapp.store.versions import (VersionError, candidates_root, is_complete_run, list_candidates, list_versions,
                                   read_active)

POLL_SECONDS = 2.0
PER_CLASS_COLUMNS = ["class", "precision", "recall", "f1", "support"]


def _shown_roots(data_dir: Path) -> list[tuple[str, Path]]:
    return [("data", Path(data_dir).resolve()), ("weights", weights_root().resolve())]


def shown_path(folder: Path, data_dir: Path) -> str:
    """``folder`` as the page shows it: relative to the data directory (``data/models/...``)
    or to the weights folder (``weights/<task>``), else only its name — never an absolute
    server path."""
    path = Path(folder).resolve()
    for label, root in _shown_roots(data_dir):
        if path.is_relative_to(root):
            return f"{label}/{path.relative_to(root).as_posix()}"
    return path.name


def scrub_paths(text: str, data_dir: Path) -> str:
    """``text`` with the absolute data and weights folders replaced by ``data`` / ``weights``
    (messages of load errors name files by absolute path)."""
    for label, root in sorted(_shown_roots(data_dir), key=lambda lr: -len(str(lr[1]))):
        text = text.replace(str(root), label)
    for label, given in (("data", Path(data_dir)), ("weights", weights_root())):
        if given.is_absolute():
            text = text.replace(str(given), label)
    return text


def card_markdown(actions: CurationActions, task: str) -> str:
    """Version, source, classes, test metrics, training and provenance summary of a task's
    model; folders are shown relative to the data or weights folder (:func:`shown_path`)."""
    status = actions.hub.status(task)
    predictor = actions.hub.predictor(task)
    data_dir = actions.hub.data_dir
    lines = [f"**Source:** {status.source}" + (f" (`{shown_path(status.folder, data_dir)}`)" if status.folder else "")]
    if status.message:
        lines.append(f"**Note:** {status.message}")
    if predictor is not None:
        card = predictor.card
        metrics = card.get("metrics") or {}
        training = card.get("training") or {}
        lines += [
            f"**Version:** `{predictor.version}`" + (f" · created {card['created']}" if card.get("created") else ""),
            f"**Classes:** {', '.join(predictor.classes)}",
            f"**Uncertainty threshold:** {predictor.uncertainty_threshold}",
            "**Test metrics:** " + ", ".join(f"{k} {metrics[k]:.4f}" for k in
                                              ("accuracy", "macro_f1", "macro_precision", "macro_recall", "macro_auc")
                                              if isinstance(metrics.get(k), (int, float)))
            + (f" (n = {metrics['n']})" if "n" in metrics else ""),
        ]
        if training:
            lines.append(f"**Training:** {training.get('epochs_run', '?')} epochs, best epoch "
                         f"{training.get('best_epoch', '?')}, {training.get('wall_seconds', '?')} s")
    try:
        active = read_active(actions.hub.data_dir, task)
    except VersionError as err:
        active = {"version": f"unreadable ({err})"}
    versions = list_versions(actions.hub.data_dir, task)
    lines.append(f"**Promoted versions kept:** {', '.join(versions) or 'none'}"
                 + (f" · active: {active['version']}" if active else " · active: shipped weights"))
    return scrub_paths("  \n".join(lines), data_dir)


def per_class_table(card: dict[str, Any]) -> pd.DataFrame:
    """Per-class test precision / recall / F1 / support from a card."""
    per_class = (card.get("metrics") or {}).get("per_class") or {}
    rows = [[c, *(per_class[c].get(k) for k in PER_CLASS_COLUMNS[1:])] for c in per_class]
    return pd.DataFrame(rows, columns=PER_CLASS_COLUMNS)


def candidate_choices(actions: CurationActions, task: str) -> list[tuple[str, str]]:
    """(label, folder name) pairs of the task's candidates, newest first (names, not
    server paths: :func:`candidate_folder` maps a name back)."""
    out = []
    for folder in list_candidates(actions.hub.data_dir, task):
        job = actions.retrain.job(task)
        running = job is not None and job.candidate == folder and job.process.poll() is None
        state = "training" if running else ("finished" if is_complete_run(folder) else "incomplete")
        out.append((f"{folder.name} ({state})", folder.name))
    return out


def candidate_folder(actions: CurationActions, task: str, name: str) -> Path:
    """The folder a candidate dropdown value names, under the task's candidates folder
    (``task`` must be one the app serves). Whatever it resolves to is checked again by
    the action (only the task's own candidates are accepted), so a crafted value such as
    ``../x`` or an absolute path is refused there."""
    return candidates_root(actions.hub.data_dir, task) / name


def build_models_tab(actions: CurationActions) -> gr.Tab:
    """Lay out the Models tab and wire its events; returns the tab."""
    with gr.Tab("Models", id="models") as tab:
        task = gr.Dropdown(TASKS, value=TASKS[0], label="Task", elem_id="ink-model-task")
        card = gr.Markdown(elem_id="ink-card")
        with gr.Row():
            per_class = gr.Dataframe(headers=PER_CLASS_COLUMNS, interactive=False, label="Per-class test metrics")
            confusion = gr.Plot(label="Confusion matrix (test)", elem_id="ink-confusion")
        with gr.Accordion("Data provenance", open=False):
            provenance = gr.JSON()
        gr.Markdown("### Retrain from corrections")
        with gr.Row():
            expert = gr.Textbox(label="Expert name", elem_id="ink-model-expert")
            password = gr.Textbox(label="Password", type="password", elem_id="ink-model-password",
                                  visible=bool(actions.experts.passwords))
        with gr.Row():
            retrain = gr.Button("Retrain from corrections", variant="primary")
        progress = gr.Markdown(elem_id="ink-retrain-progress")
        log = gr.Textbox(label="Training log (tail)", lines=8, max_lines=15, interactive=False)
        timer = gr.Timer(POLL_SECONDS, active=False)
        candidate = gr.Dropdown(choices=[], label="Candidate", allow_custom_value=True)
        with gr.Row():
            compare = gr.Button("Compare with current model")
            promote = gr.Button("Promote", variant="primary")
            discard = gr.Button("Discard", variant="stop")
        comparison = gr.Dataframe(headers=["metric", "current", "candidate", "difference"], interactive=False,
                                  label="Same test split")
        message = gr.Markdown()

    def show_card(task_name: str) -> list[Any]:
        if task_name not in actions.hub.tasks:
            return [f"Unknown task {str(task_name)[:60]!r}.", per_class_table({}), None, {},
                    gr.Dropdown(choices=[], value=None)]
        predictor = actions.hub.predictor(task_name)
        card_data = predictor.card if predictor else {}
        matrix = (card_data.get("metrics") or {}).get("confusion_matrix")
        figure = confusion_heatmap(matrix, predictor.classes, f"{task_name} — test confusion matrix") \
            if matrix and predictor else None
        choices = candidate_choices(actions, task_name)
        return [card_markdown(actions, task_name), per_class_table(card_data), figure,
                {"data": card_data.get("data"), "training_data": (card_data.get("training") or {}).get("data")},
                gr.Dropdown(choices=choices, value=choices[0][1] if choices else None)]

    def poll(task_name: str) -> list[Any]:
        job = actions.retrain.job(task_name)
        if job is None:
            return ["No retraining started in this session.", "", gr.Timer(active=False), gr.Dropdown()]
        state = job.progress()
        choices = candidate_choices(actions, task_name)
        dropdown = gr.Dropdown(choices=choices, value=job.candidate.name)
        return [f"**{state.state}** — {state.message}", state.log_tail,
                gr.Timer(active=state.state == "running"), dropdown]

    def start(task_name: str, who: str, secret: str, profile: gr.OAuthProfile | None) -> list[Any]:
        text = actions.start_retrain(task_name, Credentials.from_form(who, secret, profile))
        return [text, *poll(task_name)]

    def compare_candidate(task_name: str, folder: str | None) -> list[Any]:
        if not folder:
            return [None, "Choose a finished candidate."]
        try:  # the folder is checked to be one of the task's candidates (VersionError otherwise)
            result = actions.compare_candidate(task_name, candidate_folder(actions, task_name, folder))
        except (OSError, KeyError, ValueError, json.JSONDecodeError) as err:
            return [None, scrub_paths(f"Comparison failed: {err}", actions.hub.data_dir)]
        table = pd.DataFrame(comparison_rows(result), columns=["metric", "current", "candidate", "difference"])
        return [table, f"Current `{result['current_version']}` vs candidate `{result['candidate_version']}` on "
                       f"{result['n_compared']} test images ({result['skipped']} skipped)."]

    def promote_candidate(task_name: str, folder: str | None, who: str, secret: str,
                          profile: gr.OAuthProfile | None) -> list[Any]:
        credentials = Credentials.from_form(who, secret, profile)
        if task_name not in actions.hub.tasks:
            return [f"Unknown task {str(task_name)[:60]!r}.", *show_card(task_name)]
        text = (actions.promote_candidate(task_name, candidate_folder(actions, task_name, folder), credentials)
                if folder else "Choose a candidate.")
        return [text, *show_card(task_name)]

    def discard_candidate(task_name: str, folder: str | None, who: str, secret: str,
                          profile: gr.OAuthProfile | None) -> list[Any]:
        credentials = Credentials.from_form(who, secret, profile)
        if task_name not in actions.hub.tasks:
            return [f"Unknown task {str(task_name)[:60]!r}.", *show_card(task_name)]
        text = (actions.discard_candidate(task_name, candidate_folder(actions, task_name, folder), credentials)
                if folder else "Choose a candidate.")
        return [text, *show_card(task_name)]

    card_outputs = [card, per_class, confusion, provenance, candidate]
    task.change(show_card, task, card_outputs, api_name="model_card")
    tab.select(show_card, task, card_outputs, api_name=False)
    retrain.click(start, [task, expert, password], [message, progress, log, timer, candidate],
                  api_name="start_retrain")
    timer.tick(poll, task, [progress, log, timer, candidate], api_name=False)
    compare.click(compare_candidate, [task, candidate], [comparison, message], api_name="compare_candidate")
    credentials = [expert, password]
    promote.click(promote_candidate, [task, candidate, *credentials], [message, *card_outputs],
                  api_name="promote_candidate")
    discard.click(discard_candidate, [task, candidate, *credentials], [message, *card_outputs],
                  api_name="discard_candidate")
    return tab

