"""Retraining a task from the experts' corrections as a background subprocess.

The job runs ``python -m inkapp train --config <task> --corrections <the store's CSV>
[--split <current model>/split.json] --out <data_dir>/models/<task>/candidates/<timestamp>``
(the packaged config of the task, so a non-editable install retrains too; the working
directory is the data directory, and the config's data folder is found through
:func:`inkapp.paths.shared_data_root`) with its output (tqdm bars and one
JSON line per epoch) going to ``train.log`` in the candidate folder. Progress is read
back from that log. The active model is never touched: a finished run is only a
candidate until an expert promotes it (:mod:`inkapp.store.versions`); a failed or killed
run reports why with the tail of its log. One job runs at a time (the CPU is shared
with serving).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from inkapp.store.corrections import CorrectionStore
from inkapp.data.dataset import load_samples
from inkapp.store.corrections import read_corrections
from inkapp.store.versions import candidates_root, is_complete_run
from inkapp.training.config import load_config
from inkapp.training.data import merge_corrections
from inkapp.tasks import config_path

LOG_NAME = "train.log"
_EPOCH_OF = re.compile(r"epoch (\d+)/(\d+)")
_TQDM_BAR = re.compile(r"\d+%\|")


class RetrainError(RuntimeError):
    """A retraining job that cannot be started; ``str()`` is a one-line message."""


@dataclass(frozen=True)
class Progress:
    """A job's state as read from its process and log.

    ``state`` is ``"running"``, ``"finished"`` or ``"failed"``; ``epoch`` / ``epochs``
    the last completed epoch and the planned number (when known); ``last`` the last
    epoch record (``val_acc`` ...); ``message`` one line for the curator; ``log_tail``
    the last lines of the log without progress-bar noise; ``eta`` the estimated finish
    (Unix seconds, see :func:`estimate_finish`; None before the first epoch or when done).
    """

    state: str
    epoch: int | None
    epochs: int | None
    last: dict[str, Any] | None
    message: str
    log_tail: str
    eta: float | None = None


def estimate_finish(started: float, seen: dict[int, float], epochs: int | None) -> float | None:
    """Estimated finish time (Unix seconds) of a run planned for ``epochs`` epochs.

    ``seen`` maps each completed epoch to when it was first seen finished (Unix seconds),
    ``started`` is when the job started. One epoch's duration is the mean gap between
    the first and the last seen epoch; with only one epoch seen it is the time from the
    start to that epoch, which includes data preparation, so the first estimate errs
    late. The final test evaluation is not counted. None before the first epoch.
    """
    if not seen or not epochs:
        return None
    first, last = min(seen), max(seen)
    per_epoch = ((seen[last] - seen[first]) / (last - first) if last > first
                 else (seen[last] - started) / last)
    return seen[last] + max(epochs - last, 0) * per_epoch


@dataclass(frozen=True)
class CorrectionPreview:
    """What the corrections in effect would change in a task's training data.

    ``corrections``: corrections in effect for the task; ``relabelled``: base images
    whose label they change; ``added``: corrected images not in the base data;
    ``agreeing``: corrections that repeat the base data's own label (they change
    nothing); ``missing_image``: corrections whose stored image is gone.
    """

    corrections: int
    relabelled: int
    added: int
    agreeing: int
    missing_image: int

    @property
    def changes(self) -> int:
        """Training images the corrections relabel or add (0: a retrain would learn nothing new)."""
        return self.relabelled + self.added

    def text(self) -> tuple[str, str]:
        """One (English, Chinese) line for the curator."""
        en = (f"{self.corrections} corrections in effect: they relabel {self.relabelled} training images and add "
              f"{self.added}; {self.agreeing} agree with the dataset's own label and change nothing")
        zh = (f"生效的更正 {self.corrections} 条：改标 {self.relabelled} 张训练图像，新增 {self.added} 张；"
              f"{self.agreeing} 条与数据集原标签一致，不改变训练数据")
        if self.missing_image:
            en += f"; {self.missing_image} stored images are missing"
            zh += f"；{self.missing_image} 张存储图像缺失"
        return en + ".", zh + "。"


def preview_corrections(task: str, corrections_csv: Path, data: str | Path) -> CorrectionPreview:
    """Count what the corrections in ``corrections_csv`` would change in ``task``'s base
    data ``data`` (a folder or manifest, as in a training config), with the training
    code's own merge (:func:`inkapp.training.data.merge_corrections`). No image is
    decoded; each base image is hashed once, and nothing is read when the task has no
    correction in effect."""
    if not any(r["task"] == task for r in read_corrections(Path(corrections_csv))[0]):
        return CorrectionPreview(0, 0, 0, 0, 0)
    samples = load_samples(data)
    classes = sorted({s.label for s in samples})
    summary: dict[str, Any] = {}
    merge_corrections(samples, classes, task, corrections_csv, summary)
    c = summary["corrections"]
    n = len({r["image_sha256"] for r in read_corrections(Path(corrections_csv), {task: classes})[0]
             if r["task"] == task})
    return CorrectionPreview(n, c["relabelled"], c["added"], n - c["relabelled"] - c["added"] - c["missing_image"],
                             c["missing_image"])


def read_log_progress(text: str) -> tuple[int | None, int | None, dict[str, Any] | None]:
    """(last completed epoch, planned epochs, last epoch record) from a training log."""
    last: dict[str, Any] | None = None
    planned: int | None = None
    for line in re.split(r"[\r\n]+", text):
        line = line.strip()
        if line.startswith("{") and '"epoch"' in line:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and isinstance(record.get("epoch"), int):
                last = record
        elif match := _EPOCH_OF.search(line):
            planned = int(match.group(2))
    return (None if last is None else last["epoch"]), planned, last


def log_tail(text: str, lines: int = 15) -> str:
    """The last ``lines`` log lines, progress-bar redraws dropped."""
    kept = [ln.rstrip() for ln in re.split(r"[\r\n]+", text) if ln.strip() and not _TQDM_BAR.search(ln)]
    return "\n".join(kept[-lines:])


def train_command(task: str, corrections_csv: Path, out: Path, split_file: Path | None,
                  config_dir: Path | None = None, extra_args: tuple[str, ...] = ()) -> list[str]:
    """The ``inkapp train`` command line for retraining ``task`` into ``out`` (the packaged
    config of ``task``, or ``<config_dir>/<task>.yaml`` when ``config_dir`` is given)."""
    try:
        config = config_path(task) if config_dir is None else Path(config_dir) / f"{task}.yaml"
    except ValueError as err:
        raise RetrainError(str(err)) from None
    if not config.is_file():
        raise RetrainError(f"no training config for task {task} ({config})")
    cmd = [sys.executable, "-m", "inkapp", "train", "--config", str(config), "--out", str(out)]
    if corrections_csv.is_file():
        cmd += ["--corrections", str(corrections_csv)]
    if split_file is not None and split_file.is_file():
        cmd += ["--split", str(split_file)]
    return [*cmd, *extra_args]


class RetrainJob:
    """One running or finished ``inkapp train`` subprocess."""

    def __init__(self, task: str, candidate: Path, command: list[str], cwd: Path) -> None:
        self.task = task
        self.candidate = candidate
        self.command = command
        self.log_path = candidate / LOG_NAME
        self.started = time.time()
        self.epoch_seen: dict[int, float] = {}  # completed epoch -> when progress() first saw it
        candidate.mkdir(parents=True, exist_ok=False)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)

    def progress(self) -> Progress:
        """Current state, parsed from the process and its log."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            text = ""
        epoch, epochs, last = read_log_progress(text)
        code = self.process.poll()
        tail = log_tail(text)
        if code is None:
            if epoch:
                self.epoch_seen.setdefault(epoch, time.time())
            done = f"epoch {epoch}/{epochs or '?'}" if epoch else "preparing data"
            val = f", validation accuracy {last['val_acc']:.1%}" if last and "val_acc" in last else ""
            return Progress("running", epoch, epochs, last, f"training {self.task}: {done}{val}", tail,
                            estimate_finish(self.started, self.epoch_seen, epochs))
        if code == 0 and is_complete_run(self.candidate):
            return Progress("finished", epoch, epochs, last, f"candidate {self.candidate.name} is ready to compare",
                            tail)
        why = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        return Progress("failed", epoch, epochs, last,
                        f"retraining failed ({why}); the active model is unchanged", tail)

    def cancel(self) -> None:
        """Stop the training process group (SIGTERM); the candidate folder stays for inspection."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)


class RetrainManager:
    """Starts retraining jobs (one at a time) and remembers the latest job per task."""

    def __init__(self, data_dir: Path, corrections: CorrectionStore | None = None, config_dir: Path | None = None,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.data_dir = Path(data_dir)
        self.corrections = corrections if corrections is not None else CorrectionStore(self.data_dir)
        self.config_dir = config_dir
        self.extra_args = extra_args
        self._lock = threading.Lock()
        self._jobs: dict[str, RetrainJob] = {}

    def start(self, task: str, current_model: Path | None) -> RetrainJob:
        """Start retraining ``task`` (reusing ``current_model``'s split.json when it has one)."""
        with self._lock:
            running = [j for j in self._jobs.values() if j.process.poll() is None]
            if running:
                raise RetrainError(f"a retraining job for {running[0].task} is still running; wait for it to finish")
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            out = candidates_root(self.data_dir, task) / stamp
            if out.exists():
                raise RetrainError(f"candidate folder {out} already exists; try again in a second")
            split = None if current_model is None else current_model / "split.json"
            command = train_command(task, self.corrections.csv_path, out, split, self.config_dir, self.extra_args)
            job = RetrainJob(task, out, command, self.data_dir)
            self._jobs[task] = job
            return job

    def preview(self, task: str) -> CorrectionPreview:
        """What the corrections in effect would change in ``task``'s training data (the
        data folder of the config a retrain would use, see :func:`preview_corrections`)."""
        data = Path(load_config(task if self.config_dir is None else Path(self.config_dir) / f"{task}.yaml").data)
        return preview_corrections(task, self.corrections.csv_path,
                                   data if data.is_absolute() else self.data_dir / data)  # the job's working dir

    def job(self, task: str) -> RetrainJob | None:
        """The latest job started for ``task`` in this process, if any."""
        return self._jobs.get(task)

    def shutdown(self) -> None:
        """Stop every running job (used when the app exits)."""
        for job in list(self._jobs.values()):
            job.cancel()
