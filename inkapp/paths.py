"""Where things live: shipped weights, the app's data directory, the labelled training data."""
from __future__ import annotations

import os
from pathlib import Path


_REPO = Path(__file__).resolve().parent.parent


def weights_root() -> Path:
    """``$INKAPP_WEIGHTS_DIR`` or the repository's ``weights/`` folder."""
    env = os.environ.get("INKAPP_WEIGHTS_DIR")
    return Path(env) if env else _REPO / "weights"


def shipped_weights(task: str) -> Path:
    """Folder of the shipped model for ``task`` (``weights/<task>``): the single model the
    app, ``predict`` and ``evaluate`` use by default."""
    return weights_root() / task


def shipped_ensemble(task: str) -> Path:
    """Folder of the shipped seed ensemble for ``task`` (``weights/<task>/ensemble``, where
    one is shipped): several times the single model's cost per image, so the app keeps the
    single model and ``inkapp scan --ensemble`` (or ``--weights`` with this folder) uses it."""
    return shipped_weights(task) / "ensemble"


def data_dir() -> Path:
    """``$INKAPP_DATA_DIR`` (default ``./inkapp-data``): corrections CSV, stored images, model versions."""
    return Path(os.environ.get("INKAPP_DATA_DIR", "inkapp-data"))


def shared_data_root() -> Path:
    """``$INKAPP_TRAIN_DATA`` or ``../shared/data`` beside the repository: the labelled
    ImageFolder trees (``<root>/<task>/<class>/<file>``) the training configs name."""
    env = os.environ.get("INKAPP_TRAIN_DATA")
    return Path(env) if env else _REPO.parent / "shared" / "data"
