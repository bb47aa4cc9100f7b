"""The app's analysis logic without a browser (random-weight models)."""
from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from PIL import Image

from inkapp.data.images import ImageError, load_image
from inkapp.data.preprocess import Preprocessor
from inkapp.models import build_model, save_model
from inkapp.curation.analysis import (SCROLL_MIN_SHORT_SIDE, AnalysisCache, analyse_image,
                                     dynasty_probabilities)
from inkapp.curation.domain import heuristic_domain
from inkapp.auth import Experts
from inkapp.curation.actions import CurationActions
from inkapp.curation.hub import ModelHub
from inkapp.curation.retrain import RetrainManager
from inkapp.inference import Predictor
from inkapp.store.analysed import AnalysedLog
from inkapp.store.corrections import CorrectionStore
from inkapp.curation.uploads import UploadItem, expand_uploads
from inkapp.store.versions import ACTIVE_FILE, task_root
from inkapp.ui.charts import probability_chart

from app_handlers import upload_handler
from conftest import UI_TEST_MODELS
from upload_cases import stored_state


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def scroll_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """An RGB image with some coloured structure on paper white."""
    rng = np.random.default_rng(seed)
    arr = np.full((height, width, 3), 235, np.uint8)
    arr[height // 8: height * 7 // 8: 5, width // 6: width * 5 // 6] = rng.integers(0, 200, 3, dtype=np.uint8)
    return Image.fromarray(arr)


def rubbing_image(width: int = 200, height: int = 300) -> Image.Image:
    """Black paper with white strokes, like a stele rubbing."""
    arr = np.zeros((height, width), np.uint8)
    arr[40:260:20, 30:170] = 255
    arr[40:260, 90:100] = 255
    return Image.fromarray(arr, mode="L")


def hub_tasks(domain: str) -> list[str]:
    """The test tasks of ``domain``."""
    return [t for t, spec in UI_TEST_MODELS.items() if spec[1] == domain]


@pytest.fixture(scope="module")
def hub(ui_weights_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelHub]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INKAPP_WEIGHTS_DIR", str(ui_weights_dir))
        yield ModelHub(tmp_path_factory.mktemp("ui-analysis-data"), device="cpu")


def test_every_task_model_is_loaded_once(ui_weights_dir: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[Path] = []
    real = Predictor.from_folder.__func__

    def counted(cls: type[Predictor], folder: Path, *args: Any, **kwargs: Any) -> Predictor:
        predictor = real(cls, folder, *args, **kwargs)  # the absent domain model raises: not a load
        loads.append(Path(folder))
        return predictor

    monkeypatch.setattr(Predictor, "from_folder", classmethod(counted))
    monkeypatch.setenv("INKAPP_WEIGHTS_DIR", str(ui_weights_dir))
    hub = ModelHub(tmp_path, device="cpu")
    for task in UI_TEST_MODELS:
        assert hub.predictor(task) is not None
        assert hub.status(task).source == "shipped"
    assert hub.domain_predictor is None
    assert sorted(loads) == sorted(ui_weights_dir / task for task in UI_TEST_MODELS)  # one load per task
    for domain in ("painting", "calligraphy"):  # analysing uses the loaded models, never loads again
        analyse_image(hub, png_bytes(scroll_image(64, 64)), domain)
    assert len(loads) == len(UI_TEST_MODELS)


def test_painting_analysis_has_chart_cam_and_attention(hub: ModelHub) -> None:
    result = analyse_image(hub, png_bytes(scroll_image(300, 200)), "painting", "gradcam", opacity=0.4)
    assert result.domain.domain == "painting" and result.domain.reason == ("chosen by the curator", "由策展人选定")
    assert [v.task for v in result.tasks] == ["painting-subject", "painting-technique"]
    for view in result.tasks:
        classes = UI_TEST_MODELS[view.task][2]
        assert not view.error and view.label in classes and 0 <= view.confidence <= 1
        assert view.uncertain == (view.confidence < 0.6)
        assert sorted(view.probabilities) == sorted(classes)
        chart = probability_chart(view.probabilities, view.threshold)
        assert isinstance(chart, go.Figure) and sorted(chart.data[0].y) == sorted(classes)
        assert view.cam_overlay.size == result.display.size == (300, 200)
        names = [info.name for _, info in view.attention_overlays]
        assert names == ["dpafm_spatial", "alpha_0", "alpha_1"]
        assert all(info.caption[0] and info.caption[1] and info.meaning[0] for _, info in view.attention_overlays)
        assert all(img.size == (300, 200) for img, _ in view.attention_overlays)
        assert [info.name for info, _ in view.gates] == ["gate_channel", "gate_spatial"]
        assert sum(v for _, v in view.gates) == pytest.approx(1.0, abs=1e-4)
        assert [info.name for info, _ in view.channel_weights] == ["dpafm_channel"]
        assert view.dynasties == [] and view.dynasty_text == ""


def test_calligraphy_analysis_shows_bam_maps_and_dynasty(hub: ModelHub) -> None:
    result = analyse_image(hub, png_bytes(rubbing_image()), "calligraphy", "eigencam")
    views = {v.task: v for v in result.tasks}
    assert set(views) == {"calligraphy-script", "calligrapher"}
    for view in views.values():
        assert [info.name for _, info in view.attention_overlays] == ["bam_spatial", "bam_attention"]
        assert view.gates == [] and [i.name for i, _ in view.channel_weights] == ["bam_channel"]
        assert view.cam_method == "eigencam"
    who = views["calligrapher"]
    dynasty_of = UI_TEST_MODELS["calligrapher"][3]
    assert sum(p for _, p in who.dynasties) == pytest.approx(1.0, abs=1e-5)
    tang = sum(p for c, p in who.probabilities.items() if dynasty_of[c] == "Tang")
    assert dict(who.dynasties)["Tang"] == pytest.approx(tang)
    assert who.dynasties[0][0] == ("Tang" if tang >= 0.5 else "Yuan")  # the more probable dynasty leads
    assert who.dynasty_text.startswith(f"{who.dynasties[0][0]} {who.dynasties[0][1]:.0%}")


def test_dynasty_probabilities_sum_classes_per_dynasty() -> None:
    probs = {"a": 0.5, "b": 0.47, "c": 0.03}
    assert dynasty_probabilities(probs, {"a": "Tang", "b": "Tang", "c": "Yuan"}) == [
        ("Tang", pytest.approx(0.97)), ("Yuan", pytest.approx(0.03))]
    assert dynasty_probabilities(probs, {}) == []


def test_one_to_four_scroll_keeps_its_aspect_ratio(hub: ModelHub) -> None:
    result = analyse_image(hub, png_bytes(scroll_image(600, 2400)), "painting")
    assert (result.width, result.height) == (600, 2400)
    assert result.display.size == (SCROLL_MIN_SHORT_SIDE, 4 * SCROLL_MIN_SHORT_SIDE)  # readable, not a strip
    for view in result.tasks:
        assert view.cam_overlay.size == (400, 1600)
        assert all(img.size == (400, 1600) for img, _ in view.attention_overlays)


def test_explaining_another_class(hub: ModelHub) -> None:
    data = png_bytes(scroll_image(200, 200, seed=3))
    cache = AnalysisCache()
    first = analyse_image(hub, data, "painting", cache=cache)
    subject = first.tasks[0]
    other = next(c for c in subject.classes if c != subject.label)
    again = analyse_image(hub, data, "painting", target_by_task={"painting-subject": other}, cache=cache)
    assert again.tasks[0].cam_target == other and again.tasks[0].label == subject.label
    assert again.tasks[1].cam_target == first.tasks[1].label


@pytest.fixture(scope="module")
def app_upload(hub: ModelHub) -> Callable[[list[str]], list[Any]]:
    """The app's upload event over ``hub``, storing into ``hub.data_dir``."""
    return upload_handler(CurationActions(hub, CorrectionStore(hub.data_dir), AnalysedLog(hub.data_dir),
                                          RetrainManager(hub.data_dir), Experts()))


@pytest.mark.parametrize(("data", "message"), [(b"", "file is empty"),
                                               (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "not a recognised image"),
                                               (b"hello, not an image", "not a recognised image")])
def test_bad_upload_gives_the_one_line_message(hub: ModelHub, app_upload: Callable[[list[str]], list[Any]],
                                               tmp_path: Path, data: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message) as caught:
        analyse_image(hub, data, "painting")
    with pytest.raises(ImageError, match=message) as expected:
        load_image(data)
    assert str(caught.value) == str(expected.value) and "\n" not in str(caught.value)
    upload = tmp_path / "upload.png"
    upload.write_bytes(data)
    before = stored_state(hub.data_dir)
    _, status, *_ = app_upload([str(upload)])
    assert str(caught.value) in status and "\n" not in status
    assert stored_state(hub.data_dir) == before


def test_a_good_upload_is_stored_by_the_same_event(hub: ModelHub, app_upload: Callable[[list[str]], list[Any]],
                                                   tmp_path: Path) -> None:
    """The control for the check above: the upload event does write to ``hub.data_dir``."""
    upload = tmp_path / "good.png"
    upload.write_bytes(png_bytes(scroll_image(120, 90, seed=11)))
    before = stored_state(hub.data_dir)
    app_upload([str(upload)])
    images, _, log = stored_state(hub.data_dir)
    assert len(images) == len(before[0]) + 1 and len(log.splitlines()) == len(before[2].splitlines()) + 2


def test_zip_upload_lists_images_only(hub: ModelHub, tmp_path: Path) -> None:
    archive = tmp_path / "batch.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("scrolls/a.png", png_bytes(scroll_image(100, 400)))
        zf.writestr("b.PNG", png_bytes(rubbing_image()))
        zf.writestr("readme.txt", "not an image")
        zf.writestr("__MACOSX/scrolls/._a.png", b"resource fork")
    single = tmp_path / "single.png"
    single.write_bytes(png_bytes(scroll_image(120, 80)))
    items, problems = expand_uploads([single, archive])
    assert problems == []
    assert [i.name for i in items] == ["single.png", "batch.zip/scrolls/a.png", "batch.zip/b.PNG"]
    result = analyse_image(hub, items[1].read_bytes(), "auto")
    assert (result.width, result.height) == (100, 400)
    assert heuristic_domain(load_image(items[2].read_bytes())).domain == "calligraphy"


def test_unreadable_zip_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "broken.zip"
    bad.write_bytes(b"PK\x03\x04 truncated")
    items, problems = expand_uploads([bad])
    assert items == [] and len(problems) == 1 and "broken.zip" in problems[0]
    with pytest.raises(ImageError, match="cannot read a.png from the zip archive"):
        UploadItem("x.zip/a.png", bad, "a.png").read_bytes()


def test_auto_domain_heuristic_without_domain_model(hub: ModelHub) -> None:
    rubbing = analyse_image(hub, png_bytes(rubbing_image()), "auto")
    assert rubbing.domain.domain == "calligraphy" and "heuristic" in rubbing.domain.reason[0]
    assert rubbing.domain.reason[1].startswith("颜色估计（未安装类别模型）")
    colourful = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).resize(
        (256, 256), Image.Resampling.NEAREST)
    assert analyse_image(hub, png_bytes(colourful), "auto").domain.domain == "painting"


def test_auto_domain_uses_the_domain_model(ui_weights_dir: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    weights = tmp_path / "weights"
    weights.mkdir()
    for task in UI_TEST_MODELS:
        (weights / task).symlink_to(ui_weights_dir / task)
    torch.manual_seed(0)
    model = build_model({"arch": "smallcnn", "num_classes": 2, "pretrained": None, "image_size": 64})
    save_model(model, weights / "domain", {"task": "domain", "domain": "", "classes": ["calligraphy", "painting"],
                                           "preprocessing": Preprocessor(64, False, (0.5,) * 3, (0.5,) * 3).to_card(),
                                           "version": "domain-test"})
    monkeypatch.setenv("INKAPP_WEIGHTS_DIR", str(weights))
    hub = ModelHub(tmp_path / "data", device="cpu")
    result = analyse_image(hub, png_bytes(scroll_image(100, 100)), "auto")
    en, zh = result.domain.reason
    percent = en.rsplit(" ", 1)[1]
    assert en == f"domain model: {result.domain.domain} {percent}" and percent.endswith("%")
    zh_name = {"calligraphy": "书法", "painting": "绘画"}[result.domain.domain]
    assert zh == f"类别模型：{zh_name} {percent}"
    assert {v.task for v in result.tasks} == set(hub_tasks(result.domain.domain))


def test_broken_promoted_model_falls_back_to_shipped(ui_weights_dir: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INKAPP_WEIGHTS_DIR", str(ui_weights_dir))
    root = task_root(tmp_path, "calligrapher")
    (root / "v2").mkdir(parents=True)
    (root / "v2" / "card.json").write_text("{not json")
    (root / ACTIVE_FILE).write_text(json.dumps({"version": "v2", "folder": "v2"}))
    hub = ModelHub(tmp_path, tasks=["calligrapher"], device="cpu")
    status = hub.status("calligrapher")
    assert status.source == "shipped" and "promoted model unusable" in status.message
    assert hub.predictor("calligrapher") is not None


def test_missing_model_is_reported_and_other_tasks_serve(ui_weights_dir: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "painting-subject").symlink_to(ui_weights_dir / "painting-subject")
    monkeypatch.setenv("INKAPP_WEIGHTS_DIR", str(weights))
    hub = ModelHub(tmp_path / "data", tasks=["painting-subject", "painting-technique"], device="cpu")
    assert hub.status("painting-technique").source == "missing"
    result = analyse_image(hub, png_bytes(scroll_image(90, 90)), "painting")
    views = {v.task: v for v in result.tasks}
    assert not views["painting-subject"].error
    assert "no usable model" in views["painting-technique"].error
