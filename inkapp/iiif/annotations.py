"""Predictions and experts' corrections as a W3C Web Annotation ``AnnotationPage``.

One :class:`LabelAnnotation` becomes one ``Annotation`` with ``motivation: classifying``
(JSON-LD context ``http://www.w3.org/ns/anno.jsonld``, shipped as ``anno.jsonld`` for
offline validation)::

    {"id": "urn:uuid:…", "type": "Annotation", "motivation": "classifying",
     "created": "2026-11-25T15:00:00Z",
     "generator": {"id": "urn:inkapp:model:calligrapher:<version>", "type": "Software",
                   "name": "inkapp calligrapher model <version>"},          # predictions
     "creator": {"type": "Person", "name": "<expert>"},                      # corrections
     "body": [
       {"id": "urn:inkapp:class:calligrapher:yan_zhenqing", "type": "TextualBody",
        "purpose": "classifying", "value": "yan_zhenqing", "format": "text/plain"},
       {"type": "TextualBody", "purpose": "classifying", "value": "Yan Zhenqing",
        "language": "en", "format": "text/plain"},
       {"type": "TextualBody", "purpose": "classifying", "value": "颜真卿",
        "language": "zh-Hans", "format": "text/plain"},
       {"type": "TextualBody", "purpose": "describing", "value": "…", "language": "en",
        "format": "text/plain"}],
     "target": "<canvas or image IRI>#xywh=x,y,w,h"}

Choices made where the model leaves room: the class *key* is the body with an ``id``
(``urn:inkapp:class:<task>:<key>``) and no language; the two display names (from
:func:`inkapp.tasks.class_name`) are language-tagged bodies with the same purpose; the
model's confidence (predictions) or what a correction replaced (corrections) is a
``describing`` body, since the vocabulary has no term for a score. The target is the
IIIF-style string form ``IRI#xywh=…`` (a media-fragment IRI) rather than a
SpecificResource with a FragmentSelector; both mean the same region. Predictions name the
model as ``generator`` (an ``as:Application``); corrections name the expert as
``creator`` (a ``foaf:Person``) and carry the correction row's id as their own.
"""
from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from inkapp.tasks import class_name

ANNO_CONTEXT = "http://www.w3.org/ns/anno.jsonld"
#: Namespace of the deterministic annotation ids of predictions (uuid5).
_ID_NAMESPACE = uuid.UUID("4f0e7c52-5d4b-4b0e-9a51-6a1f3c2f9e11")


def utc_now() -> str:
    """Current UTC time as ``YYYY-MM-DDTHH:MM:SSZ`` (the corrections CSV's format)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class LabelAnnotation:
    """One classification of one target (a model's prediction or an expert's correction).

    * ``target`` — IRI of the canvas / image / file, without fragment;
    * ``task``, ``label`` — task name and class key;
    * ``created`` — ISO 8601 UTC time stamp;
    * ``box`` — x, y, w, h (integers) in the target's coordinates, or None for all of it;
    * ``model_version`` — the predicting model's version (predictions), or the version
      whose prediction was corrected (corrections, informational);
    * ``confidence`` — the model's probability of ``label`` in [0, 1] (predictions) or of
      ``predicted_label`` (corrections), None if unknown;
    * ``expert`` — the correcting expert's name; empty for predictions;
    * ``predicted_label`` — what the model said before the correction (corrections);
    * ``correction_id`` — the corrections CSV row id (32 hex digits) of a correction.
    """

    target: str
    task: str
    label: str
    created: str
    box: tuple[int, int, int, int] | None = None
    model_version: str = ""
    confidence: float | None = None
    expert: str = ""
    predicted_label: str = ""
    correction_id: str = ""

    @property
    def is_correction(self) -> bool:
        return bool(self.expert)

    @property
    def target_iri(self) -> str:
        """``target`` with ``#xywh=x,y,w,h`` when there is a box."""
        return self.target if self.box is None else f"{self.target}#xywh={','.join(str(int(v)) for v in self.box)}"


def correction_annotations(rows: Iterable[Mapping[str, str]], image_sha256: str, target: str,
                           box: tuple[int, int, int, int] | None = None) -> list[LabelAnnotation]:
    """The correction rows of the image with SHA-256 ``image_sha256`` (rows as from
    :meth:`inkapp.store.corrections.CorrectionStore.active`; revocation rows, which have
    no ``corrected_label``, are skipped) as annotations of ``target``."""
    out = []
    for row in rows:
        if row.get("image_sha256") != image_sha256 or not row.get("corrected_label"):
            continue
        conf = row.get("confidence") or ""
        out.append(LabelAnnotation(
            target=target, task=row["task"], label=row["corrected_label"], created=row["timestamp"], box=box,
            model_version=row.get("model_version", ""), confidence=float(conf) if conf else None,
            expert=row.get("expert") or "unknown expert", predicted_label=row.get("predicted_label", ""),
            correction_id=row["id"]))
    return out


def _text(value: str, purpose: str, language: str | None = None, id_: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "TextualBody", "purpose": purpose, "value": value, "format": "text/plain"}
    if id_:
        body = {"id": id_, **body}
    if language:
        body["language"] = language
    return body


def _annotation(a: LabelAnnotation) -> dict[str, Any]:
    names = class_name(a.task, a.label)
    body = [
        _text(a.label, "classifying", id_=f"urn:inkapp:class:{a.task}:{a.label}"),
        _text(names.en, "classifying", "en"),
        _text(names.zh, "classifying", "zh-Hans"),
    ]
    if a.is_correction:
        replaced = f"the model's {a.predicted_label}" if a.predicted_label else "the model's label"
        conf = "" if a.confidence is None else f" (confidence {a.confidence:.3f})"
        version = f" of model {a.model_version}" if a.model_version else ""
        body.append(_text(f"expert correction for task {a.task}: replaces {replaced}{conf}{version}",
                          "describing", "en"))
        ident = f"urn:uuid:{uuid.UUID(hex=a.correction_id)}" if a.correction_id else f"urn:uuid:{uuid.uuid4()}"
    else:
        if a.confidence is not None:
            body.append(_text(f"model prediction for task {a.task}: probability {a.confidence:.4f}", "describing",
                              "en"))
        key = "\x1f".join([a.target_iri, a.task, a.label, a.model_version, a.created])
        ident = f"urn:uuid:{uuid.uuid5(_ID_NAMESPACE, key)}"
    anno: dict[str, Any] = {"id": ident, "type": "Annotation", "motivation": "classifying", "created": a.created}
    if a.is_correction:
        anno["creator"] = {"type": "Person", "name": a.expert}
    else:
        version = a.model_version or "unversioned"
        anno["generator"] = {"id": f"urn:inkapp:model:{a.task}:{version}", "type": "Software",
                             "name": f"inkapp {a.task} model {version}"}
    anno["body"] = body
    anno["target"] = a.target_iri
    return anno


def annotation_page(annotations: Iterable[LabelAnnotation], page_id: str | None = None) -> dict[str, Any]:
    """A W3C ``AnnotationPage`` (JSON-LD dict, context :data:`ANNO_CONTEXT`) holding one
    ``classifying`` Annotation per item of ``annotations``, in order. ``page_id`` —
    the page's IRI (default a fresh ``urn:uuid:``)."""
    return {"@context": ANNO_CONTEXT, "id": page_id or f"urn:uuid:{uuid.uuid4()}", "type": "AnnotationPage",
            "startIndex": 0, "items": [_annotation(a) for a in annotations]}


def write_annotation_page(page: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``page`` as UTF-8 JSON to ``path`` atomically (temp file + ``os.replace``)."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(page, f, ensure_ascii=False, indent=1)
            f.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; an export is meant to be shared
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def anno_context_document() -> dict[str, Any]:
    """The W3C Web Annotation JSON-LD context document (``anno.jsonld``) shipped with the
    package, for offline JSON-LD processing (e.g. a pyld document loader)."""
    return json.loads((resources.files("inkapp.iiif") / "anno.jsonld").read_text(encoding="utf-8"))
