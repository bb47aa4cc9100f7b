"""Ink mask -> character boxes in reading order (projection profiles, XY cut).

A page is cut into *lines* along the blank bands of its ink profile, and each line
into characters along the blank bands across it. A position is blank when its ink
count is below :data:`PROFILE_FLOOR` × the 90th percentile of the profile — so a
watermark or a seal across a gap does not join two lines — provided that this gives
≥ 3 lines of which ≥ 60 % are within ±30 % of the median line (a regular page);
otherwise (one character, a few lines) only positions without any ink are blank.
Each line owns the page up to the middle of the blank bands around it. Characters are assumed roughly
square: inside a line whose thickness is ``W``, a piece shorter than 0.6 W (a radical,
a dot, the halves of 二 or 川) is merged with its neighbour across the smaller gap as
long as the merged piece stays within 1.3 W. Lines thinner than half the median line
are merged with a neighbour closer than a quarter of the median line.

Pieces closer than 0.15 W are then joined while the
result stays within 1.8 W (wide characters such as 如 whose halves barely touch).

Both layouts are tried: *columns* (vertical lines read right to left, characters top
to bottom) and *rows* (horizontal lines read left to right). The layout whose boxes
are squarer on average (by more than 0.05) wins; otherwise the one whose lines are
further apart, relative to the character pitch along a line, than the other's (by 15 %)
wins — a single line of several characters is read along that line — and a tie (a
square grid) goes to columns, the traditional order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Run = tuple[int, int]  # [start, end) along one axis, pixels
PROFILE_FLOOR = 0.08  # between lines: ink count < 8 % of the 90th percentile of the line profile
MIN_SIDE = 10  # px of the working copy: anything smaller is a speck, not a readable character


@dataclass(frozen=True)
class Box:
    """A character box in pixels: left, top, width, height."""

    x: int
    y: int
    w: int
    h: int

    def scaled(self, factor: float) -> "Box":
        """The box with every coordinate multiplied by ``factor`` (rounded outwards)."""
        x0, y0 = int(np.floor(self.x * factor)), int(np.floor(self.y * factor))
        x1, y1 = int(np.ceil((self.x + self.w) * factor)), int(np.ceil((self.y + self.h) * factor))
        return Box(x0, y0, max(1, x1 - x0), max(1, y1 - y0))

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]


def _runs(on: np.ndarray) -> list[Run]:
    """[start, end) runs of True in a 1-D bool array."""
    d = np.diff(np.concatenate(([0], on.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def _merge_small(runs: list[Run], small: float, big: float, max_gap: float = float("inf")) -> list[Run]:
    """Merge every run shorter than ``small`` (shortest first) into the neighbour
    across the smaller gap, if that gap is ≤ ``max_gap`` and the merged run ≤ ``big``."""
    runs = list(runs)
    stuck: set[Run] = set()
    while True:
        short = [i for i, (a, b) in enumerate(runs) if b - a < small and (a, b) not in stuck]
        if not short:
            return runs
        i = min(short, key=lambda k: runs[k][1] - runs[k][0])
        options = []
        for j in (i - 1, i + 1):
            if 0 <= j < len(runs):
                lo, hi = min(i, j), max(i, j)
                gap, merged = runs[hi][0] - runs[lo][1], runs[hi][1] - runs[lo][0]
                if merged <= big and gap <= max_gap:
                    options.append((gap, lo, hi))
        if not options:
            stuck.add(runs[i])
            continue
        _, lo, hi = min(options)
        runs[lo:hi + 1] = [(runs[lo][0], runs[hi][1])]


def _merge_close(runs: list[Run], max_gap: float, big: float) -> list[Run]:
    """Merge neighbouring runs separated by ≤ ``max_gap`` while the merged run ≤ ``big``."""
    out = runs[:1]
    for a, b in runs[1:]:
        if a - out[-1][1] <= max_gap and b - out[-1][0] <= big:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _bands(on: np.ndarray) -> list[Run]:
    """Runs of a line profile, runs thinner than half the median merged into a
    neighbour closer than a quarter of the median."""
    bands = _runs(on)
    median = float(np.median([b - a for a, b in bands]))
    return _merge_small(bands, 0.5 * median, float("inf"), max_gap=0.25 * median)


def _lines(ink: np.ndarray) -> list[tuple[Run, list[Box]]]:
    """Horizontal lines (top to bottom): each line's band [top, bottom) and its
    character boxes left to right."""
    profile = ink.sum(axis=1)
    if not profile.any():
        return []
    floored = _bands(profile >= max(1.0, PROFILE_FLOOR * float(np.percentile(profile[profile > 0], 90))))
    widths = np.array([b - a for a, b in floored], dtype=float)
    regular = len(floored) >= 3 and np.mean(np.abs(widths / np.median(widths) - 1) <= 0.3) >= 0.6
    bands = floored if regular else _bands(profile > 0)
    # each line owns the page up to the middle of the blank bands around it
    cuts = [0] + [(a[1] + b[0]) // 2 for a, b in zip(bands, bands[1:])] + [ink.shape[0]]
    lines = []
    for (top, bottom), lo, hi in zip(bands, cuts, cuts[1:]):
        t = bottom - top
        band = ink[lo:hi]
        pieces = _merge_close(_merge_small(_runs(band.any(axis=0)), 0.6 * t, 1.3 * t), 0.15 * t, 1.8 * t)
        line = []
        for left, right in pieces:
            ys = np.flatnonzero(band[:, left:right].any(axis=1))
            line.append(Box(left, lo + int(ys[0]), right - left, int(ys[-1] - ys[0] + 1)))
        lines.append(((top, bottom), line))
    return lines


def _pitch_ratio(lines: list[tuple[Run, list[Box]]]) -> float:
    """Median distance between line centres / median distance between character
    centres along a line: > 1 when lines are further apart than characters in a line.
    One line of several characters -> inf; several lines of one character each -> 0."""
    boxes_per_line = [len(line) for _, line in lines]
    if len(lines) == 1:
        return float("inf") if boxes_per_line[0] > 1 else 1.0
    if max(boxes_per_line) == 1:
        return 0.0
    centres = [(a + b) / 2 for (a, b), _ in lines]
    across = float(np.median(np.diff(centres)))
    along = float(np.median([c1.x + c1.w / 2 - c0.x - c0.w / 2 for _, line in lines
                             for c0, c1 in zip(line, line[1:])]))
    return across / max(along, 1e-6)


def _squareness(boxes: list[Box]) -> float:
    return float(np.mean([min(b.w, b.h) / max(b.w, b.h) for b in boxes])) if boxes else 0.0


def _drop_specks(boxes: list[Box]) -> list[Box]:
    """Drop boxes whose long side is < :data:`MIN_SIDE` px or < 0.3 × the median."""
    if not boxes:
        return boxes
    sides = np.array([max(b.w, b.h) for b in boxes], dtype=float)
    floor = max(MIN_SIDE, 0.3 * float(np.median(sides)))
    return [b for b, s in zip(boxes, sides) if s >= floor]


def character_boxes(ink: np.ndarray) -> tuple[list[Box], str]:
    """Character boxes of a bool H×W ink mask in reading order, and the layout
    (``"columns"`` or ``"rows"``); see the module docstring for the rules."""
    if not ink.any():
        return [], "columns"
    row_lines = _lines(ink)
    col_lines = _lines(ink.T)  # columns of the page are rows of the transpose
    rows = _drop_specks([b for _, line in row_lines for b in line])
    columns = _drop_specks([Box(b.y, b.x, b.h, b.w) for _, line in reversed(col_lines) for b in line])
    sq_rows, sq_cols = _squareness(rows), _squareness(columns)
    if abs(sq_rows - sq_cols) > 0.05:
        return (rows, "rows") if sq_rows > sq_cols else (columns, "columns")
    rows_first = _pitch_ratio(row_lines) > 1.15 * _pitch_ratio(col_lines)
    return (rows, "rows") if rows_first else (columns, "columns")


def irregular(boxes: list[Box]) -> bool:
    """True when ≥ 3 boxes do not look like the characters of one page: their long
    sides depart from the median by more than 25 % (median over boxes), or their median
    squareness (short / long side) is below 0.6. Set from the regular-script VAL pages
    of the script data (90th percentile of the departure 0.14, 10th percentile of the
    squareness 0.78); the blobs found on paintings are much less regular (median 0.32
    and 0.70 on a sample of 80)."""
    if len(boxes) < 3:
        return False
    sides = np.array([max(b.w, b.h) for b in boxes], dtype=float)
    departure = float(np.median(np.abs(sides / np.median(sides) - 1)))
    squareness = float(np.median([min(b.w, b.h) / max(b.w, b.h) for b in boxes]))
    return departure > 0.25 or squareness < 0.6
