"""Classify SOURCEs (files, IIIF images, IIIF manifests) and turn the results — and the
experts' stored corrections of the same images — into Web Annotations.

Used by ``inkapp predict SOURCE... [--annotations FILE]``; :func:`scan_annotations` is
what ``inkapp scan ... --annotations FILE`` calls on its results CSV, and
:func:`classify_sources` what it calls for SOURCEs that are URLs.
"""
from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from inkapp.data.images import sha256_bytes
from inkapp.inference import Prediction, Predictor
from inkapp.store.corrections import CorrectionStore

from .annotations import LabelAnnotation, correction_annotations, utc_now
from .fetch import SourceError
from .source import SourceItem, open_source


@dataclass(frozen=True)
class Classified:
    """One item of a SOURCE with the model's prediction for it."""

    item: SourceItem
    prediction: Prediction


def classify_sources(predictor: Predictor, sources: Iterable[str],
                     on_error: Callable[[str, str], None]) -> Iterator[Classified]:
    """Open every SOURCE at the model's input size and predict its items, in order.

    A SOURCE that cannot be opened is reported as ``on_error(source, one_line_message)``
    and skipped; the others go on. Items of one SOURCE (a manifest's canvases) are
    predicted as one batch.
    """
    for source in sources:
        try:
            items = open_source(source, predictor.preprocessor.size)
        except SourceError as err:
            on_error(source, str(err))
            continue
        for item, prediction in zip(items, predictor.predict([i.image for i in items])):
            yield Classified(item, prediction)


def active_corrections(data_dir: str | Path | None) -> list[dict[str, str]]:
    """The corrections in effect under ``data_dir`` (empty when it has no corrections CSV;
    nothing is created)."""
    if data_dir is None or not (Path(data_dir) / "corrections.csv").is_file():
        return []
    return CorrectionStore(Path(data_dir)).active()


def prediction_annotations(results: Iterable[Classified], predictor: Predictor,
                           corrections: Sequence[dict[str, str]] = ()) -> list[LabelAnnotation]:
    """One annotation per prediction (``generator`` = the model), each followed by the
    experts' corrections (rows of ``corrections`` for the same task whose ``image_sha256``
    is that of the item's bytes)."""
    created = utc_now()
    same_task = [r for r in corrections if r.get("task") == predictor.task]
    out: list[LabelAnnotation] = []
    for r in results:
        p, item = r.prediction, r.item
        out.append(LabelAnnotation(target=item.target, task=predictor.task, label=p.label, created=created,
                                   box=item.region, model_version=predictor.version, confidence=p.confidence))
        if same_task:
            out.extend(correction_annotations(same_task, sha256_bytes(item.data), item.target, item.region))
    return out


def scan_annotations(results_csv: str | Path, root: str | Path, task: str, model_version: str,
                     corrections: Sequence[dict[str, str]] = ()) -> list[LabelAnnotation]:
    """Annotations of an ``inkapp scan`` results CSV (columns ``path``, ``sha256``,
    ``label``, ``confidence`` …, ``error``; paths relative to ``root``): one per classified
    row (rows with an error are left out), targets the files' ``file:`` URIs, plus the
    corrections of ``task`` for each row's ``sha256``."""
    created = utc_now()
    same_task = [r for r in corrections if r.get("task") == task]
    out: list[LabelAnnotation] = []
    with open(results_csv, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row.get("error") or not row.get("label"):
                continue
            target = (Path(root) / row["path"]).resolve().as_uri()
            out.append(LabelAnnotation(target=target, task=task, label=row["label"], created=created,
                                       model_version=model_version, confidence=float(row["confidence"])))
            out.extend(correction_annotations(same_task, row["sha256"], target))
    return out
