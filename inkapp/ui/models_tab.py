"""The Models tab: each task's model card, retraining from corrections, candidate vs
current comparison, Promote and Discard."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from inkapp.tasks import TASKS
from inkapp.tasks import get as get_task

from datetime import datetime, timezone

from inkapp.curation.actions import Credentials, CurationActions
from inkapp.curation.wording import metrics_line, version_name
from inkapp.models import ModelLoadError, read_card
from inkapp.store.versions import SHIPPED, history, task_root
from inkapp.tasks import class_name

from .i18n import I18N, Relabel, pick
from .signin import SignIn
from .charts import confusion_heatmap
from inkapp.curation.comparison import comparison_rows
from inkapp.paths import weights_root
from inkapp.store.versions import (VersionError, candidates_root, is_complete_run, list_candidates, list_versions,
                                   read_active)

POLL_SECONDS = 2.0
PER_CLASS_COLUMNS = ["class", "name 名称", "precision 精确率", "recall 召回率", "F1", "works 作品数"]
_PER_CLASS_KEYS = ("precision", "recall", "f1")


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


def card_markdown(actions: CurationActions, task: str, lang: str = "en") -> str:
    """Version (by date and accuracy), source, classes in both languages, test accuracy as
    a percentage with the test size, training and provenance summary of a task's model;
    folders are shown relative to the data or weights folder (:func:`shown_path`)."""
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
        zh = lang == "zh"
        names = ", ".join(f"{class_name(task, c, card).text(lang)} (`{c}`)" for c in predictor.classes)
        lines += [
            ("**版本：** " if zh else "**Version:** ") + pick(version_name(card, status.source == "shipped"), lang)
            + f" · id `{predictor.version}`",
            ("**类别：** " if zh else "**Classes:** ") + names,
            ("**测试结果：** " if zh else "**Held-out test:** ") + pick(metrics_line(metrics), lang),
            ("**低于此置信度时提示复核：** " if zh else "**Asks for review below:** ")
            + f"{float(predictor.uncertainty_threshold or 0.6):.0%}",
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
    """Per-class test precision / recall / F1 as percentages with one decimal, and the
    number of held-out works, from a card; the class key first, then both display names."""
    per_class = (card.get("metrics") or {}).get("per_class") or {}
    task = str(card.get("task", ""))

    def percent(value: Any) -> str:
        return "" if value is None else f"{100 * float(value):.1f}%"

    rows = [[c, class_name(task, c, card).text("en"), *(percent(per_class[c].get(k)) for k in _PER_CLASS_KEYS),
             per_class[c].get("support")] for c in per_class]
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


def version_choices(actions: CurationActions, task: str, lang: str) -> list[tuple[str, str]]:
    """(name by date and accuracy, folder name or :data:`SHIPPED`) of every version of
    ``task`` that can serve again, newest first, the shipped weights last."""
    out = []
    for name in reversed(list_versions(actions.hub.data_dir, task)):
        try:
            card = read_card(task_root(actions.hub.data_dir, task) / name)
        except ModelLoadError:
            continue
        out.append((pick(version_name(card), lang), name))
    try:
        shipped = read_card(weights_root() / task)
        out.append((pick(version_name(shipped, shipped=True), lang), SHIPPED))
    except ModelLoadError:
        pass
    return out


def history_markdown(actions: CurationActions, task: str, lang: str) -> str:
    """Who promoted or rolled back which version when, newest first."""
    zh = lang == "zh"
    verbs = {"promote": "启用" if zh else "promoted", "rollback": "切换回" if zh else "rolled back to"}
    lines = [f"- {h['at'].replace('T', ' ').rstrip('Z')} UTC · **{h.get('by') or '?'}** {verbs.get(h['action'], h['action'])} "
             f"`{h['version']}`" for h in reversed(history(actions.hub.data_dir, task))]
    return "\n".join(lines) or ("尚无启用或切换记录。" if zh else "No promotion or roll-back yet.")


def progress_text(state: Any, task: str, lang: str) -> str:
    """One line of a retraining job's progress: epochs done of planned, validation
    accuracy and the estimated finish (UTC)."""
    zh = lang == "zh"
    if state.state == "running" and state.epoch:
        acc = (state.last or {}).get("val_acc")
        eta = datetime.fromtimestamp(state.eta, timezone.utc).strftime("%H:%M") if state.eta else None
        if zh:
            return (f"**训练中** — 第 {state.epoch}/{state.epochs or '?'} 轮"
                    + (f" · 验证准确率 {acc:.1%}" if acc is not None else "")
                    + (f" · 预计 {eta} UTC 完成" if eta else ""))
        return (f"**Training** — epoch {state.epoch} of {state.epochs or '?'}"
                + (f" · validation accuracy {acc:.1%}" if acc is not None else "")
                + (f" · estimated finish {eta} UTC" if eta else ""))
    label = {"running": ("Training", "训练中"), "finished": ("Finished", "已完成"), "failed": ("Failed", "失败")}
    return f"**{pick(label.get(state.state, (state.state, state.state)), lang)}** — {state.message}"


def build_models_tab(actions: CurationActions, relabel: Relabel, lang: gr.Radio, signin: SignIn) -> gr.Tab:
    """Lay out the Models tab and wire its events; returns the tab. Writes use the
    page's sign-in (``signin``)."""
    with gr.Tab(I18N("tab_models"), id="models") as tab:
        task = relabel.label(gr.Dropdown([(pick((get_task(k).title.en, get_task(k).title.zh), "en"), k)
                                          for k in TASKS], value=TASKS[0], label=I18N("task"),
                                         elem_id="ink-model-task"), "task")
        card = gr.Markdown(elem_id="ink-card")
        with gr.Row():
            per_class = relabel.label(gr.Dataframe(headers=PER_CLASS_COLUMNS, interactive=False,
                                                   label=I18N("per_class")), "per_class")
            confusion = relabel.label(gr.Plot(label=I18N("confusion"), elem_id="ink-confusion"), "confusion")
        with gr.Accordion(I18N("provenance"), open=False) as more:
            relabel.label(more, "provenance")
            provenance = gr.JSON()
        relabel.value(gr.Markdown(I18N("versions_title")), "versions_title")
        with gr.Row():
            version = relabel.label(gr.Dropdown(choices=[], label=I18N("version"), elem_id="ink-version", scale=3),
                                    "version")
            rollback = relabel.value(gr.Button(I18N("rollback"), elem_id="ink-rollback", scale=1), "rollback")
        versions_log = gr.Markdown(elem_id="ink-history")
        relabel.value(gr.Markdown(I18N("retrain_title")), "retrain_title")
        with gr.Row():
            check = relabel.value(gr.Button(I18N("preview"), elem_id="ink-preview"), "preview")
            retrain = relabel.value(gr.Button(I18N("retrain"), variant="primary", elem_id="ink-retrain"), "retrain")
        progress = gr.Markdown(elem_id="ink-retrain-progress")
        with gr.Accordion(I18N("log"), open=False) as log_box:
            relabel.label(log_box, "log")
            log = gr.Textbox(show_label=False, lines=8, max_lines=15, interactive=False)
        timer = gr.Timer(POLL_SECONDS, active=False)
        candidate = relabel.label(gr.Dropdown(choices=[], label=I18N("candidate"), allow_custom_value=True,
                                              elem_id="ink-candidate"), "candidate")
        with gr.Row():
            compare = relabel.value(gr.Button(I18N("compare_current")), "compare_current")
            promote = relabel.value(gr.Button(I18N("promote"), variant="primary", elem_id="ink-promote"), "promote")
            discard = relabel.value(gr.Button(I18N("discard"), variant="stop"), "discard")
        comparison = relabel.label(gr.Dataframe(headers=["metric", "current", "candidate", "difference"],
                                                interactive=False, label=I18N("same_split")), "same_split")
        message = gr.Markdown(elem_id="ink-model-message")
    expert, password = signin.credentials

    def show_card(task_name: str, code: str = "en") -> list[Any]:
        if task_name not in actions.hub.tasks:
            return [f"Unknown task {str(task_name)[:60]!r}.", per_class_table({}), None, {},
                    gr.Dropdown(choices=[], value=None)]
        predictor = actions.hub.predictor(task_name)
        card_data = predictor.card if predictor else {}
        matrix = (card_data.get("metrics") or {}).get("confusion_matrix")
        figure = confusion_heatmap(matrix, predictor.classes, f"{task_name} — test confusion matrix") \
            if matrix and predictor else None
        choices = candidate_choices(actions, task_name)
        return [card_markdown(actions, task_name, code), per_class_table(card_data), figure,
                {"data": card_data.get("data"), "training_data": (card_data.get("training") or {}).get("data")},
                gr.Dropdown(choices=choices, value=choices[0][1] if choices else None)]

    def poll(task_name: str, code: str = "en") -> list[Any]:
        job = actions.retrain.job(task_name)
        if job is None:
            return ["", "", gr.Timer(active=False), gr.Dropdown()]
        state = job.progress()
        choices = candidate_choices(actions, task_name)
        dropdown = gr.Dropdown(choices=choices, value=job.candidate.name)
        return [progress_text(state, task_name, code), state.log_tail,
                gr.Timer(active=state.state == "running"), dropdown]

    def start(task_name: str, who: str, secret: str, code: str, profile: gr.OAuthProfile | None) -> list[Any]:
        text = actions.start_retrain(task_name, Credentials.from_form(who, secret, profile))
        (gr.Info if text.startswith("Retraining") else gr.Warning)(text)
        return [text, *poll(task_name, code)]

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

    def versions_view(task_name: str, code: str) -> list[Any]:
        if task_name not in actions.hub.tasks:
            return [gr.Dropdown(choices=[], value=None), ""]
        status = actions.hub.status(task_name)
        serving = status.folder.name if status.source == "promoted" and status.folder else SHIPPED
        return [gr.Dropdown(choices=version_choices(actions, task_name, code), value=serving),
                history_markdown(actions, task_name, code)]

    def roll_back(task_name: str, chosen: str | None, who: str, secret: str, code: str,
                  profile: gr.OAuthProfile | None) -> list[Any]:
        if task_name not in actions.hub.tasks or not chosen:
            return ["Choose a version.", *show_card(task_name, code), *versions_view(task_name, code)]
        text = actions.rollback_version(task_name, chosen, Credentials.from_form(who, secret, profile))
        (gr.Success if text.startswith("Rolled back") and "could not" not in text else gr.Warning)(text)
        return [text, *show_card(task_name, code), *versions_view(task_name, code)]

    def preview(task_name: str, code: str) -> str:
        try:
            return pick(actions.retrain.preview(task_name).text(), code)
        except (OSError, ValueError) as err:
            return f"{err}"

    card_outputs = [card, per_class, confusion, provenance, candidate]
    version_outputs = [version, versions_log]
    task.change(show_card, [task, lang], card_outputs, api_name="model_card")
    for trigger in (task.change, tab.select, lang.change):
        trigger(versions_view, [task, lang], version_outputs, api_name=False)
    tab.select(show_card, [task, lang], card_outputs, api_name=False)
    lang.change(show_card, [task, lang], card_outputs, api_name=False)
    check.click(preview, [task, lang], progress, api_name="retrain_preview")
    rollback.click(roll_back, [task, version, expert, password, lang], [message, *card_outputs, *version_outputs],
                   api_name="rollback_version")
    retrain.click(start, [task, expert, password, lang], [message, progress, log, timer, candidate],
                  api_name="start_retrain")
    timer.tick(poll, [task, lang], [progress, log, timer, candidate], api_name=False)
    compare.click(compare_candidate, [task, candidate], [comparison, message], api_name="compare_candidate")
    credentials = [expert, password]
    promote.click(promote_candidate, [task, candidate, *credentials], [message, *card_outputs],
                  api_name="promote_candidate").then(versions_view, [task, lang], version_outputs, api_name=False)
    discard.click(discard_candidate, [task, candidate, *credentials], [message, *card_outputs],
                  api_name="discard_candidate")
    return tab

