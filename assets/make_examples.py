"""Render the example images in assets/examples (ours to ship: generated here).

    python assets/make_examples.py

* ``ink-landscape-scroll.jpg`` — a procedural ink-wash landscape on a 1:3 hanging scroll
  (layered mountain ridges by midpoint displacement, mist, a red seal);
* ``ink-handscroll.jpg`` — the same kind of landscape on a 9:1 handscroll (3600×400 px),
  ridges with several peaks along its length;
* ``kaishu-page.png`` — regular-script characters written in AR PL UKai (Arphic Public
  License, which allows rendering output to be used freely) on paper, with grid lines;
* ``kaishu-rubbing.png`` — the same characters as a stele rubbing: white on inked black
  with paper texture.

The calligraphy examples need Debian's ``fonts-arphic-ukai`` (``apt-get install fonts-arphic-ukai``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

OUT = Path(__file__).parent / "examples"
FONT = "/usr/share/fonts/truetype/arphic/ukai.ttc"
TEXT = "永和九年歲在癸丑暮春之初會于會稽山陰之蘭亭"


def ridge(rng: np.random.Generator, width: int, rough: float, peaks: int = 2) -> np.ndarray:
    """A ridge line: ``peaks`` random heights refined by midpoint displacement, ``width`` values."""
    n = 1
    pts = rng.uniform(0.3, 0.7, peaks)
    while n < width:
        mid = (pts[:-1] + pts[1:]) / 2 + rng.normal(0, rough, len(pts) - 1)
        out = np.empty(len(pts) * 2 - 1)
        out[0::2], out[1::2] = pts, mid
        pts, n, rough = out, len(out), rough * 0.55
    return np.interp(np.linspace(0, len(pts) - 1, width), np.arange(len(pts)), pts)


def landscape(w: int = 600, h: int = 1800, seed: int = 3, peaks: int = 2, relief: float = 0.25) -> Image.Image:
    rng = np.random.default_rng(seed)
    paper = np.full((h, w), 236.0) + rng.normal(0, 3, (h, w))
    ys = np.arange(h)[:, None]
    for i, (base, tone) in enumerate([(0.35, 170), (0.5, 120), (0.68, 70), (0.85, 30)]):
        top = (base - relief * ridge(rng, w, 0.25, peaks)) * h
        inside = ys > top[None, :]
        depth = np.clip((ys - top[None, :]) / (0.25 * h), 0, 1)
        ink = tone + (236 - tone) * depth ** 0.6  # dark ridge lines fading into mist
        paper = np.where(inside, np.minimum(paper, ink), paper)
    img = Image.fromarray(np.clip(paper, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.2)).convert("RGB")
    d = ImageDraw.Draw(img)
    for _ in range(40):  # pines: short ink strokes on the near ridge
        x, y = rng.integers(20, w - 20), rng.integers(int(0.72 * h), int(0.9 * h))
        d.line([(x, y), (x + rng.integers(-4, 5), y - rng.integers(15, 40))], fill=(25, 25, 25), width=3)
    d.rectangle([w - 90, 120, w - 40, 170], fill=(178, 34, 34))  # seal
    d.rectangle([w - 84, 126, w - 46, 164], outline=(245, 220, 210), width=3)
    return img


def calligraphy(rubbing: bool, cols: int = 4, rows: int = 6, cell: int = 110) -> Image.Image:
    font = ImageFont.truetype(FONT, int(cell * 0.8))
    w, h = cols * cell + 60, rows * cell + 60
    bg, fg = ((28, 28, 30), (225, 222, 215)) if rubbing else ((238, 230, 210), (20, 20, 20))
    img = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(img)
    for c in range(cols):  # columns right to left, top to bottom
        x = w - 30 - (c + 1) * cell
        if not rubbing:
            d.line([(x, 30), (x, h - 30)], fill=(160, 60, 50), width=1)
        for r in range(rows):
            ch = TEXT[(c * rows + r) % len(TEXT)]
            d.text((x + cell * 0.1, 30 + r * cell + cell * 0.05), ch, font=font, fill=fg)
    arr = np.asarray(img).astype(np.float32)
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 14 if rubbing else 4, arr.shape[:2])[..., None]
    return Image.fromarray(np.clip(arr + noise, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.6))


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    landscape().save(OUT / "ink-landscape-scroll.jpg", quality=88)
    landscape(3600, 400, seed=7, peaks=12, relief=0.45).save(OUT / "ink-handscroll.jpg", quality=88)
    calligraphy(False).save(OUT / "kaishu-page.png")
    calligraphy(True).convert("L").save(OUT / "kaishu-rubbing.png")
    print("\n".join(str(p) for p in sorted(OUT.iterdir())))


if __name__ == "__main__":
    main()
