"""The curation app: :func:`build_app` assembles the tabs, :func:`launch` serves them.

Models are loaded once when the app is built; the data directory
(``$INKAPP_DATA_DIR``) holds corrections, stored images, the analysis log and
promoted model versions. Experts are read from ``$INKAPP_EXPERTS`` /
``$INKAPP_HF_EXPERTS`` (see :mod:`inkapp.auth`); the page says whether the app is open
or restricted. A Hugging Face sign-in button is shown only on a Space with
``INKAPP_HF_EXPERTS`` set (elsewhere gradio would sign in the machine's own HF account).
"""
from __future__ import annotations

import atexit
import os
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.utils import get_space

from inkapp.auth import Experts
from inkapp.data.images import effective_max_bytes
from inkapp.paths import data_dir as default_data_dir
from inkapp.store.corrections import CorrectionStore

from inkapp.curation.actions import CurationActions
from . import gradio_cache
from .analyse_tab import build_analyse_tab
from inkapp.curation.analysis import AnalysisCache
from inkapp.curation.hub import ModelHub
from inkapp.curation.memory import map_large_allocations
from .models_tab import build_models_tab
from inkapp.curation.retrain import RetrainManager
from inkapp.curation.upload_folder import own_upload_folder
from inkapp.store.analysed import AnalysedLog
from .review_tab import build_review_tab
from .i18n import DETECT_LANG_JS, I18N, LANG_CHOICES, LANG_STORAGE_KEY, Relabel
from .signin import build_signin

TITLE = "Ink curation studio"
#: Gradio's upload cache clean-up (frequency, age) in seconds: every 10 minutes, files older
#: than an hour are deleted; all of them when the server shuts down.
UPLOAD_CACHE_DELETE = (600, 3600)
CSS = """
.ink-result { font-size: 1.05rem; }
.ink-label { font-size: 1.4rem; font-weight: 600; }
.ink-confidence { font-size: 1.1rem; margin-left: .4rem; }
.ink-badge { border-radius: .4rem; padding: .1rem .45rem; margin-left: .5rem; font-size: .85rem; }
.ink-uncertain { background: #fdebd0; color: #873600; border: 1px solid #e59866; }
.ink-dynasty { margin-top: .25rem; }
.ink-meta { color: #7f8c8d; font-size: .85rem; margin-top: .25rem; }
.ink-error { color: #922b21; }
.ink-open-access { color: #873600; }
.ink-restricted { color: #1e8449; }
.ink-word { border-radius: .4rem; padding: .1rem .5rem; margin-left: .4rem; font-size: .95rem; }
.ink-very_likely { background: #d5f5e3; color: #145a32; }
.ink-likely { background: #eaf2f8; color: #1b4f72; }
.ink-uncertain { background: #fdebd0; color: #873600; border: 1px solid #e59866; }
.ink-reading { margin-top: .4rem; font-size: 1rem; }
.ink-legend { display: flex; align-items: center; gap: .5rem; font-size: .85rem; margin-top: .3rem; }
.ink-legend-bar { display: inline-block; width: 180px; height: 12px; border-radius: 3px; }
.ink-scroll-cell { margin: 0; }
.ink-scroll-cell figcaption { font-size: .8rem; color: #7f8c8d; }
.ink-scroll-hint { font-size: .85rem; color: #7f8c8d; }
.ink-thumb { width: 72px; height: 72px; object-fit: contain; background: #f4f1ea; }
table.ink-corrections-view td { vertical-align: middle; padding: .25rem .5rem; }
"""


def build_actions(data_dir: Path | None = None, experts: Experts | None = None) -> CurationActions:
    """Load every model and open the stores of ``data_dir`` (default ``$INKAPP_DATA_DIR``);
    ``experts`` defaults to :meth:`inkapp.auth.Experts.from_env`."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    root.mkdir(parents=True, exist_ok=True)
    experts = experts if experts is not None else Experts.from_env()
    store = CorrectionStore(root)
    return CurationActions(ModelHub(root), store, AnalysedLog(root), RetrainManager(root, store), experts)


def build_app(actions: CurationActions | None = None) -> gr.Blocks:
    """The app's Blocks (Analyse, Review, Models tabs) over ``actions`` (default: :func:`build_actions`)."""
    actions = actions if actions is not None else build_actions()
    gradio_cache.install()  # identical images returned by concurrent requests never truncate each other
    cache = AnalysisCache()
    relabel = Relabel()
    with gr.Blocks(title=TITLE, delete_cache=UPLOAD_CACHE_DELETE) as demo:
        with gr.Row():
            with gr.Column(scale=4):
                relabel.value(gr.Markdown(I18N("title")), "title")
                relabel.value(gr.Markdown(I18N("intro")), "intro")
            lang = gr.Radio(LANG_CHOICES, value="en", label="Language / 语言", elem_id="ink-lang", scale=1)
        stored_lang = gr.BrowserState("", storage_key=LANG_STORAGE_KEY)
        with gr.Row():
            gr.Markdown(actions.access_note, elem_id="ink-access",
                        elem_classes="ink-restricted" if actions.experts.configured else "ink-open-access")
            if actions.experts.hf_users and get_space() is not None:
                gr.LoginButton(elem_id="ink-login")
        signin = build_signin(actions, relabel, lang)
        with gr.Tabs(selected="analyse") as tabs:
            with gr.Tab(I18N("tab_analyse"), id="analyse") as analyse_tab:
                relabel.label(analyse_tab, "tab_analyse")
                analyse = build_analyse_tab(actions, cache, relabel, signin, lang)
            relabel.label(build_review_tab(actions, relabel, lang, analyse, tabs), "tab_review")
            relabel.label(build_models_tab(actions, relabel, lang, signin), "tab_models")

        def switch(code: str) -> list[Any]:
            return [code, code, *relabel.updates(code)]

        # on load: the stored choice, else the browser's language (DETECT_LANG_JS runs in the browser)
        demo.load(switch, stored_lang, [lang, stored_lang, *relabel.components], js=DETECT_LANG_JS,
                  api_name=False)
        lang.input(switch, lang, [lang, stored_lang, *relabel.components], api_name=False)
    return demo


def launch() -> None:
    """Serve the app on ``$GRADIO_SERVER_NAME`` (default 127.0.0.1) : ``$GRADIO_SERVER_PORT`` (default 7860).

    Uploads go to the app's own folder under the data directory (``GRADIO_TEMP_DIR`` is
    set to it, overriding any value in the environment); what earlier servers left there
    is deleted first (:func:`inkapp.curation.upload_folder.own_upload_folder`).
    """
    map_large_allocations()  # blocks ≥ 4 MiB go back to the OS when freed (inkapp.curation.memory)
    root = default_data_dir()
    os.environ["GRADIO_TEMP_DIR"] = str(own_upload_folder(root))  # before any component is built
    actions = build_actions(root)
    atexit.register(actions.retrain.shutdown)
    demo = build_app(actions)
    demo.queue(default_concurrency_limit=2)
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                max_file_size=effective_max_bytes(),  # the web layer refuses what the decoder would
                theme=gr.themes.Soft(), css=CSS, footer_links=["api", "settings"], i18n=I18N)
