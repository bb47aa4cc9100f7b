"""Every action of the app that changes stored state: recording analyses, corrections
and their undo, retraining, promoting and discarding models.

The app runs open (no expert authentication yet). All write paths go through
:class:`CurationActions`, so an access check for experts can be added here, in one
place, when authentication arrives.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from inkapp.data.images import ImageError
from inkapp.store.corrections import CorrectionError, CorrectionStore

from .analysis import ImageAnalysis, LoadedImage
from .hub import ModelHub
from .retrain import RetrainError, RetrainManager
from .review_queue import AnalysedLog
from .versions import VersionError, discard, promote

OPEN_ACCESS_NOTE = ("Open access: no expert authentication is configured — anyone who can reach this app can "
                    "submit corrections, retrain and promote models.")


@dataclass(frozen=True)
class TaskPrediction:
    """What a task model said about the current image (needed to record a correction)."""

    label: str
    confidence: float
    model_version: str
    classes: tuple[str, ...]


@dataclass
class AnalysedImage:
    """The image on screen: where it is stored and each task's prediction."""

    name: str
    sha256: str
    image_path: str
    predictions: dict[str, TaskPrediction] = field(default_factory=dict)


class CurationActions:
    """The app's state-changing operations over one data directory."""

    def __init__(self, hub: ModelHub, store: CorrectionStore, analysed_log: AnalysedLog,
                 retrain: RetrainManager) -> None:
        self.hub = hub
        self.store = store
        self.analysed_log = analysed_log
        self.retrain = retrain

    def record_analysis(self, loaded: LoadedImage, analysis: ImageAnalysis, previous: AnalysedImage | None,
                        already_logged: set[tuple[str, str, str]]) -> AnalysedImage:
        """Store the image once by content hash (unless ``previous`` is the same image, already
        stored) and log each task's prediction to the review queue, skipping (sha256, task,
        version) triples in ``already_logged`` (which is updated)."""
        if previous is not None and previous.sha256 == loaded.sha256:
            sha, rel = previous.sha256, previous.image_path
        else:
            sha, rel = self.store.store_image(loaded.data)
        current = AnalysedImage(loaded.name, sha, rel)
        records = []
        for view in analysis.tasks:
            if view.error:
                continue
            current.predictions[view.task] = TaskPrediction(view.label, view.confidence, view.model_version,
                                                            tuple(view.classes))
            key = (sha, view.task, view.model_version)
            if key not in already_logged:
                already_logged.add(key)
                records.append({"image_sha256": sha, "image_path": rel, "name": loaded.name, "task": view.task,
                                "predicted_label": view.label, "confidence": round(view.confidence, 6),
                                "model_version": view.model_version})
        self.analysed_log.append(records)
        return current

    def submit_correction(self, current: AnalysedImage | None, task: str, corrected_label: str, expert: str,
                          note: str) -> str:
        """Append one correction for the image on screen; return a message for the curator."""
        if current is None:
            return "Analyse an image first."
        prediction = current.predictions.get(task)
        if prediction is None:
            return f"The current image has no {task} prediction to correct."
        try:
            row = self.store.add(task, current.sha256, current.image_path, prediction.label, prediction.confidence,
                                 corrected_label or "", expert or "", note or "", prediction.model_version,
                                 prediction.classes)
        except (CorrectionError, ImageError) as err:
            return f"Not saved: {err}"
        verdict = "confirmed" if row["corrected_label"] == row["predicted_label"] else "corrected"
        return (f"Saved: {task} of {current.name} {verdict} as **{row['corrected_label']}** by {row['expert']} "
                f"(row {row['id'][:8]}).")

    def undo_last_correction(self, task: str, expert: str) -> str:
        """Revoke the expert's latest correction in ``task``; return a message."""
        try:
            row = self.store.revoke_last(task, expert or "")
        except CorrectionError as err:
            return f"Nothing undone: {err}"
        if row is None:
            return f"Nothing to undo: {expert} has no correction in effect for {task}."
        return f"Undone: correction {row['note'].split(':', 1)[1][:8]} ({task}) revoked by {row['expert']}."

    def start_retrain(self, task: str) -> str:
        """Start retraining ``task`` from the corrections; return a message."""
        status = self.hub.status(task)
        try:
            job = self.retrain.start(task, status.folder)
        except RetrainError as err:
            return f"Not started: {err}"
        return f"Retraining {task} into candidate {job.candidate.name}."

    def promote_candidate(self, task: str, candidate: Path) -> str:
        """Make a candidate the active model of ``task`` and reload it; return a message."""
        try:
            record = promote(self.hub.data_dir, task, candidate)
        except VersionError as err:
            return f"Not promoted: {err}"
        status = self.hub.reload(task)
        if status.source != "promoted":
            return f"Promoted {record['version']}, but it could not be loaded: {status.message}"
        return f"Promoted {record['version']}; it now serves {task}."

    def discard_candidate(self, task: str, candidate: Path) -> str:
        """Delete a candidate folder; return a message."""
        job = self.retrain.job(task)
        if job is not None and job.candidate.resolve() == Path(candidate).resolve():
            job.cancel()
        try:
            name = discard(self.hub.data_dir, task, candidate)
        except VersionError as err:
            return f"Not discarded: {err}"
        return f"Discarded candidate {name}."
