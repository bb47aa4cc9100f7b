"""All task models of the app, loaded once at startup.

For every task the :class:`ModelHub` loads the expert-promoted version recorded in
``<data_dir>/models/<task>/active.json`` if there is one, else the shipped weights
(``$INKAPP_WEIGHTS_DIR/<task>`` or ``weights/<task>``). A promoted model that cannot
be loaded (tampered or mismatched card, corrupt weights) is reported: at startup the
shipped one is used instead; on a later :meth:`ModelHub.reload` the model already
serving keeps serving. A task without any usable model stays unavailable with a
one-line reason while the other tasks keep serving.
The optional painting-vs-calligraphy model (task ``domain``) is loaded the same way.
"""
from __future__ import annotations

import itertools
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from inkapp.inference import Predictor
from inkapp.models import ModelLoadError
from inkapp.paths import shipped_weights
from inkapp.tasks import DOMAIN_TASK, TASKS

from inkapp.store.versions import VersionError, active_folder

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class ModelStatus:
    """Which model a task uses and why.

    ``source`` is ``"promoted"``, ``"shipped"`` or ``"missing"``; ``folder`` the model
    folder in use (None when missing); ``message`` a one-line note for the curator
    (why the task is unavailable, or why a promoted model was skipped), else "";
    ``serial`` a number unique to this load (it changes with every reload, so results
    cached under it never outlive the model that produced them).
    """

    task: str
    source: str
    folder: Path | None
    version: str
    message: str
    serial: int


class ModelHub:
    """Predictors by task, loaded once; :meth:`reload` swaps one task's model in place.

    Each task maps to one immutable (predictor, status) pair that a reload replaces as a
    whole, so requests in flight keep the predictor they started with.
    """

    _serials = itertools.count(1)

    def __init__(self, data_dir: Path, tasks: list[str] | None = None, device: str | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.tasks: list[str] = list(tasks if tasks is not None else TASKS)
        self._device = device
        self._lock = threading.Lock()
        self._loaded: dict[str, tuple[Predictor | None, ModelStatus]] = {}
        for task in [*self.tasks, DOMAIN_TASK]:
            self.reload(task)

    def reload(self, task: str) -> ModelStatus:
        """(Re)load ``task``'s model: the promoted version if any and loadable, else the shipped one.

        When the promoted version is unusable and the task already has a model serving,
        that model is kept (with the reason in its status message) rather than falling
        back to the shipped one.
        """
        notes: list[str] = []
        predictor: Predictor | None = None
        status: ModelStatus
        serial = next(self._serials)
        try:
            promoted = active_folder(self.data_dir, task)
        except VersionError as err:
            promoted, notes = None, [f"promoted version ignored: {err}"]
        if promoted is not None:
            try:
                predictor = Predictor.from_folder(promoted, self._device)
                status = ModelStatus(task, "promoted", promoted, predictor.version, "", serial)
            except ModelLoadError as err:
                notes.append(f"promoted model unusable: {err}")
        current = self._loaded.get(task)
        if notes and current is not None and current[0] is not None:
            kept = current[1]
            status = ModelStatus(task, kept.source, kept.folder, kept.version,
                                 f"{notes[0]}; still serving {kept.version}", kept.serial)
            log.warning("%s: %s", task, status.message)
            with self._lock:
                self._loaded[task] = (current[0], status)
            return status
        if predictor is None:
            notes = [f"{n}; using the shipped model" for n in notes]
            folder = shipped_weights(task)
            try:
                predictor = Predictor.from_folder(folder, self._device)
                status = ModelStatus(task, "shipped", folder, predictor.version, "; ".join(notes), serial)
            except ModelLoadError as err:
                notes.append(f"no usable model: {err}")
                status = ModelStatus(task, "missing", None, "", "; ".join(notes), serial)
        if status.message:  # an absent optional domain model is normal, anything else worth a warning
            optional = task == DOMAIN_TASK and status.source == "missing"
            log.log(logging.INFO if optional else logging.WARNING, "%s: %s", task, status.message)
        with self._lock:
            self._loaded[task] = (predictor, status)
        return status

    def model(self, task: str) -> tuple[Predictor | None, ModelStatus]:
        """``task``'s predictor (None when it has no usable model) and load status, read together
        (KeyError for a task the hub does not serve)."""
        return self._loaded[task]

    def predictor(self, task: str) -> Predictor | None:
        """The loaded predictor of ``task`` or None when it has no usable model."""
        return self._loaded[task][0] if task in self._loaded else None

    def status(self, task: str) -> ModelStatus:
        """How ``task``'s model was loaded (KeyError for a task the hub does not serve)."""
        return self._loaded[task][1]

    @property
    def domain_predictor(self) -> Predictor | None:
        """The painting-vs-calligraphy model, when one is installed."""
        return self.predictor(DOMAIN_TASK)
