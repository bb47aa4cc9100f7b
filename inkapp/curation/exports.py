"""Downloads of the Analyse tab: the work's record (HTML, and PDF through WeasyPrint)
and its W3C Web Annotation ``AnnotationPage`` (predictions, the experts' corrections,
and the page attribution's characters), written into short-lived export folders.

The annotation target of an uploaded image is the ``file:`` URI of its stored copy in
the data directory (an upload has no public IRI); an image opened from IIIF keeps its
canvas or image IRI (:class:`Target`), and a character box is converted from the
analysed image's pixels into the target's coordinates and added as ``#xywh=``.
"""
from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from inkapp.iiif.annotations import (LabelAnnotation, annotation_page, correction_annotations, utc_now,
                                     write_annotation_page)
from inkapp.inference import Predictor
from inkapp.pages.attribute import PageAttribution
from inkapp.record import build_record, collection_similar, image_corrections, write_record

from .actions import AnalysedImage
from .analysis import LoadedImage

EXPORT_MAX_AGE_S = 3600  # export sub-folders older than this are deleted when a new one is made
SIMILAR_IN_RECORD = 5


class ExportFolders:
    """Fresh sub-folders of one root folder for downloads; sub-folders last modified more
    than ``max_age_s`` ago are deleted whenever a new one is made (the web server has
    served its own copy by then)."""

    def __init__(self, root: Path, max_age_s: float = EXPORT_MAX_AGE_S) -> None:
        self.root = Path(root)
        self.max_age_s = max_age_s
        self.root.mkdir(parents=True, exist_ok=True)

    def new(self) -> Path:
        """A new empty sub-folder (old ones removed first)."""
        cutoff = time.time() - self.max_age_s
        for sub in self.root.iterdir():
            if sub.is_dir() and sub.stat().st_mtime < cutoff:
                shutil.rmtree(sub, ignore_errors=True)
        folder = self.root / uuid.uuid4().hex
        folder.mkdir()
        return folder


@dataclass(frozen=True)
class Target:
    """What an annotation of the image on screen targets: ``iri`` (no fragment),
    ``region`` — x, y, w, h of the analysed image inside the target (None: all of it),
    ``size`` — the target's width, height in its own coordinates."""

    iri: str
    region: tuple[int, int, int, int] | None
    size: tuple[int, int]

    def box(self, box: Sequence[int], image_size: tuple[int, int]) -> tuple[int, int, int, int]:
        """A box x, y, w, h in the analysed image's pixels (``image_size``) -> the
        target's coordinates (scaled, offset by ``region``), rounded to integers."""
        ox, oy, rw, rh = self.region if self.region is not None else (0, 0, *self.size)
        sx, sy = rw / image_size[0], rh / image_size[1]
        x, y, w, h = box
        return round(ox + x * sx), round(oy + y * sy), max(1, round(w * sx)), max(1, round(h * sy))


def stored_target(data_dir: Path, current: AnalysedImage, size: tuple[int, int]) -> Target:
    """The target of an uploaded image: its stored copy's ``file:`` URI."""
    return Target((Path(data_dir) / current.image_path).resolve().as_uri(), None, size)


def export_record(loaded: LoadedImage, predictors: Sequence[Predictor], data_dir: Path, folder: Path,
                  pdf: bool = True) -> tuple[list[Path], str]:
    """Write the record of the image on screen (its ``predictors``' results and heat maps,
    its corrections history, up to :data:`SIMILAR_IN_RECORD` similar works per task, the
    model versions) into ``folder``: ``<name>.record.html`` and, with ``pdf``,
    ``<name>.record.pdf``. Returns (files written, a one-line note — empty, or why the
    PDF is missing)."""
    record = build_record(loaded.data, loaded.name, predictors, image=loaded.image,
                          corrections=image_corrections(data_dir, loaded.sha256),
                          similar=collection_similar(loaded.data, predictors, SIMILAR_IN_RECORD, data_dir))
    stem = Path(loaded.name).stem or "work"
    files = [write_record(record, folder / f"{stem}.record.html")]
    note = ""
    if pdf:
        try:
            files.append(write_record(record, folder / f"{stem}.record.pdf"))
        except ValueError as err:  # WeasyPrint or Pango missing: one line, nothing written
            note = str(err)
    return files, note


def work_annotations(current: AnalysedImage, target: Target, image_size: tuple[int, int],
                     corrections: Sequence[dict[str, str]], page: PageAttribution | None = None,
                     page_model_version: str = "") -> list[LabelAnnotation]:
    """The annotations of the image on screen: per task its prediction (``generator`` =
    the model version) followed by the experts' corrections in effect for it
    (``corrections``: rows as from :meth:`CorrectionStore.active`), then — for a page —
    one ``calligrapher`` annotation per classified character, targeting its box
    (``#xywh=`` in target coordinates; ``image_size`` is the analysed image's)."""
    created = utc_now()
    out: list[LabelAnnotation] = []
    for task, p in current.predictions.items():
        out.append(LabelAnnotation(target=target.iri, task=task, label=p.label, created=created, box=target.region,
                                   model_version=p.model_version, confidence=p.confidence))
        out.extend(correction_annotations([r for r in corrections if r.get("task") == task], current.sha256,
                                          target.iri, target.region))
    for c in (page.characters if page is not None else []):
        out.append(LabelAnnotation(target=target.iri, task="calligrapher", label=c.label, created=created,
                                   box=target.box(c.box.as_list(), image_size), model_version=page_model_version,
                                   confidence=c.confidence))
    return out


def export_annotations(current: AnalysedImage, target: Target, image_size: tuple[int, int],
                       corrections: Sequence[dict[str, str]], folder: Path, page: PageAttribution | None = None,
                       page_model_version: str = "") -> Path:
    """Write :func:`work_annotations` as a W3C ``AnnotationPage`` to
    ``folder/<name>.annotations.json`` (atomic); returns the path."""
    page_doc = annotation_page(work_annotations(current, target, image_size, corrections, page, page_model_version))
    return write_annotation_page(page_doc, folder / f"{Path(current.name).stem or 'work'}.annotations.json")
