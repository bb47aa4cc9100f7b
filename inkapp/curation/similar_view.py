"""Similar works in the Analyse tab: every analysed image goes into the collection
indexes, and each task's result lists its nearest stored works.

:func:`index_analysis` is called by :meth:`inkapp.curation.actions.CurationActions.record_analysis`
for every image it records: each task model's embedding goes into that task's index
(:mod:`inkapp.collection.similar`; the stored label is the model's prediction,
``label_source = model`` — an expert correction overrides it when shown) and the
label-independent generic embedding goes once into the duplicates index.
:func:`similar_cards` asks a task's index for the image's neighbours and turns them into
letterboxed thumbnails with a caption in the page's language.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from inkapp.collection.similar import (GENERIC_INDEX, Neighbour, add_embeddings, collection_index, generic_embedder,
                                       generic_meta, similar_works, task_embedder)
from inkapp.data.images import ImageError, load_image
from inkapp.data.preprocess import letterbox
from inkapp.tasks import class_name

from .analysis import ImageAnalysis
from .hub import ModelHub

log = logging.getLogger(__name__)

SIMILAR_K = 5  # neighbours shown under each result
THUMB_SIDE = 160  # px, side of a similar work's square letterboxed thumbnail
_SOURCE_WORDS = {"expert": ("expert", "专家"), "given": ("data set", "数据集"), "model": ("model", "模型")}


def index_analysis(hub: ModelHub, data_dir: Path, sha256: str, image_path: str, image: Image.Image,
                   analysis: ImageAnalysis) -> list[str]:
    """Add one analysed image to the collection indexes under ``data_dir``: the task
    embedding of every task ``analysis`` has a result for (its model's current version;
    metadata: the prediction) and, once, the generic embedding with a ``label:<task>``
    per task. ``image_path`` — where the image is stored, relative to ``data_dir``.
    Returns the tasks indexed. An index that cannot be written is logged and skipped:
    the analysis itself has already been recorded."""
    done: list[str] = []
    generic: dict[str, str] = {}
    for view in analysis.tasks:
        predictor = hub.predictor(view.task)
        if view.error or predictor is None:
            continue
        meta = {"label": view.label, "label_source": "model", "predicted_label": view.label,
                "confidence": f"{view.confidence:.4f}", "image_path": image_path}
        generic |= generic_meta(view.task, view.label, "model", image_path)
        try:
            embedder = task_embedder(view.task, predictor)
            add_embeddings(collection_index(view.task, data_dir), embedder.name, [sha256], embedder.embed([image]),
                           [meta])
            done.append(view.task)
        except (ValueError, OSError, TimeoutError) as err:  # VectorIndexError is a ValueError; lock timeout
            log.warning("similar works: %s not indexed in %s: %s", sha256[:12], view.task, err)
    if generic:
        try:
            embedder = generic_embedder()
            add_embeddings(collection_index(GENERIC_INDEX, data_dir), embedder.name, [sha256],
                           embedder.embed([image]), [generic], merge_meta=True)
        except (ValueError, OSError, TimeoutError) as err:
            log.warning("duplicates index: %s not indexed: %s", sha256[:12], err)
    return done


@dataclass(frozen=True)
class SimilarCard:
    """One similar work as shown: a ``THUMB_SIDE``×``THUMB_SIDE`` RGB letterboxed
    ``thumbnail`` (never cropped), the ``neighbour`` it shows."""

    thumbnail: Image.Image
    neighbour: Neighbour

    def caption(self, task: str, lang: str) -> str:
        """``"楷书 … · 93% similar · label: model"`` in ``lang`` (``en``/``zh``): the label in
        both languages, cosine similarity as a percentage, where the label comes from."""
        n = self.neighbour
        i = 1 if lang == "zh" else 0
        source = _SOURCE_WORDS.get(n.label_source, (n.label_source, n.label_source))[i]
        name = class_name(task, n.label).text(lang) if n.label else "?"
        if lang == "zh":
            return f"{name} · 相似度 {n.similarity:.0%} · 标签来自{source}"
        return f"{name} · {n.similarity:.0%} similar · label: {source}"


def letterboxed_thumbnail(path: str | Path, side: int = THUMB_SIDE) -> Image.Image:
    """RGB ``side``×``side`` thumbnail of an image file, letterboxed on the paper-white
    padding of :func:`inkapp.data.preprocess.letterbox`; a grey tile when unreadable."""
    try:
        return letterbox(load_image(path).convert("RGB"), side)[0]
    except (ImageError, OSError):
        return Image.new("RGB", (side, side), (200, 200, 200))


def similar_cards(hub: ModelHub, data: bytes, task: str, data_dir: Path, k: int = SIMILAR_K) -> list[SimilarCard]:
    """The ≤ ``k`` stored works of ``task`` most similar to the image ``data`` (its
    bytes), best first, itself left out. Empty when the task has no model, its index is
    empty or was built by another model version (the next analyses rebuild it)."""
    predictor = hub.predictor(task)
    if predictor is None:
        return []
    try:
        neighbours = similar_works(data, task, k, predictor=predictor, data_dir=data_dir)
    except ValueError as err:  # VectorIndexError (another model version), ImageError
        log.info("similar works of %s unavailable: %s", task, err)
        return []
    return [SimilarCard(letterboxed_thumbnail(n.image_path), n) for n in neighbours]
