"""Similar works and the collection's vector indexes in the data directory.

Two kinds of index under ``<data_dir>/vectors/`` (see :mod:`inkapp.store.vectors`):

* ``<task>`` — one per task, the task model's embedding
  (:class:`~inkapp.collection.embed.TaskEmbedder`), searched by :func:`similar_works`.
  The index records the model version as its embedding space; indexing with another
  model version starts it afresh (vectors of different models are not comparable).
  Metadata per image: ``label`` (a known label — data set or expert — or, without one,
  the model's prediction), ``label_source`` (``given`` or ``model``),
  ``predicted_label``, ``confidence``, ``image_path``.
* ``generic`` — one for the whole collection, the label-independent
  :class:`~inkapp.collection.embed.GenericEmbedder`, searched for near-duplicates
  (:mod:`inkapp.collection.duplicates`). Metadata: ``image_path`` and, per task the image
  was seen under, ``label:<task>`` and ``label_source:<task>``.

``image_path`` is absolute, or relative to the data directory for images stored there.
When a neighbour is shown, an expert correction in the corrections store overrides the
stored label (``label_source = expert``).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from inkapp.collection.embed import GenericEmbedder, TaskEmbedder
from inkapp.data.images import ImageError, decode_image, load_image, sha256_bytes
from inkapp.inference import Predictor
from inkapp.paths import data_dir as default_data_dir
from inkapp.paths import shipped_weights
from inkapp.store.corrections import CorrectionStore
from inkapp.store.vectors import VectorIndex, VectorIndexError

log = logging.getLogger(__name__)

VECTORS_FOLDER = "vectors"
GENERIC_INDEX = "generic"  # the task-independent duplicates index


@dataclass(frozen=True)
class Neighbour:
    """A stored image similar to the query.

    ``similarity`` — cosine similarity of the two embeddings in [-1, 1];
    ``label`` — expert correction if any, else the stored label (see ``label_source``:
    ``expert``, ``given`` or ``model``); ``image_path`` — where to read the image or its
    thumbnail (absolute, or relative to the current directory when the data directory is).
    """

    sha256: str
    label: str
    label_source: str
    similarity: float
    image_path: str
    predicted_label: str
    confidence: float


@dataclass(frozen=True)
class IndexedImage:
    """Outcome of :func:`index_analysed`: the image's sha256, where it is stored, the
    label recorded and whether it was new to the index."""

    sha256: str
    image_path: str
    label: str
    new: bool


def collection_index(task: str, data_dir: str | Path | None = None) -> VectorIndex:
    """The vector index ``task`` (a task name or :data:`GENERIC_INDEX`) in ``data_dir``
    (default :func:`inkapp.paths.data_dir`)."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    return VectorIndex(root / VECTORS_FOLDER, task)


@lru_cache(maxsize=8)
def _shipped_predictor(task: str) -> Predictor:
    return Predictor.from_folder(shipped_weights(task))


@lru_cache(maxsize=1)
def generic_embedder() -> GenericEmbedder:
    """The process's shared :class:`GenericEmbedder` (loaded once, CPU)."""
    return GenericEmbedder()


def task_embedder(task: str, predictor: Predictor | None = None) -> TaskEmbedder:
    """The embedder of ``predictor`` or, by default, of the shipped model for ``task``."""
    p = predictor if predictor is not None else _shipped_predictor(task)
    if p.task and p.task != task:
        raise ValueError(f"the model is for task {p.task!r}, not {task!r}")
    return TaskEmbedder(p)


def add_embeddings(index: VectorIndex, space: str, sha256s: Sequence[str], vectors: np.ndarray,
                   metas: Sequence[dict[str, str]], merge_meta: bool = False) -> int:
    """Add to ``index``; if it holds another model's embeddings, start it afresh (under
    the index's lock). Returns how many images were new."""
    current = index.space
    if current is not None and current != space:
        log.warning("vector index %s was built with %s; rebuilding it for %s", index.name, current, space)
    return index.add(sha256s, vectors, metas, space, merge_meta=merge_meta, reset_other_space=True)


def index_analysed(image: bytes, task: str, *, label: str | None = None, predictor: Predictor | None = None,
                   data_dir: str | Path | None = None) -> IndexedImage:
    """Store ``image`` (the uploaded bytes) in the data directory and add it to
    ``task``'s index and to the generic (duplicates) index. ``label`` — a known label
    (data set or expert); without one the model's prediction is recorded as the label
    (``label_source = model``). Raises :class:`inkapp.data.images.ImageError` for bytes
    that are not an image, ValueError for a label the model does not have."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    embedder = task_embedder(task, predictor)
    if label is not None and label not in embedder.predictor.classes:
        raise ValueError(f"unknown label {label!r} for task {task!r}")
    img, _ = decode_image(image)
    sha, rel = CorrectionStore(root).store_image(image)
    canvas = embedder.canvas(img)[None]
    vector = embedder.embed_canvases(canvas)
    probs = embedder.predictor.probabilities(canvas)[0].numpy()
    best = int(np.argmax(probs))
    predicted = embedder.predictor.classes[best]
    meta = {"label": label or predicted, "label_source": "given" if label else "model", "predicted_label": predicted,
            "confidence": f"{probs[best]:.4f}", "image_path": rel}
    new = add_embeddings(collection_index(task, root), embedder.name, [sha], vector, [meta])
    generic = generic_embedder()
    add_embeddings(collection_index(GENERIC_INDEX, root), generic.name, [sha], generic.embed([img]),
                   [generic_meta(task, meta["label"], meta["label_source"], rel)], merge_meta=True)
    return IndexedImage(sha, rel, meta["label"], bool(new))


def generic_meta(task: str, label: str, label_source: str, image_path: str) -> dict[str, str]:
    """Metadata of an image in the generic index, seen under ``task`` with ``label``."""
    return {"image_path": image_path, f"label:{task}": label, f"label_source:{task}": label_source}


def expert_labels(task: str, data_dir: Path) -> dict[str, str]:
    """sha256 -> the expert's corrected label, for the corrections in effect in ``task``."""
    if not (data_dir / "corrections.csv").exists():
        return {}
    return {r["image_sha256"]: r["corrected_label"] for r in CorrectionStore(data_dir).active() if r["task"] == task}


def neighbour(sha: str, similarity: float, meta: dict[str, str], experts: dict[str, str], root: Path,
              task: str | None = None) -> Neighbour:
    """A stored image's :class:`Neighbour`: its label is the expert's (``experts``:
    sha256 -> label) or else the stored one — ``label``/``label_source`` in a task index,
    ``label:<task>``/``label_source:<task>`` in the generic index (pass ``task``)."""
    path = Path(meta.get("image_path", ""))
    shown = path if path.is_absolute() else root / path
    expert = experts.get(sha)
    suffix = f":{task}" if task else ""
    return Neighbour(sha256=sha, label=expert or meta.get("label" + suffix, ""),
                     label_source="expert" if expert else meta.get("label_source" + suffix, ""), similarity=similarity,
                     image_path=str(shown), predicted_label=meta.get("predicted_label", ""),
                     confidence=float(meta.get("confidence") or 0.0))


def similar_works(image: bytes | str | Path, task: str, k: int = 5, *, predictor: Predictor | None = None,
                  data_dir: str | Path | None = None) -> list[Neighbour]:
    """The ``k`` stored images of ``task`` most similar to ``image`` (its bytes or a file
    path), best first; the image itself (same sha256) is left out. Empty when nothing is
    indexed yet. Raises ImageError for an unreadable image, ValueError for ``k`` < 1 or an
    index built by another model version."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    data = image if isinstance(image, bytes) else Path(image).read_bytes()
    index = collection_index(task, root)
    if len(index) == 0:
        return []
    embedder = task_embedder(task, predictor)
    if index.space != embedder.name:
        raise VectorIndexError(f"the {task} index was built with {index.space}, the model is {embedder.name}; "
                               f"index the collection again")
    img, _ = decode_image(data)
    sha = sha256_bytes(data)
    vector = embedder.embed([img])
    experts = expert_labels(task, root)
    return [neighbour(h.sha256, h.similarity, h.meta, experts, root) for h in index.search(vector, k, exclude=[sha])[0]]


def embed_files(paths: Sequence[str | Path], embedder: TaskEmbedder | GenericEmbedder, batch_size: int = 32) -> tuple[list[int], np.ndarray, list[str]]:
    """Decode and embed image files, ``batch_size`` at a time; returns (indices of the
    readable ones, their N×D embeddings, ``"path: reason"`` for each unreadable file)."""
    ok: list[int] = []
    chunks: list[np.ndarray] = []
    errors: list[str] = []
    for start in range(0, len(paths), batch_size):
        canvases = []
        for i in range(start, min(start + batch_size, len(paths))):
            try:
                canvases.append(embedder.canvas(load_image(paths[i])))
                ok.append(i)
            except (ImageError, OSError) as err:
                errors.append(f"{paths[i]}: {err}")
        if canvases:
            chunks.append(embedder.embed_canvases(torch.stack(canvases), batch_size))
    return ok, (np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)), errors
