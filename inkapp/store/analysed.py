"""The log of analysed images (``<data_dir>/analysed.jsonl``).

Every analysis appends one JSON line per task: when, which image (sha256, stored path,
file name), task, predicted label, confidence and model version. The file is
append-only (:class:`inkapp.store.files.AppendOnlyFile`: one fsynced write per batch
under a file lock; a torn last line is quarantined to ``analysed.quarantine.csv``), so it
survives restarts, concurrent sessions and a killed writer; unreadable lines are skipped.
The review queue built from it is :func:`inkapp.curation.review.pending_review`.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .files import AppendOnlyFile, utc_now

log = logging.getLogger(__name__)

LOG_NAME = "analysed.jsonl"
QUARANTINE_NAME = "analysed.quarantine.csv"


class AnalysedLog:
    """Append-only JSONL record of what was analysed (:class:`inkapp.store.files.AppendOnlyFile`)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOG_NAME
        self._file = AppendOnlyFile(self.path, Path(data_dir) / QUARANTINE_NAME)

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        """Append records (each gets ``analysed_at``, UTC ISO-8601) as JSON lines, in one write."""
        now = utc_now()
        data = "".join(json.dumps({"analysed_at": now, **r}, ensure_ascii=False) + "\n" for r in records)
        self._file.append(data.encode("utf-8"))

    def records(self) -> list[dict[str, Any]]:
        """All readable records in file order."""
        text = self._file.read().decode("utf-8", errors="replace")
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
