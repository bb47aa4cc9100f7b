"""From model-input maps to overlays on the original image.

Every spatial map a model produces (Grad-CAM heat, attention maps) covers the square
letterboxed canvas. :func:`crop_to_image` cuts out the part where the image sits and
resamples it to the image's own size, so overlays keep the true aspect ratio of a
scroll or fan; :func:`overlay` lays a colour-mapped map over the image with an alpha that
follows the heat (cold areas keep the image's own colours); :func:`legend_stops` gives the
colour key drawn the same way.
"""
from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from inkapp.data.preprocess import Letterbox

COLORMAPS: dict[str, int] = {
    "inferno": cv2.COLORMAP_INFERNO,
    "jet": cv2.COLORMAP_JET,
    "magma": cv2.COLORMAP_MAGMA,
    "turbo": cv2.COLORMAP_TURBO,
    "viridis": cv2.COLORMAP_VIRIDIS,
}


def crop_to_image(map_2d: np.ndarray, box: Letterbox, out_size: tuple[int, int]) -> np.ndarray:
    """Part of a canvas map under the image, resampled to ``out_size``.

    ``map_2d`` is h×w (any resolution, e.g. the S×S Grad-CAM or a stride-32 attention
    map) covering the whole ``box.size``×``box.size`` canvas; ``box`` is where the image
    sits in the canvas (canvas pixels); ``out_size`` is (width, height) in pixels,
    normally the original image size. The map is brought to canvas resolution
    (bilinear, pixel centres aligned), the image's pixels are cut out exactly, and the
    cut is resized to ``out_size`` (bilinear; area averaging when shrinking), so no
    padding value bleeds into the image's edges. Returns float32 height×width in [0, 1].
    """
    src = np.asarray(map_2d, dtype=np.float32)
    if src.ndim != 2:
        raise ValueError(f"expected a 2-D map, got shape {src.shape}")
    out_w, out_h = int(out_size[0]), int(out_size[1])
    if out_w < 1 or out_h < 1:
        raise ValueError(f"output size must be positive, got {out_size}")
    if src.shape != (box.size, box.size):
        src = cv2.resize(src, (box.size, box.size), interpolation=cv2.INTER_LINEAR)
    cut = src[box.top:box.top + box.height, box.left:box.left + box.width]
    shrink = out_w < box.width and out_h < box.height
    out = cv2.resize(cut, (out_w, out_h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return np.clip(out, 0.0, 1.0, out=out)


def _unit(heat: np.ndarray) -> np.ndarray:
    """``heat`` as a new float32 array clipped to [0, 1], NaN counted as 0 (``fmax`` drops NaN)."""
    unit = np.fmax(np.asarray(heat, dtype=np.float32), np.float32(0.0))
    return np.fmin(unit, np.float32(1.0), out=unit)


def heat_levels(heat: np.ndarray) -> np.ndarray:
    """H×W map -> uint8 levels ``rint(255·clip(v, 0, 1))`` (NaN -> 0): the 256 levels
    :func:`colorize` picks colours by."""
    return _unit_levels(_unit(heat))


def _unit_levels(unit: np.ndarray) -> np.ndarray:
    """A map already in [0, 1] -> uint8 levels (OpenCV's rounding, saturating conversion)."""
    return cv2.convertScaleAbs(unit, alpha=255.0)


def _colour_levels(levels: np.ndarray, colormap: str) -> np.ndarray:
    """uint8 levels H×W -> uint8 RGB H×W×3 through ``colormap``."""
    try:
        code = COLORMAPS[colormap]
    except KeyError:
        raise ValueError(f"unknown colormap '{colormap}'; choose from {', '.join(COLORMAPS)}") from None
    return cv2.cvtColor(cv2.applyColorMap(levels, code), cv2.COLOR_BGR2RGB)  # OpenCV colour maps are BGR


def colorize(heat: np.ndarray, colormap: str = "inferno") -> np.ndarray:
    """H×W map in [0, 1] -> uint8 RGB H×W×3 through ``colormap`` (a key of :data:`COLORMAPS`)."""
    return _colour_levels(heat_levels(heat), colormap)


def overlay(image: Image.Image, heat: np.ndarray, opacity: float = 0.5, colormap: str = "inferno") -> Image.Image:
    """Lay the colour-mapped ``heat`` (H×W in [0, 1]) over ``image`` (any mode).

    Each pixel's alpha is ``opacity × heat``: ``out = image + opacity·heat·(colour − image)``,
    so a pixel with zero heat keeps the image's own colour exactly (cold areas are not
    tinted by the colour map's dark end) and the hottest pixels show the colour map at
    ``opacity``. ``opacity`` in [0, 1]: 0 returns the image (as RGB), 1 puts the pure colour
    map where the heat is 1. A heat map of another size (e.g. computed for the full scan,
    shown on a downscaled display copy) is resized bilinearly to the image. Returns an RGB
    image of the image's size (uint8, within one level of the exact blend).
    """
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    heat = np.asarray(heat, dtype=np.float32)
    if heat.ndim != 2:
        raise ValueError(f"expected a 2-D heat map, got shape {heat.shape}")
    width, height = image.size
    if heat.shape != (height, width):
        heat = cv2.resize(heat, (width, height), interpolation=cv2.INTER_LINEAR)
    heat = _unit(heat)
    colour = _colour_levels(_unit_levels(heat), colormap)
    base = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))  # uint8
    alpha = heat * np.float32(opacity)
    # OpenCV's per-pixel blend, (1−α)·image + α·colour, on uint8 in one pass (1.8× faster than
    # the float32 expression at display size); it divides by (1−α) + α + 1e-5, which moves
    # a pixel by at most one level and leaves α = 0 and α = 1 pixels exact.
    return Image.fromarray(cv2.blendLinear(base, colour, 1.0 - alpha, alpha), mode="RGB")


def legend_stops(colormap: str = "inferno", steps: int = 6,
                 opacity: float = 1.0) -> list[tuple[float, tuple[int, int, int], float]]:
    """The colour key of :func:`overlay`: ``steps`` evenly spaced heat values ``h`` from 0 to 1
    as ``(h, (r, g, b), alpha)`` with the colour map's colour at ``h`` (uint8 RGB) and the
    alpha :func:`overlay` gives it (``opacity × h``). Drawn over the page background (e.g. a
    CSS ``linear-gradient`` of ``rgba`` stops) it starts fully transparent, like a cold
    area that keeps the image's colour, and ends in the colour of the hottest areas."""
    if steps < 2:
        raise ValueError(f"a legend needs at least 2 stops, got {steps}")
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    levels = np.linspace(0.0, 1.0, steps, dtype=np.float32)
    colours = colorize(levels[None, :], colormap)[0]
    return [(float(h), (int(c[0]), int(c[1]), int(c[2])), float(opacity * h)) for h, c in zip(levels, colours)]


def top_channels(weights: np.ndarray, k: int = 10) -> list[tuple[int, float]]:
    """The ``k`` largest channel weights of a 1-D vector (e.g. DPAFM's A_c or BAM's
    σ(M_c)) as (channel index, weight) pairs, largest first."""
    w = np.asarray(weights, dtype=np.float32).ravel()
    k = max(0, min(k, w.size))
    order = np.argsort(-w, kind="stable")[:k]
    return [(int(i), float(w[i])) for i in order]
