"""The Analyse tab: upload, step through images, per-task results and corrections."""
from __future__ import annotations

import html
import tempfile
from collections.abc import Callable
from pathlib import Path
from dataclasses import dataclass, field, replace
from typing import Any

import gradio as gr
from PIL import Image

from inkapp.data.images import ImageError
from inkapp.tasks import TASKS

from inkapp.curation.actions import AnalysedImage, Credentials, CurationActions
from inkapp.curation.analysis import (DEFAULT_CAM, AnalysisCache, ImageAnalysis, LoadedImage, TaskView,
                                     analyse_loaded, load_upload)
from inkapp.curation.pixels import PIXELS, ShownImage, decode_again, session_ttl_s
from inkapp.explain.cam import CAM_METHODS
from inkapp.tasks import get as get_task
from inkapp.curation.domain import AUTO, DOMAINS
from inkapp.curation.uploads import UPLOAD_TYPES, UploadItem, expand_uploads, thumbnails

from inkapp.curation.review import pending_review
from inkapp.curation.exports import ExportFolders, Target, export_annotations, export_record, stored_target
from inkapp.curation.iiif_items import open_url
from inkapp.curation.page_view import PageView, page_view
from inkapp.curation.similar_view import SimilarCard, similar_cards
from inkapp.iiif import SourceError
from inkapp.tasks import DOMAIN_TASK, class_name

from .charts import channel_chart, probability_chart
from .i18n import I18N, Relabel, pick, t
from .result_html import both_names, researcher_notes, scroll_html, summary_html
from .signin import SignIn

#: The domain choices as the curator reads them (the value stays the stable key).
DOMAIN_CHOICE_NAMES: dict[str, str] = {AUTO: "auto 自动", "painting": "painting 绘画", "calligraphy": "calligraphy 书法"}


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
    iiif_targets: dict[UploadItem, Target] = field(default_factory=dict)  # items opened by URL -> their IIIF target
    similar: dict[tuple[str, str, str], list[SimilarCard]] = field(default_factory=dict)  # (sha, task, version)
    page: tuple[tuple[str, str, float], PageView | None] | None = None  # ((sha, version, opacity), page view)
    research_open: set[str] = field(default_factory=set)  # tasks whose researchers' section is open in the page


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
    similar: gr.Gallery  # updated apart from :meth:`components` (see :func:`similar_update`)
    research: gr.Accordion  # the researchers' section: opening it draws the attention overlays

    def components(self) -> list[gr.components.Component | gr.Column]:
        return [self.column, self.summary, self.chart, self.compare, self.scroll, self.explain, self.attention,
                self.notes, self.channels, self.title]

    @staticmethod
    def hidden() -> list[Any]:
        return [gr.Column(visible=False), "", None, None, "", gr.Dropdown(choices=[], value=None), [], "", None, ""]

    @staticmethod
    def shown(view: TaskView, display: Image.Image, card: dict[str, Any] | None, lang: str,
              research_open: bool = False) -> list[Any]:
        """Updates for one task's result in ``lang`` (``card``: the model's card, for display
        names). The attention overlays are drawn only when the researchers' section is open
        (``research_open``); opening it draws them (:func:`attention_gallery`)."""
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
                attention_gallery(view, lang) if research_open else [],
                researcher_notes(view, lang),
                None if channels is None else channel_chart(channels[1], channels[0].caption[i]), title]


def attention_gallery(view: TaskView, lang: str) -> list[tuple[Image.Image, str]]:
    """Gallery value of a task's attention overlays, captioned in ``lang`` (drawn here)."""
    i = 1 if lang == "zh" else 0
    return [(image, info.caption[i]) for image, info in view.attention_overlays]


def similar_update(cards: list[SimilarCard], task: str, lang: str) -> list[tuple[Image.Image, str]]:
    """Gallery value of a task's similar works: letterboxed thumbnails with the label in
    both languages, the similarity and where the label comes from."""
    return [(c.thumbnail, c.caption(task, lang)) for c in cards]


@dataclass
class PageSection:
    """The calligrapher result's page-attribution section (shown for a page only)."""

    column: gr.Column
    verdict: gr.HTML
    boxes: gr.Image
    votes: gr.Plot
    evidence: gr.Gallery

    def components(self) -> list[Any]:
        return [self.column, self.verdict, self.boxes, self.votes, self.evidence]

    @staticmethod
    def hidden() -> list[Any]:
        return [gr.Column(visible=False), "", None, None, []]

    @staticmethod
    def shown(view: PageView, lang: str) -> list[Any]:
        """The page with numbered boxes, the verdict (or the abstain reason), the vote
        chart and the evidence characters side by side with their heat maps, in ``lang``."""
        kind = "ink-abstain" if view.abstained else "ink-attributed"
        verdict = f'<div class="ink-page-verdict {kind}">{html.escape(view.verdict(lang))}</div>'
        names = {class_name("calligrapher", k).text(lang): p for k, p in view.attribution.probabilities.items()}
        pairs = []
        for e in view.evidence:
            both = Image.new("RGB", (e.crop.width + e.heat.width + 4, e.crop.height), (255, 255, 255))
            both.paste(e.crop, (0, 0))
            both.paste(e.heat, (e.crop.width + 4, 0))
            pairs.append((both, view.caption(e, lang)))
        chart = probability_chart(names, view.threshold, t(lang, "page_votes")) if names else None
        return [gr.Column(visible=True), verdict, view.boxes, chart, pairs]


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
    of :attr:`outputs`; :attr:`options` are the inputs it needs besides the item;
    :attr:`credentials` are the sign-in inputs (expert name, password) that other tabs'
    expert actions pass on."""

    session: gr.State
    options: list[Any]
    outputs: list[Any]
    open_stored: Callable[..., list[Any]]
    credentials: list[Any] = field(default_factory=list)


def build_analyse_tab(actions: CurationActions, cache: AnalysisCache, relabel: Relabel, signin: SignIn,
                      lang: gr.Radio) -> AnalyseTab:
    """Lay out the Analyse tab inside the current ``gr.Tab`` and wire its events."""
    hub = actions.hub
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            files = relabel.label(gr.File(label=I18N("upload"), file_count="multiple", file_types=UPLOAD_TYPES,
                                          elem_id="ink-upload"), "upload")
            with gr.Row(equal_height=True):
                iiif_url = relabel.label(gr.Textbox(label=I18N("iiif_url"), placeholder="https://…/manifest.json",
                                                    elem_id="ink-iiif-url", scale=3), "iiif_url")
                iiif_open = relabel.value(gr.Button(I18N("iiif_open"), elem_id="ink-iiif-open", scale=1,
                                                    size="sm"), "iiif_open")
            domain = relabel.label(gr.Radio([(DOMAIN_CHOICE_NAMES[d], d) for d in (AUTO, *DOMAINS)], value=AUTO,
                                            label=I18N("domain"),
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
            with gr.Row():
                record_button = relabel.value(gr.Button(I18N("export_record"), elem_id="ink-export-record",
                                                        size="sm"), "export_record")
                annotations_button = relabel.value(gr.Button(I18N("export_annotations"), size="sm",
                                                             elem_id="ink-export-annotations"), "export_annotations")
            exported = relabel.label(gr.File(label=I18N("exports"), file_count="multiple", interactive=False,
                                             elem_id="ink-exports", height=90), "exports")
            panels: list[TaskPanel] = []
            page_section: PageSection | None = None
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
                    if task == "calligrapher":
                        with gr.Column(visible=False, elem_id="ink-page") as page_column:
                            relabel.value(gr.Markdown(I18N("page_title")), "page_title")
                            page_verdict = gr.HTML(elem_id="ink-page-verdict")
                            with gr.Row():
                                page_boxes = relabel.label(gr.Image(label=I18N("page_boxes"), type="pil",
                                                                    format="jpeg", interactive=False, scale=3,
                                                                    elem_id="ink-page-boxes"), "page_boxes")
                                page_votes = relabel.label(gr.Plot(label=I18N("page_votes"), scale=2,
                                                                   elem_id="ink-page-votes"), "page_votes")
                            page_evidence = relabel.label(gr.Gallery(label=I18N("page_evidence"), columns=4,
                                                                     height="auto", object_fit="contain",
                                                                     allow_preview=False, format="jpeg",
                                                                     fit_columns=False, interactive=False,
                                                                     elem_id="ink-page-evidence"), "page_evidence")
                        page_section = PageSection(page_column, page_verdict, page_boxes, page_votes, page_evidence)
                    scroll = gr.HTML(elem_id=f"ink-scroll-{task}")
                    explain = relabel.label(gr.Dropdown(choices=[], label=I18N("explain"), allow_custom_value=True,
                                                        elem_id=f"ink-explain-{task}"), "explain")
                    similar = relabel.label(gr.Gallery(label=I18N("similar"), columns=5, height="auto",
                                                       object_fit="contain", allow_preview=False, format="jpeg",
                                                       fit_columns=False, interactive=False,
                                                       elem_id=f"ink-similar-{task}"), "similar")
                    with gr.Accordion(I18N("researchers"), open=False, elem_id=f"ink-researchers-{task}") as more:
                        relabel.label(more, "researchers")
                        notes = gr.Markdown(elem_id=f"ink-notes-{task}")
                        attention = relabel.label(gr.Gallery(label=I18N("attention"), columns=3, height="auto",
                                                             format="jpeg", object_fit="contain",
                                                             elem_id=f"ink-attention-{task}"), "attention")
                        channels = relabel.label(gr.Plot(label=I18N("channels"), elem_id=f"ink-channels-{task}"),
                                                 "channels")
                panels.append(TaskPanel(task, column, title, summary, chart, compare, scroll, explain, attention,
                                        notes, channels, similar, more))
    assert page_section is not None, "the task registry has no calligrapher task"
    session = gr.State(AnalyseSession(), time_to_live=session_ttl_s())
    panel_outputs = [c for p in panels for c in p.components()]
    # new outputs go after the existing ones, so API clients reading them by position keep working
    extra_outputs = [*(p.similar for p in panels), *page_section.components()]
    outputs = [status, session, correct_task, correct_label, *panel_outputs, *extra_outputs]
    folders = ExportFolders(Path(tempfile.mkdtemp(prefix="inkapp-analyse-")))
    data_dir = actions.store.data_dir

    def render(state: AnalyseSession, domain_choice: str, method: str, alpha: float, lang: str = "en",
               record: bool = False) -> list[Any]:
        """Analyse the session's current item (from the cache when it was analysed with these
        options before) and produce every output in ``lang``; ``record`` stores the image and
        logs its predictions (a new image or domain), which redrawing (opacity, heat-map
        method, explained class, language) never does."""
        hidden = [*(u for _ in panels for u in TaskPanel.hidden()), *([] for _ in panels), *PageSection.hidden()]
        no_task = [gr.Dropdown(choices=[], value=None), gr.Dropdown(choices=[], value=None)]
        if not state.items:
            return [t(lang, "status_empty"), state, *no_task, *hidden]
        item = state.items[state.index]
        if state.loaded is None or state.loaded_item != item:
            state.current, state.loaded_item, record = None, item, True
            state.similar, state.page = {}, None
            state.loaded = None  # until this image is analysed (its display copy is made meanwhile)
            try:
                loaded = load_upload(item.read_bytes(), item.name)
            except ImageError as err:
                return [f"**{item.name}**: {err}", state, *no_task, *hidden]
        else:
            stored = actions.store.data_dir / state.current.image_path if state.current else None
            try:
                loaded = PIXELS.loaded(state.loaded, lambda: decode_again(item, stored))
            except ImageError as err:
                return [f"**{item.name}**: {err}", state, *no_task, *hidden]
        analysis = analyse_loaded(hub, loaded, domain_choice, method, state.targets, float(alpha), cache)
        if state.loaded is None:
            state.loaded = PIXELS.remember(loaded)
        if record or state.current is None:
            state.current = actions.record_analysis(loaded, analysis, state.current, state.logged)
        views = {v.task: v for v in analysis.tasks}
        cards = {task: (hub.predictor(task).card if hub.predictor(task) else None) for task in views}
        updates = [u for p in panels for u in (TaskPanel.shown(views[p.task], analysis.display, cards[p.task], lang,
                                                               p.task in state.research_open)
                                               if p.task in views else TaskPanel.hidden())]
        updates += [similar_update(similar_for(with_bytes(loaded, state), views[p.task], state), p.task, lang)
                    if p.task in views else [] for p in panels]
        page = page_for(loaded, state, float(alpha)) if "calligrapher" in views else None
        updates += PageSection.hidden() if page is None else PageSection.shown(page, lang)
        tasks = list(state.current.predictions)
        chosen = state.from_queue[0] if state.from_queue and state.from_queue[0] in tasks else \
            (tasks[0] if tasks else None)
        first = state.current.predictions[chosen] if chosen else None
        return [status_markdown(analysis, len(state.items), state.index, lang), state,
                gr.Dropdown(choices=task_choices(tasks, lang), value=chosen),
                gr.Dropdown(choices=label_choices(chosen, first.classes, cards.get(chosen), lang) if first else [],
                            value=first.label if first else None),
                *updates]

    def with_bytes(loaded: LoadedImage, state: AnalyseSession) -> LoadedImage:
        """``loaded`` with its bytes: a copy from the pixel cache has none, so they are read
        from the stored copy (stored by content hash: the same bytes)."""
        if loaded.data or state.current is None:
            return loaded
        return replace(loaded, data=(data_dir / state.current.image_path).read_bytes())

    def similar_for(loaded: LoadedImage, view: TaskView, state: AnalyseSession) -> list[SimilarCard]:
        """The similar works of the image on screen for ``view``'s task (kept in the session)."""
        if view.error:
            return []
        key = (loaded.sha256, view.task, view.model_version)
        if key not in state.similar:
            state.similar[key] = similar_cards(hub, loaded.data, view.task, data_dir) if loaded.data else []
        return state.similar[key]

    def page_for(loaded: LoadedImage, state: AnalyseSession, alpha: float) -> PageView | None:
        """The page attribution of the image on screen (None: not a page), kept in the session."""
        calligrapher = hub.predictor("calligrapher")
        if calligrapher is None:
            return None
        key = (loaded.sha256, calligrapher.version, alpha)
        if state.page is None or state.page[0] != key:
            state.page = (key, page_view(loaded.image, calligrapher, hub.predictor("calligraphy-script"), alpha))
        return state.page[1]

    def on_upload(paths: list[str] | None, domain_choice: str, method: str, alpha: float, lang: str,
                  state: AnalyseSession) -> list[Any]:
        items, problems = expand_uploads(paths or [])
        state = AnalyseSession(items=items, research_open=state.research_open)
        out = render(state, domain_choice, method, alpha, lang)
        if problems:
            out[0] = "  \n".join([*problems, out[0]])
        return [thumbnails(items), *out]

    def on_open_url(url: str, domain_choice: str, method: str, alpha: float, lang: str,
                    state: AnalyseSession) -> list[Any]:
        """Open an IIIF image or manifest URL: every canvas becomes a gallery item; a bad
        URL or manifest leaves the page as it was and says why in one line."""
        try:
            opened = open_url(url, folders.new())
        except SourceError as err:
            message = pick(("Could not open the URL: ", "无法打开该网址："), lang) + str(err)
            gr.Warning(message)
            return [gr.update(), message, *[gr.update() for _ in outputs[1:]]]
        items = [o.item for o in opened]
        state = AnalyseSession(items=items, iiif_targets={o.item: o.target for o in opened},
                               research_open=state.research_open)
        return [thumbnails(items), *render(state, domain_choice, method, alpha, lang)]

    def shown_pixels(state: AnalyseSession) -> LoadedImage | None:
        """The decoded image on screen, without its bytes (None when there is none or it can
        no longer be read)."""
        if state.current is None or state.loaded is None or state.loaded_item is None:
            return None
        item, stored = state.loaded_item, data_dir / state.current.image_path
        try:
            return PIXELS.loaded(state.loaded, lambda: decode_again(item, stored))
        except (ImageError, OSError):
            return None

    def shown_image(state: AnalyseSession) -> LoadedImage | None:
        """The decoded image on screen with its bytes (None as for :func:`shown_pixels`)."""
        loaded = shown_pixels(state)
        try:
            return None if loaded is None else with_bytes(loaded, state)
        except OSError:
            return None

    def on_research(task: str) -> Callable[..., list[Any]]:
        """The researchers' section of ``task`` opened: remember it (later images draw their
        attention overlays up front) and draw them for the image on screen. The analysis
        comes from :class:`AnalysisCache`, so no model runs again."""
        def opened(domain_choice: str, method: str, alpha: float, lang: str, state: AnalyseSession) -> list[Any]:
            state.research_open.add(task)
            loaded = shown_pixels(state)
            if loaded is None:
                return [[], state]
            analysis = analyse_loaded(hub, loaded, domain_choice, method, state.targets, float(alpha), cache)
            view = next((v for v in analysis.tasks if v.task == task), None)
            return [attention_gallery(view, lang) if view is not None else [], state]
        return opened

    def on_research_closed(task: str) -> Callable[[AnalyseSession], AnalyseSession]:
        def closed(state: AnalyseSession) -> AnalyseSession:
            state.research_open.discard(task)
            return state
        return closed

    def on_export_record(lang: str, state: AnalyseSession) -> list[str] | None:
        loaded = shown_image(state)
        if loaded is None:
            gr.Warning(pick(("Analyse an image first.", "请先分析一张图像。"), lang))
            return None
        predictors = [p for p in (hub.predictor(task) for task in state.current.predictions) if p is not None]
        files, note = export_record(loaded, predictors, data_dir, folders.new())
        if note:
            gr.Info(pick(("HTML only: ", "仅 HTML："), lang) + note)
        return [str(f) for f in files]

    def on_export_annotations(lang: str, state: AnalyseSession) -> list[str] | None:
        loaded = shown_image(state)
        if loaded is None:
            gr.Warning(pick(("Analyse an image first.", "请先分析一张图像。"), lang))
            return None
        target = state.iiif_targets.get(state.loaded_item) or stored_target(data_dir, state.current, loaded.image.size)
        page = state.page[1] if state.page is not None else None
        calligrapher = hub.predictor("calligrapher")
        path = export_annotations(state.current, target, loaded.image.size, actions.store.active(), folders.new(),
                                  page.attribution if page is not None else None,
                                  calligrapher.version if calligrapher is not None else "")
        return [str(path)]

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
        state = AnalyseSession(items=[item], from_queue=(task, sha), research_open=state.research_open)
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
    gr.on([iiif_open.click, iiif_url.submit], on_open_url, [iiif_url, *options], [gallery, *outputs],
          api_name="open_url")
    record_button.click(on_export_record, [lang, session], exported, api_name="export_record")
    annotations_button.click(on_export_annotations, [lang, session], exported, api_name="export_annotations")
    gallery.select(on_select, options, outputs, api_name=False)
    domain.input(on_domain, options, outputs, api_name="reanalyse")
    cam_method.input(on_options, options, outputs, api_name=False)
    opacity.release(on_options, options, outputs, api_name=False)
    lang.change(on_options, options, outputs, api_name=False)
    for panel in panels:
        panel.explain.input(on_explain, [*options, *[p.explain for p in panels]], outputs, api_name=False)
        panel.research.expand(on_research(panel.task), options, [panel.attention, session], api_name=False)
        panel.research.collapse(on_research_closed(panel.task), session, session, api_name=False)
    correct_task.input(on_correct_task, [correct_task, lang, session], correct_label, api_name=False)
    submit.click(on_submit, [correct_task, correct_label, *signin.credentials, note, lang, session], correct_message,
                 api_name="submit_correction").then(next_in_queue, [*options, correct_message], outputs,
                                                    api_name=False)
    undo.click(on_undo, [correct_task, *signin.credentials], correct_message, api_name="undo_correction")
    next_item.click(lambda *a: next_in_queue(*a, message="next"), options, outputs, api_name=False)
    return AnalyseTab(session, options, outputs, open_stored, list(signin.credentials))
