"""Training augmentations on uint8 canvases 3×S×S (torchvision.transforms.v2).

* ``calligraphy`` — paper B's recipe: rotation ±10°, translation ±10 %, scale ±10 %,
  brightness and contrast ±30 %, Gaussian blur (paper texture), elastic transform
  α = 50, σ = 5 (paper bending), random erasing p = 0.2. No flips: mirrored
  characters are not characters. Blur and elastic are applied with p = 0.3 each
  (the paper gives no probability). The elastic transform is :class:`FastElastic`, which
  draws the displacement field on a 4× coarser grid (torchvision's full-resolution
  version costs 120 ms per 128 px image on one core, 600 ms at 256 px).
* ``glyph`` — the calligraphy recipe at half strength and without the elastic
  transform, for single-character crops whose stroke shapes are the very signal that
  tells one master from another: rotation ±5°, translation ±5 %, scale ±5 %,
  brightness and contrast ±30 %, Gaussian blur p = 0.3, random erasing p = 0.1.
* ``painting`` — horizontal flip, mild affine (±5°, translation ±5 %, scale 0.9–1.15),
  colour jitter (brightness/contrast/saturation ±20 %; no hue shift: it costs 20 ms an
  image and ink colours carry no hue to spare), random erasing p = 0.1.
* ``none`` — identity.

Fill colour for geometric transforms is paper white (255), matching the letterbox.

:class:`ContentCrop` is the training-only "tiled view": a window of the full-resolution
canvas, so the model learns from strokes at the resolution it is evaluated at (the whole
canvas, in one fully convolutional forward) instead of from a page shrunk to the window.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

FILL = 255
RECIPES = ("calligraphy", "glyph", "painting", "none")


class FastElastic(torch.nn.Module):
    """Elastic deformation of a uint8 3×H×W image: each pixel moves by ``alpha`` × a
    Gaussian-smoothed (``sigma`` px) uniform noise field, as torchvision's
    ElasticTransform, with the field drawn and smoothed on a grid ``factor``× coarser
    and upsampled bilinearly. The smoothed noise is scaled by 1/``factor`` so its
    amplitude matches the full-resolution field's (smoothing n-times fewer samples
    over σ/n leaves n-times more variance in amplitude). Out-of-image pixels get ``fill``."""

    def __init__(self, alpha: float = 50.0, sigma: float = 5.0, fill: int = FILL, factor: int = 4) -> None:
        super().__init__()
        self.alpha, self.sigma, self.fill, self.factor = alpha, sigma, fill, factor

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        _, h, w = img.shape
        gh, gw = max(2, h // self.factor), max(2, w // self.factor)
        s = self.sigma / self.factor
        k = 2 * int(2 * s + 0.5) + 1
        noise = TF.gaussian_blur(torch.rand(2, 1, gh, gw) * 2 - 1, [k, k], [s, s])
        disp = F.interpolate(noise, size=(h, w), mode="bilinear", align_corners=False)[:, 0] * (self.alpha / self.factor)
        ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
        gx = (xs + disp[0]) * 2 / max(w - 1, 1) - 1
        gy = (ys + disp[1]) * 2 / max(h - 1, 1) - 1
        grid = torch.stack([gx, gy], -1).unsqueeze(0)
        x = img.float().unsqueeze(0) - self.fill  # so zero padding means "fill"
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True) + self.fill
        return out[0].round_().clamp_(0, 255).to(torch.uint8)


class ContentCrop(torch.nn.Module):
    """A random ``size``×``size`` window of a uint8 3×S×S canvas whose centre lies inside
    the image content, not in the letterbox padding.

    Content is every pixel that is not pure paper white (255) in some channel, so the
    window never falls wholly on the padding of a long scroll; the window is clamped to
    the canvas. A canvas no larger than ``size`` is returned unchanged.
    """

    def __init__(self, size: int, fill: int = FILL) -> None:
        super().__init__()
        self.size, self.fill = size, fill

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        _, h, w = img.shape
        s = self.size
        if h <= s and w <= s:
            return img
        ink = (img != self.fill).any(0)
        rows, cols = torch.nonzero(ink.any(1)).flatten(), torch.nonzero(ink.any(0)).flatten()
        if len(rows) == 0:
            rows, cols = torch.tensor([0, h - 1]), torch.tensor([0, w - 1])
        cy = int(torch.randint(int(rows[0]), int(rows[-1]) + 1, ()))
        cx = int(torch.randint(int(cols[0]), int(cols[-1]) + 1, ()))
        top = min(max(cy - s // 2, 0), max(h - s, 0))
        left = min(max(cx - s // 2, 0), max(w - s, 0))
        return img[:, top:top + s, left:left + s]


def build_augment(recipe: str, crop: int = 0) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """uint8 3×S×S -> uint8 augmentation for ``recipe`` (None for ``none`` without a crop).

    With ``crop`` > 0 a :class:`ContentCrop` of that side comes first (output 3×crop×crop
    when S > crop), so the recipe's transforms run on the smaller window."""
    steps = [ContentCrop(crop)] if crop > 0 else []
    recipe_fn = _recipe(recipe)
    if recipe_fn is not None:
        steps.append(recipe_fn)
    return v2.Compose(steps) if steps else None


def _recipe(recipe: str) -> Callable[[torch.Tensor], torch.Tensor] | None:
    if recipe == "none":
        return None
    if recipe == "calligraphy":
        return v2.Compose([
            v2.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1), fill=FILL),
            v2.ColorJitter(brightness=0.3, contrast=0.3),
            v2.RandomApply([v2.GaussianBlur(kernel_size=5, sigma=(0.1, 1.5))], p=0.3),
            v2.RandomApply([FastElastic(alpha=50.0, sigma=5.0)], p=0.3),
            v2.RandomErasing(p=0.2, value=FILL),
        ])
    if recipe == "glyph":
        return v2.Compose([
            v2.RandomAffine(degrees=5, translate=(0.05, 0.05), scale=(0.95, 1.05), fill=FILL),
            v2.ColorJitter(brightness=0.3, contrast=0.3),
            v2.RandomApply([v2.GaussianBlur(kernel_size=5, sigma=(0.1, 1.5))], p=0.3),
            v2.RandomErasing(p=0.1, value=FILL),
        ])
    if recipe == "painting":
        return v2.Compose([
            v2.RandomHorizontalFlip(),
            v2.RandomAffine(degrees=5, translate=(0.05, 0.05), scale=(0.9, 1.15), fill=FILL),
            v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
            v2.RandomErasing(p=0.1, value=FILL),
        ])
    raise ValueError(f"unknown augmentation recipe '{recipe}'; choose from {', '.join(RECIPES)}")
