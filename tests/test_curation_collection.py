"""Issues 13 and 14 in the app's browser-free layer (:mod:`inkapp.curation`): every
analysed image indexed and its similar works, record and annotation exports, opening
by IIIF URL, page attribution as the Analyse tab shows it, the duplicates report and
the suspect-label queue. Random-weight models, data in ``tmp_path``."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inkapp.auth import Experts
from inkapp.collection.similar import GENERIC_INDEX, collection_index
from inkapp.collection.suspects import NOTE_KEPT, NOTE_RELABELLED
from inkapp.curation.actions import Credentials, CurationActions
from inkapp.curation.analysis import analyse_loaded, load_upload
from inkapp.curation.exports import ExportFolders, Target, export_annotations, export_record, stored_target
from inkapp.curation.hub import ModelHub
from inkapp.curation.iiif_items import open_url
from inkapp.curation.page_view import EVIDENCE_SIDE, REASONS_ZH, page_view
from inkapp.curation.retrain import RetrainManager
from inkapp.data.images import sha256_file
from inkapp.curation.review_lists import duplicates_report, suspect_caption, suspect_list
from inkapp.curation.similar_view import THUMB_SIDE, similar_cards
from inkapp.iiif import SourceError
from inkapp.inference import Predictor
from inkapp.pages.attribute import REASONS
from inkapp.pages.synthetic import PageSpec, compose_page
from inkapp.store.analysed import AnalysedLog
from inkapp.store.corrections import CorrectionStore

from test_iiif import iiif_server, validate_annotation_page, web  # noqa: F401  (module fixtures: loopback IIIF)
from test_pages import glyph


@pytest.fixture()
def actions(ui_weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CurationActions:
    monkeypatch.setenv("INKAPP_WEIGHTS_DIR", str(ui_weights_dir))
    root = tmp_path / "data"
    root.mkdir()
    store = CorrectionStore(root)
    return CurationActions(ModelHub(root), store, AnalysedLog(root), RetrainManager(root, store), Experts())


def png(seed: int, size: tuple[int, int] = (160, 120)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def record(actions: CurationActions, data: bytes, name: str, domain: str = "painting"):
    loaded = load_upload(data, name)
    analysis = analyse_loaded(actions.hub, loaded, domain)
    return loaded, analysis, actions.record_analysis(loaded, analysis, None, set())


def test_every_analysed_image_is_indexed_and_lists_the_others_as_similar(actions: CurationActions) -> None:
    root = actions.store.data_dir
    shas = [record(actions, png(seed), f"work-{seed}.png")[2].sha256 for seed in range(3)]
    for task in ("painting-subject", "painting-technique"):
        assert set(collection_index(task, root).items()) == set(shas)
    generic = collection_index(GENERIC_INDEX, root).items()
    assert set(generic) == set(shas)
    assert {"label:painting-subject", "label:painting-technique"} <= set(generic[shas[0]])
    # the same image analysed again is not indexed twice
    record(actions, png(0), "work-0-again.png")
    assert len(collection_index("painting-subject", root)) == 3

    cards = similar_cards(actions.hub, png(0), "painting-subject", root)
    assert {c.neighbour.sha256 for c in cards} == set(shas[1:])  # itself left out
    assert all(c.thumbnail.size == (THUMB_SIDE, THUMB_SIDE) for c in cards)
    sims = [c.neighbour.similarity for c in cards]
    assert sims == sorted(sims, reverse=True)
    en, zh = cards[0].caption("painting-subject", "en"), cards[0].caption("painting-subject", "zh")
    assert f"{sims[0]:.0%} similar" in en and "label: model" in en
    assert f"相似度 {sims[0]:.0%}" in zh and "标签来自模型" in zh
    assert similar_cards(actions.hub, png(0), "calligrapher", root) == []  # nothing indexed there


def test_record_export_writes_html_and_pdf_of_the_work_on_screen(actions: CurationActions, tmp_path: Path) -> None:
    neighbour = record(actions, png(1), "neighbour.png")[2]
    loaded, analysis, _ = record(actions, png(2), "scroll 卷.png")
    predictors = [actions.hub.predictor(v.task) for v in analysis.tasks]
    folder = ExportFolders(tmp_path / "exports").new()
    files, note = export_record(loaded, predictors, actions.store.data_dir, folder)
    html = files[0].read_text(encoding="utf-8")
    assert files[0].name == "scroll 卷.record.html"
    assert "scroll 卷.png" in html and loaded.sha256 in html
    assert html.count('<div class="similar">') == 2  # the one other work, under each painting task
    assert html.count(Path(neighbour.image_path).name) == 2
    if note:  # WeasyPrint unusable here: HTML only, and the note says why
        assert len(files) == 1 and "WeasyPrint" in note
    else:
        assert files[1].suffix == ".pdf" and files[1].read_bytes().startswith(b"%PDF")


def test_annotation_export_holds_predictions_corrections_and_page_boxes(actions: CurationActions,
                                                                        tmp_path: Path) -> None:
    loaded, analysis, current = record(actions, png(3), "leaf.png")
    task = "painting-subject"
    other = next(c for c in current.predictions[task].classes if c != current.predictions[task].label)
    assert actions.submit_correction(current, task, other, Credentials("expert-王"), "").startswith("Saved")
    target = stored_target(actions.store.data_dir, current, loaded.image.size)
    path = export_annotations(current, target, loaded.image.size, actions.store.active(), tmp_path)
    page = json.loads(path.read_text(encoding="utf-8"))
    assert len(validate_annotation_page(page)) == 3  # W3C context and IIIF model
    items = page["items"]
    assert [a["target"] for a in items] == [target.iri] * 3  # two predictions + one correction
    assert target.iri.startswith("file://") and target.iri.endswith(current.image_path)
    corrections = [a for a in items if "creator" in a]
    assert len(corrections) == 1 and corrections[0]["creator"]["name"] == "expert-王"
    assert corrections[0]["body"][0]["value"] == other
    assert {a["generator"]["id"] for a in items if "generator" in a} == \
        {f"urn:inkapp:model:{t}:{p.model_version}" for t, p in current.predictions.items()}


def test_target_boxes_scale_into_canvas_coordinates() -> None:
    canvas = Target("https://example.org/canvas/1", None, (4000, 3000))
    assert canvas.box([100, 50, 20, 10], (1000, 750)) == (400, 200, 80, 40)
    region = Target("https://example.org/iiif/x/full/max/0/default.jpg", (1000, 2000, 500, 500), (8000, 8000))
    assert region.box([10, 20, 30, 40], (250, 250)) == (1020, 2040, 60, 80)


def compose(n: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    spec = PageSpec(n=n, layout="columns", rubbing=False, grid=False, seal=False, char_px=72, light=0.0, noise=2.0,
                    blur=0.0, jpeg=None)
    return compose_page([glyph(rng) for _ in range(n)], spec, rng)[0]


def test_page_view_of_a_page_and_none_for_one_character(actions: CurationActions, tmp_path: Path) -> None:
    calligrapher = actions.hub.predictor("calligrapher")
    script = actions.hub.predictor("calligraphy-script")
    image = compose(6, 5)
    view = page_view(image, calligrapher, script)
    assert view is not None and len(view.attribution.characters) >= 2
    assert view.boxes.size == image.size and view.boxes.mode == "RGB"
    assert 1 <= len(view.evidence) <= 4
    assert all(e.crop.size == e.heat.size == (EVIDENCE_SIDE, EVIDENCE_SIDE) for e in view.evidence)
    master = max(view.attribution.probabilities, key=view.attribution.probabilities.__getitem__)
    assert [e.probability for e in view.evidence] == sorted((c.probabilities[master] for c in
                                                             view.attribution.characters), reverse=True)[:len(view.evidence)]
    # the test script model has no "kaishu_regular" class: the page is not regular script, so it abstains
    assert view.abstained and view.attribution.reason == "not_regular_script"
    assert REASONS_ZH["not_regular_script"] in view.verdict("zh") and "No confident attribution" in view.verdict("en")
    assert page_view(glyph(np.random.default_rng(0)), calligrapher, script) is None  # one 64 px character
    assert set(REASONS_ZH) == set(REASONS)

    # an abstaining page's characters still go into the annotations, boxed in the target's coordinates
    loaded, analysis, current = record(actions, _png_of(image), "page.png", "calligraphy")
    target = Target("https://example.org/canvas/p1", None, (image.width * 2, image.height * 2))
    path = export_annotations(current, target, image.size, [], tmp_path, view.attribution, calligrapher.version)
    doc = json.loads(path.read_text(encoding="utf-8"))
    validate_annotation_page(doc)
    boxed = [a for a in doc["items"] if "#xywh=" in a["target"]]
    assert len(boxed) == len(view.attribution.characters)
    first = view.attribution.characters[0].box
    assert boxed[0]["target"] == f"{target.iri}#xywh={2 * first.x},{2 * first.y},{2 * first.w},{2 * first.h}"


def _png_of(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def test_open_url_makes_every_canvas_a_gallery_item(web, tmp_path: Path) -> None:  # noqa: F811
    opened = open_url(f"{web.url}/manifest.json", tmp_path / "fetched")
    assert [o.target.iri for o in opened] == [f"{web.url}/canvas/1", f"{web.url}/canvas/2"]
    assert [o.item.name for o in opened] == ["Scroll 卷", "Leaf 页"]
    sizes = [Image.open(io.BytesIO(o.item.read_bytes())).size for o in opened]
    assert max(sizes[0]) == 1024 and sizes[1] == (200, 300)  # the display size asked of the service, not the master
    assert [o.target.size for o in opened] == [(1200, 900), (200, 300)]


@pytest.mark.parametrize("url, message", [("", "enter an IIIF"), ("file:///etc/passwd", "only http and https"),
                                          ("NOT-A-MANIFEST", "manifest|Manifest|type")])
def test_open_url_bad_input_gets_one_line(web, tmp_path: Path, url: str, message: str) -> None:  # noqa: F811
    url = f"{web.url}/not-a-manifest.json" if url == "NOT-A-MANIFEST" else url
    with pytest.raises(SourceError, match=message) as err:
        open_url(url, tmp_path / "fetched")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "fetched").exists() or not any((tmp_path / "fetched").iterdir())


def test_duplicates_report_flags_disagreeing_labels_first(actions: CurationActions) -> None:
    base = Image.open(io.BytesIO(png(7, (200, 200)))).convert("RGB")
    copies = []
    for quality in (95, 60):  # two re-encoded copies of one work, and an unrelated work
        buf = io.BytesIO()
        base.save(buf, "JPEG", quality=quality)
        copies.append(buf.getvalue())
    a = record(actions, copies[0], "copy-a.jpg")[2]
    b = record(actions, copies[1], "copy-b.jpg")[2]
    other = np.zeros((200, 200, 3), np.uint8)
    other[:, :, 1] = np.linspace(0, 255, 200, dtype=np.uint8)[None, :]  # a smooth green ramp: nothing like noise
    buf = io.BytesIO()
    Image.fromarray(other).save(buf, "PNG")
    record(actions, buf.getvalue(), "other.png")
    pairs = duplicates_report(actions.store.data_dir, "painting-subject")
    assert [{p.a.sha256, p.b.sha256} for p in pairs] == [{a.sha256, b.sha256}]
    assert pairs[0].labels_disagree is (a.predictions["painting-subject"].label !=
                                        b.predictions["painting-subject"].label)
    # an expert gives the two copies different labels: the pair is flagged
    classes = a.predictions["painting-subject"].classes
    for current, label in ((a, classes[0]), (b, classes[1])):
        assert actions.submit_correction(current, "painting-subject", label, Credentials("expert-李"),
                                         "").startswith("Saved")
    flagged = duplicates_report(actions.store.data_dir, "painting-subject")[0]
    assert flagged.labels_disagree and {flagged.a.label_source, flagged.b.label_source} == {"expert"}
    assert duplicates_report(actions.store.data_dir, "painting-subject", threshold=1.0) == []


def test_suspect_queue_confirm_and_keep_write_rows_and_leave_the_queue(actions: CurationActions,
                                                                       tmp_path: Path) -> None:
    classes = ["ouyang_xun", "yan_zhenqing", "liu_gongquan", "zhao_mengfu"]
    suspects = []
    for i in range(3):
        path = tmp_path / f"char-{i}.png"
        glyph(np.random.default_rng(i)).save(path)
        probs = {c: 0.1 for c in classes} | {classes[(i + 1) % 4]: 0.7}
        suspects.append({"rank": i + 1, "image_path": str(path), "sha256": sha256_file(path),
                         "given_label": classes[i], "predicted_label": classes[(i + 1) % 4], "quality": 0.1 * (i + 1),
                         "probabilities": probs})
    ranking = tmp_path / "suspects-calligrapher.json"
    ranking.write_text(json.dumps({"task": "calligrapher", "classes": classes, "suspects": suspects}))
    root = actions.store.data_dir

    listed = suspect_list("calligrapher", root, ranking)
    assert [s.rank for s in listed.suspects] == [1, 2, 3] and listed.pending == 3
    assert "given" in suspect_caption("calligrapher", listed.suspects[0], "en")
    assert "标注" in suspect_caption("calligrapher", listed.suspects[0], "zh")

    who = Credentials("expert-赵")
    assert actions.decide_suspect("calligrapher", listed.suspects[0], False, who).startswith("Saved")
    assert actions.decide_suspect("calligrapher", listed.suspects[1], True, who).startswith("Saved")
    rows = actions.store.active()
    assert [(r["corrected_label"], r["note"]) for r in rows] == [(classes[1], NOTE_RELABELLED), (classes[1], NOTE_KEPT)]
    assert [s.rank for s in suspect_list("calligrapher", root, ranking).suspects] == [3]  # not asked again

    missing = suspect_list("calligrapher", root, tmp_path / "none.json")
    assert missing.suspects == [] and "--recompute" in missing.message[0] and "--recompute" in missing.message[1]


def test_suspect_decision_needs_an_authorised_expert(ui_weights_dir: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from inkapp.auth import hash_password
    from inkapp.collection.suspects import Suspect

    monkeypatch.setenv("INKAPP_WEIGHTS_DIR", str(ui_weights_dir))
    root = tmp_path / "data"
    root.mkdir()
    store = CorrectionStore(root)
    experts = Experts(passwords={"curator": hash_password("secret", 1000)})
    restricted = CurationActions(ModelHub(root), store, AnalysedLog(root), RetrainManager(root, store), experts)
    path = tmp_path / "c.png"
    glyph(np.random.default_rng(1)).save(path)
    suspect = Suspect(1, str(path), "0" * 64, "ouyang_xun", "zhao_mengfu", 0.1, {"ouyang_xun": 0.1, "zhao_mengfu": 0.9})
    message = restricted.decide_suspect("calligrapher", suspect, True, Credentials("curator", "wrong"))
    assert message.startswith("Not saved") and "curator" not in message.split(":", 1)[0]
    assert not (root / "corrections.csv").exists() or store.rows() == []


def test_scan_of_calligrapher_pages_uses_the_page_attribution(ui_weights_dir: Path, tmp_path: Path) -> None:
    import csv

    from inkapp.pages.attribute import attribute_page
    from inkapp.paths import shipped_weights
    from inkapp.scan import scan

    calligrapher = Predictor.from_folder(ui_weights_dir / "calligrapher", device="cpu")
    script = Predictor.from_folder(shipped_weights("calligraphy-script"), device="cpu")
    root = tmp_path / "scans"
    root.mkdir()
    page = compose(6, 9)
    page.save(root / "page.png")
    char = glyph(np.random.default_rng(4))
    char.save(root / "char.png")
    out = tmp_path / "results.csv"
    scan(root, out, calligrapher, workers=0, progress=False)
    rows = {r["path"]: r for r in csv.DictReader(open(out, encoding="utf-8", newline=""))}

    expected = attribute_page(page, calligrapher, script)
    assert len(expected.characters) >= 2
    got = {c: float(rows["page.png"][f"p_{c}"]) for c in calligrapher.classes}
    assert got == pytest.approx(expected.probabilities, abs=2e-6)
    best = max(expected.probabilities, key=expected.probabilities.__getitem__)
    assert rows["page.png"]["label"] == best
    assert rows["page.png"]["uncertain"] == str(expected.attribution is None).lower()
    single = calligrapher.predict([char])[0]  # a single character is classified whole, as before
    assert rows["char.png"]["label"] == single.label
    assert float(rows["char.png"]["confidence"]) == pytest.approx(single.confidence, abs=2e-6)
