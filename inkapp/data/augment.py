"""Training augmentations on uint8 canvases 3×S×S (torchvision.transforms.v2).

* ``calligraphy`` — paper B's recipe: rotation ±10°, translation ±10 %, scale ±10 %,
  brightness and contrast ±30 %, Gaussian blur (paper texture), elastic transform
  α = 50, σ = 5 (paper bending), random erasing p = 0.2. No flips: mirrored
  characters are not characters. Blur and elastic are applied with p = 0.3 each
  (the paper gives no probability).
* ``painting`` — horizontal flip, mild affine (±5°, translation ±5 %, scale 0.9–1.15),
  colour jitter (brightness/contrast/saturation ±20 %, hue ±0.02), random erasing p = 0.1.
* ``none`` — identity.

Fill colour for geometric transforms is paper white (255), matching the letterbox.
"""
from __future__ import annotations

from typing import Callable

import torch
from torchvision.transforms import v2

FILL = 255
RECIPES = ("calligraphy", "painting", "none")


def build_augment(recipe: str) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """uint8 3×S×S -> uint8 3×S×S augmentation for ``recipe`` (None for ``none``)."""
    if recipe == "none":
        return None
    if recipe == "calligraphy":
        return v2.Compose([
            v2.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1), fill=FILL),
            v2.ColorJitter(brightness=0.3, contrast=0.3),
            v2.RandomApply([v2.GaussianBlur(kernel_size=5, sigma=(0.1, 1.5))], p=0.3),
            v2.RandomApply([v2.ElasticTransform(alpha=50.0, sigma=5.0, fill=FILL)], p=0.3),
            v2.RandomErasing(p=0.2, value=FILL),
        ])
    if recipe == "painting":
        return v2.Compose([
            v2.RandomHorizontalFlip(),
            v2.RandomAffine(degrees=5, translate=(0.05, 0.05), scale=(0.9, 1.15), fill=FILL),
            v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02),
            v2.RandomErasing(p=0.1, value=FILL),
        ])
    raise ValueError(f"unknown augmentation recipe '{recipe}'; choose from {', '.join(RECIPES)}")
