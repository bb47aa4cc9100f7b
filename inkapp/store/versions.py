"""Expert-promoted model versions kept in the data directory.

Layout under ``<data_dir>/models/<task>/``::

    active.json                  {"version", "folder", "promoted_at", "promoted_by", "promoted_from"} — the version in use
    history.jsonl                one line per promote or roll-back: {"at", "by", "action", "version", "folder"}
    <version>/                   a promoted model folder (weights, card, metrics, split), never overwritten
    candidates/<timestamp>/      retraining output waiting for Promote or Discard

Shipped weights (``weights/<task>``) are never written. Without ``active.json`` the app
uses the shipped model; Promote copies a candidate into its own version folder and then
swaps ``active.json`` atomically, so a crash leaves either the old or the new version active.
Roll-back makes any kept version, or the shipped weights (:data:`SHIPPED`), active again
the same way; who did each and when is appended to ``history.jsonl``.
"""
from __future__ import annotations

import json
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from inkapp.models import ModelLoadError, load_model, read_card
from inkapp.models.serialization import CARD_FILE, WEIGHTS_FILE
from inkapp.store.files import AppendOnlyFile, atomic_write_text

ACTIVE_FILE = "active.json"
HISTORY_FILE = "history.jsonl"
#: Roll-back target meaning "the shipped weights" (no ``active.json``).
SHIPPED = "shipped"
CANDIDATES = "candidates"
_TASK_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
#: Files of a training run folder copied on promotion (checkpoints and figures stay behind).
PROMOTED_FILES = (WEIGHTS_FILE, CARD_FILE, "metrics.json", "split.json", "data_summary.json", "comparison.json")


class VersionError(ValueError):
    """A promotion or discard that cannot be done; ``str()`` is a one-line message."""


def task_root(data_dir: Path, task: str) -> Path:
    """``<data_dir>/models/<task>``; :class:`VersionError` unless ``task`` is a plain task
    name (lower-case letters, digits, ``-``, ``_``), so no caller can reach outside."""
    if not isinstance(task, str) or not _TASK_NAME.fullmatch(task):
        raise VersionError(f"{str(task)[:60]!r} is not a task name")
    return Path(data_dir) / "models" / task


def candidates_root(data_dir: Path, task: str) -> Path:
    """``<data_dir>/models/<task>/candidates``."""
    return task_root(data_dir, task) / CANDIDATES


def read_active(data_dir: Path, task: str) -> dict[str, Any] | None:
    """The task's ``active.json`` record, or None when the shipped model is in use.

    Raises :class:`VersionError` when the file exists but is unreadable.
    """
    path = task_root(data_dir, task) / ACTIVE_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise VersionError(f"{path}: unreadable ({err})") from err
    if not isinstance(record, dict) or not isinstance(record.get("folder"), str):
        raise VersionError(f"{path}: no 'folder' entry")
    return record


def active_folder(data_dir: Path, task: str) -> Path | None:
    """Folder of the promoted version in use, or None (use the shipped weights)."""
    record = read_active(data_dir, task)
    return None if record is None else task_root(data_dir, task) / record["folder"]


def is_complete_run(folder: Path) -> bool:
    """A training output folder that finished: weights, card and test metrics are present."""
    return all((folder / name).is_file() for name in (WEIGHTS_FILE, CARD_FILE, "metrics.json"))


def list_candidates(data_dir: Path, task: str) -> list[Path]:
    """Candidate folders of ``task`` (finished, running or failed), newest first."""
    root = candidates_root(data_dir, task)
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.name, reverse=True)


def list_versions(data_dir: Path, task: str) -> list[str]:
    """Names of the promoted version folders of ``task`` (sorted)."""
    root = task_root(data_dir, task)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != CANDIDATES and (p / CARD_FILE).is_file())


def checked_candidate(data_dir: Path, task: str, candidate: Path) -> Path:
    """``candidate`` resolved (links and ``..`` followed), checked to be an existing folder
    directly under ``<data_dir>/models/<task>/candidates``; :class:`VersionError` with a
    one-line message otherwise. Every handler that takes a model folder calls this."""
    root = candidates_root(data_dir, task).resolve()
    path = Path(candidate).resolve()
    if path.parent != root or not path.is_dir():
        raise VersionError(f"{candidate} is not a candidate of task {task}")
    return path


def promote(data_dir: Path, task: str, candidate: Path, expert: str = "") -> dict[str, Any]:
    """Copy a finished candidate into ``models/<task>/<version>/``, make it active, delete
    the candidate; return the new ``active.json`` record (``expert`` recorded as
    ``promoted_by`` and in the history).

    The candidate's card must be for ``task`` and the copy must load (tensors matching
    the card: a tampered or mismatched candidate is refused and the active version
    stays); an existing version folder is never overwritten (a numeric suffix is added).
    """
    source = checked_candidate(data_dir, task, candidate)
    if not is_complete_run(source):
        raise VersionError(f"candidate {source.name} has not finished training")
    try:
        card = read_card(source)
    except ModelLoadError as err:
        raise VersionError(str(err)) from err
    if card.get("task") != task:
        raise VersionError(f"candidate {source.name} is a model for task {card.get('task')!r}, not {task!r}")
    root = task_root(data_dir, task)
    base = str(card.get("version") or source.name)
    name, n = base, 1
    while (root / name).exists():
        n += 1
        name = f"{base}-{n}"
    staging = root / f".{name}.incoming"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for file in PROMOTED_FILES:
        if (source / file).is_file():
            shutil.copy2(source / file, staging / file)
    try:
        load_model(staging)  # the copy that will be served, so nothing can change it after the check
    except ModelLoadError as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise VersionError(f"candidate {source.name} cannot be loaded: {err}") from err
    staging.rename(root / name)
    record = {"version": str(card.get("version", name)), "folder": name,
              "promoted_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "promoted_by": expert, "promoted_from": f"{CANDIDATES}/{source.name}"}
    atomic_write_text(root / ACTIVE_FILE, json.dumps(record, indent=1))
    _record_history(root, "promote", record["version"], name, expert, record["promoted_at"])
    shutil.rmtree(source)
    return record


def _history_file(root: Path) -> AppendOnlyFile:
    return AppendOnlyFile(root / HISTORY_FILE, root / "history.quarantine.csv")


def _record_history(root: Path, action: str, version: str, folder: str, expert: str, at: str) -> None:
    line = {"at": at, "by": expert, "action": action, "version": version, "folder": folder}
    _history_file(root).append((json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8"))


def history(data_dir: Path, task: str) -> list[dict[str, Any]]:
    """Every promote and roll-back of ``task``, oldest first (unreadable lines skipped)."""
    root = task_root(data_dir, task)
    if not (root / HISTORY_FILE).is_file():
        return []
    out = []
    for line in _history_file(root).read().decode("utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "action" in record:
            out.append(record)
    return out


def rollback(data_dir: Path, task: str, version: str, expert: str = "") -> dict[str, Any]:
    """Make the kept version folder ``version`` (a name from :func:`list_versions`), or the
    shipped weights when ``version`` is :data:`SHIPPED`, the active model of ``task``;
    record who and when in the history and return that history record.

    A kept version must still load (a corrupted one is refused, the active version stays).
    """
    root = task_root(data_dir, task)
    at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if version == SHIPPED:
        root.mkdir(parents=True, exist_ok=True)
        (root / ACTIVE_FILE).unlink(missing_ok=True)
        _record_history(root, "rollback", SHIPPED, "", expert, at)
        return history(data_dir, task)[-1]
    if version not in list_versions(data_dir, task):
        raise VersionError(f"{task} has no kept version {version!r}")
    try:
        _, card = load_model(root / version)
    except ModelLoadError as err:
        raise VersionError(f"version {version} cannot be loaded: {err}") from err
    record = {"version": str(card.get("version", version)), "folder": version, "promoted_at": at,
              "promoted_by": expert, "promoted_from": "rollback"}
    atomic_write_text(root / ACTIVE_FILE, json.dumps(record, indent=1))
    _record_history(root, "rollback", record["version"], version, expert, at)
    return history(data_dir, task)[-1]


def discard(data_dir: Path, task: str, candidate: Path) -> str:
    """Delete a candidate folder (finished or failed); return its name."""
    path = checked_candidate(data_dir, task, candidate)
    shutil.rmtree(path)
    return path.name
