"""The app's own upload folder, emptied of what earlier servers left behind.

Gradio writes every upload (and every image it sends back) under ``GRADIO_TEMP_DIR``
and deletes them only on a clean shutdown or, while running, once they are old
(``delete_cache``); a killed or restarted server leaves them behind. The app therefore
gives each server a fresh folder ``<data_dir>/uploads/<pid>-<random>`` and, at startup,
deletes every sibling no running server holds. A server holds its folder through an
exclusive lock on ``<folder>.lock`` for its whole life; the OS releases the lock when
the process ends, however it ends, so a server over the same data directory is never
robbed of its uploads and a dead one's files go at the next start.
"""
from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from filelock import FileLock, Timeout

UPLOADS_DIR = "uploads"
_LOCK_SUFFIX = ".lock"
_HELD: list[FileLock] = []  # this process's folder locks, held until it exits


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)


def clear_abandoned(root: Path) -> int:
    """Delete every entry of ``root`` (an app's ``uploads`` folder) that no running server
    holds: folders whose lock can be taken or that have no lock, and stray files.
    Returns how many folders were deleted."""
    removed = 0
    entries = sorted(root.iterdir()) if root.is_dir() else []
    for lock_path in (e for e in entries if e.name.endswith(_LOCK_SUFFIX)):
        lock = FileLock(lock_path)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue  # a running server's folder
        try:
            folder = lock_path.with_name(lock_path.name[:-len(_LOCK_SUFFIX)])
            removed += folder.exists()
            _remove(folder)
            lock_path.unlink(missing_ok=True)
        finally:
            lock.release()
    for entry in entries:
        if not entry.name.endswith(_LOCK_SUFFIX) and not entry.with_name(entry.name + _LOCK_SUFFIX).exists() \
                and entry.exists():
            removed += entry.is_dir()
            _remove(entry)
    return removed


def own_upload_folder(data_dir: Path) -> Path:
    """A fresh, empty upload folder for this server under ``data_dir/uploads``, held (locked)
    until the process exits, after :func:`clear_abandoned` deleted what dead servers left.
    The app sets ``GRADIO_TEMP_DIR`` to it before building any component."""
    root = Path(data_dir) / UPLOADS_DIR
    root.mkdir(parents=True, exist_ok=True)
    clear_abandoned(root)
    folder = root / f"{os.getpid()}-{secrets.token_hex(4)}"
    lock = FileLock(folder.with_name(folder.name + _LOCK_SUFFIX))
    lock.acquire(timeout=0)  # taken before the folder exists: no other server can clear it
    _HELD.append(lock)
    folder.mkdir()
    return folder
