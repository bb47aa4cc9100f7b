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
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import inkapp.auth as auth
from inkapp.auth import AccessDenied, Experts, hash_password
from inkapp.data import images
from inkapp.store.corrections import CorrectionError, CorrectionStore, clean_text, unescape_cell

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
