"""``inkapp report IMAGE --out FILE``: a self-contained one-page record of a work."""
from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import make_random_model
from PIL import Image

from inkapp.cli import main
from inkapp.curation.analysis import display_copy
from inkapp.inference import Predictor
from inkapp.record import SimilarWork, build_record, render_record
from inkapp.store.corrections import CorrectionStore
from inkapp.tasks import class_name

TASK = "calligrapher"
HOSTILE_NOTE = "<script>alert('x')</script> & more"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_random_model(tmp_path_factory.mktemp("record-model") / TASK, TASK)


@pytest.fixture()
def work(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    path = tmp_path / "rubbing 碑.png"
    Image.fromarray(rng.integers(0, 255, (150, 120), dtype=np.uint8)).save(path)
    return path


def _data_uris(html: str) -> list[str]:
    return re.findall(r'src="(data:image/[a-z]+;base64,[A-Za-z0-9+/=]+)"', html)


def test_report_html_is_self_contained_with_labels_probabilities_and_history(
        model: Path, work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    predictor = Predictor.from_folder(model, device="cpu")
    data_dir = tmp_path / "data"
    store = CorrectionStore(data_dir)
    sha, stored = store.store_image(work.read_bytes())
    store.add(TASK, sha, stored, "ouyang_xun", 0.41, "yan_zhenqing", "curator-张", HOSTILE_NOTE, "test-1",
              predictor.classes)
    store.revoke_last(TASK, "curator-张")
    store.add(TASK, sha, stored, "ouyang_xun", 0.41, "zhao_mengfu", "curator-李", "second look", "test-1",
              predictor.classes)
    store.add(TASK, "e" * 64, "images/ee/other.png", "ouyang_xun", 0.5, "liu_gongquan", "curator-李", "other work",
              "test-1", predictor.classes)
    monkeypatch.setenv("INKAPP_DATA_DIR", str(data_dir))
    out = tmp_path / "records" / "record.html"
    assert main(["report", str(work), "--out", str(out), "--task", TASK, "--weights", str(model),
                 "--similar", "0"]) == 0
    html = out.read_text(encoding="utf-8")

    assert not re.search(r'(src|href)="(?!data:)', html)  # nothing is fetched when the page opens
    uris = _data_uris(html)
    assert len(uris) == 3  # the work, one heat map, the colour legend
    embedded = Image.open(io.BytesIO(base64.b64decode(uris[0].split(",", 1)[1])))
    assert embedded.size == display_copy(Image.open(work)).size  # the Analyse tab's display size

    expected = predictor.analyse(Image.open(work))
    label = class_name(TASK, expected.prediction.label)
    assert f"<b>{label.en} {label.zh}</b>" in html
    for cls, p in expected.prediction.probabilities.items():
        assert re.search(rf"{re.escape(class_name(TASK, cls).zh)} .*?{cls}.*?<td class=\"num\">{p:.3f}</td>", html)
    assert f"gradcam for {label.en} {label.zh}" in html and "strongest evidence" in html

    assert "<script>" not in html and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in html
    history = html[html.index("Corrections history"):html.index("Similar works")]
    assert history.count("<tr") == 4  # header, the revoked correction, its revocation, the second correction
    assert history.count('class="revoked"') == 1 and "other work" not in history
    assert "颜真卿" in history and "赵孟頫" in history and "curator-李" in history
    assert "No collection index was available" in html
    assert "test-1" in html[html.index("Model versions"):] and "accuracy 0.500" in html


def test_record_shows_similar_works_with_thumbnails(model: Path, work: Path) -> None:
    predictor = Predictor.from_folder(model, device="cpu")
    thumb = Image.new("L", (40, 60), 200)
    similar = {TASK: [SimilarWork("neighbour.png", "liu_gongquan", "expert", 0.9731, thumb)]}
    record = build_record(work.read_bytes(), work.name, [predictor], similar=similar)
    html = render_record(record)
    section = html[html.index("Similar works"):html.index("Model versions")]
    assert "neighbour.png" in section and "Liu Gongquan 柳公权 (expert)" in section
    assert "similarity 0.973" in section and len(_data_uris(section)) == 1
    empty = render_record(build_record(work.read_bytes(), work.name, [predictor], similar={TASK: []}))
    assert "No similar works indexed yet." in empty


def test_report_pdf_is_one_page(model: Path, work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import ImageFile

    # WeasyPrint turns Pillow's process-wide LOAD_TRUNCATED_IMAGES on; undo it after this test
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", ImageFile.LOAD_TRUNCATED_IMAGES)
    weasyprint = pytest.importorskip("weasyprint", reason="WeasyPrint is not installed")
    monkeypatch.setenv("INKAPP_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "record.pdf"
    assert main(["report", str(work), "--out", str(out), "--task", TASK, "--weights", str(model),
                 "--similar", "0"]) == 0
    pdf = out.read_bytes()
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    record = build_record(work.read_bytes(), work.name, [Predictor.from_folder(model, device="cpu")])
    assert len(weasyprint.HTML(string=render_record(record)).render().pages) == 1
    assert not (tmp_path / "data").exists()  # reading the history creates nothing


def test_report_refuses_weights_for_several_tasks(model: Path, work: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(work), "--out", str(tmp_path / "r.html"), "--task", TASK, "--task",
                 "calligraphy-script", "--weights", str(model)]) == 2
    assert capsys.readouterr().err.strip() == "inkapp report: --weights needs exactly one --task"
    assert not (tmp_path / "r.html").exists()


def test_pdf_output_leaves_pillow_refusing_truncated_images(tmp_path: Path) -> None:
    """WeasyPrint switches Pillow's process-wide LOAD_TRUNCATED_IMAGES on when imported;
    html_to_pdf must put it back so uploads stay strictly decoded."""
    from PIL import ImageFile

    from inkapp.record.render import html_to_pdf

    before = ImageFile.LOAD_TRUNCATED_IMAGES
    try:
        pdf = html_to_pdf("<html><body><p>山水 landscape</p></body></html>")
    except ValueError as err:
        pytest.skip(f"WeasyPrint unavailable here: {err}")
    assert pdf.startswith(b"%PDF") and ImageFile.LOAD_TRUNCATED_IMAGES is before
