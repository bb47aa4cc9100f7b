"""The papers' own tasks are ready to run (issue 15): each packaged template loads and trains
for one optimiser step (one epoch of a tiny generated folder of the task's shape, one
batch) through the same ``inkapp train`` path, and the card it writes has the task's
classes, input and architecture."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from fallback_data import write_imagefolder
from inkapp.training.config import load_config
from inkapp.training.run import run

#: template -> (class folders, generated image size (w, h), grayscale, images per class, split ratios for the
#: tiny folder: paper A's 7:2:1 cuts 10 stratified folds, which needs 10 images per class — 3 folds keep it tiny)
TEMPLATES = {
    "paper-a-8class": (["landscape", "flower_bird", "figure", "xieyi", "gongbi", "song_yuan", "ming_qing", "modern"],
                       (120, 90), False, 3, [0.34, 0.33, 0.33]),
    "paper-b-4dynasty-clerical": (["han", "tang", "yuan", "qing"], (90, 120), True, 5, None),
}


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_paper_template_trains_one_step(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    classes, size, grayscale, per_class, ratios = TEMPLATES[name]
    monkeypatch.setenv("INKAPP_CACHE_DIR", str(tmp_path / "cache"))
    data = write_imagefolder(tmp_path / "data", classes, per_class, size, grayscale, seed=5)
    template = load_config(name)
    n = len(classes) * per_class
    overrides = {"data": str(data), "train.epochs": 1, "train.batch_size": n}  # one batch = one step
    if ratios:
        overrides["split.ratios"] = ratios
    cfg = load_config(name, overrides)
    assert cfg.model == template.model and cfg.split.grouping == template.split.grouping == "loose"
    lines: list[str] = []
    result = run(cfg, tmp_path / "run", progress=False, log=lines.append)
    card = json.loads((tmp_path / "run" / "card.json").read_text())
    assert card["classes"] == sorted(classes)
    assert card["task"] == name and card["training"]["epochs_run"] == 1
    assert card["model"]["arch"] == template.model["arch"] and card["model"]["backbone"] == template.model["backbone"]
    assert card["preprocessing"]["image_size"] == template.model["image_size"]
    assert card["preprocessing"]["grayscale"] is template.model["grayscale"]
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert sum(len(v) for v in split.values()) == n and all(split.values())
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())["history"]
    assert len(history) == 1 and history[0]["train_loss"] > 0
    assert result["metrics"]["n"] == len(split["test"])
    if name.startswith("paper-b"):
        assert card["dynasty"] == {"han": "Han", "tang": "Tang", "yuan": "Yuan", "qing": "Qing"}
