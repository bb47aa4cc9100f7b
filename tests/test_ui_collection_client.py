"""Issues 13 and 14 wired into the launched app, through its API (gradio_client):
similar works under a result, the annotation and record exports of the work on screen,
a page attribution, opening an IIIF manifest (loopback servers) and the duplicates
report. Outputs added by these issues come after the older ones: 4 similar-works
galleries (task registry order), then the page section (verdict, boxes, votes, evidence)."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from inkapp.pages.synthetic import PageSpec, compose_page
from inkapp.tasks import TASKS

from conftest import LaunchedApp
from test_iiif import iiif_server, web  # noqa: F401  (module fixtures: the loopback IIIF servers)
from test_pages import glyph

N_EXTRA = len(TASKS) + 4


@pytest.fixture()
def client(launched_app: LaunchedApp) -> Client:
    return Client(launched_app.url, verbose=False)


def extras(out: list) -> tuple[dict[str, list], list]:
    """(task -> similar-works gallery, [verdict, boxes, votes, evidence]) of an analyse output."""
    tail = out[-N_EXTRA:]
    return dict(zip(TASKS, tail[:len(TASKS)])), tail[len(TASKS):]


def ramp_copies(folder: Path, seed: int) -> tuple[Path, Path]:
    """Two JPEG encodings of one smooth colour image unlike any other test's upload."""
    rng = np.random.default_rng(seed)
    art = np.zeros((180, 240, 3), np.uint8)
    art[:, :, int(rng.integers(0, 3))] = np.linspace(0, 255, 240, dtype=np.uint8)[None, :]
    art[60:120, 80:160] = rng.integers(0, 255, 3, dtype=np.uint8)
    paths = []
    for quality in (95, 70):
        path = folder / f"ramp-{seed}-q{quality}.jpg"
        Image.fromarray(art).save(path, quality=quality)
        paths.append(path)
    return paths[0], paths[1]


def test_similar_works_export_and_duplicates(client: Client, launched_app: LaunchedApp, tmp_path: Path) -> None:
    first, second = ramp_copies(tmp_path, 11)
    client.predict([handle_file(str(first))], "painting", "gradcam", 0.5, api_name="/analyse")
    out = client.predict([handle_file(str(second))], "painting", "gradcam", 0.5, api_name="/analyse")
    similar, page = extras(out)
    assert page[0] == "" and page[3] == []  # a painting: no page section
    works = similar["painting-subject"]
    assert works and "% similar" in works[0]["caption"] and "label: model" in works[0]["caption"]
    assert Image.open(works[0]["image"]).size == (160, 160)  # letterboxed square thumbnail
    assert similar["calligrapher"] == []

    (path,) = client.predict("en", api_name="/export_annotations")
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    assert doc["type"] == "AnnotationPage" and len(doc["items"]) == 2  # one prediction per painting task
    assert {a["motivation"] for a in doc["items"]} == {"classifying"}
    records = client.predict("en", api_name="/export_record")
    html = Path(next(p for p in records if p.endswith(".html"))).read_text(encoding="utf-8")
    assert "ramp-11-q70.jpg" in html and html.count('<div class="similar">') >= 2

    report = client.predict("painting-subject", "en", api_name="/duplicates")
    assert report.count("<tr>") >= 1 and "%" in report


def test_page_attribution_section(client: Client, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    spec = PageSpec(n=6, layout="columns", rubbing=False, grid=False, seal=False, char_px=72, light=0.0, noise=2.0,
                    blur=0.0, jpeg=None)
    image = compose_page([glyph(rng) for _ in range(6)], spec, rng)[0]
    path = tmp_path / "page.png"
    image.save(path)
    out = client.predict([handle_file(str(path))], "calligraphy", "gradcam", 0.5, api_name="/analyse")
    _, (verdict, boxes, votes, evidence) = extras(out)
    # the test script model has no regular-script class, so the page abstains and says why
    assert "No confident attribution" in verdict and "not regular script" in verdict
    assert Image.open(boxes).size == image.size
    assert votes["type"] == "plotly" and 1 <= len(evidence) <= 4
    assert Image.open(evidence[0]["image"]).size == (192 * 2 + 4, 192)  # character | heat map


def test_open_manifest_url_fills_the_gallery(client: Client, web) -> None:  # noqa: F811
    out = client.predict(f"{web.url}/manifest.json", "painting", "gradcam", 0.5, api_name="/open_url")
    gallery, status = out[0], out[1]
    assert len(gallery) == 2 and "Image 1 of 2" in status and "Scroll 卷" in status
    bad = client.predict(f"{web.url}/not-a-manifest.json", "painting", "gradcam", 0.5, api_name="/open_url")
    assert bad[1].startswith("Could not open the URL: ") and "\n" not in bad[1]


def test_suspect_decision_needs_a_chosen_suspect(client: Client) -> None:
    gallery, message = client.predict("painting-subject", "client-expert", "", "en", api_name="/confirm_suspect")
    assert message == "Click a suspect first."
    gallery, message = client.predict("painting-subject", "client-expert", "", "zh", api_name="/keep_suspect")
    assert message == "请先点击一张可疑图像。"
