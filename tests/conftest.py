"""Shared fixtures.

UI fixtures: ``ui_weights_dir`` (random-weight models for the four tasks, as the app
expects them under ``$INKAPP_WEIGHTS_DIR``), ``launched_app`` (one open app server in a
subprocess, shared by the client, browser and soak tests) and ``launched_restricted_app``
(a second server with :data:`TEST_EXPERT` configured in ``INKAPP_EXPERTS``).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from inkapp.auth import hash_password
from inkapp.data.preprocess import Preprocessor
from inkapp.models import build_model, save_model
from inkapp.dev.procs import AppStartError, serve_app

from fallback_data import labelled_data  # noqa: F401  (session fixture: ../shared/data or a generated set)

UI_MODEL_SIZE = 128
#: task -> (arch, domain, classes, dynasty table) of the random-weight test models.
UI_TEST_MODELS: dict[str, tuple[str, str, list[str], dict[str, str]]] = {
    "painting-subject": ("inkfusion", "painting", ["figure", "flower_bird", "landscape"], {}),
    "painting-technique": ("inkfusion", "painting", ["gongbi", "xieyi"], {}),
    "calligraphy-script": ("bamnet", "calligraphy", ["clerical", "cursive", "regular", "seal"], {}),
    "calligrapher": ("bamnet", "calligraphy", ["ouyang_xun", "yan_zhenqing", "liu_gongquan", "zhao_mengfu"],
                     {"ouyang_xun": "Tang", "yan_zhenqing": "Tang", "liu_gongquan": "Tang", "zhao_mengfu": "Yuan"}),
}
APP_START_TIMEOUT_S = 600  # generous: CI machines and this one share the CPU with training
#: Upload byte limit of the launched apps (INKAPP_MAX_UPLOAD_MB), small so tests can exceed it cheaply.
TEST_UPLOAD_LIMIT_MB = 1
#: (name, password) of the expert configured in ``launched_restricted_app``.
TEST_EXPERT = ("curator-张", "correct horse battery")


def make_random_model(folder: Path, task: str, seed: int = 0, version: str = "test-1") -> Path:
    """Write a random-weight model folder for ``task`` (see :data:`UI_TEST_MODELS`)."""
    arch, domain, classes, dynasty = UI_TEST_MODELS[task]
    grayscale = domain == "calligraphy"
    torch.manual_seed(seed)
    model = build_model({"arch": arch, "num_classes": len(classes), "pretrained": None,
                         "image_size": UI_MODEL_SIZE, "grayscale": grayscale})
    k = len(classes)
    card = {
        "task": task,
        "domain": domain,
        "classes": classes,
        "preprocessing": Preprocessor(UI_MODEL_SIZE, grayscale, (0.5,) * 3, (0.5,) * 3).to_card(),
        "version": version,
        "uncertainty_threshold": 0.6,
        "dynasty": dynasty,
        "metrics": {"n": 10 * k, "accuracy": 0.5, "macro_f1": 0.45,
                    "per_class": {c: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 10} for c in classes},
                    "confusion_matrix": [[5 if i == j else 5 // max(k - 1, 1) for j in range(k)] for i in range(k)]},
        "data": {"source": "random test weights", "split_counts": {"test": {c: 10 for c in classes}}},
    }
    return save_model(model, folder, card)


@pytest.fixture(scope="session")
def ui_weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights root with random-weight models for the four tasks (no domain model)."""
    root = tmp_path_factory.mktemp("ui-weights")
    for task in UI_TEST_MODELS:
        make_random_model(root / task, task)
    return root


@dataclass(frozen=True)
class LaunchedApp:
    """A running app server: its URL, the data directory it writes to, its log and process id."""

    url: str
    data_dir: Path
    log_path: Path
    pid: int


@contextmanager
def launch_app(weights_dir: Path, data_dir: Path, env_overrides: dict[str, str]) -> Iterator[LaunchedApp]:
    """``python -m inkapp serve`` on a free port over ``data_dir``, with ``env_overrides``
    applied on top of the test environment (keys mapped to "" are removed)."""
    log_path = data_dir.parent / f"{data_dir.name}-server.log"
    env = {"INKAPP_DATA_DIR": str(data_dir), "INKAPP_WEIGHTS_DIR": str(weights_dir),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "INKAPP_MAX_UPLOAD_MB": str(TEST_UPLOAD_LIMIT_MB), **env_overrides}
    try:
        with serve_app(log_path, env, APP_START_TIMEOUT_S, cwd=Path(__file__).resolve().parent.parent) as (url, proc):
            yield LaunchedApp(url, data_dir, log_path, proc.pid)
    except AppStartError as err:
        pytest.fail(str(err))


@pytest.fixture(scope="session")
def launched_app(ui_weights_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaunchedApp]:
    """An open app (no experts configured) with a fresh data dir and the random models."""
    with launch_app(ui_weights_dir, tmp_path_factory.mktemp("ui-data"),
                    {"INKAPP_EXPERTS": "", "INKAPP_HF_EXPERTS": ""}) as app:
        yield app


@pytest.fixture(scope="session")
def launched_restricted_app(ui_weights_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaunchedApp]:
    """An app where only :data:`TEST_EXPERT` (password in ``INKAPP_EXPERTS``) may write."""
    name, password = TEST_EXPERT
    with launch_app(ui_weights_dir, tmp_path_factory.mktemp("ui-restricted-data"),
                    {"INKAPP_EXPERTS": f"{name}={hash_password(password, 1000)}", "INKAPP_HF_EXPERTS": ""}) as app:
        yield app
