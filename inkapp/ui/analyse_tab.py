"""The Analyse tab: upload, step through images, per-task results and corrections."""
from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
from PIL import Image

from inkapp.data.images import ImageError
from inkapp.tasks import TASKS

from inkapp.curation.actions import AnalysedImage, Credentials, CurationActions
from inkapp.curation.analysis import (DEFAULT_CAM, AnalysisCache, ImageAnalysis, TaskView, analyse_loaded,
                                     load_upload)
from inkapp.curation.pixels import PIXELS, ShownImage, decode_again, session_ttl_s
from inkapp.explain.cam import CAM_METHODS
from inkapp.tasks import get as get_task
from inkapp.curation.domain import AUTO, DOMAINS
from inkapp.curation.uploads import UPLOAD_TYPES, UploadItem, expand_uploads, thumbnails

from inkapp.curation.review import pending_review
from inkapp.tasks import DOMAIN_TASK, class_name

from .charts import channel_chart, probability_chart
from .i18n import I18N, Relabel, pick, t
from .result_html import both_names, researcher_notes, scroll_html, summary_html
from .signin import SignIn



@dataclass
class AnalyseSession:
    """Per-browser-session state (small: it expires after ``INKAPP_SESSION_TTL_S``): the
    uploaded items, which one is shown, the item decoded last and its name, content hash
    and display copy (full pixels: :data:`inkapp.curation.pixels.PIXELS`), the analysis record of the image on screen, the class each task's heat map explains, and the
    (sha256, task, version) triples already written to the review log."""

    items: list[UploadItem] = field(default_factory=list)
    index: int = 0
    targets: dict[str, str] = field(default_factory=dict)
    loaded_item: UploadItem | None = None
    loaded: ShownImage | None = None  # name, hash and display copy; full pixels are in PIXELS
    current: AnalysedImage | None = None
    logged: set[tuple[str, str, str]] = field(default_factory=set)
    from_queue: tuple[str, str] | None = None  # (task, sha256) when opened from the review queue


@dataclass
class TaskPanel:
    """The components showing one task's result."""

    task: str
    column: gr.Column
    title: gr.Markdown
    summary: gr.HTML
    chart: gr.Plot
    compare: gr.ImageSlider
    scroll: gr.HTML
    explain: gr.Dropdown
    attention: gr.Gallery
    notes: gr.Markdown
    channels: gr.Plot

    def components(self) -> list[gr.components.Component | gr.Column]:
        return [self.column, self.summary, self.chart, self.compare, self.scroll, self.explain, self.attention,
                self.notes, self.channels, self.title]

    @staticmethod
    def hidden() -> list[Any]:
        return [gr.Column(visible=False), "", None, None, "", gr.Dropdown(choices=[], value=None), [], "", None, ""]

    @staticmethod
    def shown(view: TaskView, display: Image.Image, card: dict[str, Any] | None, lang: str) -> list[Any]:
        """Updates for one task's result in ``lang`` (``card``: the model's card, for display names)."""
        title = f"### {pick((get_task(view.task).title.en, get_task(view.task).title.zh), lang)}"
        if view.error:
            return [gr.Column(visible=True), f'<div class="ink-error">{html.escape(view.error)}</div>', None, None, "",
                    gr.Dropdown(choices=[], value=None), [], "", None, title]
        channels = next(iter(view.channel_weights), None)
        names = {c: both_names(view.task, c, card, lang) for c in view.probabilities}
        i = 1 if lang == "zh" else 0
        return [gr.Column(visible=True), summary_html(view, card, lang),
                probability_chart({names[c]: p for c, p in view.probabilities.items()}, view.threshold,
                                  t(lang, "chart")),
                (display, view.cam_overlay), scroll_html(display, view.cam_overlay, lang),
                gr.Dropdown(choices=[(names[c], c) for c in view.classes], value=view.cam_target),
                [(image, info.caption[i]) for image, info in view.attention_overlays],
                researcher_notes(view, lang),
                None if channels is None else channel_chart(channels[1], channels[0].caption[i]), title]


def status_markdown(analysis: ImageAnalysis, n_items: int, index: int, lang: str = "en") -> str:
    """Header line for the image on screen, in ``lang``."""
    domain = class_name(DOMAIN_TASK, analysis.domain.domain).text(lang)
    if lang == "zh":
        position = f"第 {index + 1} 张，共 {n_items} 张：" if n_items > 1 else ""
        return (f"{position}**{analysis.name}** — {analysis.width}×{analysis.height} 像素 · 类别 "
                f"**{domain}**（{analysis.domain.reason[1]}）")
    position = f"Image {index + 1} of {n_items}: " if n_items > 1 else ""
    return (f"{position}**{analysis.name}** — {analysis.width}×{analysis.height} px · domain "
            f"**{domain}** ({analysis.domain.reason[0]})")


def label_choices(task: str, classes: tuple[str, ...] | list[str], card: dict[str, Any] | None,
                  lang: str) -> list[tuple[str, str]]:
    """(display name in both languages, class key) choices of a task's correction form."""
    return [(both_names(task, c, card, lang), c) for c in classes]


def task_choices(tasks: list[str], lang: str) -> list[tuple[str, str]]:
    """(task title in ``lang``, task key) choices."""
    return [(pick((get_task(k).title.en, get_task(k).title.zh), lang), k) for k in tasks]


@dataclass
class AnalyseTab:
    """What the rest of the app needs from the Analyse tab to open a review-queue item in it:
    ``open_stored(state, task, sha256, domain, method, opacity, lang)`` returns the values
    of :attr:`outputs`; :attr:`options` are the inputs it needs besides the item."""

    session: gr.State
    options: list[Any]
    outputs: list[Any]
    open_stored: Callable[..., list[Any]]


def build_analyse_tab(actions: CurationActions, cache: AnalysisCache, relabel: Relabel, signin: SignIn,
                      lang: gr.Radio) -> AnalyseTab:
    """Lay out the Analyse tab inside the current ``gr.Tab`` and wire its events."""
    hub = actions.hub
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            files = relabel.label(gr.File(label=I18N("upload"), file_count="multiple", file_types=UPLOAD_TYPES,
                                          elem_id="ink-upload"), "upload")
            domain = relabel.label(gr.Radio([AUTO, *DOMAINS], value=AUTO, label=I18N("domain"),
                                          elem_id="ink-domain"), "domain")
            cam_method = relabel.label(gr.Dropdown([(m.label, key) for key, m in CAM_METHODS.items()],
                                                   value=DEFAULT_CAM, label=I18N("cam_method")), "cam_method")
            opacity = relabel.label(gr.Slider(0.0, 1.0, value=0.5, step=0.05, label=I18N("opacity")), "opacity")
            gallery = relabel.label(gr.Gallery(label=I18N("gallery"), columns=3, height=260, allow_preview=False,
                                               object_fit="contain", elem_id="ink-gallery"), "gallery")
            with gr.Group(elem_id="ink-correct"):
                relabel.value(gr.Markdown(I18N("correct_title")), "correct_title")
                correct_task = relabel.label(gr.Dropdown(choices=[], label=I18N("task"), allow_custom_value=True,
                                                         elem_id="ink-correct-task"), "task")
                correct_label = relabel.label(gr.Dropdown(choices=[], label=I18N("right_label"),
                                                          allow_custom_value=True, elem_id="ink-correct-label"),
                                              "right_label")
                note = relabel.label(gr.Textbox(label=I18N("note"), elem_id="ink-note"), "note")
                with gr.Row():
                    submit = relabel.value(gr.Button(I18N("submit"), variant="primary", elem_id="ink-submit"),
                                           "submit")
                    undo = relabel.value(gr.Button(I18N("undo"), elem_id="ink-undo"), "undo")
                next_item = relabel.value(gr.Button(I18N("next"), elem_id="ink-next", size="sm"), "next")
                correct_message = gr.Markdown(elem_id="ink-correct-message")
        with gr.Column(scale=3):
            status = gr.Markdown(I18N("status_empty"), elem_id="ink-status")
            panels: list[TaskPanel] = []
            for task in TASKS:
                with gr.Column(visible=False, elem_classes="ink-panel") as column:
                    title = gr.Markdown(f"### {get_task(task).title.en}")
                    summary = gr.HTML(elem_id=f"ink-summary-{task}")
                    with gr.Row():
                        chart = relabel.label(gr.Plot(label=I18N("chart"), elem_id=f"ink-chart-{task}", scale=2),
                                              "chart")
                        compare = relabel.label(gr.ImageSlider(label=I18N("compare"), type="pil", format="jpeg",
                                                               max_height=640, elem_id=f"ink-compare-{task}",
                                                               scale=3), "compare")
                    scroll = gr.HTML(elem_id=f"ink-scroll-{task}")
                    explain = relabel.label(gr.Dropdown(choices=[], label=I18N("explain"), allow_custom_value=True,
                                                        elem_id=f"ink-explain-{task}"), "explain")
                    with gr.Accordion(I18N("researchers"), open=False, elem_id=f"ink-researchers-{task}") as more:
                        relabel.label(more, "researchers")
                        notes = gr.Markdown(elem_id=f"ink-notes-{task}")
                        attention = relabel.label(gr.Gallery(label=I18N("attention"), columns=3, height="auto",
                                                             format="jpeg", object_fit="contain",
                                                             elem_id=f"ink-attention-{task}"), "attention")
                        channels = relabel.label(gr.Plot(label=I18N("channels"), elem_id=f"ink-channels-{task}"),
                                                 "channels")
                panels.append(TaskPanel(task, column, title, summary, chart, compare, scroll, explain, attention,
                                        notes, channels))
    session = gr.State(AnalyseSession(), time_to_live=session_ttl_s())
    panel_outputs = [c for p in panels for c in p.components()]
    outputs = [status, session, correct_task, correct_label, *panel_outputs]

    def render(state: AnalyseSession, domain_choice: str, method: str, alpha: float, lang: str = "en",
               record: bool = False) -> list[Any]:
        """Analyse the session's current item (from the cache when it was analysed with these
        options before) and produce every output in ``lang``; ``record`` stores the image and
        logs its predictions (a new image or domain), which redrawing (opacity, heat-map
        method, explained class, language) never does."""
        hidden = [u for _ in panels for u in TaskPanel.hidden()]
        no_task = [gr.Dropdown(choices=[], value=None), gr.Dropdown(choices=[], value=None)]
        if not state.items:
            return [t(lang, "status_empty"), state, *no_task, *hidden]
        item = state.items[state.index]
        if state.loaded is None or state.loaded_item != item:
            state.current, state.loaded_item, record = None, item, True
            try:
                loaded = load_upload(item.read_bytes(), item.name)
            except ImageError as err:
                state.loaded = None
                return [f"**{item.name}**: {err}", state, *no_task, *hidden]
            state.loaded = PIXELS.remember(loaded)
        else:
            stored = actions.store.data_dir / state.current.image_path if state.current else None
            try:
                loaded = PIXELS.loaded(state.loaded, lambda: decode_again(item, stored))
            except ImageError as err:
                return [f"**{item.name}**: {err}", state, *no_task, *hidden]
        analysis = analyse_loaded(hub, loaded, domain_choice, method, state.targets, float(alpha), cache)
        if record or state.current is None:
            state.current = actions.record_analysis(loaded, analysis, state.current, state.logged)
        views = {v.task: v for v in analysis.tasks}
        cards = {task: (hub.predictor(task).card if hub.predictor(task) else None) for task in views}
        updates = [u for p in panels for u in (TaskPanel.shown(views[p.task], analysis.display, cards[p.task], lang)
                                               if p.task in views else TaskPanel.hidden())]
        tasks = list(state.current.predictions)
        chosen = state.from_queue[0] if state.from_queue and state.from_queue[0] in tasks else \
            (tasks[0] if tasks else None)
        first = state.current.predictions[chosen] if chosen else None
        return [status_markdown(analysis, len(state.items), state.index, lang), state,
                gr.Dropdown(choices=task_choices(tasks, lang), value=chosen),
                gr.Dropdown(choices=label_choices(chosen, first.classes, cards.get(chosen), lang) if first else [],
                            value=first.label if first else None),
                *updates]

    def on_upload(paths: list[str] | None, domain_choice: str, method: str, alpha: float, lang: str,
                  state: AnalyseSession) -> list[Any]:
        items, problems = expand_uploads(paths or [])
        state = AnalyseSession(items=items)
        out = render(state, domain_choice, method, alpha, lang)
        if problems:
            out[0] = "  \n".join([*problems, out[0]])
        return [thumbnails(items), *out]

    def on_select(evt: gr.SelectData, domain_choice: str, method: str, alpha: float, lang: str,
                  state: AnalyseSession) -> list[Any]:
        if state.items and evt.index is not None:
            state.index = min(int(evt.index), len(state.items) - 1)
            state.targets, state.from_queue = {}, None
        return render(state, domain_choice, method, alpha, lang)

    def on_domain(domain_choice: str, method: str, alpha: float, lang: str, state: AnalyseSession) -> list[Any]:
        return render(state, domain_choice, method, alpha, lang, record=True)

    def on_options(domain_choice: str, method: str, alpha: float, lang: str, state: AnalyseSession) -> list[Any]:
        return render(state, domain_choice, method, alpha, lang)

    def on_explain(domain_choice: str, method: str, alpha: float, lang: str, state: AnalyseSession,
                   *targets: str) -> list[Any]:
        state.targets = {p.task: t for p, t in zip(panels, targets) if t}
        return render(state, domain_choice, method, alpha, lang)

    def open_stored(state: AnalyseSession, task: str, sha: str, domain_choice: str, method: str, alpha: float,
                    lang: str) -> list[Any]:
        """Open the stored image of a review-queue entry with ``task``'s correction form ready."""
        record = next((r for r in reversed(actions.analysed_log.records())
                       if r["task"] == task and r["image_sha256"] == sha), None)
        if record is None:
            return render(state, domain_choice, method, alpha, lang)
        item = UploadItem(str(record.get("name") or sha[:12]), actions.store.data_dir / record["image_path"])
        state = AnalyseSession(items=[item], from_queue=(task, sha))
        return render(state, domain_choice, method, alpha, lang)

    def on_correct_task(task: str, lang: str, state: AnalyseSession) -> Any:
        prediction = state.current.predictions.get(task) if state.current else None
        if prediction is None:
            return gr.Dropdown(choices=[], value=None)
        card = hub.predictor(task).card if hub.predictor(task) else None
        return gr.Dropdown(choices=label_choices(task, prediction.classes, card, lang), value=prediction.label)

    def on_submit(task: str, label: str, who: str, secret: str, text: str, lang: str, state: AnalyseSession,
                  profile: gr.OAuthProfile | None) -> str:
        message = actions.submit_correction(state.current, task, label, Credentials.from_form(who, secret, profile),
                                            text)
        (gr.Success if message.startswith("Saved") else gr.Warning)(message.replace("**", ""))
        return message

    def on_undo(task: str, who: str, secret: str, profile: gr.OAuthProfile | None) -> str:
        message = actions.undo_last_correction(task, Credentials.from_form(who, secret, profile))
        (gr.Info if message.startswith("Undone") else gr.Warning)(message)
        return message

    def next_in_queue(domain_choice: str, method: str, alpha: float, lang: str, state: AnalyseSession,
                      message: str = "Saved") -> list[Any]:
        """Open the least confident queue entry other than the one on screen (after a save
        of a queue entry, or on the Next button)."""
        if not message.startswith("Saved") or (state.from_queue is None and message != "next"):
            return [gr.update() for _ in outputs]
        current = state.from_queue
        pending = [r for r in pending_review(actions.analysed_log.records(), actions.store.active())
                   if (r["task"], r["image_sha256"]) != current]
        if not pending:
            gr.Info(pick(("The review queue is empty.", "复核队列已清空。"), lang))
            return [gr.update() for _ in outputs]
        return open_stored(state, pending[0]["task"], pending[0]["image_sha256"], domain_choice, method, alpha, lang)

    options = [domain, cam_method, opacity, lang, session]
    files.upload(on_upload, [files, *options], [gallery, *outputs], api_name="analyse")
    gallery.select(on_select, options, outputs, api_name=False)
    domain.input(on_domain, options, outputs, api_name="reanalyse")
    cam_method.input(on_options, options, outputs, api_name=False)
    opacity.release(on_options, options, outputs, api_name=False)
    lang.change(on_options, options, outputs, api_name=False)
    for panel in panels:
        panel.explain.input(on_explain, [*options, *[p.explain for p in panels]], outputs, api_name=False)
    correct_task.input(on_correct_task, [correct_task, lang, session], correct_label, api_name=False)
    submit.click(on_submit, [correct_task, correct_label, *signin.credentials, note, lang, session], correct_message,
                 api_name="submit_correction").then(next_in_queue, [*options, correct_message], outputs,
                                                    api_name=False)
    undo.click(on_undo, [correct_task, *signin.credentials], correct_message, api_name="undo_correction")
    next_item.click(lambda *a: next_in_queue(*a, message="next"), options, outputs, api_name=False)
    return AnalyseTab(session, options, outputs, open_stored)
