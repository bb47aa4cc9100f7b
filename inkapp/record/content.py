"""What a work's record holds, gathered from the models, the corrections CSV and
(optionally) the collection index.

:func:`build_record` runs :meth:`inkapp.inference.Predictor.analyse` once per task model
(prediction + Grad-CAM heat map of the predicted class at the display size), takes every
corrections-CSV row of the image's SHA-256 (corrections *and* revocations, file order:
the record shows the history, not only what is in effect) and the similar works the
caller passes. It reads nothing from the network and writes nothing.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from inkapp.curation.analysis import DISPLAY_MAX_SIDE, display_copy
from inkapp.data.images import decode_image, sha256_bytes
from inkapp.iiif.annotations import utc_now
from inkapp.inference import Predictor
from inkapp.store.corrections import REVOKE_PREFIX, CorrectionStore

CAM_METHOD = "gradcam"


@dataclass(frozen=True)
class TaskResult:
    """One task model's view of the work.

    ``probabilities`` — class key -> probability (card order, sums to 1);
    ``heat`` — the ``cam_method`` map for ``cam_target`` (the predicted class), H×W float32
    in [0, 1] at the record's display size (1 = the map's maximum over the model canvas);
    ``metrics`` — the card's held-out figures (``accuracy``, ``macro_f1``, ``n``) if any.
    """

    task: str
    model_version: str
    label: str
    confidence: float
    uncertain: bool
    probabilities: dict[str, float]
    cam_method: str
    cam_target: str
    heat: np.ndarray
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SimilarWork:
    """A work of the collection index close to this one: display ``name``, its ``label``
    (class key) and where that label comes from (``label_source``: expert, given or
    model), cosine ``similarity`` in [-1, 1] and a thumbnail when the file is readable."""

    name: str
    label: str
    label_source: str
    similarity: float
    thumbnail: Image.Image | None = None


@dataclass(frozen=True)
class WorkRecord:
    """Everything one record shows.

    ``image`` — RGB display copy (longest side at most :data:`DISPLAY_MAX_SIDE` px);
    ``size`` — the original width, height in px; ``corrections`` — corrections-CSV rows of
    this image, file order (revocation rows included); ``similar`` — task -> similar works,
    or None when no collection index was available to ask; ``created`` — UTC time stamp.
    """

    name: str
    sha256: str
    image: Image.Image
    size: tuple[int, int]
    results: list[TaskResult]
    corrections: list[dict[str, str]]
    similar: dict[str, list[SimilarWork]] | None
    created: str

    @property
    def revoked_ids(self) -> set[str]:
        """Ids of correction rows that a later revocation row undid."""
        return {r["note"][len(REVOKE_PREFIX):] for r in self.corrections if not r.get("corrected_label")}


def image_corrections(data_dir: str | Path | None, sha256: str) -> list[dict[str, str]]:
    """Every corrections-CSV row (corrections and revocations) of the image ``sha256``
    under ``data_dir``, file order; empty (and nothing created) without a CSV."""
    if data_dir is None or not (Path(data_dir) / "corrections.csv").is_file():
        return []
    return [r for r in CorrectionStore(Path(data_dir)).rows() if r["image_sha256"] == sha256]


def _metrics(card: Mapping) -> dict[str, float]:
    m = card.get("metrics") or {}
    return {k: float(m[k]) for k in ("accuracy", "macro_f1", "n") if isinstance(m.get(k), (int, float))}


def build_record(data: bytes, name: str, predictors: Sequence[Predictor], *,
                 corrections: Sequence[dict[str, str]] = (),
                 similar: Mapping[str, list[SimilarWork]] | None = None,
                 image: Image.Image | None = None, cam_method: str = CAM_METHOD) -> WorkRecord:
    """Analyse the work once per predictor and gather its record.

    ``data`` — the image bytes (their SHA-256 keys the corrections); ``image`` — the
    decoded image when the caller has it (else ``data`` is decoded with the upload
    limits); ``corrections`` — rows as from :func:`image_corrections`; ``similar`` —
    task -> similar works from the collection index, None when no index is available
    (the record then says so). Raises :class:`inkapp.data.images.ImageError` for bytes
    that are not an acceptable image.
    """
    if image is None:
        image, _ = decode_image(data)
    display = display_copy(image)
    results = []
    for predictor in predictors:
        a = predictor.analyse(image, cam_method, map_size=display.size)
        p = a.prediction
        results.append(TaskResult(task=predictor.task, model_version=predictor.version, label=p.label,
                                  confidence=p.confidence, uncertain=p.uncertain, probabilities=dict(p.probabilities),
                                  cam_method=a.cam_method, cam_target=a.cam_target, heat=a.cam,
                                  metrics=_metrics(predictor.card)))
    return WorkRecord(name=name, sha256=sha256_bytes(data), image=display, size=image.size, results=results,
                      corrections=list(corrections), similar=None if similar is None else dict(similar),
                      created=utc_now())


def collection_similar(data: bytes, predictors: Sequence[Predictor], k: int = 5,
                       data_dir: str | Path | None = None) -> dict[str, list[SimilarWork]] | None:
    """Similar works per task from the collection index (:mod:`inkapp.collection`), or
    None when that package is not installed. A task whose index cannot answer (built by
    another model version, unreadable) gets an empty list."""
    try:
        from inkapp.collection.similar import similar_works
    except ImportError:
        return None
    out: dict[str, list[SimilarWork]] = {}
    for predictor in predictors:
        try:
            neighbours = similar_works(data, predictor.task, k, predictor=predictor, data_dir=data_dir)
        except ValueError:  # VectorIndexError and ImageError are ValueErrors
            neighbours = []
        out[predictor.task] = [SimilarWork(Path(n.image_path).name, n.label, n.label_source, n.similarity,
                                           _thumbnail(n.image_path)) for n in neighbours]
    return out


def _thumbnail(path: str) -> Image.Image | None:
    try:
        image, _ = decode_image(path)
    except ValueError:
        return None
    image.thumbnail((128, 128))
    return image
