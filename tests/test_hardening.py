"""Hardening round two (issue 16): one test per class of weakness.

Side channels (an unknown expert name costs a password hash), text edge cases (lone
surrogates, bidi / zero-width characters before a formula), expensive conversions
(peak allocation of the high-bit-depth conversion, bounded concurrent large decodes),
endpoints that take a path (only the task's own candidates), archives (pixel budget),
per-session memory (server-wide pixel cache with a byte budget) and the web layer's
upload limit. Round two: the analysis-map cache bounded in bytes, caches emptied after
the session time to live with the heap handed back to the OS, and the app's own upload
folder emptied at startup.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import threading
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock, Timeout
from PIL import Image

import inkapp.auth as auth
from inkapp.auth import AccessDenied, Experts, hash_password
from inkapp.curation.actions import CurationActions
from inkapp.curation import memory
from inkapp.curation.analysis import AnalysisCache, load_upload
from inkapp.curation.hub import ModelHub
from inkapp.curation.memory import BudgetCache
from inkapp.curation.pixels import PIXELS, PixelCache, ShownImage, decode_again, session_ttl_s
from inkapp.curation.retrain import RetrainManager
from inkapp.curation.upload_folder import UPLOADS_DIR, clear_abandoned, own_upload_folder
from inkapp.curation.uploads import MAX_ARCHIVE_PIXELS, UploadItem, expand_uploads, thumbnail, thumbnails
from inkapp.data import images
from inkapp.explain.overlay import colorize, overlay
from inkapp.inference import Analysis, Prediction
from inkapp.store.analysed import AnalysedLog
from inkapp.store.corrections import CorrectionError, CorrectionStore, clean_text, unescape_cell
from inkapp.store.versions import VersionError, candidates_root, task_root
from inkapp.ui.models_tab import candidate_choices, card_markdown, scrub_paths, shown_path

from conftest import TEST_UPLOAD_LIMIT_MB, LaunchedApp, launch_app

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


# ---------------------------------------------------------------- memory, round two: bytes, idle time, the heap

def fake_analysis(side: int, seed: int) -> Analysis:
    """An :class:`Analysis` with a side×side heat map and two attention maps in [0, 1]."""
    rng = np.random.default_rng(seed)
    maps = rng.random((3, side, side), dtype=np.float32)
    prediction = Prediction("gongbi", 0.8, {"gongbi": 0.8, "xieyi": 0.2}, False)
    return Analysis(prediction, maps[0], "gongbi", "gradcam", {"alpha_0": maps[1], "alpha_1": maps[2]},
                    {"dpafm_channel": rng.random(64, dtype=np.float32)}, {"gate_channel": 0.4})


def test_analysis_cache_evicts_by_bytes_and_keeps_8_bit_maps() -> None:
    side = 200
    entry = 3 * side * side + 64 * 4  # three uint8 maps + the float32 channel vector
    cache = AnalysisCache(max_entries=1000, budget_bytes=5 * entry)
    for i in range(12):  # far past the budget
        cache.get_or_compute(("img", i), lambda i=i: fake_analysis(side, i))
        assert cache.nbytes <= 5 * entry
    assert len(cache) == 5 and cache.nbytes == 5 * entry  # by bytes, not by the entry count
    fresh = fake_analysis(side, 11)
    cached = cache.get_or_compute(("img", 11), lambda: pytest.fail("computed again"))
    assert cached.cam.dtype == np.float32 and cached.gates == fresh.gates
    assert np.abs(cached.cam - fresh.cam).max() <= 0.5 / 255 + 1e-6
    display = Image.new("RGB", (side, side), (200, 190, 170))
    for a, b in [(cached.cam, fresh.cam), *((cached.attention[k], fresh.attention[k]) for k in fresh.attention)]:
        assert np.array_equal(colorize(a), colorize(b))  # the same colour-map entry everywhere
        drawn = [np.asarray(overlay(display, m, 0.7), dtype=np.int16) for m in (a, b)]
        assert np.abs(drawn[0] - drawn[1]).max() <= 1  # blended pixels within one level
    # an evicted entry is computed again
    calls: list[int] = []
    cache.get_or_compute(("img", 0), lambda: calls.append(0) or fake_analysis(side, 0))
    assert calls == [0]


def test_caches_drop_entries_idle_longer_than_their_time_and_trim_the_heap(monkeypatch: pytest.MonkeyPatch) -> None:
    trims: list[int] = []
    monkeypatch.setattr(memory, "release_memory", lambda: trims.append(1) or True)
    now = [0.0]
    cache: BudgetCache[str, bytes] = BudgetCache(10_000, len, idle_s=100.0, clock=lambda: now[0])
    cache.put("old", b"x" * 4000)
    now[0] = 60.0
    cache.put("new", b"y" * 4000)
    now[0] = 120.0
    assert cache.expire() == 1 and cache.get("old") is None and cache.get("new") is not None
    assert trims == []  # 4000 freed bytes are not worth a trim while the cache still holds something
    now[0] = 400.0
    assert cache.expire() == 1 and len(cache) == 0 and cache.nbytes == 0
    assert trims == [1]  # emptied by expiry: the heap is trimmed


def test_pixel_cache_sweeper_empties_it_and_trims_without_any_request(monkeypatch: pytest.MonkeyPatch) -> None:
    trims: list[int] = []
    monkeypatch.setattr(memory, "release_memory", lambda: trims.append(1) or True)
    cache = PixelCache(budget_bytes=10**6, idle_s=0.05)
    cache.put("a", Image.new("RGB", (100, 100)))
    assert len(cache) == 1
    for _ in range(400):  # the sweeper runs every idle_s / 4
        if len(cache) == 0 and len(trims) >= 2:
            break
        time.sleep(0.05)
    assert len(cache) == 0 and cache.trims == 1  # emptied by expiry: one trim for the drop
    assert len(trims) >= 2  # ...and one per sweeper pass, whatever was dropped


def rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(memory._malloc_trim() is None or not Path("/proc/self/statm").exists(),
                    reason="needs glibc's malloc_trim and Linux /proc")
def test_release_memory_hands_freed_heap_back_to_the_os() -> None:
    """200 MiB of 64 KiB heap blocks (below glibc's mmap threshold) freed under a live block
    stay in the process until ``malloc_trim``."""
    def churn() -> None:  # a worker thread, like Gradio's, allocates from its own arena
        blocks = [bytearray(b"\xff") * (64 * 1024) for _ in range(3200)]  # written: resident
        pin = bytearray(b"\xff") * (64 * 1024)  # keeps the arena's top in use, so free() cannot shrink it
        before_free = rss_bytes()
        del blocks
        held.append((before_free, rss_bytes(), pin))

    memory.release_memory()
    base = rss_bytes()
    held: list[tuple[int, int, bytearray]] = []
    worker = threading.Thread(target=churn)
    worker.start()
    worker.join()
    before_free, after_free, _ = held[0]
    assert before_free - base > 150 * 2**20
    assert after_free - base > 150 * 2**20  # freed, but still resident
    assert memory.release_memory()
    assert rss_bytes() - base < 50 * 2**20


# ---------------------------------------------------------------- the app's own upload folder

def test_upload_folder_clearing_spares_only_running_servers(tmp_path: Path) -> None:
    root = tmp_path / UPLOADS_DIR
    dead, lockless, alive = root / "101-dead", root / "102-lockless", root / "103-alive"
    for folder in (dead, lockless, alive):
        (folder / "sub").mkdir(parents=True)
        (folder / "sub" / "upload.png").write_bytes(b"left behind")
    (root / "101-dead.lock").write_text("")
    (root / "stray.png").write_bytes(b"stray")
    held = FileLock(root / "103-alive.lock")
    held.acquire(timeout=0)
    try:
        assert clear_abandoned(root) == 2
        assert sorted(p.name for p in root.iterdir()) == ["103-alive", "103-alive.lock"]
        assert (alive / "sub" / "upload.png").read_bytes() == b"left behind"
        mine = own_upload_folder(tmp_path)
        assert mine.parent == root and list(mine.iterdir()) == [] and (alive / "sub" / "upload.png").is_file()
        with pytest.raises(Timeout, match="could not be acquired"):
            FileLock(root / f"{mine.name}.lock").acquire(timeout=0)  # held by this process
    finally:
        held.release()


def test_app_empties_its_upload_folder_at_startup_and_uploads_there(ui_weights_dir: Path, tmp_path: Path) -> None:
    import httpx

    data_dir = tmp_path / "data"
    leftover = data_dir / UPLOADS_DIR / "4242-previous" / "0123abcd" / "painting.png"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"\x89PNG left by a killed server" * 1000)
    with launch_app(ui_weights_dir, data_dir, {"INKAPP_EXPERTS": "", "INKAPP_HF_EXPERTS": "",
                                               "GRADIO_TEMP_DIR": str(tmp_path / "elsewhere")}) as app:
        assert not leftover.parent.parent.exists()
        response = httpx.post(app.url + "gradio_api/upload", files={"files": ("new.png", b"\0" * 1000)}, timeout=60)
        assert response.status_code == 200, response.text
        stored = Path(response.json()[0])
        assert stored.is_file() and stored.parent.parent.parent == data_dir / UPLOADS_DIR
        assert stored.parent.parent.name.startswith(f"{app.pid}-")
    # nothing written where the environment pointed (gradio makes an empty vibe_edit_history folder at import)
    assert [p for p in (tmp_path / "elsewhere").rglob("*") if p.is_file()] == []


def test_security_doc_names_only_files_that_exist() -> None:
    """docs/SECURITY.md's table points readers at the code: every path it names must be there."""
    import re

    root = Path(__file__).resolve().parents[1]
    named = set(re.findall(r"`((?:inkapp|tests|scripts)/[\w/]+\.py)", (root / "docs" / "SECURITY.md").read_text("utf-8")))
    assert len(named) > 10
    assert sorted(p for p in named if not (root / p).is_file()) == []


_MMAP_PROBE = """
import ctypes, sys
from inkapp.curation.memory import map_large_allocations
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
info = ctypes.CDLL(None).mallinfo2
info.restype = Info
applied = map_large_allocations() if sys.argv[1] == "apply" else None
bytearray(16 * 2**20)  # freed at once: by default this raises glibc's dynamic threshold to 16 MiB
before = info().hblkhd
block = bytearray(8 * 2**20)
print(applied, info().hblkhd - before)  # bytes glibc mapped for the 8 MiB block
"""


@pytest.mark.skipif(memory._malloc_trim() is None, reason="needs glibc")
def test_large_blocks_get_their_own_mapping_after_map_large_allocations() -> None:
    """By default, an 8 MiB block after a freed 16 MiB one comes from the heap (and stays
    resident when freed); as the app starts, the block is mapped (and unmapped on free)."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    outs = [subprocess.run([sys.executable, "-c", _MMAP_PROBE, mode], capture_output=True, text=True, env=env,
                           check=True).stdout.split() for mode in ("default", "apply")]
    assert outs[0] == ["None", "0"]
    assert outs[1][0] == "True" and int(outs[1][1]) >= 8 * 2**20
