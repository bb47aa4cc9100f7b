"""A small generated stand-in for ``../shared/data`` so the tests that need labelled
images always run.

:func:`write_imagefolder` draws an ImageFolder tree (``<root>/<class>/<file>``) whose
classes differ in what a small CNN can learn in one or two epochs: the strokes of class
``k`` of ``K`` lie at ``180° · k / K`` (± 12°). Positions, lengths and widths are random
per image, so no two images are perceptual-hash near-duplicates and a grouped split
has every image in its own group. Calligraphy tasks get grayscale PNG (black ink on
white paper, as the calligrapher crops), painting tasks colour JPEG.

The session fixture :func:`labelled_data` is the real ``../shared/data`` when it is
there and otherwise one generated tree per task of :data:`inkapp.tasks.TASKS`
(:data:`PER_CLASS` images per class); tests read ``labelled_data / <task>`` either way.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from inkapp.tasks import TASKS
from inkapp.tasks import get as get_task

#: The real labelled images, when the checkout sits beside them.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PER_CLASS = 12
#: (width, height) of the generated images per domain, in pixels.
SIZES = {"calligraphy": (64, 64), "painting": (96, 72)}


def stroke_image(class_index: int, n_classes: int, seed: int, size: tuple[int, int], grayscale: bool) -> Image.Image:
    """One image of class ``class_index``: 6-10 strokes at the class's angle (see module doc)."""
    rng = np.random.default_rng(seed)
    w, h = size
    paper = 255 if grayscale else tuple(int(v) for v in rng.integers(200, 256, 3))
    image = Image.new("L" if grayscale else "RGB", size, paper)
    draw = ImageDraw.Draw(image)
    base = math.pi * class_index / n_classes
    for _ in range(int(rng.integers(6, 11))):
        angle = base + rng.uniform(-0.2, 0.2)
        cx, cy = rng.uniform(0.15 * w, 0.85 * w), rng.uniform(0.15 * h, 0.85 * h)
        half = rng.uniform(0.15, 0.4) * min(w, h)
        dx, dy = half * math.cos(angle), half * math.sin(angle)
        ink = int(rng.integers(0, 60)) if grayscale else tuple(int(v) for v in rng.integers(0, 120, 3))
        draw.line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=ink, width=int(rng.integers(2, 6)))
    return image


def write_imagefolder(root: Path, classes: list[str], per_class: int, size: tuple[int, int], grayscale: bool,
                      seed: int = 0) -> Path:
    """Write ``per_class`` generated images per class under ``root/<class>/``; return ``root``."""
    for k, cls in enumerate(classes):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = stroke_image(k, len(classes), seed * 100_003 + k * 1009 + i, size, grayscale)
            if grayscale:
                image.save(root / cls / f"{cls}-{i:03d}.png")
            else:
                image.save(root / cls / f"{cls}-{i:03d}.jpg", quality=90)
    return root


def generated_data(root: Path, per_class: int = PER_CLASS) -> Path:
    """One generated ImageFolder per task under ``root/<task>/`` (class keys from the task registry)."""
    for name in TASKS:
        task = get_task(name)
        write_imagefolder(root / name, list(task.classes), per_class, SIZES[task.domain],
                          grayscale=task.domain == "calligraphy", seed=TASKS.index(name))
    return root


@pytest.fixture(scope="session")
def labelled_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``../shared/data`` when present, else a generated tree with the same layout."""
    if SHARED_DATA.is_dir():
        return SHARED_DATA
    return generated_data(tmp_path_factory.mktemp("generated-data"))
