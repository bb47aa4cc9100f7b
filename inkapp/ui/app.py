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

import gradio as gr
from gradio.utils import get_space

from inkapp.auth import Experts
from inkapp.paths import data_dir as default_data_dir
from inkapp.store.corrections import CorrectionStore

from inkapp.curation.actions import CurationActions
from .analyse_tab import build_analyse_tab
from inkapp.curation.analysis import AnalysisCache
from inkapp.curation.hub import ModelHub
from .models_tab import build_models_tab
from inkapp.curation.retrain import RetrainManager
from inkapp.store.analysed import AnalysedLog
from .review_tab import build_review_tab

TITLE = "Ink curation studio"
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
    cache = AnalysisCache()
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(f"# {TITLE}\nClassify Chinese ink paintings and calligraphy rubbings, see what the models "
                    f"look at, and correct their labels.")
        with gr.Row():
            gr.Markdown(actions.access_note, elem_id="ink-access",
                        elem_classes="ink-restricted" if actions.experts.configured else "ink-open-access")
            if actions.experts.hf_users and get_space() is not None:
                gr.LoginButton(elem_id="ink-login")
        with gr.Tabs():
            with gr.Tab("Analyse", id="analyse"):
                build_analyse_tab(actions, cache)
            build_review_tab(actions)
            build_models_tab(actions)
    return demo


def launch() -> None:
    """Serve the app on ``$GRADIO_SERVER_NAME`` (default 127.0.0.1) : ``$GRADIO_SERVER_PORT`` (default 7860)."""
    actions = build_actions()
    atexit.register(actions.retrain.shutdown)
    demo = build_app(actions)
    demo.queue(default_concurrency_limit=2)
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                theme=gr.themes.Soft(), css=CSS, footer_links=["api"])
