"""The log of analysed images (``<data_dir>/analysed.jsonl``) and the review queue built from it.

Every analysis appends one JSON line per task: when, which image (sha256, stored path,
file name), task, predicted label, confidence and model version. The file is
append-only (one ``os.write`` per batch on an ``O_APPEND`` descriptor under a file
lock; a torn last line is ended before appending), so it survives restarts and concurrent sessions; unreadable lines are skipped.

The review queue lists, per (task, image), the latest analysis that has no correction
in effect yet, least confident first — the images where an expert's look helps most.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock

log = logging.getLogger(__name__)

LOG_NAME = "analysed.jsonl"
QUEUE_FIELDS = ("confidence", "task", "predicted_label", "name", "image_sha256", "image_path", "model_version",
                "analysed_at")


class AnalysedLog:
    """Append-only JSONL record of what was analysed."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOG_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.path) + ".lock", timeout=60)

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        """Append records (each gets ``analysed_at``, UTC ISO-8601) as JSON lines."""
        now = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
        data = "".join(json.dumps({"analysed_at": now, **r}, ensure_ascii=False) + "\n" for r in records)
        if not data:
            return
        with self._lock:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":  # a torn last line stays on its own line
                    data = "\n" + data
                os.write(fd, data.encode("utf-8"))
            finally:
                os.close(fd)

    def records(self) -> list[dict[str, Any]]:
        """All readable records in file order."""
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        out = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s:%d: unreadable line skipped", self.path, n)
                continue
            if isinstance(record, dict) and {"task", "image_sha256"} <= record.keys():
                out.append(record)
        return out


def pending_review(records: list[dict[str, Any]], active_corrections: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Latest analysis per (task, image) without a correction in effect, least confident first."""
    reviewed = {(r["task"], r["image_sha256"]) for r in active_corrections}
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        key = (r["task"], r["image_sha256"])
        if key not in reviewed:
            latest[key] = r
    return sorted(latest.values(), key=lambda r: (float(r.get("confidence", 0.0)), r.get("analysed_at", "")))
