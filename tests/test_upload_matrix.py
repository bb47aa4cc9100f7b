"""Issue 7's upload matrix through the app's analysis path (in process) and ``inkapp predict``.

Every rejected file gets its one-line message and leaves the data dir as it was (no
image stored, no CSV row, no analysis-log line); every unusual but valid file is
analysed at its true (EXIF-rotated) size. The launched app is covered in
``test_ui_client.py``.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from inkapp.auth import Experts
from inkapp.data.images import ImageError
from inkapp.curation.actions import CurationActions
from inkapp.curation.analysis import analyse_image, analyse_loaded, load_upload
from inkapp.ui.app import build_actions
from inkapp.curation.uploads import UploadItem
from inkapp.store.analysed import AnalysedLog
from inkapp.store.corrections import CorrectionStore

from app_handlers import upload_handler
from conftest import TEST_UPLOAD_LIMIT_MB
from upload_cases import BadUpload, GoodUpload, bad_uploads, good_uploads, stored_state

REPO = Path(__file__).resolve().parent.parent
CLI_TASK = "painting-subject"


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BadUpload]:
    return bad_uploads(tmp_path_factory.mktemp("bad-uploads"))


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> dict[str, GoodUpload]:
    return good_uploads(tmp_path_factory.mktemp("good-uploads"))


@pytest.fixture(scope="module")
def actions(ui_weights_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> CurationActions:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INKAPP_WEIGHTS_DIR", str(ui_weights_dir))
        built = build_actions(tmp_path_factory.mktemp("upload-data"), Experts())
    return built


@pytest.fixture(autouse=True)
def _upload_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INKAPP_MAX_UPLOAD_MB", str(TEST_UPLOAD_LIMIT_MB))
    monkeypatch.delenv("INKAPP_MAX_PIXELS", raising=False)


def test_bad_uploads_give_one_line_messages_and_store_nothing(actions: CurationActions, bad: dict[str, BadUpload],
                                                              good: dict[str, GoodUpload], tmp_path: Path) -> None:
    app_actions = CurationActions(actions.hub, CorrectionStore(tmp_path), AnalysedLog(tmp_path), actions.retrain,
                                  Experts())
    upload = upload_handler(app_actions)  # the app's own upload event, storing into tmp_path
    before = stored_state(tmp_path)
    for name, case in bad.items():
        with pytest.raises(ImageError, match=re.escape(case.message)) as caught:
            analyse_image(actions.hub, case.path)
        message = str(caught.value)
        assert "\n" not in message and "Traceback" not in message, (name, message)
        _, status, *_ = upload([str(case.path)])
        assert name in status and case.message in status and "\n" not in status, status
    assert stored_state(tmp_path) == before
    name, case = next(iter(good.items()))  # the same event does store an acceptable upload
    _, status, *_ = upload([str(case.path)])
    images, _, log = stored_state(tmp_path)
    assert name in status and len(images) == 1 and len(log.splitlines()) == 2, status


def test_unusual_valid_uploads_are_analysed_and_recorded(actions: CurationActions,
                                                         good: dict[str, GoodUpload]) -> None:
    for name, case in good.items():
        loaded = load_upload(UploadItem(name, case.path).read_bytes(), name)
        analysis = analyse_loaded(actions.hub, loaded)
        assert (analysis.width, analysis.height) == case.size, name
        assert analysis.tasks and not any(view.error for view in analysis.tasks), name
        actions.record_analysis(loaded, analysis, None, set())
    images, _, log = stored_state(actions.store.data_dir)
    assert len(images) == len(good)  # one stored file per distinct upload
    assert len(log.splitlines()) == 2 * len(good)  # two tasks per domain


def test_predict_cli_reports_each_bad_file_and_classifies_the_rest(ui_weights_dir: Path, tmp_path: Path,
                                                                   bad: dict[str, BadUpload],
                                                                   good: dict[str, GoodUpload]) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    env = {**os.environ, "INKAPP_DATA_DIR": str(data_dir), "INKAPP_MAX_UPLOAD_MB": str(TEST_UPLOAD_LIMIT_MB),
           "OMP_NUM_THREADS": "1"}
    paths = [str(c.path) for c in bad.values()] + [str(c.path) for c in good.values()]
    result = subprocess.run([sys.executable, "-m", "inkapp", "predict", "--task", CLI_TASK,
                             "--weights", str(ui_weights_dir / CLI_TASK), *paths],
                            capture_output=True, text=True, env=env, cwd=REPO, timeout=600, check=False)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = dict(line.split(": ", 1) for line in result.stderr.splitlines() if line.strip())
    assert set(errors) == {str(c.path) for c in bad.values()}
    for case in bad.values():
        assert case.message in errors[str(case.path)]
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [p["image"] for p in printed] == [str(c.path) for c in good.values()]
    assert all(p["task"] == CLI_TASK for p in printed)
    assert list(data_dir.iterdir()) == []
