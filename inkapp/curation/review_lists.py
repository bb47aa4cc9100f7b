"""The Review tab's two collection lists: near-duplicate pairs and suspect labels.

* :func:`duplicates_report` — pairs of stored images whose generic embeddings are at
  least the near-duplicate threshold apart (:mod:`inkapp.collection.duplicates`);
  pairs whose labels for the task disagree come first (flagged: an expert should
  look), then by similarity.
* :func:`suspect_list` — the task's suspect-label ranking (:mod:`inkapp.collection.suspects`)
  minus the images an expert already decided. The expert's decision is written by
  :meth:`inkapp.curation.actions.CurationActions.decide_suspect` (confirm = a correction
  row to the model's view; keep = a row with the given label, so it is not asked again).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from inkapp.collection.duplicates import DuplicatePair, duplicate_pairs
from inkapp.collection.suspects import Suspect, suspect_queue, suspects_file
from inkapp.tasks import class_name

MAX_PAIRS = 200  # duplicate pairs shown
MAX_SUSPECTS = 60  # suspects shown at once (the most suspect first)


def duplicates_report(data_dir: Path, task: str | None = None, threshold: float | None = None,
                      limit: int = MAX_PAIRS) -> list[DuplicatePair]:
    """Near-duplicate pairs of the collection under ``data_dir``: flagged pairs
    (``labels_disagree``) first, then most similar first; at most ``limit``. ``task`` —
    whose labels are compared (None: no labels, no flags); ``threshold`` — cosine
    (default: the task domain's, see :func:`inkapp.collection.duplicates.threshold_for`).
    Empty when nothing is indexed."""
    pairs = duplicate_pairs(task, data_dir, threshold=threshold)
    return sorted(pairs, key=lambda p: (not p.labels_disagree, -p.similarity))[:limit]


@dataclass(frozen=True)
class SuspectList:
    """The suspects awaiting an expert (most suspect first, at most :data:`MAX_SUSPECTS`),
    how many await in all, and a one-line ``message`` (empty when a ranking exists)."""

    suspects: list[Suspect]
    pending: int
    message: tuple[str, str] = ("", "")


def suspect_list(task: str, data_dir: Path, ranking: Path | None = None, limit: int = MAX_SUSPECTS) -> SuspectList:
    """The suspects of ``task`` not yet decided in ``data_dir``'s corrections; ``ranking``
    — the ranking file (default ``docs/results/suspects-<task>.json``). A missing
    ranking gives an empty list and a message (English, Chinese) saying how to compute it."""
    path = ranking if ranking is not None else suspects_file(task)
    try:
        queue = suspect_queue(task, data_dir, path)
    except FileNotFoundError:
        return SuspectList([], 0, (f"No suspect ranking for {task} yet: run `inkapp suspects --task {task} "
                                   f"--recompute`.", f"{task} 尚无可疑标签排名：请运行 `inkapp suspects --task {task} "
                                   f"--recompute`。"))
    return SuspectList(queue[:limit], len(queue))


def suspect_caption(task: str, suspect: Suspect, lang: str) -> str:
    """``"#3 · given … → model … · label quality 0.040 (low = suspect)"`` in ``lang``: the
    given label, the out-of-fold view and the label-quality score (the out-of-fold
    probability of the given label; lower = more suspect)."""
    given = class_name(task, suspect.given_label).text(lang)
    view = class_name(task, suspect.predicted_label).text(lang)
    if lang == "zh":
        return f"第 {suspect.rank} 名 · 标注 {given} → 模型认为 {view} · 标签可信度 {suspect.quality:.3f}（越低越可疑）"
    return f"#{suspect.rank} · given {given} → model {view} · label quality {suspect.quality:.3f} (low = suspect)"
