"""Hardening round two (issue 16): one test per class of weakness.

Side channels (an unknown expert name costs a password hash), text edge cases (lone
surrogates, bidi / zero-width characters before a formula), expensive conversions
(peak allocation of the high-bit-depth conversion, bounded concurrent large decodes),
endpoints that take a path (only the task's own candidates), archives (pixel budget),
per-session memory (server-wide pixel cache with a byte budget) and the web layer's
upload limit.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import threading
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import inkapp.auth as auth
from inkapp.auth import AccessDenied, Experts, hash_password
from inkapp.curation.actions import CurationActions
from inkapp.curation.analysis import load_upload
from inkapp.curation.hub import ModelHub
from inkapp.curation.pixels import PIXELS, PixelCache, ShownImage, decode_again, session_ttl_s
from inkapp.curation.retrain import RetrainManager
from inkapp.curation.uploads import MAX_ARCHIVE_PIXELS, UploadItem, expand_uploads, thumbnail, thumbnails
from inkapp.data import images
from inkapp.store.analysed import AnalysedLog
from inkapp.store.corrections import CorrectionError, CorrectionStore, clean_text, unescape_cell
from inkapp.store.versions import VersionError, candidates_root, task_root
from inkapp.ui.models_tab import candidate_choices, card_markdown, scrub_paths, shown_path

from conftest import TEST_UPLOAD_LIMIT_MB, LaunchedApp

TASK = "painting-technique"
CLASSES = ["gongbi", "xieyi"]
SHA = "c" * 64


# ---------------------------------------------------------------- side channels

def test_unknown_expert_name_costs_a_password_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    experts = Experts({"ann": hash_password("pw-ann", 1000)})
    calls: list[int] = []
    real = hashlib.pbkdf2_hmac

    def counting(name: str, password: bytes, salt: bytes, iterations: int, *args: object) -> bytes:
        calls.append(iterations)
        return real(name, password, salt, iterations, *args)

    monkeypatch.setattr(auth.hashlib, "pbkdf2_hmac", counting)
    for name in ("mallory", "ann"):
        with pytest.raises(AccessDenied, match="only configured experts"):
            experts.authorise(name, "wrong")
    assert calls == [1000, 1000]  # the unknown name was hashed like the known one
    assert experts.authorise("ann", "pw-ann") == "ann"


def test_expert_names_compare_in_nfc() -> None:
    experts = Experts({"Zhe\u0301": hash_password("pw", 1000)})  # decomposed é in the config
    assert experts.authorise("Zh\u00e9", "pw") == "Zh\u00e9"


# ---------------------------------------------------------------- text edge cases

def add(store: CorrectionStore, **kw: str) -> dict[str, str]:
    args = dict(task=TASK, image_sha256=SHA, image_path=f"images/cc/{SHA}.png", predicted_label="gongbi",
                confidence=0.6, corrected_label="xieyi", expert="Li Bai", note="", model_version="v1",
                classes=CLASSES)
    args.update(kw)
    return store.add(**args)


def data_rows(data_dir: Path) -> list[list[str]]:
    with open(data_dir / "corrections.csv", newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))[1:]


@pytest.mark.parametrize("field", ["note", "expert"])
def test_lone_surrogate_is_a_one_line_message_and_nothing_is_written(tmp_path: Path, field: str) -> None:
    store = CorrectionStore(tmp_path)
    with pytest.raises(CorrectionError, match=r"invalid character \(lone surrogate U\+D83D\)") as err:
        add(store, **{field: "brush \ud83d strokes"})
    assert "\n" not in str(err.value)
    assert data_rows(tmp_path) == []


@pytest.mark.parametrize("prefix", ["\u202e", "\u200b", "\u2066", "\ufeff", "\u200f\u200d"])
def test_bidi_and_zero_width_before_a_formula_are_stripped_and_escaped(tmp_path: Path, prefix: str) -> None:
    store = CorrectionStore(tmp_path)
    row = add(store, note=prefix + "=HYPERLINK(\"http://x\")", expert=prefix + "@ann")
    assert row["note"] == "=HYPERLINK(\"http://x\")" and row["expert"] == "@ann"
    raw = data_rows(tmp_path)[0]
    assert raw[9] == "'=HYPERLINK(\"http://x\")" and raw[8] == "'@ann"
    assert store.rows()[0]["note"] == row["note"]


def test_clean_text_normalises_to_nfc() -> None:
    assert clean_text("Zhe\u0301\u200b ") == "Zh\u00e9"
    with pytest.raises(CorrectionError, match="note must be text"):
        clean_text(None, "note")  # type: ignore[arg-type]


def test_format_characters_before_a_trigger_still_escape_and_round_trip() -> None:
    from inkapp.store.corrections import escape_cell
    for value in ["\u202e=1+1", "'\u200b-2", "plain", "'quoted", "\u202eabc"]:
        assert unescape_cell(escape_cell(value)) == value
    assert escape_cell("\u202e=1+1").startswith("'")


def test_labels_with_format_characters_are_refused(tmp_path: Path) -> None:
    store = CorrectionStore(tmp_path)
    with pytest.raises(CorrectionError, match="predicted_label contains control, format"):
        add(store, predicted_label="\u202egongbi")
    assert data_rows(tmp_path) == []


# ---------------------------------------------------------------- expensive conversions

def test_high_bit_depth_conversion_peak_allocation_is_bounded() -> None:
    """A 9-megapixel float image converts with at most W×H bytes + 8 MiB traced
    allocation (the whole-image float64 pipeline took ~31 bytes per pixel)."""
    w, h = 3000, 3000
    rng = np.random.default_rng(0)
    source = Image.fromarray((rng.standard_normal((h, w)) * 100).astype(np.float32))
    tracemalloc.start()
    try:
        out = images._to_l_from_high_bit_depth(source)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.mode == "L" and out.size == (w, h)
    assert peak <= w * h + 8 * 2**20, f"peak {peak / 2**20:.1f} MiB"


def sixteen_bit_png(path: Path, side: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 65535, (side, side), dtype=np.uint16)).save(path)
    return path


def test_large_decodes_are_bounded_by_the_slots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = [sixteen_bit_png(tmp_path / f"{i}.png", 256, i) for i in range(4)]
    slots = images.DecodeSlots(1, min_pixels=256 * 256)
    monkeypatch.setattr(images, "LARGE_DECODES", slots)
    running, most = [0], [0]
    lock = threading.Lock()
    real = images._normalise_mode

    def observed(im: Image.Image) -> Image.Image:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)  # long enough for the other threads to arrive
        try:
            return real(im)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(images, "_normalise_mode", observed)
    results: list[Image.Image] = []
    threads = [threading.Thread(target=lambda f=f: results.append(images.load_image(f))) for f in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(r.mode == "L" for r in results)
    assert most[0] == 1 and slots.peak == 1 and slots.in_use == 0


def test_a_decode_waiting_too_long_for_a_slot_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    slots = images.DecodeSlots(1, min_pixels=64, wait_s=0.05)
    monkeypatch.setattr(images, "LARGE_DECODES", slots)
    with slots.hold(10_000):
        with pytest.raises(images.ImageError, match="busy decoding other large images"):
            images.load_image(sixteen_bit_png(tmp_path / "a.png", 32, 0))
    assert images.load_image(tmp_path / "a.png").size == (32, 32)  # the slot is free again


# ---------------------------------------------------------------- endpoints that take a path

def finished_run(folder: Path, task: str, test_files: list[dict[str, str]]) -> Path:
    """A folder that looks like a finished training run (random model, metrics, split)."""
    from conftest import make_random_model
    make_random_model(folder, task, seed=5, version="cand-x")
    metrics = {"accuracy": 0.7, "macro_f1": 0.6, "macro_precision": 0.6, "macro_recall": 0.6, "macro_auc": 0.7}
    (folder / "metrics.json").write_text(json.dumps({"test": metrics}))
    (folder / "split.json").write_text(json.dumps({"train": [], "val": [], "test": test_files}))
    return folder


@pytest.fixture()
def path_actions(ui_weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CurationActions:
    monkeypatch.setenv("INKAPP_WEIGHTS_DIR", str(ui_weights_dir))
    data_dir = tmp_path / "data"
    return CurationActions(ModelHub(data_dir, tasks=[TASK], device="cpu"), CorrectionStore(data_dir),
                           AnalysedLog(data_dir), RetrainManager(data_dir), Experts())


def test_comparison_refuses_a_folder_outside_the_tasks_candidates(path_actions: CurationActions,
                                                                   tmp_path: Path) -> None:
    data_dir = path_actions.hub.data_dir
    outside = finished_run(tmp_path / "elsewhere", TASK, [])
    other_task = finished_run(candidates_root(data_dir, "painting-subject") / "20260101T000000Z",
                              "painting-subject", [])
    before = {p.name for p in outside.iterdir()}
    for folder in (outside, other_task, candidates_root(data_dir, TASK) / ".." / ".." / ".." / ".." / "elsewhere"):
        with pytest.raises(VersionError, match=f"is not a candidate of task {TASK}"):
            path_actions.compare_candidate(TASK, folder)
    with pytest.raises(VersionError, match="unknown task"):
        path_actions.compare_candidate("painting-subject", other_task)  # a task this app does not serve
    assert {p.name for p in outside.iterdir()} == before
    assert not (other_task / "comparison.json").exists()


def test_comparison_of_a_real_candidate_writes_inside_it(path_actions: CurationActions) -> None:
    data_dir = path_actions.hub.data_dir
    (data_dir / "test-images").mkdir(parents=True)
    entries = []
    for i, label in enumerate(["gongbi", "xieyi", "gongbi"]):
        Image.new("RGB", (40, 40), (30 * i, 80, 120)).save(data_dir / "test-images" / f"{i}.png")
        entries.append({"path": f"test-images/{i}.png", "label": label})
    candidate = finished_run(candidates_root(data_dir, TASK) / "20260101T000000Z", TASK, entries)
    result = path_actions.compare_candidate(TASK, candidate)
    assert result["n_compared"] == 3 and (candidate / "comparison.json").is_file()


def test_task_names_cannot_leave_the_models_folder(tmp_path: Path) -> None:
    for task in ("../x", "a/b", "", "..", "Painting"):
        with pytest.raises(VersionError, match="is not a task name"):
            task_root(tmp_path, task)


def test_model_panel_shows_no_absolute_server_path(path_actions: CurationActions, ui_weights_dir: Path) -> None:
    card = card_markdown(path_actions, TASK)
    assert f"`weights/{TASK}`" in card
    assert str(ui_weights_dir) not in card and str(path_actions.hub.data_dir) not in card
    candidate = finished_run(candidates_root(path_actions.hub.data_dir, TASK) / "20260101T000000Z", TASK, [])
    assert shown_path(candidate, path_actions.hub.data_dir) == f"data/models/{TASK}/candidates/20260101T000000Z"
    assert candidate_choices(path_actions, TASK) == [("20260101T000000Z (finished)", "20260101T000000Z")]
    message = scrub_paths(f"cannot read {candidate}/card.json", path_actions.hub.data_dir)
    assert message == f"cannot read data/models/{TASK}/candidates/20260101T000000Z/card.json"


# ---------------------------------------------------------------- memory that grows with visitors

def test_pixel_cache_stays_within_its_byte_budget() -> None:
    cache = PixelCache(budget_bytes=2 * 100 * 100 * 3)
    a, b, c = (Image.new("RGB", (100, 100), (i, 0, 0)) for i in range(3))
    cache.put("a", a)
    cache.put("b", b)
    assert cache.get("a") is a  # now most recently used
    cache.put("c", c)
    assert cache.get("b") is None and cache.get("a") is a and cache.get("c") is c
    assert cache.nbytes == 2 * 100 * 100 * 3 and len(cache) == 2
    cache.put("huge", Image.new("L", (1000, 1000)))  # larger than the whole budget: not kept
    assert cache.get("huge") is None and len(cache) == 2


def test_evicted_pixels_are_decoded_again_from_the_stored_copy(tmp_path: Path) -> None:
    path = tmp_path / "stored.png"
    Image.new("RGB", (300, 200), (10, 20, 30)).save(path)
    loaded = load_upload(path.read_bytes(), "stored.png")
    cache = PixelCache(budget_bytes=300 * 200 * 3)
    shown = cache.remember(loaded)
    assert isinstance(shown, ShownImage) and shown.display.size == (300, 200)
    cache.put("other", Image.new("RGB", (300, 200)))  # evicts the first image
    again = cache.loaded(shown, lambda: decode_again(UploadItem("gone.png", tmp_path / "gone.png"), path))
    assert cache.misses == 1 and again.image.size == (300, 200) and again.sha256 == loaded.sha256
    assert cache.loaded(shown, lambda: pytest.fail("decoded twice")).image is again.image


def test_analyse_session_keeps_a_hash_and_display_copy_and_expires(ui_weights_dir: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import inspect

    import gradio as gr

    from inkapp.ui.analyse_tab import AnalyseSession
    from inkapp.ui.app import build_actions, build_app

    monkeypatch.setenv("INKAPP_WEIGHTS_DIR", str(ui_weights_dir))
    demo = build_app(build_actions(tmp_path / "data", Experts()))
    states = [b for b in demo.blocks.values() if isinstance(b, gr.State) and isinstance(b.value, AnalyseSession)]
    assert len(states) == 1 and states[0].time_to_live == session_ttl_s() == 1800
    upload = next(f.fn for f in demo.fns.values() if f.api_name == "analyse")
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (2000, 3000, 3), dtype=np.uint8)).save(big)
    defaults = {"paths": [str(big)], "domain_choice": "painting", "method": "gradcam", "alpha": 0.5, "lang": "en",
                "state": AnalyseSession()}
    out = upload(*[defaults[name] for name in inspect.signature(upload).parameters])
    state = next(o for o in out if isinstance(o, AnalyseSession))
    assert isinstance(state.loaded, ShownImage) and max(state.loaded.display.size) <= 1024
    held = [v for v in vars(state).values() if isinstance(v, Image.Image)]
    assert held == []  # no full-resolution image in the session
    assert PIXELS.get(state.loaded.sha256).size == (3000, 2000)  # it is in the server-wide cache


# ---------------------------------------------------------------- the web layer

def test_upload_route_refuses_an_over_limit_file(launched_app: LaunchedApp) -> None:
    import httpx

    over = b"\0" * (TEST_UPLOAD_LIMIT_MB * 2**20 + 1)
    response = httpx.post(launched_app.url + "gradio_api/upload", files={"files": ("big.png", over)}, timeout=60)
    assert response.status_code == 413, response.text
    under = httpx.post(launched_app.url + "gradio_api/upload", files={"files": ("ok.png", b"\0" * 1000)},
                       timeout=60)
    assert under.status_code == 200


def test_compare_endpoint_over_http_refuses_a_foreign_folder(launched_app: LaunchedApp, tmp_path: Path) -> None:
    from gradio_client import Client

    outside = finished_run(tmp_path / "elsewhere", "painting-subject", [])
    before = sorted(p.name for p in outside.iterdir())
    client = Client(launched_app.url, verbose=False)
    for value in (str(outside), "../../../../../" + str(outside)):
        _, message = client.predict("painting-subject", value, api_name="/compare_candidate")
        assert "is not a candidate of task painting-subject" in message
    assert sorted(p.name for p in outside.iterdir()) == before


# ---------------------------------------------------------------- work multiplied by archives

def test_archive_over_the_pixel_budget_is_truncated_with_a_message(tmp_path: Path) -> None:
    """Seven 64-megapixel PNGs in a zip of a few hundred kilobytes: 448 MP > 400 MP."""
    buf = io.BytesIO()
    Image.new("L", (8000, 8000), 255).save(buf, "PNG")
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(7):
            zf.writestr(f"page{i}.png", buf.getvalue())
    assert archive.stat().st_size < 2 * 2**20
    items, problems = expand_uploads([archive])
    assert [i.member for i in items] == [f"page{i}.png" for i in range(6)]
    assert problems == ["bomb.zip: only the first 6 of 7 images kept (the archive's images may hold "
                        f"{MAX_ARCHIVE_PIXELS / 1e6:g} megapixels in all)"]


def test_archive_members_with_unreadable_headers_count_as_the_pixel_limit(tmp_path: Path) -> None:
    archive = tmp_path / "junk.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(8):
            zf.writestr(f"{i}.jpg", b"not an image at all")
    items, problems = expand_uploads([archive])
    assert len(items) == MAX_ARCHIVE_PIXELS // images.effective_max_pixels() == 5
    assert "only the first 5 of 8 images kept" in problems[0]


def test_previews_use_reduced_decodes_and_a_time_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "scroll.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (1000, 1500, 3), dtype=np.uint8)).save(path, quality=90)
    slots = images.DecodeSlots(1, min_pixels=1_000_000)
    monkeypatch.setattr(images, "LARGE_DECODES", slots)
    preview, caption = thumbnail(UploadItem("scroll.jpg", path))
    assert caption == "scroll.jpg" and max(preview.size) == 192
    assert slots.peak == 0  # draft mode decoded at most 1/4 of the 1.5 MP, below the slot threshold
    images.load_image(path)
    assert slots.peak == 1  # a full decode of the same file takes a slot
    tiles = thumbnails([UploadItem("scroll.jpg", path)] * 3, budget_s=0.0)
    assert [c for _, c in tiles] == ["scroll.jpg (no preview)"] * 3
