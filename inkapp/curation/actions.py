"""Every action of the app that changes stored state: recording analyses, corrections
and their undo, retraining, promoting and discarding models.

All write paths go through :class:`CurationActions`, and its expert-only ones
(correct, undo, retrain, promote, discard) check the caller's :class:`Credentials`
against the configured :class:`inkapp.auth.Experts` in one place,
:meth:`CurationActions.authorise`. Recording an analysis is open to everyone.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inkapp.auth import AccessDenied, Experts
from inkapp.collection.suspects import Suspect, decide_suspect
from inkapp.data.images import ImageError
from inkapp.store.corrections import CorrectionError, CorrectionStore

from .analysis import ImageAnalysis, LoadedImage
from .comparison import compare_with_current
from .hub import ModelHub
from .retrain import RetrainError, RetrainManager
from .similar_view import index_analysis
from inkapp.store.analysed import AnalysedLog
from inkapp.store.versions import checked_candidate, is_complete_run
from inkapp.store.versions import SHIPPED, VersionError, discard, promote, rollback

OPEN_ACCESS_NOTE = ("**Open access:** no experts configured — anyone can correct. Anyone who can reach this app "
                    "can submit and undo corrections, retrain, promote and discard models.")
RESTRICTED_ACCESS_NOTE = ("**Restricted:** only configured experts can correct, undo, retrain, promote or discard "
                          "({how}); anyone can analyse.")


@dataclass(frozen=True)
class Credentials:
    """Who asks for a write: the typed expert name and password, and the Hugging Face
    user name when signed in with Hugging Face (None otherwise)."""

    expert: str
    password: str = ""
    hf_user: str | None = None

    @classmethod
    def from_form(cls, expert: str | None, password: str | None,
                  profile: Mapping[str, Any] | None = None) -> Credentials:
        """Credentials from the form fields and the Hugging Face OAuth profile that gradio
        injects (a ``gr.OAuthProfile``, None when nobody is signed in)."""
        return cls(expert or "", password or "", (profile or {}).get("preferred_username") or None)


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
                 retrain: RetrainManager, experts: Experts | None = None) -> None:
        self.hub = hub
        self.store = store
        self.analysed_log = analysed_log
        self.retrain = retrain
        self.experts = experts if experts is not None else Experts()

    @property
    def access_note(self) -> str:
        """One line for the page header: whether the app is open or restricted to experts."""
        if not self.experts.configured:
            return OPEN_ACCESS_NOTE
        how = []
        if self.experts.passwords:
            how.append("expert name and password")
        if self.experts.hf_users:
            how.append("Hugging Face sign-in")
        return RESTRICTED_ACCESS_NOTE.format(how=" or ".join(how))

    def authorise(self, who: Credentials) -> str:
        """The expert name to record for a write by ``who`` (:class:`AccessDenied` when refused).

        Open mode (no experts configured) accepts any non-empty name.
        """
        return self.experts.authorise(who.expert, who.password, who.hf_user)

    def record_analysis(self, loaded: LoadedImage, analysis: ImageAnalysis, previous: AnalysedImage | None,
                        already_logged: set[tuple[str, str, str]]) -> AnalysedImage:
        """Store the image once by content hash (unless ``previous`` is the same image, already
        stored) and log each task's prediction to the review queue, skipping (sha256, task,
        version) triples in ``already_logged`` (which is updated). When anything new was
        logged, the image also goes into the collection indexes (similar works,
        duplicates: :func:`.similar_view.index_analysis`)."""
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
                                "answer_set": list(view.answer_set),
                                "model_version": view.model_version})
        self.analysed_log.append(records)
        if records:  # a new (image, model version): into the similar-works and duplicates indexes
            index_analysis(self.hub, self.store.data_dir, sha, rel, loaded.image, analysis)
        return current

    def submit_correction(self, current: AnalysedImage | None, task: str, corrected_label: str, who: Credentials,
                          note: str) -> str:
        """Append one correction for the image on screen, recorded under the authorised
        expert name; return a message for the curator."""
        try:
            expert = self.authorise(who)
        except AccessDenied as err:
            return f"Not saved: {err}"
        if current is None:
            return "Analyse an image first."
        prediction = current.predictions.get(task)
        if prediction is None:
            return f"The current image has no {task} prediction to correct."
        try:
            row = self.store.add(task, current.sha256, current.image_path, prediction.label, prediction.confidence,
                                 corrected_label or "", expert, note or "", prediction.model_version,
                                 prediction.classes)
        except (CorrectionError, ImageError) as err:
            return f"Not saved: {err}"
        verdict = "confirmed" if row["corrected_label"] == row["predicted_label"] else "corrected"
        return (f"Saved: {task} of {current.name} {verdict} as **{row['corrected_label']}** by {row['expert']} "
                f"(row {row['id'][:8]}).")

    def decide_suspect(self, task: str, suspect: Suspect, keep: bool, who: Credentials) -> str:
        """An expert's decision on a suspect label of ``task``: ``keep`` records the given
        label (note ``suspect:kept``), otherwise the out-of-fold view becomes the label
        (``suspect:relabelled``); either way a correction row, so the suspect leaves the
        queue. Returns a message (``Saved: …`` or ``Not saved: …``)."""
        try:
            expert = self.authorise(who)
        except AccessDenied as err:
            return f"Not saved: {err}"
        label = suspect.given_label if keep else suspect.predicted_label
        predictor = self.hub.predictor(task)
        classes = predictor.classes if predictor is not None else tuple(suspect.probabilities)
        try:
            row = decide_suspect(suspect, task, label, expert, classes, data_dir=self.store.data_dir)
        except (CorrectionError, ImageError, OSError, ValueError) as err:
            return f"Not saved: {err}"
        verdict = "kept as" if keep else "relabelled to"
        return f"Saved: suspect #{suspect.rank} of {task} {verdict} **{row['corrected_label']}** by {row['expert']}."

    def undo_last_correction(self, task: str, who: Credentials) -> str:
        """Revoke the authorised expert's latest correction in ``task``; return a message."""
        try:
            expert = self.authorise(who)
            row = self.store.revoke_last(task, expert)
        except (AccessDenied, CorrectionError) as err:
            return f"Nothing undone: {err}"
        if row is None:
            return f"Nothing to undo: {expert} has no correction in effect for {task}."
        return f"Undone: correction {row['note'].split(':', 1)[1][:8]} ({task}) revoked by {row['expert']}."

    def start_retrain(self, task: str, who: Credentials) -> str:
        """Start retraining ``task`` from the corrections; return a message. Refused when
        the corrections in effect relabel or add no training image (a retrain would
        learn nothing new; see :meth:`RetrainManager.preview`)."""
        try:
            self.authorise(who)
            preview = self.retrain.preview(task)
            if preview.changes == 0:
                return f"Not started: the corrections change no training image. {preview.text()[0]}"
            job = self.retrain.start(task, self.hub.status(task).folder)
        except (AccessDenied, RetrainError, OSError, ValueError) as err:
            return f"Not started: {err}"
        return f"Retraining {task} into candidate {job.candidate.name}. {preview.text()[0]}"

    def promote_candidate(self, task: str, candidate: Path, who: Credentials) -> str:
        """Make a candidate the active model of ``task`` and reload it; return a message."""
        try:
            expert = self.authorise(who)
            record = promote(self.hub.data_dir, task, candidate, expert)
        except (AccessDenied, VersionError) as err:
            return f"Not promoted: {err}"
        status = self.hub.reload(task)
        if status.source != "promoted" or status.message:
            return f"Promoted {record['version']}, but it could not be loaded: {status.message}"
        return f"Promoted {record['version']}; it now serves {task}."

    def rollback_version(self, task: str, version: str, who: Credentials) -> str:
        """Make a kept promoted version (a folder name) or the shipped weights
        (:data:`inkapp.store.versions.SHIPPED`) serve ``task`` again, recorded with the
        authorised expert and the time; return a message."""
        try:
            expert = self.authorise(who)
            record = rollback(self.hub.data_dir, task, version, expert)
        except (AccessDenied, VersionError) as err:
            return f"Not rolled back: {err}"
        status = self.hub.reload(task)
        wanted = "shipped" if version == SHIPPED else "promoted"
        if status.source != wanted or status.message:
            return f"Rolled back to {record['version']}, but it could not be loaded: {status.message}"
        return f"Rolled back {task} to {record['version']} ({expert}, {record['at']})."

    def discard_candidate(self, task: str, candidate: Path, who: Credentials) -> str:
        """Delete a candidate folder; return a message."""
        try:
            self.authorise(who)
        except AccessDenied as err:
            return f"Not discarded: {err}"
        job = self.retrain.job(task)
        if job is not None and job.candidate.resolve() == Path(candidate).resolve():
            job.cancel()
        try:
            name = discard(self.hub.data_dir, task, candidate)
        except VersionError as err:
            return f"Not discarded: {err}"
        return f"Discarded candidate {name}."

    def compare_candidate(self, task: str, candidate: str | Path) -> dict[str, Any]:
        """Candidate vs current model of ``task`` on the candidate's test split (see
        :func:`.comparison.compare_with_current`; the result is cached as a file in the
        candidate folder).

        ``candidate`` must be a finished candidate folder this app created for ``task``
        (``<data_dir>/models/<task>/candidates/<name>``): checked here, whoever calls,
        because hidden Gradio endpoints are callable over HTTP too. Raises
        :class:`VersionError` (one-line message) for any other folder, an unknown task or
        a task without a current model.
        """
        if task not in self.hub.tasks:
            raise VersionError(f"unknown task {str(task)[:60]!r}")
        folder = checked_candidate(self.hub.data_dir, task, Path(candidate))
        if not is_complete_run(folder):
            raise VersionError(f"candidate {folder.name} has not finished training")
        current = self.hub.status(task).folder
        if current is None:
            raise VersionError(f"{task} has no current model to compare with")
        return compare_with_current(current, folder)
