"""The Analyse tab: upload, step through images, per-task results and corrections."""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
from PIL import Image

from inkapp.data.images import ImageError
from inkapp.tasks import TASKS

from inkapp.curation.actions import AnalysedImage, Credentials, CurationActions
from inkapp.curation.analysis import (DEFAULT_CAM, AnalysisCache, ImageAnalysis, LoadedImage, TaskView, analyse_loaded,
                                     load_upload)
from inkapp.explain.cam import CAM_METHODS
from inkapp.tasks import get as get_task
from inkapp.curation.domain import AUTO, DOMAINS
from inkapp.curation.uploads import UPLOAD_TYPES, UploadItem, expand_uploads

from .charts import channel_chart, probability_chart
THUMBNAIL_SIDE = 192


@dataclass
class AnalyseSession:
    """Per-browser-session state: the uploaded items, which one is shown, the item
    decoded last and its image, the analysis record of the image on screen, the class each task's heat map explains, and the
    (sha256, task, version) triples already written to the review log."""

    items: list[UploadItem] = field(default_factory=list)
    index: int = 0
    targets: dict[str, str] = field(default_factory=dict)
    loaded_item: UploadItem | None = None
    loaded: LoadedImage | None = None
    current: AnalysedImage | None = None
    logged: set[tuple[str, str, str]] = field(default_factory=set)


@dataclass
class TaskPanel:
    """The components showing one task's result."""

    task: str
    column: gr.Column
    summary: gr.HTML
    chart: gr.Plot
    cam: gr.Image
    explain: gr.Dropdown
    attention: gr.Gallery
    gates: gr.Markdown
    channels: gr.Plot

    def components(self) -> list[gr.components.Component | gr.Column]:
        return [self.column, self.summary, self.chart, self.cam, self.explain, self.attention, self.gates,
                self.channels]

    @staticmethod
    def hidden() -> list[Any]:
        return [gr.Column(visible=False), "", None, None, gr.Dropdown(choices=[], value=None), [], "", None]

    @staticmethod
    def shown(view: TaskView) -> list[Any]:
        if view.error:
            return [gr.Column(visible=True), f'<div class="ink-error">{html.escape(view.error)}</div>', None, None,
                    gr.Dropdown(choices=[], value=None), [], "", None]
        gates = " · ".join(f"{info.caption[0]} = {value:.2f}" for info, value in view.gates)
        channels = next(iter(view.channel_weights), None)
        return [gr.Column(visible=True), summary_html(view),
                probability_chart(view.probabilities, view.threshold), view.cam_overlay,
                gr.Dropdown(choices=view.classes, value=view.cam_target),
                [(image, info.caption[0]) for image, info in view.attention_overlays],
                f"Attention gate weights (image mean): {gates}" if gates else "",
                None if channels is None else channel_chart(channels[1], channels[0].caption[0])]


def summary_html(view: TaskView) -> str:
    """Label, confidence, uncertain badge, dynasty and model version of one task."""
    badge = (f'<span class="ink-badge ink-uncertain">uncertain — below the {view.threshold:.0%} threshold</span>'
             if view.uncertain and view.threshold is not None else "")
    dynasty = f'<div class="ink-dynasty">Dynasty: {html.escape(view.dynasty_text)}</div>' if view.dynasties else ""
    return (f'<div class="ink-result"><span class="ink-label">{html.escape(view.label)}</span> '
            f'<span class="ink-confidence">{view.confidence:.1%}</span> {badge}{dynasty}'
            f'<div class="ink-meta">model {html.escape(view.model_version)} · heat map: '
            f'{html.escape(view.cam_method)} for “{html.escape(view.cam_target)}”</div></div>')


def status_markdown(analysis: ImageAnalysis, n_items: int, index: int) -> str:
    """Header line for the image on screen."""
    position = f"Image {index + 1} of {n_items}: " if n_items > 1 else ""
    return (f"{position}**{analysis.name}** — {analysis.width}×{analysis.height} px · domain "
            f"**{analysis.domain.domain}** ({analysis.domain.reason})")


def _thumbnail(item: UploadItem) -> tuple[Image.Image, str]:
    """A small preview of an upload; a grey tile with the reason for a bad file."""
    try:
        image = load_upload(item.read_bytes(), item.name).display
        image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        return image, item.name
    except ImageError as err:
        return Image.new("RGB", (THUMBNAIL_SIDE, THUMBNAIL_SIDE), (200, 200, 200)), f"{item.name}: {err}"


def build_analyse_tab(actions: CurationActions, cache: AnalysisCache) -> None:
    """Lay out the Analyse tab inside the current ``gr.Tab`` and wire its events."""
    hub = actions.hub
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            files = gr.File(label="Images (JPEG, PNG, TIFF, WebP, GIF, BMP) or a .zip", file_count="multiple",
                            file_types=UPLOAD_TYPES, elem_id="ink-upload")
            domain = gr.Radio([AUTO, *DOMAINS], value=AUTO, label="Domain")
            cam_method = gr.Dropdown([(m.label, key) for key, m in CAM_METHODS.items()], value=DEFAULT_CAM,
                                     label="Heat map method")
            opacity = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Overlay opacity")
            gallery = gr.Gallery(label="Uploaded images — click one to analyse it", columns=3, height=260,
                                 allow_preview=False, elem_id="ink-gallery")
            with gr.Group():
                gr.Markdown("#### Correct a label")
                correct_task = gr.Dropdown(choices=[], label="Task", allow_custom_value=True, elem_id="ink-correct-task")
                correct_label = gr.Dropdown(choices=[], label="Right label", allow_custom_value=True, elem_id="ink-correct-label")
                with gr.Row():
                    expert = gr.Textbox(label="Expert name", elem_id="ink-expert")
                    password = gr.Textbox(label="Password", type="password", elem_id="ink-password",
                                          visible=bool(actions.experts.passwords))
                note = gr.Textbox(label="Note (optional)", elem_id="ink-note")
                with gr.Row():
                    submit = gr.Button("Submit correction", variant="primary", elem_id="ink-submit")
                    undo = gr.Button("Undo my last correction", elem_id="ink-undo")
                correct_message = gr.Markdown(elem_id="ink-correct-message")
        with gr.Column(scale=3):
            status = gr.Markdown("Upload an image to analyse it.", elem_id="ink-status")
            panels: list[TaskPanel] = []
            for task in TASKS:
                with gr.Column(visible=False) as column:
                    gr.Markdown(f"### {get_task(task).title.en}")
                    summary = gr.HTML(elem_id=f"ink-summary-{task}")
                    with gr.Row():
                        chart = gr.Plot(label="Class probabilities", elem_id=f"ink-chart-{task}")
                        cam = gr.Image(label="Heat map", type="pil", format="jpeg", interactive=False, elem_id=f"ink-cam-{task}")
                    explain = gr.Dropdown(choices=[], label="Explain class", allow_custom_value=True, elem_id=f"ink-explain-{task}")
                    attention = gr.Gallery(label="Model attention", columns=3, height="auto", format="jpeg",
                                           elem_id=f"ink-attention-{task}")
                    gates = gr.Markdown()
                    channels = gr.Plot(label="Channel attention", elem_id=f"ink-channels-{task}")
                panels.append(TaskPanel(task, column, summary, chart, cam, explain, attention, gates, channels))
    session = gr.State(AnalyseSession())
    panel_outputs = [c for p in panels for c in p.components()]
    outputs = [status, session, correct_task, correct_label, *panel_outputs]

    def render(state: AnalyseSession, domain_choice: str, method: str, alpha: float, record: bool = False) -> list[Any]:
        """Analyse the session's current item (from the cache when it was analysed with these
        options before) and produce every output; ``record`` stores the image and logs its
        predictions (a new image or domain), which redrawing (opacity, heat-map method,
        explained class) never does."""
        hidden = [u for _ in panels for u in TaskPanel.hidden()]
        no_task = [gr.Dropdown(choices=[], value=None), gr.Dropdown(choices=[], value=None)]
        if not state.items:
            return ["Upload an image to analyse it.", state, *no_task, *hidden]
        item = state.items[state.index]
        if state.loaded is None or state.loaded_item != item:
            state.current, state.loaded_item, record = None, item, True
            try:
                state.loaded = load_upload(item.read_bytes(), item.name)
            except ImageError as err:
                state.loaded = None
                return [f"**{item.name}**: {err}", state, *no_task, *hidden]
        analysis = analyse_loaded(hub, state.loaded, domain_choice, method, state.targets, float(alpha), cache)
        if record or state.current is None:
            state.current = actions.record_analysis(state.loaded, analysis, state.current, state.logged)
        views = {v.task: v for v in analysis.tasks}
        updates = [u for p in panels for u in (TaskPanel.shown(views[p.task]) if p.task in views
                                               else TaskPanel.hidden())]
        tasks = list(state.current.predictions)
        first = state.current.predictions[tasks[0]] if tasks else None
        return [status_markdown(analysis, len(state.items), state.index), state,
                gr.Dropdown(choices=tasks, value=tasks[0] if tasks else None),
                gr.Dropdown(choices=list(first.classes) if first else [], value=first.label if first else None),
                *updates]

    def on_upload(paths: list[str] | None, domain_choice: str, method: str, alpha: float,
                  state: AnalyseSession) -> list[Any]:
        items, problems = expand_uploads(paths or [])
        state = AnalyseSession(items=items)
        out = render(state, domain_choice, method, alpha)
        if problems:
            out[0] = "  \n".join([*problems, out[0]])
        return [[_thumbnail(i) for i in items], *out]

    def on_select(evt: gr.SelectData, domain_choice: str, method: str, alpha: float,
                  state: AnalyseSession) -> list[Any]:
        if state.items and evt.index is not None:
            state.index = min(int(evt.index), len(state.items) - 1)
            state.targets = {}
        return render(state, domain_choice, method, alpha)

    def on_domain(domain_choice: str, method: str, alpha: float, state: AnalyseSession) -> list[Any]:
        return render(state, domain_choice, method, alpha, record=True)

    def on_options(domain_choice: str, method: str, alpha: float, state: AnalyseSession) -> list[Any]:
        return render(state, domain_choice, method, alpha)

    def on_explain(domain_choice: str, method: str, alpha: float, state: AnalyseSession, *targets: str) -> list[Any]:
        state.targets = {p.task: t for p, t in zip(panels, targets) if t}
        return render(state, domain_choice, method, alpha)

    def on_correct_task(task: str, state: AnalyseSession) -> Any:
        prediction = state.current.predictions.get(task) if state.current else None
        if prediction is None:
            return gr.Dropdown(choices=[], value=None)
        return gr.Dropdown(choices=list(prediction.classes), value=prediction.label)

    def on_submit(task: str, label: str, who: str, secret: str, text: str, state: AnalyseSession,
                  profile: gr.OAuthProfile | None) -> str:
        return actions.submit_correction(state.current, task, label, Credentials.from_form(who, secret, profile), text)

    def on_undo(task: str, who: str, secret: str, profile: gr.OAuthProfile | None) -> str:
        return actions.undo_last_correction(task, Credentials.from_form(who, secret, profile))

    options = [domain, cam_method, opacity, session]
    files.upload(on_upload, [files, *options], [gallery, *outputs], api_name="analyse")
    gallery.select(on_select, options, outputs, api_name=False)
    domain.input(on_domain, options, outputs, api_name="reanalyse")
    cam_method.input(on_options, options, outputs, api_name=False)
    opacity.release(on_options, options, outputs, api_name=False)
    for panel in panels:
        panel.explain.input(on_explain, [*options, *[p.explain for p in panels]], outputs, api_name=False)
    correct_task.input(on_correct_task, [correct_task, session], correct_label, api_name=False)
    submit.click(on_submit, [correct_task, correct_label, expert, password, note, session], correct_message,
                 api_name="submit_correction")
    undo.click(on_undo, [correct_task, expert, password], correct_message, api_name="undo_correction")
