"""Retraining really trains on the experts' corrections, end to end.

A tiny generated calligrapher folder (2 classes × :data:`PER_CLASS` images, 64 px,
``smallcnn``, 1 epoch) and a corrections CSV that relabels :data:`N_RELABEL` base
images, adds :data:`N_ADDED` stored uploads and holds one revoked correction. Both
entry points must train on the merged data: ``inkapp train --corrections`` and the
app's retraining job (:class:`inkapp.curation.retrain.RetrainManager`). What the run
trained on is read back from its ``data_summary.json`` and ``split.json``.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from inkapp.curation.retrain import RetrainManager, train_command
from inkapp.data.images import sha256_file
from inkapp.store.corrections import CorrectionStore

from fallback_data import stroke_image, write_imagefolder

TASK = "calligrapher"
CLASSES = ["ouyang_xun", "zhao_mengfu"]
PER_CLASS, N_RELABEL, N_ADDED = 8, 2, 3
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class CorrectedData:
    """Base folder, app data dir with its corrections, and what the merge must produce."""

    base: Path
    data_dir: Path
    relabelled: dict[str, str]  # base file name -> corrected label
    added: dict[str, str]  # stored image path (relative to data_dir) -> label


def tiny_config(folder: Path, data: Path) -> Path:
    """``<folder>/calligrapher.yaml``: smallcnn at 64 px, grayscale, no augmentation."""
    cfg = {"task": TASK, "domain": "calligraphy", "data": str(data),
           "model": {"arch": "smallcnn", "pretrained": None, "image_size": 64, "grayscale": True},
           "train": {"epochs": 1, "batch_size": 8, "scheduler": "none", "augment": "none",
                     "early_stop_patience": 0},
           "dynasty": {"ouyang_xun": "Tang", "zhao_mengfu": "Yuan"}}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{TASK}.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def corrected(tmp_path_factory: pytest.TempPathFactory) -> CorrectedData:
    root = tmp_path_factory.mktemp("retrain")
    base = write_imagefolder(root / "base", CLASSES, PER_CLASS, (64, 64), grayscale=True, seed=7)
    store = CorrectionStore(root / "app-data")
    cls = CLASSES
    relabelled = {}
    for f in sorted((base / "ouyang_xun").iterdir())[:N_RELABEL]:
        store.add(TASK, sha256_file(f), f"images/{f.name}", "ouyang_xun", 0.9, "zhao_mengfu", "expert", "",
                  "v1", cls)
        relabelled[f.name] = "zhao_mengfu"
    revoked = sorted((base / "zhao_mengfu").iterdir())[0]
    store.add(TASK, sha256_file(revoked), "images/r.png", "zhao_mengfu", 0.8, "ouyang_xun", "undoer", "", "v1", cls)
    store.revoke_last(TASK, "undoer")
    added = {}
    for i in range(N_ADDED):
        buf = io.BytesIO()
        stroke_image(1, 2, 9000 + i, (64, 64), grayscale=True).save(buf, "PNG")
        sha, rel = store.store_image(buf.getvalue())
        store.add(TASK, sha, rel, "ouyang_xun", 0.6, "zhao_mengfu", "expert", "", "v1", cls)
        added[rel] = "zhao_mengfu"
    return CorrectedData(base, root / "app-data", relabelled, added)


def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "INKAPP_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}


def assert_trained_on_corrections(run: Path, data: CorrectedData) -> None:
    """The run folder's summary and split show the relabels and additions (and not the revoked one)."""
    summary = json.loads((run / "data_summary.json").read_text(encoding="utf-8"))
    corrections = summary["corrections"]
    assert (corrections["relabelled"], corrections["added"], corrections["missing_image"]) == (N_RELABEL, N_ADDED, 0)
    assert (corrections["revoked"], corrections["active"]) == (1, N_RELABEL + N_ADDED)
    assert summary["base_images"] == 2 * PER_CLASS and summary["used"] == 2 * PER_CLASS + N_ADDED
    assert summary["per_class"] == {"ouyang_xun": PER_CLASS - N_RELABEL, "zhao_mengfu": PER_CLASS + N_RELABEL + N_ADDED}
    split = json.loads((run / "split.json").read_text(encoding="utf-8"))
    label_of = {Path(e["path"]).name: e["label"] for part in split.values() for e in part}
    for name, label in data.relabelled.items():
        assert label_of[name] == label, name
    for rel, label in data.added.items():
        assert label_of[Path(rel).name] == label, rel
    unchanged = [f.name for f in (data.base / "ouyang_xun").iterdir() if f.name not in data.relabelled]
    assert all(label_of[name] == "ouyang_xun" for name in unchanged)


def test_inkapp_train_merges_the_corrections(tmp_path: Path, corrected: CorrectedData) -> None:
    out = tmp_path / "run"
    config = tiny_config(tmp_path / "configs", corrected.base)
    proc = subprocess.run([sys.executable, "-m", "inkapp", "train", "--config", str(config), "--corrections",
                           str(corrected.data_dir / "corrections.csv"), "--out", str(out)],
                          env=env(tmp_path), cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_trained_on_corrections(out, corrected)


def test_retrain_from_the_app_trains_on_the_corrections(tmp_path: Path, corrected: CorrectedData,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INKAPP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    configs = tmp_path / "configs"
    tiny_config(configs, corrected.base)
    current = tmp_path / "current-model"  # the serving model's split: listed files keep their part
    current.mkdir()
    files = {cls: sorted((corrected.base / cls).iterdir()) for cls in CLASSES}
    test_files = [files[cls][-1] for cls in CLASSES]
    listed = {"train": [{"path": str(f), "label": cls} for cls in CLASSES for f in files[cls][:-2]],
              "val": [{"path": str(files[cls][-2]), "label": cls} for cls in CLASSES],
              "test": [{"path": str(f), "label": f.parent.name} for f in test_files]}
    (current / "split.json").write_text(json.dumps(listed), encoding="utf-8")

    job = RetrainManager(corrected.data_dir, config_dir=configs).start(TASK, current)
    job.process.wait()
    progress = job.progress()
    assert progress.state == "finished", progress.log_tail
    assert_trained_on_corrections(job.candidate, corrected)
    split = json.loads((job.candidate / "split.json").read_text(encoding="utf-8"))
    assert sorted(Path(e["path"]).name for e in split["test"]) == sorted(f.name for f in test_files)
    train_names = {Path(e["path"]).name for e in split["train"]}
    assert {Path(rel).name for rel in corrected.added} <= train_names  # new images only ever go to train


def test_train_command_names_the_corrections_and_split(tmp_path: Path, corrected: CorrectedData) -> None:
    configs = tmp_path / "configs"
    tiny_config(configs, corrected.base)
    split = tmp_path / "split.json"
    split.write_text("{}")
    csv_path = corrected.data_dir / "corrections.csv"
    cmd = train_command(TASK, csv_path, tmp_path / "out", split, configs)
    assert cmd[cmd.index("--corrections") + 1] == str(csv_path)
    assert cmd[cmd.index("--split") + 1] == str(split)
    assert cmd[cmd.index("--config") + 1] == str(configs / f"{TASK}.yaml")
