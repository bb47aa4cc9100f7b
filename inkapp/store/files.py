"""The two ways inkapp writes a file, each written once.

* :func:`atomic_path` / :func:`atomic_write_bytes` / :func:`atomic_write_text` — a whole
  file replaced at once: written to a temporary file in the same folder, fsynced, then
  renamed over the target (readers see the old file or the new one, never half of it).
* :class:`AppendOnlyFile` — a line-oriented record that only ever grows (the corrections
  CSV, the analysed-image log): every append holds an inter-process file lock, is one
  ``os.write`` on an ``O_APPEND`` descriptor and is fsynced; a header is written to an
  empty file; a last line without its ``\\n`` (a writer killed mid-write) is moved to a
  quarantine CSV by the next writer, before it appends.
"""
from __future__ import annotations

import base64
import csv
import io
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from filelock import FileLock

log = logging.getLogger(__name__)

LOCK_TIMEOUT_S = 60.0
QUARANTINE_FIELDS: tuple[str, ...] = ("quarantined_at", "source_file", "offset", "n_bytes", "text", "raw_base64")


class TornWriteWarning(RuntimeWarning):
    """A partial last line (a writer killed mid-write) was moved to the quarantine file."""


def utc_now() -> str:
    """The current UTC time as ``YYYY-MM-DDTHH:MM:SSZ``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def fsync_dir(path: Path) -> None:
    """fsync a directory, so that a rename or a new file in it survives a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """One ``os.write`` of ``data``; OSError on a short write (e.g. a full disk)."""
    written = os.write(fd, data)
    if written != len(data):
        raise OSError(f"short write: {written} of {len(data)} bytes")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds, fsync it and rename
    it over ``path`` (mode 0644). On an exception the temporary file is removed and
    ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Replace ``path``'s content by ``data`` at once (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Replace ``path``'s content by ``text`` (UTF-8) at once (see :func:`atomic_path`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


class AppendOnlyFile:
    """An append-only line file with its lock (``<path>.lock``) and quarantine file.

    ``header`` (bytes ending in ``\\n``, may be empty) is written to a new or empty file;
    ``quarantine`` is where torn last lines go (CSV, :data:`QUARANTINE_FIELDS`);
    ``clean`` turns the torn bytes' text into one printable cell.
    """

    def __init__(self, path: Path, quarantine: Path, header: bytes = b"",
                 clean: Callable[[str], str] = lambda s: " ".join(s.split()),
                 escape: Callable[[str], str] = lambda s: s) -> None:
        self.path = Path(path)
        self.quarantine = Path(quarantine)
        self.header = header
        self._clean = clean
        self._escape = escape
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = FileLock(str(self.path) + ".lock", timeout=LOCK_TIMEOUT_S)
        with self.lock:
            os.close(self._open_prepared())

    def append(self, data: bytes) -> None:
        """Append ``data`` (whole lines) under the lock."""
        with self.lock:
            self.append_locked(data)

    def append_locked(self, data: bytes) -> None:
        """Append ``data``; the caller holds :attr:`lock` (to read and append atomically)."""
        if not data:
            return
        fd = self._open_prepared()
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self) -> bytes:
        """The file's bytes, read under the lock (empty when it does not exist)."""
        with self.lock:
            return self.read_locked()

    def read_locked(self) -> bytes:
        """The file's bytes; the caller holds :attr:`lock` (empty when it does not exist)."""
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return b""

    def _open_prepared(self) -> int:
        """Under the lock: open for appending, quarantine a torn tail, ensure the header."""
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                size = self._quarantine_tail(fd, size)
            if size == 0 and self.header:
                write_all(fd, self.header)
                os.fsync(fd)
                fsync_dir(self.path.parent)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _quarantine_tail(self, fd: int, size: int) -> int:
        """Move the bytes after the last ``\\n`` to the quarantine file; return the new size."""
        cut, pos, step = 0, size, 64 * 1024
        while pos > 0:
            start = max(0, pos - step)
            found = os.pread(fd, pos - start, start).rfind(b"\n")
            if found >= 0:
                cut = start + found + 1
                break
            pos = start
        torn = os.pread(fd, size - cut, cut)
        new_file = not self.quarantine.exists() or self.quarantine.stat().st_size == 0
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        if new_file:
            writer.writerow(QUARANTINE_FIELDS)
        text = self._clean(torn.decode("utf-8", errors="backslashreplace"))
        writer.writerow([utc_now(), self.path.name, cut, len(torn), self._escape(text),
                         base64.b64encode(torn).decode("ascii")])
        qfd = os.open(self.quarantine, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            write_all(qfd, buf.getvalue().encode("utf-8"))
            os.fsync(qfd)
        finally:
            os.close(qfd)
        os.ftruncate(fd, cut)  # only after the bytes are safely in the quarantine file
        os.fsync(fd)
        message = (f"{self.path}: quarantined a torn last line of {len(torn)} bytes "
                   f"(a writer was interrupted) to {self.quarantine.name}")
        log.warning(message)
        warnings.warn(message, TornWriteWarning, stacklevel=3)
        return cut
