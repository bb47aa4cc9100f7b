"""Expert-only writes: :class:`CurationActions` with and without configured experts, and
the same through gradio_client against launched apps (open and restricted)."""
from __future__ import annotations

import io
import json
import urllib.request
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from PIL import Image

from inkapp.auth import Experts, hash_password
from inkapp.store.corrections import CorrectionStore
from inkapp.curation.actions import (OPEN_ACCESS_NOTE, AnalysedImage, Credentials, CurationActions, TaskPrediction)
from inkapp.curation.hub import ModelHub
from inkapp.curation.retrain import RetrainManager
from inkapp.store.analysed import AnalysedLog
from inkapp.store.versions import candidates_root, list_candidates, read_active

from conftest import TEST_EXPERT, UI_TEST_MODELS, LaunchedApp, make_random_model

TASK = "painting-subject"
CLASSES = UI_TEST_MODELS[TASK][2]
REFUSED = "only configured experts may do this"


def make_actions(data_dir: Path, experts: Experts, weights: Path, monkeypatch: pytest.MonkeyPatch) -> CurationActions:
    monkeypatch.setenv("INKAPP_WEIGHTS_DIR", str(weights))
    return CurationActions(ModelHub(data_dir, tasks=[TASK], device="cpu"), CorrectionStore(data_dir),
                           AnalysedLog(data_dir), RetrainManager(data_dir), experts)


def image_on_screen(store: CorrectionStore) -> AnalysedImage:
    """An image stored as an analysis would store it, with a prediction for TASK."""
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (90, 60, 30)).save(buf, "PNG")
    sha, rel = store.store_image(buf.getvalue())
    return AnalysedImage("scroll.png", sha, rel, {TASK: TaskPrediction(CLASSES[0], 0.7, "test-1", tuple(CLASSES))})


def finished_candidate(data_dir: Path) -> Path:
    folder = make_random_model(candidates_root(data_dir, TASK) / "20260101T000000Z", TASK, seed=3, version="cand-9")
    (folder / "metrics.json").write_text(json.dumps({"test": {"accuracy": 0.5}}))
    return folder


@pytest.fixture()
def experts() -> Experts:
    name, password = TEST_EXPERT
    return Experts({name: hash_password(password, 1000)}, {"hf-curator"})


def test_wrong_credentials_are_refused_and_write_nothing(ui_weights_dir: Path, tmp_path: Path, experts: Experts,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    actions = make_actions(tmp_path, experts, ui_weights_dir, monkeypatch)
    assert actions.access_note.startswith("**Restricted:**") and "Hugging Face sign-in" in actions.access_note
    current = image_on_screen(actions.store)
    candidate = finished_candidate(tmp_path)
    name, password = TEST_EXPERT
    for who in (Credentials(name, "wrong"), Credentials(name, ""), Credentials("mallory", password),
                Credentials(name, "wrong", hf_user="hf-impostor")):
        assert actions.submit_correction(current, TASK, CLASSES[1], who, "").startswith(f"Not saved: {REFUSED}")
        assert actions.undo_last_correction(TASK, who).startswith(f"Nothing undone: {REFUSED}")
        assert actions.start_retrain(TASK, who).startswith(f"Not started: {REFUSED}")
        assert actions.promote_candidate(TASK, candidate, who).startswith(f"Not promoted: {REFUSED}")
        assert actions.discard_candidate(TASK, candidate, who).startswith(f"Not discarded: {REFUSED}")
    assert actions.store.rows() == []
    assert actions.retrain.job(TASK) is None and list_candidates(tmp_path, TASK) == [candidate]
    assert read_active(tmp_path, TASK) is None and actions.hub.status(TASK).source == "shipped"


def test_right_credentials_write_under_the_authorised_name(ui_weights_dir: Path, tmp_path: Path, experts: Experts,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    actions = make_actions(tmp_path, experts, ui_weights_dir, monkeypatch)
    current = image_on_screen(actions.store)
    name, password = TEST_EXPERT
    assert actions.submit_correction(current, TASK, CLASSES[1], Credentials(f"  {name} ", password), "ok") \
        .startswith("Saved")
    profile = {"preferred_username": "hf-curator", "name": "HF Curator"}  # what gr.OAuthProfile holds
    assert actions.submit_correction(current, TASK, CLASSES[2], Credentials.from_form("typed name", "", profile), "") \
        .startswith("Saved")
    assert [r["expert"] for r in actions.store.rows()] == [name, "hf-curator"]
    assert actions.undo_last_correction(TASK, Credentials(name, password)).startswith("Undone")
    assert actions.store.rows()[-1]["expert"] == name
    candidate = finished_candidate(tmp_path)
    assert actions.promote_candidate(TASK, candidate, Credentials(name, password)) == \
        f"Promoted cand-9; it now serves {TASK}."


def test_without_experts_the_app_is_open_and_says_so(ui_weights_dir: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INKAPP_EXPERTS", raising=False)
    monkeypatch.delenv("INKAPP_HF_EXPERTS", raising=False)
    actions = make_actions(tmp_path, Experts.from_env(), ui_weights_dir, monkeypatch)
    assert actions.access_note == OPEN_ACCESS_NOTE and "no experts configured — anyone can correct" in OPEN_ACCESS_NOTE
    current = image_on_screen(actions.store)
    assert actions.submit_correction(current, TASK, CLASSES[1], Credentials("任何人"), "").startswith("Saved")
    assert actions.submit_correction(current, TASK, CLASSES[1], Credentials("  "), "") \
        == "Not saved: enter your name as the expert"
    assert [r["expert"] for r in actions.store.rows()] == ["任何人"]


def access_note(app: LaunchedApp) -> str:
    """The header note the launched app shows (from its /config)."""
    with urllib.request.urlopen(app.url + "config", timeout=30) as response:
        config = json.load(response)
    notes = [c["props"]["value"] for c in config["components"] if c.get("props", {}).get("elem_id") == "ink-access"]
    assert len(notes) == 1
    return notes[0]


def test_open_app_says_so(launched_app: LaunchedApp) -> None:
    assert access_note(launched_app) == OPEN_ACCESS_NOTE


def test_restricted_app_over_the_api(launched_restricted_app: LaunchedApp, tmp_path: Path) -> None:
    app = launched_restricted_app
    assert access_note(app).startswith("**Restricted:**")
    client = Client(app.url, verbose=False)
    sample = tmp_path / "scroll.png"
    Image.new("RGB", (64, 48), (200, 190, 170)).save(sample)
    _, status, task_choice, label_choice, *_ = client.predict([handle_file(str(sample))], "painting", "gradcam", 0.5,
                                                              api_name="/analyse")
    assert "scroll.png" in status and task_choice["value"] == TASK  # anyone can analyse
    corrected = next(c for c in CLASSES if c != label_choice["value"])
    name, password = TEST_EXPERT
    refused = client.predict(TASK, corrected, name, "not the password", "", api_name="/submit_correction")
    assert refused.startswith(f"Not saved: {REFUSED}")
    assert client.predict(TASK, name, "", api_name="/undo_correction").startswith(f"Nothing undone: {REFUSED}")
    message, *_ = client.predict(TASK, "mallory", password, api_name="/start_retrain")
    assert message.startswith(f"Not started: {REFUSED}")
    assert not (app.data_dir / "corrections.csv").exists() or CorrectionStore(app.data_dir).rows() == []
    assert not candidates_root(app.data_dir, TASK).exists()
    saved = client.predict(TASK, corrected, name, password, "checked", api_name="/submit_correction")
    assert saved.startswith("Saved")
    assert [r["expert"] for r in CorrectionStore(app.data_dir).rows()] == [name]


def test_undo_under_hf_sign_in_revokes_the_signed_in_experts_correction(
        ui_weights_dir: Path, tmp_path: Path, experts: Experts, monkeypatch: pytest.MonkeyPatch) -> None:
    """Signed in with Hugging Face, the typed expert name is not who acts: the correction is
    recorded under the HF user, and undo revokes that user's correction, not the typed name's."""
    name, password = TEST_EXPERT
    actions = make_actions(tmp_path, experts, ui_weights_dir, monkeypatch)
    current = image_on_screen(actions.store)
    assert actions.submit_correction(current, TASK, CLASSES[1], Credentials(name, password), "").startswith("Saved")
    signed_in = Credentials(expert=name, hf_user="hf-curator")  # the form still shows the other expert's name
    assert actions.submit_correction(current, TASK, CLASSES[2], signed_in, "").startswith("Saved")
    mine = actions.store.rows()[-1]
    assert mine["expert"] == "hf-curator"

    message = actions.undo_last_correction(TASK, signed_in)
    assert message == f"Undone: correction {mine['id'][:8]} ({TASK}) revoked by hf-curator."
    revocation = actions.store.rows()[-1]
    assert (revocation["expert"], revocation["note"]) == ("hf-curator", f"revoke:{mine['id']}")
    assert [(r["expert"], r["corrected_label"]) for r in actions.store.active()] == [(name, CLASSES[1])]
    assert actions.undo_last_correction(TASK, signed_in) == \
        f"Nothing to undo: hf-curator has no correction in effect for {TASK}."
