"""Retraining a task from the experts' corrections as a background subprocess.

The job runs ``python -m inkapp train --config <task> --corrections
<data_dir>/corrections.csv [--split <current model>/split.json] --out
<data_dir>/models/<task>/candidates/<timestamp>`` with its output (tqdm bars and one
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
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from inkapp.store.versions import candidates_root, is_complete_run

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "train" / "configs"
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
    the last lines of the log without progress-bar noise.
    """

    state: str
    epoch: int | None
    epochs: int | None
    last: dict[str, Any] | None
    message: str
    log_tail: str


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
                  config_dir: Path = CONFIG_DIR, extra_args: tuple[str, ...] = ()) -> list[str]:
    """The ``inkapp train`` command line for retraining ``task`` into ``out``."""
    config = config_dir / f"{task}.yaml"
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
            done = f"epoch {epoch}/{epochs or '?'}" if epoch else "preparing data"
            val = f", validation accuracy {last['val_acc']:.3f}" if last and "val_acc" in last else ""
            return Progress("running", epoch, epochs, last, f"training {self.task}: {done}{val}", tail)
        if code == 0 and is_complete_run(self.candidate):
            return Progress("finished", epoch, epochs, last, f"finished: candidate {self.candidate.name}", tail)
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

    def __init__(self, data_dir: Path, config_dir: Path = CONFIG_DIR, cwd: Path = REPO_ROOT,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.data_dir = Path(data_dir)
        self.config_dir = config_dir
        self.cwd = cwd
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
            command = train_command(task, self.data_dir / "corrections.csv", out, split, self.config_dir,
                                    self.extra_args)
            job = RetrainJob(task, out, command, self.cwd)
            self._jobs[task] = job
            return job

    def job(self, task: str) -> RetrainJob | None:
        """The latest job started for ``task`` in this process, if any."""
        return self._jobs.get(task)

    def shutdown(self) -> None:
        """Stop every running job (used when the app exits)."""
        for job in list(self._jobs.values()):
            job.cancel()
