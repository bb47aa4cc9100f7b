"""Where things live: shipped weights, the app's data directory."""
from __future__ import annotations

import os
from pathlib import Path

#: The four tasks with shipped models, by domain.
TASKS_BY_DOMAIN: dict[str, list[str]] = {
    "painting": ["painting-subject", "painting-technique"],
    "calligraphy": ["calligraphy-script", "calligrapher"],
}
TASKS = [t for ts in TASKS_BY_DOMAIN.values() for t in ts]


def weights_root() -> Path:
    """``$INKAPP_WEIGHTS_DIR`` or the repository's ``weights/`` folder."""
    env = os.environ.get("INKAPP_WEIGHTS_DIR")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "weights"


def shipped_weights(task: str) -> Path:
    """Folder of the shipped model for ``task`` (``weights/<task>``)."""
    return weights_root() / task


def data_dir() -> Path:
    """``$INKAPP_DATA_DIR`` (default ``./inkapp-data``): corrections CSV, stored images, model versions."""
    return Path(os.environ.get("INKAPP_DATA_DIR", "inkapp-data"))
