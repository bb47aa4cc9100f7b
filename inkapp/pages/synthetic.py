"""Evaluation pages composed from single-character images (seeded).

No page-level labels exist in the data, so pages are built from the calligrapher set's
single characters (dark strokes on white, 64×64): ``n`` characters set in columns
(right to left) or rows, as ink on paper or as a rubbing (light strokes on a dark
ground), with paper texture, stains, uneven light, blur and JPEG loss, and optionally a
red seal and grid lines. The ground truth is each character's ink box on the page.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from inkapp.pages.layout import Box

INK_ALPHA = 0.25  # a pixel belongs to a character's true box when its ink coverage is ≥ this


@dataclass(frozen=True)
class PageSpec:
    """How one page looks. ``char_px`` — character cell side (px); ``light`` — light
    fall-off across the page (0 = even, 0.4 = the far side 40 % darker); ``noise`` —
    paper grain σ (grey levels); ``blur`` — Gaussian σ (px, 0 = none); ``jpeg`` —
    JPEG quality or None for lossless."""

    n: int
    layout: str  # "columns" | "rows"
    rubbing: bool
    grid: bool
    seal: bool
    char_px: int
    light: float
    noise: float
    blur: float
    jpeg: int | None


def random_spec(n: int, rng: np.random.Generator) -> PageSpec:
    """A page of ``n`` characters with every nuisance drawn at random. Grid pages
    (square cells, so no spacing tells the order) are set in columns, as copybooks are."""
    grid = bool(rng.random() < 0.3)
    return PageSpec(
        n=n,
        layout="columns" if grid else str(rng.choice(["columns", "rows"])),
        rubbing=bool(rng.random() < 0.5),
        grid=grid,
        seal=bool(rng.random() < 0.3),
        char_px=int(rng.integers(48, 129)),
        light=float(rng.uniform(0.0, 0.4)),
        noise=float(rng.uniform(2.0, 9.0)),
        blur=float(rng.choice([0.0, rng.uniform(0.4, 1.2)])),
        jpeg=int(rng.integers(35, 91)) if rng.random() < 0.7 else None,
    )


def _ink_alpha(char: Image.Image, size: int) -> np.ndarray:
    """Character image -> float32 size×size ink coverage in [0, 1] (white = 0)."""
    grey = char.convert("L").resize((size, size), Image.Resampling.BICUBIC)
    return np.clip((255.0 - np.asarray(grey, np.float32)) / 255.0, 0.0, 1.0)


def _seal(size: int, rng: np.random.Generator) -> np.ndarray:
    """bool size×size mask of a square seal: a red frame with blocky strokes inside."""
    m = np.zeros((size, size), np.uint8)
    t = max(2, size // 12)
    cv2.rectangle(m, (0, 0), (size - 1, size - 1), 1, t)
    for _ in range(6):
        x0, y0 = rng.integers(t * 2, size - t * 2, 2)
        horizontal = rng.random() < 0.5
        length = int(rng.integers(size // 4, size // 2))
        x1, y1 = (min(size - 2 * t, x0 + length), y0) if horizontal else (x0, min(size - 2 * t, y0 + length))
        cv2.line(m, (int(x0), int(y0)), (int(x1), int(y1)), 1, t)
    return m.astype(bool)


def compose_page(chars: list[Image.Image], spec: PageSpec, rng: np.random.Generator) -> tuple[Image.Image, list[Box]]:
    """An RGB page of ``chars`` laid out per ``spec`` and the true character boxes in
    reading order (pixels). ``len(chars)`` must equal ``spec.n``."""
    if len(chars) != spec.n or spec.n < 1:
        raise ValueError(f"spec wants {spec.n} characters, got {len(chars)}")
    c = spec.char_px
    n_lines = max(1, round(math.sqrt(spec.n)))
    per_line = math.ceil(spec.n / n_lines)
    along = int(c * (1.4 if spec.grid else rng.uniform(1.05, 1.35)))
    across = int(1.4 * c if spec.grid else along * rng.uniform(1.25, 1.5))
    margin = int(c * rng.uniform(0.6, 1.2))
    seal_px = int(c * rng.uniform(0.6, 0.9))
    extra = seal_px + margin // 2 if spec.seal else 0
    # page size in (line direction, along direction); columns: lines run right to left
    n_across, n_along = n_lines, per_line
    span_across, span_along = 2 * margin + n_across * across + extra, 2 * margin + n_along * along
    width, height = (span_across, span_along) if spec.layout == "columns" else (span_along, span_across)
    alpha = np.zeros((height, width), np.float32)
    boxes = []
    for i, char in enumerate(chars):
        line, pos = divmod(i, per_line)
        a0 = margin + pos * along + (along - c) // 2 + int(rng.integers(-c // 20, c // 20 + 1))
        l0 = margin + line * across + (across - c) // 2 + int(rng.integers(-c // 20, c // 20 + 1))
        if spec.layout == "columns":
            x0, y0 = width - extra - l0 - c, a0
        else:
            x0, y0 = a0, l0
        ink = _ink_alpha(char, c)
        region = alpha[y0:y0 + c, x0:x0 + c]
        np.maximum(region, ink, out=region)
        ys, xs = np.nonzero(ink >= INK_ALPHA)
        if len(xs):
            boxes.append(Box(x0 + int(xs.min()), y0 + int(ys.min()), int(xs.max() - xs.min() + 1),
                             int(ys.max() - ys.min() + 1)))
    grid = np.zeros_like(alpha, dtype=bool)
    if spec.grid:
        t = max(1, c // 60)
        lines_x = [width - extra - margin - k * across for k in range(n_across + 1)] if spec.layout == "columns" \
            else [margin + k * along for k in range(n_along + 1)]
        lines_y = [margin + k * along for k in range(n_along + 1)] if spec.layout == "columns" \
            else [margin + k * across for k in range(n_across + 1)]
        for x in lines_x:
            grid[min(lines_y):max(lines_y) + 1, max(0, x - t // 2):x - t // 2 + t] = True
        for y in lines_y:
            grid[max(0, y - t // 2):y - t // 2 + t, min(lines_x):max(lines_x) + 1] = True
    return _render(alpha, grid, spec, seal_px, margin, rng), boxes


def _render(alpha: np.ndarray, grid: np.ndarray, spec: PageSpec, seal_px: int, margin: int,
            rng: np.random.Generator) -> Image.Image:
    """Ink coverage + grid -> RGB page with paper, seal, light, texture, blur, JPEG."""
    h, w = alpha.shape
    if spec.rubbing:
        ground, stroke = rng.uniform(25, 70), rng.uniform(180, 235)
        tint = np.array([1.0, 1.0, 1.0], np.float32)
    else:
        ground, stroke = rng.uniform(200, 245), rng.uniform(10, 60)
        tint = np.array([1.0, 0.97, 0.90], np.float32)
    grey = ground + alpha * (stroke - ground)
    grey = np.where(grid, ground + 0.5 * (stroke - ground), grey)
    # stains: a few soft blobs up to 20 % darker (lighter on a rubbing)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(int(rng.integers(0, 4))):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.1, 0.3) * max(h, w)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)) * rng.uniform(0.05, 0.2)
        grey = grey * (1 + blob) if spec.rubbing else grey * (1 - blob)
    theta = rng.uniform(0, 2 * np.pi)
    ramp = (xx * np.cos(theta) + yy * np.sin(theta))
    ramp = (ramp - ramp.min()) / max(1e-6, float(np.ptp(ramp)))
    grey = grey * (1 - spec.light * ramp) + rng.normal(0, spec.noise, grey.shape)
    rgb = np.clip(grey[..., None] * tint, 0, 255)
    if spec.seal:
        seal = _seal(seal_px, rng)
        y0 = h - margin // 2 - seal_px if h > seal_px + margin // 2 else 0
        x0 = margin // 4
        red = np.array([rng.uniform(180, 220), rng.uniform(30, 60), rng.uniform(30, 60)], np.float32)
        rgb[y0:y0 + seal_px, x0:x0 + seal_px][seal] = red
    if spec.blur > 0:
        rgb = cv2.GaussianBlur(rgb, (0, 0), spec.blur)
    page = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")
    if spec.jpeg is not None:
        buf = io.BytesIO()
        page.save(buf, "JPEG", quality=spec.jpeg)
        page = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return page
