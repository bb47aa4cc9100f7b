"""Tests for inkapp.store.corrections: semantics, escaping, concurrency and crash safety."""
from __future__ import annotations

import base64
import csv
import hashlib
import io
import multiprocessing
import re
import signal
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest
from PIL import Image

from inkapp.data.images import ImageError
from inkapp.store.corrections import (
    FIELDS,
    CorrectionError,
    CorrectionStore,
    TornWriteWarning,
    read_corrections,
)

TASK = "painting_style"
CLASSES = ["gongbi", "xieyi", "baimiao"]
SHA_A = "a" * 64
SHA_B = "b" * 64


def add(store: CorrectionStore, sha: str = SHA_A, label: str = "xieyi", expert: str = "Li Bai",
        note: str = "", task: str = TASK, **kw) -> dict:
    args = dict(task=task, image_sha256=sha, image_path=f"images/{sha[:2]}/{sha}.jpg",
                predicted_label="gongbi", confidence=0.87654, corrected_label=label,
                expert=expert, note=note, model_version="inkfusion-2024.1", classes=CLASSES)
    args.update(kw)
    return store.add(**args)


def csv_lines(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


# ---------------------------------------------------------------- basics

def test_round_trip_and_format(tmp_path: Path):
    store = CorrectionStore(tmp_path)
    row = add(store, note="brushwork is loose")
    assert list(row) == list(FIELDS)
    assert re.fullmatch(r"[0-9a-f]{32}", row["id"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row["timestamp"])
    assert row["confidence"] == "0.8765"
    assert store.rows() == [row]
    assert CorrectionStore(tmp_path).rows() == [row]  # reopen
    lines = csv_lines(tmp_path / "corrections.csv")
    assert lines[0] == list(FIELDS) and len(lines) == 2
    assert (tmp_path / "corrections.csv").read_bytes().count(b"\r") == 0


def test_header_written_once(tmp_path: Path):
    for _ in range(3):
        add(CorrectionStore(tmp_path))
    data = (tmp_path / "corrections.csv").read_bytes()
    assert data.count(b"id,timestamp") == 1 and data.startswith(b"id,timestamp,task,")


def test_store_image(tmp_path: Path):
    store = CorrectionStore(tmp_path)
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 20, 30)).save(buf, "PNG")
    data = buf.getvalue()
    sha, rel = store.store_image(data)
    assert rel == f"images/{sha[:2]}/{sha}.png"
    dest = tmp_path / rel
    assert dest.read_bytes() == data
    mtime = dest.stat().st_mtime_ns
    assert store.store_image(data) == (sha, rel)
    assert dest.stat().st_mtime_ns == mtime  # not rewritten
    assert not [p for p in dest.parent.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(ImageError, match="not a recognised image"):
        store.store_image(b"GIF89a but not really")


# ---------------------------------------------------------------- semantics

def test_latest_wins(tmp_path: Path):
    store = CorrectionStore(tmp_path)
    add(store, label="xieyi", expert="A")
    add(store, sha=SHA_B, label="gongbi", expert="A")
    last = add(store, label="baimiao", expert="B")
    active = store.active()
    assert [(r["image_sha256"], r["corrected_label"]) for r in active] == [(SHA_B, "gongbi"), (SHA_A, "baimiao")]
    assert active[1]["id"] == last["id"]
    _, summary = read_corrections(tmp_path / "corrections.csv")
    assert summary["superseded"] == 1 and summary["active"] == 2


def test_same_image_different_tasks_are_independent(tmp_path: Path):
    store = CorrectionStore(tmp_path)
    add(store, task="painting_style")
    add(store, task="script", label="kaishu", classes=["kaishu", "lishu"])
    assert len(store.active()) == 2


def test_revoke_twice_falls_back(tmp_path: Path):
    store = CorrectionStore(tmp_path)
    first = add(store, label="gongbi", expert="王羲之")
    add(store, label="xieyi", expert="王羲之")
    add(store, label="baimiao", expert="王羲之")
    other = add(store, sha=SHA_B, label="xieyi", expert="Someone else")
    assert {r["corrected_label"] for r in store.active() if r["image_sha256"] == SHA_A} == {"baimiao"}

    r1 = store.revoke_last(TASK, "王羲之")
    assert r1 is not None
    assert r1["corrected_label"] == "" and r1["predicted_label"] == "" and r1["confidence"] == ""
    assert r1["note"].startswith("revoke:") and r1["image_sha256"] == SHA_A
    assert [r["corrected_label"] for r in store.active() if r["image_sha256"] == SHA_A] == ["xieyi"]

    store.revoke_last(TASK, "  王羲之 ")  # same expert after cleaning
    active = store.active()
    assert [r["id"] for r in active if r["image_sha256"] == SHA_A] == [first["id"]]
    assert other["id"] in {r["id"] for r in active}

    store.revoke_last(TASK, "王羲之")
    assert [r["id"] for r in store.active()] == [other["id"]]
    assert store.revoke_last(TASK, "王羲之") is None
    assert store.revoke_last("other_task", "Someone else") is None
    assert len(store.rows()) == 7  # nothing deleted: 4 corrections + 3 revocations

    _, summary = read_corrections(tmp_path / "corrections.csv")
    assert summary == {"rows": 7, "malformed": 0, "revocations": 3, "revoked": 3,
                       "unknown_label": 0, "superseded": 0, "active": 1}


def test_unknown_label_rejected(tmp_path: Path):
    store = CorrectionStore(tmp_path)
    with pytest.raises(CorrectionError, match="unknown label 'shanshui'"):
        add(store, label="shanshui")
    assert store.rows() == []


@pytest.mark.parametrize("kw, match", [
    (dict(expert="   "), "expert name is empty"),
    (dict(expert="x" * 101), "too long"),
    (dict(note="n" * 1001), "too long"),
    (dict(image_sha256="ABC"), "64 lower-case hex"),
    (dict(image_path="/etc/passwd"), "relative"),
    (dict(image_path="images/../../x.jpg"), "relative"),
    (dict(confidence=1.5), "outside"),
    (dict(confidence="high"), "not a number"),
    (dict(task="a\nb"), "line breaks"),
    (dict(predicted_label=""), "empty"),
])
def test_validation(tmp_path: Path, kw: dict, match: str):
    with pytest.raises(CorrectionError, match=match):
        add(CorrectionStore(tmp_path), **kw)


def test_length_limits_at_boundary(tmp_path: Path):
    store = CorrectionStore(tmp_path)
    row = add(store, expert="é" * 100, note="字" * 1000)
    assert store.rows() == [row]


def test_unicode_and_control_characters(tmp_path: Path):
    store = CorrectionStore(tmp_path)
    row = add(store, expert="王羲之 👩🏽‍🎨", note="line one\nline two\r\n\x00bell\x07 tab\tend 🖌️")
    assert row["expert"] == "王羲之 👩🏽‍🎨"
    assert row["note"] == "line one line two  bell tab end 🖌️"
    assert store.rows() == [row]
    data = (tmp_path / "corrections.csv").read_bytes()
    assert data.count(b"\n") == 2


@pytest.mark.parametrize("value", ["=HYPERLINK(\"http://x\")", "+1", "-2", "@SUM(A1)",
                                   "'=already quoted", "''+x", "'plain", "plain"])
def test_formula_injection_neutralised_and_round_trips(tmp_path: Path, value: str):
    store = CorrectionStore(tmp_path)
    row = add(store, note=value, expert=value, model_version=value)
    cells = csv_lines(tmp_path / "corrections.csv")[1]
    for field in ("note", "expert", "model_version"):
        cell = cells[FIELDS.index(field)]
        assert cell[0] not in "=+-@\t\r"
        if value[0] in "=+-@":
            assert cell == "'" + value
    assert store.rows() == [row]
    assert row["note"] == value


# ---------------------------------------------------------------- concurrency

N_WRITERS, PER_WRITER = 8, 125


def _write_many(data_dir: str, writer: str, n: int) -> None:
    store = CorrectionStore(Path(data_dir))
    for i in range(n):
        sha = hashlib.sha256(f"{writer}:{i}".encode()).hexdigest()
        add(store, sha=sha, expert=writer, note=f"{writer}:{i} " + "墨" * (i % 50))


def test_concurrent_threads_and_processes(tmp_path: Path):
    CorrectionStore(tmp_path)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_many, args=(str(tmp_path), f"proc{k}", PER_WRITER))
             for k in range(4)]
    for p in procs:
        p.start()
    shared = CorrectionStore(tmp_path)
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            for i in range(PER_WRITER):
                add(shared, sha=f"{k:02x}{i:062x}", expert=f"thread{k}", note=f"thread{k}:{i}")
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    assert not errors

    data = (tmp_path / "corrections.csv").read_bytes()
    assert data.endswith(b"\n")
    lines = csv_lines(tmp_path / "corrections.csv")
    assert lines[0] == list(FIELDS)
    assert len(lines) == 1 + N_WRITERS * PER_WRITER
    assert all(len(line) == len(FIELDS) for line in lines)  # no interleaving
    notes = {line[FIELDS.index("note")].split(" ")[0] for line in lines[1:]}
    expected = {f"{w}{k}:{i}" for w in ("proc", "thread") for k in range(4) for i in range(PER_WRITER)}
    assert notes == expected
    assert len({line[0] for line in lines[1:]}) == N_WRITERS * PER_WRITER
    _, summary = read_corrections(tmp_path / "corrections.csv")
    assert summary["rows"] == 1000 and summary["malformed"] == 0
    assert not (tmp_path / "corrections.quarantine.csv").exists()


# ---------------------------------------------------------------- crash safety

_TORN_WRITER = """
import os, signal, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)
os.write(fd, sys.argv[2].encode("utf-8")[:-1])  # cut inside the last (3-byte) character
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_writer_killed_mid_write_is_quarantined(tmp_path: Path):
    store = CorrectionStore(tmp_path)
    keep = add(store, note="before the crash")
    csv_path = tmp_path / "corrections.csv"
    good_size = csv_path.stat().st_size
    partial = "0123456789abcdef0123456789abcdef,2024-01-01T00:00:00Z,painting_style,ccc,半"
    proc = subprocess.run([sys.executable, "-c", _TORN_WRITER, str(csv_path), partial])
    assert proc.returncode == -signal.SIGKILL
    torn = csv_path.read_bytes()[good_size:]
    assert torn and not torn.endswith(b"\n")

    # a reader that does not repair counts the torn line as malformed, never as a row
    active, summary = read_corrections(csv_path)
    assert [r["id"] for r in active] == [keep["id"]]
    assert summary["malformed"] == 1 and summary["rows"] == 2

    with pytest.warns(TornWriteWarning, match=f"{len(torn)} bytes"):
        reopened = CorrectionStore(tmp_path)
    assert csv_path.stat().st_size == good_size
    assert reopened.rows() == [keep]
    quarantine = csv_lines(tmp_path / "corrections.quarantine.csv")
    assert quarantine[0][:4] == ["quarantined_at", "source_file", "offset", "n_bytes"]
    assert base64.b64decode(quarantine[1][-1]) == torn
    assert quarantine[1][2] == str(good_size) and quarantine[1][3] == str(len(torn))

    after = add(reopened, sha=SHA_B)
    assert [r["id"] for r in reopened.rows()] == [keep["id"], after["id"]]
    assert read_corrections(csv_path)[1]["malformed"] == 0


def test_torn_tail_repaired_before_append(tmp_path: Path):
    store = CorrectionStore(tmp_path)
    add(store)
    with open(tmp_path / "corrections.csv", "ab") as f:
        f.write(b"deadbeef,2024")  # another process died mid-row while `store` was open
    with pytest.warns(TornWriteWarning, match="13 bytes"):
        row = add(store, sha=SHA_B)
    lines = csv_lines(tmp_path / "corrections.csv")
    assert len(lines) == 3 and lines[2][0] == row["id"]
    assert all(len(line) == len(FIELDS) for line in lines)


def test_torn_header_only(tmp_path: Path):
    (tmp_path / "corrections.csv").write_bytes(b"id,timest")
    with pytest.warns(TornWriteWarning):
        store = CorrectionStore(tmp_path)
    assert (tmp_path / "corrections.csv").read_bytes().startswith(b"id,timestamp,task,")
    add(store)
    assert len(store.rows()) == 1


def test_read_corrections_counts_bad_rows(tmp_path: Path):
    store = CorrectionStore(tmp_path)
    good = add(store, label="xieyi")
    add(store, sha=SHA_B, label="gongbi")
    csv_path = tmp_path / "corrections.csv"
    with open(csv_path, "ab") as f:
        f.write(b"too,few,fields\n")
        f.write(b"\xff\xfe not utf-8," * 11 + b"\n")
        f.write(("not-an-id," + ",".join(["x"] * 10) + "\n").encode())
        f.write(b"\n")  # blank lines are not rows
    active, summary = read_corrections(csv_path, {TASK: ["xieyi", "baimiao"]})
    assert [r["id"] for r in active] == [good["id"]]
    assert summary == {"rows": 5, "malformed": 3, "revocations": 0, "revoked": 0,
                       "unknown_label": 1, "superseded": 0, "active": 1}
    assert store.read_report()["malformed"] == 3
    assert read_corrections(tmp_path / "missing.csv") == (
        [], {"rows": 0, "malformed": 0, "revocations": 0, "revoked": 0,
             "unknown_label": 0, "superseded": 0, "active": 0})


def test_unknown_label_does_not_hide_earlier_valid_correction(tmp_path: Path):
    store = CorrectionStore(tmp_path)
    first = add(store, label="gongbi")
    add(store, label="baimiao")  # a class later removed from the task
    active, summary = read_corrections(tmp_path / "corrections.csv", {TASK: ["gongbi", "xieyi"]})
    assert [r["id"] for r in active] == [first["id"]]
    assert summary["unknown_label"] == 1 and summary["superseded"] == 0


def test_tasks_outside_the_mapping_are_not_label_checked(tmp_path: Path):
    store = CorrectionStore(tmp_path)
    add(store, task="script", label="kaishu", classes=["kaishu", "lishu"])
    add(store, label="baimiao")
    active, summary = read_corrections(tmp_path / "corrections.csv", {TASK: ["gongbi"]})
    assert [r["task"] for r in active] == ["script"]
    assert summary["unknown_label"] == 1 and summary["active"] == 1


_LOOPING_WRITER = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from test_corrections import add
from inkapp.store.corrections import CorrectionStore
store = CorrectionStore(Path(sys.argv[1]))
for i in range(100_000):
    add(store, sha=f"{i:064x}", expert="killed writer", note="墨" * (i % 300))
"""


def test_real_writer_killed_with_sigkill_leaves_a_parseable_csv(tmp_path: Path):
    csv_path = tmp_path / "corrections.csv"
    proc = subprocess.Popen([sys.executable, "-c", _LOOPING_WRITER, str(tmp_path), str(Path(__file__).parent)])
    try:
        while not csv_path.exists() or csv_path.read_bytes().count(b"\n") < 50:
            assert proc.poll() is None, "the writer exited early"
            threading.Event().wait(0.05)
    finally:
        proc.kill()
    assert proc.wait() == -signal.SIGKILL
    written = csv_path.read_bytes().count(b"\n") - 1
    torn = not csv_path.read_bytes().endswith(b"\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = CorrectionStore(tmp_path)
    assert any(issubclass(w.category, TornWriteWarning) for w in caught) == torn
    rows = store.rows()
    assert len(rows) == written and all(r["expert"] == "killed writer" for r in rows)
    assert all(len(line) == len(FIELDS) for line in csv_lines(csv_path))
    assert read_corrections(csv_path)[1]["malformed"] == 0
    add(store, sha=SHA_B)
    assert len(store.rows()) == written + 1


def test_ui_csv_export_escapes_formulas(tmp_path: Path):
    from inkapp.ui.review_tab import EXPORT_NAME_FIELDS, write_csv

    store = CorrectionStore(tmp_path)
    add(store, expert="=cmd|' /C calc'!A0", note="@SUM(1+1)*cmd|' /C calc'!A0", model_version="+v1")
    out = write_csv(store.rows(), tmp_path / "export.csv")
    header, cells = csv_lines(out)
    assert header == [*FIELDS, *EXPORT_NAME_FIELDS]  # stable keys first, then the display names
    assert cells[FIELDS.index("expert")] == "'=cmd|' /C calc'!A0"
    assert cells[FIELDS.index("note")].startswith("'@") and cells[FIELDS.index("model_version")] == "'+v1"
    assert all(not cell or cell[0] not in "=+-@\t\r" for cell in cells)
