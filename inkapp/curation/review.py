"""The review queue: per (task, image), the latest analysis that has no correction in
effect yet, least confident first — the images where an expert's look helps most."""
from __future__ import annotations

from typing import Any

QUEUE_FIELDS = ("confidence", "task", "predicted_label", "name", "image_sha256", "image_path", "model_version",
                "analysed_at")


def pending_review(records: list[dict[str, Any]], active_corrections: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Latest analysis per (task, image) without a correction in effect: largest conformal
    answer set first (the model cannot separate those classes), then least (calibrated)
    confident first; records without a set count as a set of one."""
    reviewed = {(r["task"], r["image_sha256"]) for r in active_corrections}
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        key = (r["task"], r["image_sha256"])
        if key not in reviewed:
            latest[key] = r
    return sorted(latest.values(), key=lambda r: (-max(len(r.get("answer_set") or ()), 1),
                                                  float(r.get("confidence", 0.0)), r.get("analysed_at", "")))
