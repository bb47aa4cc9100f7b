"""Found characters -> model inputs at the calligrapher model's training scale.

The training characters are 64×64 grey PNGs, dark strokes on pure white (255), the
ink's long side filling about two thirds of the square (median 44 px of 64 over a
quarter of the training split). The fill :data:`INK_FILL` = 0.65 was chosen on the
VALIDATION characters, re-framed through this very path: accuracy 0.888 at 0.65,
0.880 at 0.60, 0.871 at 0.69, 0.869 at 0.72 — against 0.973 for the untouched
validation images: the shipped model has learnt the framing of its training scans,
so any re-framed character (every character found on a page) loses ~9 points.

A found character is cut from the flattened page (ink dark, paper ≈ 255), every pixel
lighter than the page's ink threshold is set to white (paper texture gone, like the
clean training scans), the ink is stretched so its darkest 2 % reach 0, and the cut
is centred on a white square whose side is the box's long side / INK_FILL, then
shrunk to 64×64 (area averaging). The predictor then letterboxes it to its input
size exactly as in training.
"""
from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from inkapp.pages.ink import InkPage
from inkapp.pages.layout import Box

TRAIN_SIDE = 64  # px, side of the training characters
INK_FILL = 0.65  # long side of the ink / side of the square (chosen on validation characters)


def character_crop(page: InkPage, box: Box) -> Image.Image:
    """64×64 ``L`` image of the character in ``box`` (working-copy pixels)."""
    cut = page.flat[box.y:box.y + box.h, box.x:box.x + box.w].astype(np.float32)
    ink = cut < page.threshold
    cut[~ink] = 255.0
    if ink.any():
        dark = float(np.percentile(cut[ink], 2))
        cut = np.clip((cut - dark) * 255.0 / max(1.0, 255.0 - dark), 0, 255)
    side = max(box.w, box.h) / INK_FILL
    scale = TRAIN_SIDE / side
    w, h = max(1, round(box.w * scale)), max(1, round(box.h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    small = np.clip(cv2.resize(cut, (w, h), interpolation=interp), 0, 255).astype(np.uint8)
    square = np.full((TRAIN_SIDE, TRAIN_SIDE), 255, np.uint8)
    top, left = (TRAIN_SIDE - h) // 2, (TRAIN_SIDE - w) // 2
    square[top:top + h, left:left + w] = small
    return Image.fromarray(square, "L")
