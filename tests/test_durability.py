"""Durability and bounds shown by what happened, never by how long it took.

* Every correction and revocation is ``fsync``\\ ed on the corrections file's own
  descriptor after its bytes are written (``os.fsync`` observed, the descriptor
  resolved through ``/proc/self/fd``).
* A second *process* holding the store's file lock makes a writer wait: the row
  appears only after that process let go (observed through files the holder writes
  while it holds the lock).
* A zip member whose declared size is over the upload limit is refused before a
  single byte is inflated (``zipfile.ZipExtFile.read`` observed).
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
from filelock import FileLock

from inkapp.curation.uploads import UploadItem, expand_uploads
from inkapp.data.images import ImageError
from inkapp.store.corrections import CorrectionStore

TASK = "painting-subject"
CLASSES = ("figure", "flower_bird", "landscape")


def add(store: CorrectionStore, sha: str, expert: str = "Wu Daozi") -> dict[str, str]:
    return store.add(TASK, sha, f"images/{sha[:2]}/{sha}.jpg", "figure", 0.5, "landscape", expert, "", "v1", CLASSES)


def fd_path(fd: int) -> Path:
    return Path(os.readlink(f"/proc/self/fd/{fd}"))


@pytest.fixture()
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Path, int]]:
    """(file, its size at that moment) for every ``os.fsync`` call from now on; the real fsync still runs."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc/self/fd to resolve file descriptors (Linux)")
    calls: list[tuple[Path, int]] = []
    real = os.fsync

    def recording_fsync(fd: int) -> None:
        calls.append((fd_path(fd), os.fstat(fd).st_size))
        real(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    return calls


def test_each_append_is_fsynced_on_the_corrections_file(tmp_path: Path, fsyncs: list[tuple[Path, int]]) -> None:
    store = CorrectionStore(tmp_path)
    csv_path = (tmp_path / "corrections.csv").resolve()
    for i, expert in enumerate(["A", "B"]):
        fsyncs.clear()
        add(store, f"{i:064x}", expert)
        size = csv_path.stat().st_size
        assert (csv_path, size) in fsyncs, f"row {i} was not fsynced after it was written: {fsyncs}"
    fsyncs.clear()
    revocation = store.revoke_last(TASK, "A")
    assert revocation is not None and revocation["note"].startswith("revoke:")
    assert (csv_path, csv_path.stat().st_size) in fsyncs, f"the revocation was not fsynced: {fsyncs}"
    assert [r["expert"] for r in store.rows()] == ["A", "B", "A"]


_LOCK_HOLDER = """
import sys, time
from pathlib import Path
from filelock import FileLock
lock_path, csv_path, signals = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
with FileLock(lock_path):
    (signals / "held").touch()
    while not (signals / "release").exists():
        time.sleep(0.01)
    (signals / "rows-while-held").write_text(str(csv_path.read_bytes().count(b"\\n")))
(signals / "released").touch()
"""


def wait_for(path: Path, proc: subprocess.Popen[bytes]) -> None:
    """Until ``path`` exists (the holder died if it exits first)."""
    while not path.exists():
        assert proc.poll() is None, f"the lock holder exited with {proc.returncode} before creating {path.name}"
        time.sleep(0.01)


def test_a_second_process_holding_the_lock_makes_the_writer_wait(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = tmp_path / "data"
    store = CorrectionStore(data_dir)
    csv_path = data_dir / "corrections.csv"
    taken: list[str] = []
    real_acquire = FileLock.acquire

    def observed_acquire(self: FileLock, *args: object, **kwargs: object) -> object:
        taken.append(str(self.lock_file))
        return real_acquire(self, *args, **kwargs)

    monkeypatch.setattr(FileLock, "acquire", observed_acquire)
    add(store, "1" * 64)  # learn which lock file an append takes
    assert taken, "an append took no file lock"
    lock_path = taken[-1]
    assert lock_path == str(csv_path) + ".lock"  # the documented lock of the corrections file
    rows_before = csv_path.read_bytes().count(b"\n")

    signals = tmp_path / "signals"
    signals.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", _LOCK_HOLDER, lock_path, str(csv_path), str(signals)])
    try:
        wait_for(signals / "held", holder)
        reached = threading.Event()  # set when the writer asks for the lock, or when it is done without it
        taken.clear()
        monkeypatch.setattr(FileLock, "acquire",
                            lambda self, *a, **k: (reached.set(), observed_acquire(self, *a, **k))[1])
        errors: list[BaseException] = []

        def write() -> None:
            try:
                add(store, "2" * 64, "waiting writer")
            except BaseException as err:  # surfaced below
                errors.append(err)
            finally:
                reached.set()

        writer = threading.Thread(target=write)
        writer.start()
        reached.wait()
        (signals / "release").touch()
        writer.join()
        assert holder.wait() == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert not errors
    assert lock_path in taken
    assert int((signals / "rows-while-held").read_text()) == rows_before, \
        "the row was appended while another process held the lock"
    assert csv_path.read_bytes().count(b"\n") == rows_before + 1
    assert [r["expert"] for r in store.rows()] == ["Wu Daozi", "waiting writer"]


# ---------------------------------------------------------------- zip members

LIMIT_MB = 0.25


@pytest.fixture()
def inflated(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes returned by each ``ZipExtFile.read`` call from now on (the upload limit set to 0.25 MiB)."""
    monkeypatch.setenv("INKAPP_MAX_UPLOAD_MB", str(LIMIT_MB))
    sizes: list[int] = []
    real = zipfile.ZipExtFile.read

    def recording_read(self: zipfile.ZipExtFile, n: int = -1) -> bytes:
        data = real(self, n)
        sizes.append(len(data))
        return data

    monkeypatch.setattr(zipfile.ZipExtFile, "read", recording_read)
    return sizes


def test_zip_member_over_the_limit_is_refused_before_inflating(tmp_path: Path, inflated: list[int]) -> None:
    archive = tmp_path / "bomb.zip"
    small = b"\x89PNG\r\n\x1a\n" + bytes(1000)
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("small.png", small)
        zf.writestr("bomb.png", bytes(64 * 2**20))  # 64 MiB of zeros, about 64 KiB compressed
    assert archive.stat().st_size < 2**20
    items, problems = expand_uploads([archive])
    assert problems == [] and [i.member for i in items] == ["small.png", "bomb.png"]
    inflated.clear()  # listing may peek at member headers (bounded); what counts is reading a member

    assert items[0].read_bytes() == small  # the observer sees what a within-limit read inflates
    assert sum(inflated) == len(small)
    inflated.clear()
    with pytest.raises(ImageError, match="file is too large") as caught:
        items[1].read_bytes()
    assert inflated == [], f"{sum(inflated)} bytes were inflated before the size check"
    assert "(64.0 MiB; limit 0.2 MiB)" in str(caught.value)  # the declared size, read from the directory


def test_plain_file_over_the_limit_is_refused_before_reading(tmp_path: Path, inflated: list[int],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    big = tmp_path / "big.png"
    with open(big, "wb") as fh:  # sparse: 1 GiB on paper, nothing on disk
        fh.truncate(2**30)
    opened: list[str] = []
    real_read_bytes = Path.read_bytes

    def observed_read_bytes(self: Path) -> bytes:
        opened.append(str(self))
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", observed_read_bytes)
    with pytest.raises(ImageError, match=r"file is too large \(1024\.0 MiB; limit 0\.2 MiB\)"):
        UploadItem("big.png", big).read_bytes()
    assert opened == []
