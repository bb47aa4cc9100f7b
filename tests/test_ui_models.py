"""Model versions (promote / discard), candidate comparison and retraining jobs."""
from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inkapp.tasks import config_path
from inkapp.auth import Experts
from inkapp.models.serialization import CARD_FILE, WEIGHTS_FILE
from inkapp.store.corrections import CorrectionStore
from inkapp.curation.actions import Credentials, CurationActions
from inkapp.curation.comparison import COMPARED_METRICS, compare_with_current, comparison_rows
from inkapp.curation.hub import ModelHub
from inkapp.ui.models_tab import card_markdown
from inkapp.curation.retrain import RetrainManager, log_tail, read_log_progress
from inkapp.store.analysed import AnalysedLog
from inkapp.store.versions import (ACTIVE_FILE, VersionError, candidates_root, discard, is_complete_run, list_candidates,
                                list_versions, promote, read_active, task_root)

from conftest import UI_TEST_MODELS, make_random_model

TASK = "painting-subject"


def make_candidate(data_dir: Path, name: str, test_files: list[dict[str, str]], version: str = "cand-1") -> Path:
    """A finished candidate folder: random model, metrics.json and split.json."""
    folder = make_random_model(candidates_root(data_dir, TASK) / name, TASK, seed=7, version=version)
    metrics = {"accuracy": 0.75, "macro_f1": 0.7, "macro_precision": 0.72, "macro_recall": 0.71, "macro_auc": 0.8}
    (folder / "metrics.json").write_text(json.dumps({"test": metrics}))
    (folder / "split.json").write_text(json.dumps({"train": [], "val": [], "test": test_files}))
    return folder


def test_promote_keeps_versions_and_reloads_the_hub(ui_weights_dir: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INKAPP_WEIGHTS_DIR", str(ui_weights_dir))
    shipped_card = (ui_weights_dir / TASK / CARD_FILE).read_bytes()
    hub = ModelHub(tmp_path, tasks=[TASK], device="cpu")
    assert hub.status(TASK).source == "shipped" and read_active(tmp_path, TASK) is None
    first = make_candidate(tmp_path, "20260101T000000Z", [])
    record = promote(tmp_path, TASK, first)
    assert record["version"] == "cand-1" and record["folder"] == "cand-1"
    assert not first.exists() and json.loads((task_root(tmp_path, TASK) / ACTIVE_FILE).read_text()) == record
    assert hub.reload(TASK).source == "promoted" and hub.predictor(TASK).version == "cand-1"
    second = make_candidate(tmp_path, "20260102T000000Z", [])  # same card version: kept under a new name
    assert promote(tmp_path, TASK, second)["folder"] == "cand-1-2"
    assert list_versions(tmp_path, TASK) == ["cand-1", "cand-1-2"]
    assert (ui_weights_dir / TASK / CARD_FILE).read_bytes() == shipped_card


def test_promote_refuses_unfinished_or_foreign_folders(tmp_path: Path) -> None:
    unfinished = candidates_root(tmp_path, TASK) / "20260101T000000Z"
    unfinished.mkdir(parents=True)
    (unfinished / "train.log").write_text("boom")
    with pytest.raises(VersionError, match="not finished"):
        promote(tmp_path, TASK, unfinished)
    with pytest.raises(VersionError, match="not a candidate"):
        promote(tmp_path, TASK, tmp_path)
    other_task = make_random_model(candidates_root(tmp_path, TASK) / "other", "calligrapher")
    (other_task / "metrics.json").write_text(json.dumps({"test": {}}))
    with pytest.raises(VersionError, match="calligrapher"):
        promote(tmp_path, TASK, other_task)
    assert read_active(tmp_path, TASK) is None
    assert {p.name for p in list_candidates(tmp_path, TASK)} == {"20260101T000000Z", "other"}
    assert discard(tmp_path, TASK, unfinished) == "20260101T000000Z" and not unfinished.exists()


def test_comparison_on_the_candidates_test_split(ui_weights_dir: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INKAPP_CACHE_DIR", str(tmp_path / "cache"))
    classes = UI_TEST_MODELS[TASK][2]
    rng = np.random.default_rng(0)
    files = []
    for i in range(6):
        label = classes[i % len(classes)]
        path = tmp_path / "data" / label / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(path)
        files.append({"path": str(path), "label": label})
    files.append({"path": str(tmp_path / "data" / "gone.png"), "label": classes[0]})
    files.append({"path": str(path), "label": "unknown_class"})
    candidate = make_candidate(tmp_path / "app-data", "20260101T000000Z", files)
    result = compare_with_current(ui_weights_dir / TASK, candidate)
    assert (result["n_test"], result["n_compared"], result["skipped"]) == (8, 6, 2)
    assert result["candidate"]["accuracy"] == 0.75 and result["current_version"] == "test-1"
    assert 0.0 <= result["current"]["accuracy"] <= 1.0
    assert json.loads((candidate / "comparison.json").read_text()) == result
    rows = comparison_rows(result)
    assert [r[0] for r in rows] == list(COMPARED_METRICS)
    assert rows[0][3] == pytest.approx(0.75 - rows[0][1], abs=1e-4)


def test_log_progress_and_tail() -> None:
    log = ("painting-subject: 40 images\r\nepoch 1/3:  50%|#####     | 1/2 [00:01<00:01]\r"
           "epoch 1/3: 100%|##########| 2/2 [00:02<00:00]\n"
           '{"epoch": 1, "train_loss": 1.0, "val_acc": 0.5}\n'
           "epoch 2/3:  50%|#####     | 1/2 [00:01<00:01]\r"
           '{"epoch": 2, "train_loss": 0.8, "val_acc": 0.625}\n')
    epoch, planned, last = read_log_progress(log)
    assert (epoch, planned, last["val_acc"]) == (2, 3, 0.625)
    assert "%|" not in log_tail(log) and log_tail(log).splitlines()[0] == "painting-subject: 40 images"


def test_failed_retrain_leaves_the_active_model_and_says_why(ui_weights_dir: Path, tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    source = config_path(TASK)
    text = source.read_text(encoding="utf-8")
    lines = [f"data: {tmp_path / 'no-such-data'}" if ln.startswith("data:") else ln for ln in text.splitlines()]
    (configs / f"{TASK}.yaml").write_text("\n".join(lines) + "\n")
    data_dir = tmp_path / "app-data"
    manager = RetrainManager(data_dir, config_dir=configs, extra_args=("--epochs", "1"))
    current = tmp_path / "current"
    shutil.copytree(ui_weights_dir / TASK, current)
    job = manager.start(TASK, current)
    assert "--split" not in job.command  # the random model has no split.json
    job.process.wait(timeout=600)
    progress = job.progress()
    assert progress.state == "failed" and "active model is unchanged" in progress.message
    assert "no-such-data" in progress.log_tail
    assert read_active(data_dir, TASK) is None
    assert list_candidates(data_dir, TASK) == [job.candidate]


def tamper_classes(folder: Path) -> None:
    """Add a class to a model card without touching the weights (its tensors no longer fit)."""
    card = json.loads((folder / CARD_FILE).read_text())
    card["classes"].append("forged")
    card["model"]["num_classes"] += 1
    (folder / CARD_FILE).write_text(json.dumps(card))


def test_tampered_models_never_replace_the_one_serving(ui_weights_dir: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INKAPP_WEIGHTS_DIR", str(ui_weights_dir))
    actions = CurationActions(ModelHub(tmp_path, tasks=[TASK], device="cpu"), CorrectionStore(tmp_path),
                              AnalysedLog(tmp_path), RetrainManager(tmp_path), Experts())
    expert = Credentials("curator")
    good = make_candidate(tmp_path, "20260101T000000Z", [], version="good-1")
    assert actions.promote_candidate(TASK, good, expert) == f"Promoted good-1; it now serves {TASK}."
    serving = actions.hub.predictor(TASK)

    tampered = make_candidate(tmp_path, "20260102T000000Z", [], version="bad-2")
    tamper_classes(tampered)
    message = actions.promote_candidate(TASK, tampered, expert)
    assert message.startswith("Not promoted: candidate 20260102T000000Z cannot be loaded") and "wrong shape" in message
    reshaped = make_candidate(tmp_path, "20260103T000000Z", [], version="bad-3")
    make_random_model(tmp_path / "other", "calligrapher")  # same arch family, other shapes
    shutil.copy(tmp_path / "other" / WEIGHTS_FILE, reshaped / WEIGHTS_FILE)
    message = actions.promote_candidate(TASK, reshaped, expert)
    assert message.startswith("Not promoted: candidate 20260103T000000Z cannot be loaded") and "weights" in message
    assert read_active(tmp_path, TASK)["version"] == "good-1" and list_versions(tmp_path, TASK) == ["good-1"]
    assert actions.hub.predictor(TASK) is serving

    tamper_classes(task_root(tmp_path, TASK) / "good-1")  # the active version corrupted on disk
    status = actions.hub.reload(TASK)
    assert actions.hub.predictor(TASK) is serving and status.version == "good-1"
    assert "promoted model unusable" in status.message and "still serving good-1" in status.message
    assert "still serving good-1" in card_markdown(actions, TASK)  # the Models tab says why
    assert ModelHub(tmp_path, tasks=[TASK], device="cpu").status(TASK).source == "shipped"  # after a restart


def test_killed_retrain_leaves_the_active_model_and_says_why(ui_weights_dir: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "app-data"
    manager = RetrainManager(data_dir, extra_args=("--epochs", "1"))
    job = manager.start(TASK, ui_weights_dir / TASK)
    os.killpg(job.process.pid, signal.SIGKILL)  # e.g. the OOM killer, before any output is written
    job.process.wait(timeout=60)
    progress = job.progress()
    assert progress.state == "failed"
    assert progress.message == "retraining failed (killed by signal 9); the active model is unchanged"
    assert read_active(data_dir, TASK) is None and not is_complete_run(job.candidate)
    with pytest.raises(VersionError, match="not finished"):
        promote(data_dir, TASK, job.candidate)
