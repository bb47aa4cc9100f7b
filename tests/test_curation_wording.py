"""Browser-free parts of the curator-facing studio: confidence words, heat-map readings,
percent metrics, version names, display sizes, retrain preview and ETA, roll-back."""
from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from inkapp.auth import Experts
from inkapp.curation.actions import Credentials, CurationActions
from inkapp.curation.analysis import display_copy, display_size
from inkapp.curation.hub import ModelHub
from inkapp.curation.retrain import RetrainManager, estimate_finish, preview_corrections
from inkapp.curation.wording import (confidence_key, confidence_word, heat_reading, heat_region, metrics_line,
                                     version_name)
from inkapp.store.analysed import AnalysedLog
from inkapp.store.corrections import CorrectionStore
from inkapp.store.versions import (SHIPPED, VersionError, candidates_root, history, list_versions, promote,
                                   read_active, rollback)

from conftest import make_random_model

TASK = "painting-subject"
CLASSES = ["figure", "flower_bird", "landscape"]


def test_confidence_words_follow_the_cards_threshold() -> None:
    assert confidence_key(0.95, 0.6) == "very_likely"
    assert confidence_key(0.9, 0.6) == "very_likely"
    assert confidence_key(0.89, 0.6) == "likely"
    assert confidence_key(0.59, 0.6) == "uncertain"
    assert confidence_key(0.55, None) == "uncertain"  # default threshold 0.6
    assert confidence_key(0.93, 0.95) == "uncertain"  # a strict card: below its own threshold
    assert confidence_word(0.5, 0.6) == ("uncertain — please review", "不确定——请专家复核")


def test_heat_reading_names_the_heaviest_region() -> None:
    heat = np.zeros((90, 120))
    heat[:30, :40] = 1.0
    heat[60:, 80:] = 0.2
    region, share = heat_region(heat)
    assert region == ("upper left", "左上部") and share == pytest.approx(1200 / (1200 + 240))
    en, zh = heat_reading(heat)
    assert en == "The model looked mostly at the upper left of the image (83% of the heat)."
    assert zh == "模型主要关注图像的左上部（占热度的 83%）。"


def test_heat_reading_of_a_scroll_reads_thirds_and_a_flat_map_says_so() -> None:
    wide = np.zeros((40, 400))
    wide[:, 300:] = 1.0
    assert heat_region(wide)[0] == ("right third", "右段")
    tall = np.zeros((400, 40))
    tall[:100] = 1.0
    assert heat_region(tall)[0] == ("top third", "上段")
    flat_en, flat_zh = heat_reading(np.ones((50, 50)))
    assert "whole image" in flat_en and "整幅图像" in flat_zh
    assert heat_region(np.zeros((5, 5))) == (None, 0.0)
    with pytest.raises(ValueError, match="2-D heat map"):
        heat_region(np.ones(5))


def test_metrics_and_version_names_for_a_curator() -> None:
    card = {"version": "painting-subject-inkfusion-20261123T181038Z",
            "metrics": {"accuracy": 0.9594594594594594, "macro_f1": 0.95, "n": 236}}
    assert metrics_line(card["metrics"]) == ("95.9% accuracy on 236 held-out works (balanced F1 95.0%)",
                                             "在 236 件未参与训练的作品上准确率 95.9%（各类平均 F1 95.0%）")
    assert metrics_line({}) == ("", "")
    assert version_name(card) == ("2026-11-23 · 95.9% accuracy", "2026-11-23 · 准确率 95.9%")
    assert version_name({**card, "created": "2027-01-02T03:04:05Z"}, shipped=True)[0] == \
        "2027-01-02 · 95.9% accuracy · shipped"
    assert version_name({"version": "test-1"}) == ("test-1", "test-1")


def test_display_sizes_keep_scrolls_readable_and_enlarge_small_characters() -> None:
    assert display_size((3000, 2000)) == (1024, 683)
    assert display_size((20000, 2000)) == (4000, 400)  # 10:1 handscroll: 400 px tall, not 102
    assert display_size((600, 6000)) == (400, 4000)  # hanging scroll
    assert display_size((64, 64)) == (256, 256)
    assert display_size((300, 200)) == (300, 200)
    char = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).convert("RGB")
    big = np.asarray(display_copy(char))
    assert big.shape == (256, 256, 3)
    assert np.array_equal(big[::4, ::4], np.asarray(char)) and np.array_equal(big[3::4, 3::4], np.asarray(char))


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_display_copy_of_a_scroll_stays_close_to_a_lanczos_resize(mode: str) -> None:
    """Box reduction + bicubic for the last step: the display size, and on a smooth ink
    scroll within 3 levels of Pillow's Lanczos on average (a display copy, never a model input)."""
    rng = np.random.default_rng(3)
    ink = cv2.GaussianBlur(rng.integers(0, 256, (3000, 1000, 3), dtype=np.uint8), (0, 0), 3)
    scroll = Image.fromarray(ink).convert(mode)
    shown = display_copy(scroll)
    assert shown.size == display_size(scroll.size) == (400, 1200) and shown.mode == "RGB"
    reference = np.asarray(scroll.convert("RGB").resize(shown.size, Image.Resampling.LANCZOS), dtype=np.int16)
    assert np.abs(np.asarray(shown, dtype=np.int16) - reference).mean() < 3.0


def test_estimated_finish_from_epoch_times() -> None:
    assert estimate_finish(100.0, {}, 10) is None
    assert estimate_finish(100.0, {1: 160.0}, 10) == pytest.approx(160.0 + 9 * 60.0)
    assert estimate_finish(100.0, {1: 160.0, 2: 190.0, 3: 220.0}, 10) == pytest.approx(220.0 + 7 * 30.0)
    assert estimate_finish(100.0, {1: 160.0}, None) is None


def _png(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), colour).save(buf, "PNG")
    return buf.getvalue()


def _base_data(root: Path) -> dict[str, bytes]:
    """An image folder with one image per class; returns class -> the image's bytes."""
    out = {}
    for i, cls in enumerate(CLASSES):
        (root / cls).mkdir(parents=True)
        out[cls] = _png((40 * i, 100, 200))
        (root / cls / f"{cls}.png").write_bytes(out[cls])
    return out


def _correct(store: CorrectionStore, data: bytes, label: str) -> None:
    sha, rel = store.store_image(data)
    store.add(TASK, sha, rel, "figure", 0.5, label, "curator", "", "test-1", CLASSES)


def test_retrain_preview_counts_what_the_corrections_change(tmp_path: Path) -> None:
    base = _base_data(tmp_path / "data")
    store = CorrectionStore(tmp_path / "app")
    csv_path = tmp_path / "app" / "corrections.csv"
    assert preview_corrections(TASK, csv_path, tmp_path / "data").changes == 0
    _correct(store, base["landscape"], "landscape")  # agrees with the dataset: changes nothing
    agreeing = preview_corrections(TASK, csv_path, tmp_path / "data")
    assert (agreeing.corrections, agreeing.changes, agreeing.agreeing) == (1, 0, 1)
    _correct(store, base["figure"], "flower_bird")  # relabels a base image
    _correct(store, _png((1, 2, 3)), "figure")  # an image the dataset does not have
    preview = preview_corrections(TASK, csv_path, tmp_path / "data")
    assert (preview.corrections, preview.relabelled, preview.added, preview.agreeing) == (3, 1, 1, 1)
    assert preview.text()[0] == ("3 corrections in effect: they relabel 1 training images and add 1; "
                                 "1 agree with the dataset's own label and change nothing.")
    assert "改标 1 张" in preview.text()[1]


def _actions(tmp_path: Path, configs: Path | None = None) -> CurationActions:
    manager = RetrainManager(tmp_path, config_dir=configs) if configs else RetrainManager(tmp_path)
    return CurationActions(ModelHub(tmp_path, tasks=[TASK], device="cpu"), CorrectionStore(tmp_path),
                           AnalysedLog(tmp_path), manager, Experts())


def test_retrain_is_refused_when_the_corrections_change_nothing(ui_weights_dir: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INKAPP_WEIGHTS_DIR", str(ui_weights_dir))
    base = _base_data(tmp_path / "data")
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / f"{TASK}.yaml").write_text(f"task: {TASK}\ndomain: painting\ndata: {tmp_path / 'data'}\n"
                                          "model: {arch: inkfusion}\n")
    actions = _actions(tmp_path / "app", configs)
    _correct(actions.store, base["landscape"], "landscape")
    message = actions.start_retrain(TASK, Credentials("curator"))
    assert message.startswith("Not started: the corrections change no training image.")
    assert "1 agree with the dataset's own label" in message
    assert actions.retrain.job(TASK) is None


def _candidate(data_dir: Path, name: str, version: str, accuracy: float) -> Path:
    folder = make_random_model(candidates_root(data_dir, TASK) / name, TASK, seed=3, version=version)
    (folder / "metrics.json").write_text(json.dumps({"test": {"accuracy": accuracy}}))
    return folder


def test_promote_and_roll_back_to_any_version_record_who_and_when(ui_weights_dir: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INKAPP_WEIGHTS_DIR", str(ui_weights_dir))
    actions = _actions(tmp_path)
    assert actions.promote_candidate(TASK, _candidate(tmp_path, "20260101T000000Z", "v-1", 0.8),
                                     Credentials("张三")).startswith("Promoted v-1")
    assert read_active(tmp_path, TASK)["promoted_by"] == "张三"
    promote(tmp_path, TASK, _candidate(tmp_path, "20260102T000000Z", "v-2", 0.9), "li")
    assert list_versions(tmp_path, TASK) == ["v-1", "v-2"]

    message = actions.rollback_version(TASK, "v-1", Credentials("wang"))
    assert message.startswith(f"Rolled back {TASK} to v-1 (wang, ")
    assert actions.hub.status(TASK).source == "promoted" and actions.hub.predictor(TASK).version == "v-1"
    assert read_active(tmp_path, TASK)["promoted_by"] == "wang"

    message = actions.rollback_version(TASK, SHIPPED, Credentials("wang"))
    assert message.startswith(f"Rolled back {TASK} to shipped")
    assert read_active(tmp_path, TASK) is None and actions.hub.status(TASK).source == "shipped"
    assert [(h["action"], h["version"], h["by"]) for h in history(tmp_path, TASK)] == [
        ("promote", "v-1", "张三"), ("promote", "v-2", "li"), ("rollback", "v-1", "wang"),
        ("rollback", SHIPPED, "wang")]
    assert all(h["at"].endswith("Z") for h in history(tmp_path, TASK))
    with pytest.raises(VersionError, match="no kept version 'v-9'"):
        rollback(tmp_path, TASK, "v-9", "wang")
    assert actions.rollback_version(TASK, "v-9", Credentials("")).startswith("Not rolled back:")
