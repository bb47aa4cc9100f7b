"""``inkapp scan --task calligrapher`` on pages: an image of several characters gets the
page attribution (:func:`inkapp.pages.attribute.attribute_page`, the path of
``inkapp attribute`` and of the app) instead of being classified as one character.

A scanned image is a page when its long side exceeds
:data:`inkapp.pages.attribute.SINGLE_CHARACTER_SIDE` (read from the file header) and
the page finder finds at least :data:`inkapp.curation.page_view.MIN_PAGE_CHARACTERS`
characters in it. Its row keeps the scan's columns, filled from the page's vote
(stated choice, so the CSV stays one schema):

* ``label`` / ``confidence`` — the page's leading master and its page probability;
* ``uncertain`` — ``true`` when the page attribution abstains (any reason);
* ``answer_set`` — the attributed master; when abstaining, every master, most likely first;
* ``p_<class>`` — the page probabilities (softmax of the summed floored log-probabilities).
"""
from __future__ import annotations

from pathlib import Path

from PIL import Image

from inkapp.curation.page_view import MIN_PAGE_CHARACTERS
from inkapp.data.images import ImageError, load_image
from inkapp.inference import Predictor
from inkapp.pages.attribute import SINGLE_CHARACTER_SIDE, attribute_page
from inkapp.paths import shipped_weights

PAGE_TASK = "calligrapher"


class PageRows:
    """Rewrites the scan rows of page images of one calligrapher ``predictor``; the
    script model (the shipped calligraphy-script weights, for the regular-script check)
    is loaded on the first page, or ``script`` is used when given."""

    def __init__(self, predictor: Predictor, script: Predictor | None = None) -> None:
        if predictor.task != PAGE_TASK:
            raise ValueError(f"page rows need the {PAGE_TASK} model, not {predictor.task!r}")
        self.predictor = predictor
        self._script = script

    @property
    def script(self) -> Predictor | None:
        if self._script is None:
            folder = shipped_weights("calligraphy-script")
            self._script = Predictor.from_folder(folder, self.predictor.device) if folder.is_dir() else None
        return self._script

    def rewrite(self, root: Path, rows: list[list[str]]) -> list[list[str]]:
        """``rows`` (scan rows: path, sha256, label, confidence, uncertain, answer_set,
        p_<class>…, error) with each decodable page's fields replaced by its page
        attribution; other rows unchanged. Returns the same list."""
        for row in rows:
            if row[-1] or not _is_large(root / row[0]):
                continue
            try:
                result = attribute_page(load_image(root / row[0]), self.predictor, self.script)
            except ImageError:
                continue  # the batch decoded it; leave its single-character row
            if len(result.characters) < MIN_PAGE_CHARACTERS:
                continue
            probs = result.probabilities
            best = max(probs, key=probs.__getitem__)
            ranked = sorted(probs, key=lambda k: -probs[k])
            answer = [result.attribution] if result.attribution else ranked
            row[2:-1] = [best, f"{probs[best]:.6f}", str(result.attribution is None).lower(), "|".join(answer),
                         *(f"{probs[c]:.6f}" for c in self.predictor.classes)]
        return rows


def _is_large(path: Path) -> bool:
    """Whether the image's long side (from its header) exceeds SINGLE_CHARACTER_SIDE."""
    try:
        with Image.open(path) as img:
            return max(img.size) > SINGLE_CHARACTER_SIDE
    except (OSError, ValueError, Image.DecompressionBombError):
        return False


def page_rows_for(predictor: Predictor) -> PageRows | None:
    """A :class:`PageRows` for a calligrapher model, None for any other task."""
    return PageRows(predictor) if predictor.task == PAGE_TASK else None
