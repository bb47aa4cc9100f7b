"""From a page photo or rubbing to a clean ink mask (OpenCV).

Steps, all on a *working copy* of at most :data:`MAX_WORK_PIXELS` pixels (a 20 000 px
tall rubbing is shrunk before anything else, so memory is bounded):

1. red seals (colour images only): saturated red pixels are masked out;
2. polarity: strokes are the pixels that depart strongly from their local majority
   (:func:`_is_light_on_dark`); when they are lighter the page is a rubbing and is
   inverted, so that afterwards ink is always dark on light;
3. uneven light, stains: the grey page is divided by a background estimate (grey-level
   closing, i.e. a max filter that erases strokes, taken on a copy whose short side is
   256 px with a kernel of 1/8 of that side, then blurred and resized back), so the
   paper becomes ~255 everywhere;
4. binarisation: Otsu on the flattened page, but never counting as ink a pixel less
   than :data:`MIN_CONTRAST` darker than its background (paper texture, blank pages);
5. grid lines and frames: long straight runs of thin ink (see :func:`_lines`) are
   removed, and so are components touching the border that span ≥ 80 % of the page
   side (margins, frames, book edges) and long hairline remnants of ruled lines;
6. specks: components smaller than (0.75 × stroke width)² pixels are dropped.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

MAX_WORK_PIXELS = 4_000_000  # working copy budget (pixels); larger pages are shrunk first
MIN_CONTRAST = 0.25  # ink is at least 25 % darker than its local background
_BG_SIDE = 256  # short side (px) of the copy the background is estimated on


@dataclass(frozen=True)
class InkPage:
    """The working copy of a page.

    ``flat`` — uint8 H×W grey page, dark ink on white (background ≈ 255), seals
    whitened; ``ink`` — bool H×W ink mask after line, frame and speck removal;
    ``scale`` — working pixels per original pixel (≤ 1); ``light_on_dark`` — the
    original was a rubbing (light strokes on dark); ``stroke_width`` — median stroke
    width in working pixels; ``threshold`` — the grey level (0–255 of ``flat``) below
    which a pixel is ink; ``colourful`` — fraction of cool-coloured pixels (green to
    violet; 0 for grey images).
    """

    flat: np.ndarray
    ink: np.ndarray
    scale: float
    light_on_dark: bool
    stroke_width: float
    threshold: int
    colourful: float


def working_copy(image: Image.Image) -> tuple[Image.Image, float]:
    """``image`` shrunk (box filter) to at most :data:`MAX_WORK_PIXELS` pixels, in mode
    ``RGB`` or ``L``; returns it and the scale (working / original, ≤ 1)."""
    w, h = image.size
    if w < 1 or h < 1:
        raise ValueError(f"empty image ({w}×{h})")
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGBA").convert("RGB") if "A" in image.getbands() else image.convert("RGB")
    scale = min(1.0, (MAX_WORK_PIXELS / (w * h)) ** 0.5)
    if scale < 1.0:
        image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BOX,
                             reducing_gap=2.0)
        scale = image.size[0] / w
    return image, scale


def _seal_and_colour(rgb: np.ndarray) -> tuple[np.ndarray, float]:
    """Red-seal mask (bool H×W, dilated by 2 px) and the fraction of cool-coloured
    pixels: hue green to violet (OpenCV hue 35–160), saturation ≥ 30 and value ≥ 60
    of 255, not within 7 px of seal red. Paper tints (yellow, brown) and seals (red) are warm, so ink calligraphy
    has next to none; paintings' foliage, water and sky do."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    red = ((sat >= 90) & (val >= 60) & ((hue <= 10) | (hue >= 165))).astype(np.uint8)
    seal = cv2.dilate(red, np.ones((5, 5), np.uint8)) > 0
    fringe = cv2.dilate(red, np.ones((15, 15), np.uint8)) > 0  # JPEG chroma bleeds purple around seals
    cool = (sat >= 30) & (val >= 60) & (hue >= 35) & (hue <= 160) & ~fringe
    return seal, float(cool.mean())


def _small(grey: np.ndarray) -> np.ndarray:
    """``grey`` shrunk (area averaging) so its short side is at most :data:`_BG_SIDE`."""
    h, w = grey.shape
    f = _BG_SIDE / min(h, w)
    return cv2.resize(grey, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA) if f < 1 \
        else grey


def _is_light_on_dark(grey: np.ndarray, seal: np.ndarray) -> bool:
    """True when the strokes are lighter than the ground (a rubbing).

    The ground is the local majority: each pixel is compared with the median of its
    neighbourhood (1/8 of the short side, on a ≤ 256 px copy, seals excluded), and the
    pixels departing from it by more than 4 × the median absolute departure are
    summed by sign; strokes are the side with the larger mass. Light fall-off, stains
    and grain are symmetric or slow and do not tip the balance."""
    small = _small(grey)
    k = max(3, min(small.shape) // 8) | 1
    departure = small.astype(np.float32) - cv2.medianBlur(small, min(k, 255)).astype(np.float32)
    if seal.any():
        departure[_small(seal.astype(np.uint8) * 255) > 0] = 0
    t = 4.0 * max(1.0, float(np.median(np.abs(departure))))
    light = np.clip(departure - t, 0, None).sum()
    dark = np.clip(-departure - t, 0, None).sum()
    return bool(light > dark)


def _flatten(grey: np.ndarray) -> np.ndarray:
    """Divide a dark-on-light grey page by its background estimate -> uint8, paper ≈ 255."""
    h, w = grey.shape
    small = _small(grey)
    k = max(3, min(small.shape) // 8) | 1
    bg = cv2.dilate(small, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
    bg = cv2.GaussianBlur(bg, (k, k), 0)
    bg = cv2.resize(bg, (w, h), interpolation=cv2.INTER_LINEAR) if bg.shape != grey.shape else bg
    flat = grey.astype(np.float32) * 255.0 / np.maximum(bg.astype(np.float32), 1.0)
    return np.clip(flat, 0, 255).astype(np.uint8)


def stroke_width(ink: np.ndarray) -> float:
    """Median stroke width (px) of a bool ink mask: 4 × the median distance of ink
    pixels to the nearest background pixel (exact for uniform straight strokes)."""
    if not ink.any():
        return 0.0
    dist = cv2.distanceTransform(ink.astype(np.uint8), cv2.DIST_L2, 3)
    return float(4.0 * np.median(dist[ink]))


def _lines(ink: np.ndarray, sw: float) -> np.ndarray:
    """Bool mask of thin long horizontal and vertical lines (grid lines, rules).

    Thin parts are the ink an opening with a square of 0.6 × the stroke width (≥ 3 px)
    erases; along each direction they are bridged over 9 px gaps (noise breaks printed
    lines) and kept where a straight run is at least 1/6 of the page's short side."""
    h, w = ink.shape
    u8 = ink.astype(np.uint8)
    k = max(3, round(0.6 * sw))
    thin = u8 & (1 - cv2.morphologyEx(u8, cv2.MORPH_OPEN, np.ones((k, k), np.uint8)))
    length = max(20, min(h, w) // 6)
    out = np.zeros_like(u8)
    for bridge, run in (((9, 1), (length, 1)), ((1, 9), (1, length))):
        bridged = cv2.morphologyEx(thin, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, bridge))
        out |= cv2.morphologyEx(bridged, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, run))
    return cv2.dilate(out, np.ones((3, 3), np.uint8)) > 0


def _clean_components(ink: np.ndarray, sw: float) -> np.ndarray:
    """Drop specks and border-touching frames/margins from a bool mask."""
    h, w = ink.shape
    n, labels, stats, _ = cv2.connectedComponentsWithStats(ink.astype(np.uint8), connectivity=8)
    keep = np.zeros(n, bool)
    min_area = max(4.0, (0.75 * sw) ** 2)
    for i in range(1, n):
        x, y, bw, bh, area = stats[i]
        touches = x == 0 or y == 0 or x + bw == w or y + bh == h
        frame = touches and (bw >= 0.8 * w or bh >= 0.8 * h)
        hairline = max(bw, bh) > 3 * sw and area / max(bw, bh) < 0.35 * sw  # a remnant of a ruled line
        keep[i] = area >= min_area and not frame and not hairline
    return keep[labels]


def find_ink(image: Image.Image) -> InkPage:
    """Working copy of ``image`` with its ink mask (see the module docstring)."""
    work, scale = working_copy(image)
    arr = np.asarray(work)
    if arr.ndim == 3:
        seal, colourful = _seal_and_colour(arr)
        grey = cv2.cvtColor(arr, cv2.COLOR_RGB2GRAY)
    else:
        seal, colourful, grey = np.zeros(arr.shape, bool), 0.0, arr
    light_on_dark = _is_light_on_dark(grey, seal)
    if light_on_dark:
        grey = 255 - grey
    flat = _flatten(grey)
    flat[seal] = 255
    otsu, _ = cv2.threshold(flat, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    threshold = int(min(otsu, 255 * (1 - MIN_CONTRAST)))
    ink = flat < threshold
    sw = stroke_width(ink)
    ink &= ~_lines(ink, sw)
    sw = stroke_width(ink) or sw
    ink = _clean_components(ink, sw)
    return InkPage(flat=flat, ink=ink, scale=scale, light_on_dark=light_on_dark, stroke_width=sw,
                   threshold=threshold, colourful=colourful)
