"""The experts' corrections: an append-only CSV plus content-addressed image files.

Layout under ``data_dir``::

    corrections.csv              one row per correction or revocation, never rewritten
    corrections.csv.lock         inter-process lock taken for every append
    corrections.quarantine.csv   torn (partial) last lines moved out of the main file
    images/<ab>/<sha256>.<ext>   the uploaded bytes, stored once per content

Columns, in this order: :data:`FIELDS`. A *revocation row* undoes an earlier
correction: same task / image_sha256 / image_path, empty ``corrected_label``,
``predicted_label`` and ``confidence``, and ``note = "revoke:<id>"``. The corrections
in effect are: revoked rows removed, then for every (task, image_sha256) the latest
remaining row in file order wins.

Every append holds the lock, writes the whole row with one ``os.write`` on an
``O_APPEND`` descriptor and ``fsync``\\ s it. No cell ever contains a line break, so a
line is a row; a last line without ``\\n`` was torn by a killed writer and is moved to
the quarantine file (and reported) by the next writer. Cells that a spreadsheet would
run as a formula are written with a leading ``'`` which the reader removes again.
"""
from __future__ import annotations

import csv
import io
import logging
import re
import unicodedata
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath

from inkapp.data.images import FORMAT_EXTENSIONS, decode_image, sha256_bytes

from .files import TornWriteWarning  # noqa: F401  (raised by appends; re-exported for callers)
from .files import AppendOnlyFile, atomic_write_bytes, fsync_dir, utc_now

log = logging.getLogger(__name__)

FIELDS: tuple[str, ...] = (
    "id", "timestamp", "task", "image_sha256", "image_path", "predicted_label",
    "confidence", "corrected_label", "expert", "note", "model_version",
)
REVOKE_PREFIX = "revoke:"
MAX_EXPERT_CHARS = 100
MAX_NOTE_CHARS = 1000
MAX_FIELD_CHARS = 500  # task, labels, model_version, image_path

_HEADER = (",".join(FIELDS) + "\n").encode("utf-8")
_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
# A leading quote is added when a cell, after any quotes and invisible format characters
# (bidi controls, zero-width characters) it already has, starts with a formula trigger;
# exactly that one quote is removed on reading, so the mapping is lossless.
_FORMULA_TRIGGERS = "=+-@\t\r"
_JOINERS = "\u200c\u200d"  # zero-width non-joiner and joiner, kept inside text
_EDGE_SPACE_OR_JOINER = re.compile(r"^[\s\u200c\u200d]+|[\s\u200c\u200d]+$")
_LINE_BREAKS = str.maketrans({"\n": " ", "\r": " ", "\t": " ", "\u2028": " ", "\u2029": " ",
                              "\x85": " ", "\x0b": " ", "\x0c": " "})


class CorrectionError(ValueError):
    """A correction was rejected; ``str()`` says why in one line."""


def _formula_like(value: str) -> bool:
    """Whether ``value``, after leading quotes and format characters, starts with a trigger."""
    for ch in value:
        if ch != "'" and unicodedata.category(ch) != "Cf":
            return ch in _FORMULA_TRIGGERS
    return False


def escape_cell(value: str) -> str:
    """Neutralise spreadsheet formula injection: prefix ``'`` when the cell could run
    (also when invisible bidi / zero-width characters stand before the ``=``)."""
    return "'" + value if _formula_like(value) else value


def unescape_cell(value: str) -> str:
    """Inverse of :func:`escape_cell`."""
    return value[1:] if value.startswith("'") and _formula_like(value) else value


def clean_text(value: str, field: str = "text") -> str:
    """Free text (a note, an expert name) made safe to store and compare.

    Unicode NFC; line breaks and tabs -> spaces; control characters (Cc) and format
    characters (Cf: bidi overrides, embeddings, isolates and marks, zero-width space,
    word joiner, BOM, soft hyphen) removed, except the zero-width joiner and non-joiner
    inside the text (emoji sequences such as 👩🏽‍🎨 and some scripts need them; at
    either end they are removed); ends stripped. Raises :class:`CorrectionError` (one
    line naming ``field``) for a non-string or a lone surrogate, which has no UTF-8
    encoding.
    """
    if not isinstance(value, str):
        raise CorrectionError(f"{field} must be text, got {type(value).__name__}")
    bad = next((ch for ch in value if unicodedata.category(ch) == "Cs"), None)
    if bad is not None:
        raise CorrectionError(f"{field} contains an invalid character (lone surrogate U+{ord(bad):04X})")
    value = unicodedata.normalize("NFC", value).translate(_LINE_BREAKS)
    value = "".join(ch for ch in value if ch in _JOINERS or unicodedata.category(ch) not in ("Cc", "Cf"))
    return _EDGE_SPACE_OR_JOINER.sub("", value)


def _format_row(row: Mapping[str, str]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([escape_cell(row[f]) for f in FIELDS])
    return buf.getvalue().encode("utf-8")


def _row_is_wellformed(row: Mapping[str, str]) -> bool:
    if not (_HEX32.fullmatch(row["id"]) and row["task"] and _HEX64.fullmatch(row["image_sha256"])):
        return False
    if row["corrected_label"]:
        return True
    note = row["note"]
    return note.startswith(REVOKE_PREFIX) and bool(_HEX32.fullmatch(note[len(REVOKE_PREFIX):]))


def parse_csv_bytes(data: bytes) -> tuple[list[dict[str, str]], int, int]:
    """Parse the bytes of a corrections CSV.

    Returns ``(rows, n_lines, n_malformed)``: the well-formed rows in file order (cells
    unescaped), the number of data lines (header lines and blank lines excluded) and
    how many of them were skipped: wrong field count, invalid UTF-8, bad id / sha256 /
    revocation note, or a last line without its ``\\n`` (torn or still being written).
    """
    body, newline, tail = data.rpartition(b"\n")
    lines = body.split(b"\n") if newline else []
    if lines and lines[0].startswith(b"\xef\xbb\xbf"):  # a BOM added by a spreadsheet
        lines[0] = lines[0][3:]
    rows: list[dict[str, str]] = []
    n_lines = malformed = 0
    if tail.strip():
        n_lines += 1
        malformed += 1
    for raw in lines:
        if not raw.strip() or raw.rstrip(b"\r") + b"\n" == _HEADER:
            continue
        n_lines += 1
        try:
            cells = next(csv.reader([raw.decode("utf-8")]))
        except (UnicodeDecodeError, csv.Error, StopIteration):
            malformed += 1
            continue
        if len(cells) != len(FIELDS):
            malformed += 1
            continue
        row = dict(zip(FIELDS, (unescape_cell(c) for c in cells)))
        if _row_is_wellformed(row):
            rows.append(row)
        else:
            malformed += 1
    return rows, n_lines, malformed


def merge_corrections(
    rows: Iterable[Mapping[str, str]],
    classes_by_task: Mapping[str, Sequence[str]] | None = None,
) -> tuple[list[dict[str, str]], dict[str, int]]:
    """Apply revocations and latest-wins to well-formed rows (in file order).

    A correction of a task named in ``classes_by_task`` whose ``corrected_label`` is not
    one of that task's classes is dropped as ``unknown_label``; tasks the mapping does
    not name are not checked (filter them by ``task`` if they are not wanted). Returns the active corrections in file order and counts
    ``revocations``, ``revoked``, ``unknown_label``, ``superseded``, ``active``, where
    corrections = revoked + unknown_label + superseded + active.
    """
    rows = list(rows)
    corrections = [r for r in rows if r["corrected_label"]]
    revocations = [r for r in rows if not r["corrected_label"]]
    by_id = {r["id"]: r for r in corrections}
    revoked: set[str] = set()
    for rv in revocations:
        target = by_id.get(rv["note"][len(REVOKE_PREFIX):])
        if target is None or (target["task"], target["image_sha256"]) != (rv["task"], rv["image_sha256"]):
            log.warning("revocation %s refers to no matching correction (%s)", rv["id"], rv["note"])
            continue
        revoked.add(target["id"])
    unknown = 0
    latest: dict[tuple[str, str], int] = {}
    for i, r in enumerate(corrections):
        if r["id"] in revoked:
            continue
        if (classes_by_task is not None and r["task"] in classes_by_task
                and r["corrected_label"] not in classes_by_task[r["task"]]):
            unknown += 1
            continue
        latest[(r["task"], r["image_sha256"])] = i
    candidates = len(corrections) - len(revoked) - unknown
    active = [dict(corrections[i]) for i in sorted(latest.values())]
    counts = {"revocations": len(revocations), "revoked": len(revoked), "unknown_label": unknown,
              "superseded": candidates - len(active), "active": len(active)}
    return active, counts


def read_corrections(
    csv_path: Path,
    classes_by_task: dict[str, list[str]] | None = None,
) -> tuple[list[dict[str, str]], dict[str, int]]:
    """Read a corrections CSV without locking (e.g. a snapshot used by training).

    Never raises on bad rows: they are counted. A missing file reads as empty.

    Returns:
        ``(active, summary)``: the corrections in effect (see :func:`merge_corrections`)
        as dicts of strings keyed by :data:`FIELDS`, and counts ``rows`` (data lines),
        ``malformed``, ``unknown_label``, ``revocations``, ``revoked``, ``superseded``,
        ``active``, with rows = malformed + revocations + corrections.
    """
    try:
        data = Path(csv_path).read_bytes()
    except FileNotFoundError:
        data = b""
    parsed, n_lines, malformed = parse_csv_bytes(data)
    active, counts = merge_corrections(parsed, classes_by_task)
    summary = {"rows": n_lines, "malformed": malformed, **counts}
    if malformed:
        log.warning("%s: skipped %d malformed row(s)", csv_path, malformed)
    return active, summary


class CorrectionStore:
    """The corrections CSV and stored images under ``data_dir`` (safe across threads and processes)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.csv_path = self.data_dir / "corrections.csv"
        self.quarantine_path = self.data_dir / "corrections.quarantine.csv"
        self.images_dir = self.data_dir / "images"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._file = AppendOnlyFile(self.csv_path, self.quarantine_path, _HEADER, clean_text, escape_cell)
        self._lock = self._file.lock

    # ---------------------------------------------------------------- images

    def store_image(self, data: bytes) -> tuple[str, str]:
        """Validate and store image bytes once; return ``(sha256, path relative to data_dir)``.

        The extension comes from the decoded format (never from a file name). Raises
        :class:`inkapp.data.images.ImageError` if ``data`` is not an acceptable image.
        """
        _, fmt = decode_image(data)
        sha = sha256_bytes(data)
        rel = f"images/{sha[:2]}/{sha}.{FORMAT_EXTENSIONS[fmt]}"
        dest = self.data_dir / rel
        try:
            if dest.stat().st_size == len(data):
                return sha, rel
        except FileNotFoundError:
            pass
        atomic_write_bytes(dest, data)
        fsync_dir(dest.parent)
        return sha, rel

    # ---------------------------------------------------------------- writing

    def add(
        self,
        task: str,
        image_sha256: str,
        image_path: str,
        predicted_label: str,
        confidence: float,
        corrected_label: str,
        expert: str,
        note: str,
        model_version: str,
        classes: Sequence[str],
    ) -> dict[str, str]:
        """Validate and append one correction; return the row as written (string values).

        ``confidence`` is the model's probability for ``predicted_label`` in [0, 1].
        ``expert`` and ``note`` may hold any Unicode: line breaks become spaces, other
        control characters are removed; the expert (non-empty) is limited to 100
        characters and the note to 1000.

        Raises:
            CorrectionError: on any invalid value, e.g. a label not in ``classes``.
        """
        if corrected_label not in classes:
            raise CorrectionError(
                f"unknown label {corrected_label!r} for task {task!r} (expected one of: {', '.join(classes)})")
        try:
            conf = float(confidence)
        except (TypeError, ValueError):
            raise CorrectionError(f"confidence {confidence!r} is not a number") from None
        if not 0.0 <= conf <= 1.0:
            raise CorrectionError(f"confidence {confidence!r} is outside [0, 1]")
        row = {
            "id": uuid.uuid4().hex,
            "timestamp": utc_now(),
            "task": self._plain("task", task, required=True),
            "image_sha256": self._sha(image_sha256),
            "image_path": self._relative_path(image_path),
            "predicted_label": self._plain("predicted_label", predicted_label, required=True),
            "confidence": f"{conf:.4f}",
            "corrected_label": self._plain("corrected_label", corrected_label, required=True),
            "expert": self._expert(expert),
            "note": self._limited("note", clean_text(note, "note"), MAX_NOTE_CHARS),
            "model_version": self._plain("model_version", model_version, required=False),
        }
        self._append(row)
        return row

    def revoke_last(self, task: str, expert: str) -> dict[str, str] | None:
        """Undo ``expert``'s most recent not-yet-revoked correction in ``task``.

        Appends and returns a revocation row, or returns None when there is nothing to undo.
        """
        who = self._expert(expert)
        with self._lock:
            rows, _, _ = parse_csv_bytes(self._file.read_locked())
            revoked = {r["note"][len(REVOKE_PREFIX):] for r in rows if not r["corrected_label"]}
            target = next((r for r in reversed(rows) if r["corrected_label"] and r["task"] == task
                           and r["expert"] == who and r["id"] not in revoked), None)
            if target is None:
                return None
            row = {
                "id": uuid.uuid4().hex, "timestamp": utc_now(), "task": target["task"],
                "image_sha256": target["image_sha256"], "image_path": target["image_path"],
                "predicted_label": "", "confidence": "", "corrected_label": "", "expert": who,
                "note": REVOKE_PREFIX + target["id"], "model_version": target["model_version"],
            }
            self._append_locked(row)
        return row

    # ---------------------------------------------------------------- reading

    def rows(self) -> list[dict[str, str]]:
        """All well-formed rows (corrections and revocations) in file order."""
        return parse_csv_bytes(self._read_locked())[0]

    def active(self) -> list[dict[str, str]]:
        """The corrections in effect, in file order (revocations applied, latest wins)."""
        return merge_corrections(parse_csv_bytes(self._read_locked())[0])[0]

    def read_report(self, classes_by_task: dict[str, list[str]] | None = None) -> dict[str, int]:
        """Counts as in :func:`read_corrections` (``rows``, ``malformed``, ``active``, ...)."""
        parsed, n_lines, malformed = parse_csv_bytes(self._read_locked())
        return {"rows": n_lines, "malformed": malformed, **merge_corrections(parsed, classes_by_task)[1]}

    # ---------------------------------------------------------------- internals

    @staticmethod
    def _limited(field: str, value: str, limit: int) -> str:
        if len(value) > limit:
            raise CorrectionError(f"{field} is too long ({len(value)} characters; limit {limit})")
        return value

    @classmethod
    def _plain(cls, field: str, value: str, *, required: bool) -> str:
        if not isinstance(value, str):
            raise CorrectionError(f"{field} must be a string, got {type(value).__name__}")
        if (any(unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in value)
                or value != value.translate(_LINE_BREAKS)):
            raise CorrectionError(f"{field} contains control, format or invalid characters or line breaks")
        if required and not value.strip():
            raise CorrectionError(f"{field} is empty")
        return cls._limited(field, value, MAX_FIELD_CHARS)

    @classmethod
    def _expert(cls, expert: str) -> str:
        who = clean_text(expert, "expert name")
        if not who:
            raise CorrectionError("expert name is empty")
        return cls._limited("expert name", who, MAX_EXPERT_CHARS)

    @staticmethod
    def _sha(value: str) -> str:
        if not isinstance(value, str) or not _HEX64.fullmatch(value):
            raise CorrectionError(f"image_sha256 {value!r} is not 64 lower-case hex digits")
        return value

    @classmethod
    def _relative_path(cls, value: str) -> str:
        path = cls._plain("image_path", value, required=True)
        parts = PurePosixPath(path).parts
        if "\\" in path or path.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
            raise CorrectionError(f"image_path {value!r} must be relative to the data directory")
        return path

    def _read_locked(self) -> bytes:
        return self._file.read()

    def _append(self, row: Mapping[str, str]) -> None:
        self._file.append(_format_row(row))

    def _append_locked(self, row: Mapping[str, str]) -> None:
        self._file.append_locked(_format_row(row))

    def snapshot(self, dest: Path) -> Path:
        """Copy the CSV as it is now (a consistent prefix, read under the lock) to ``dest``,
        atomically; e.g. the corrections a retraining run is started from."""
        atomic_write_bytes(dest, self._file.read() or _HEADER)
        return dest
