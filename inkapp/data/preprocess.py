"""Deterministic preprocessing shared by training, evaluation, prediction and the app.

Images are never squashed: :func:`letterbox` scales the longer side to ``size`` and
pads the shorter one symmetrically with a paper-white fill, keeping the aspect ratio
of scrolls and fans (1:4 and beyond). The padding fill is white because the art sits
on paper; calligraphy models see a grayscale image replicated to three channels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

PAD_FILL = 255  # paper white, in every channel


@dataclass(frozen=True)
class Letterbox:
    """Where the image sits inside the square canvas (pixels of the canvas)."""

    size: int
    left: int
    top: int
    width: int
    height: int


def letterbox(img: Image.Image, size: int) -> tuple[Image.Image, Letterbox]:
    """Scale the longer side to ``size`` (bicubic, antialiased) and pad to ``size``×``size``.

    Returns the canvas and the placement of the image inside it.
    """
    w, h = img.size
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    if img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    resized = img.resize((nw, nh), Image.Resampling.BICUBIC, reducing_gap=3.0)
    canvas = Image.new(img.mode, (size, size), PAD_FILL if img.mode == "L" else (PAD_FILL,) * 3)
    left, top = (size - nw) // 2, (size - nh) // 2
    canvas.paste(resized, (left, top))
    return canvas, Letterbox(size, left, top, nw, nh)


def to_uint8_tensor(img: Image.Image, grayscale: bool) -> torch.Tensor:
    """PIL image -> uint8 tensor 3×H×W (grayscale images replicated to 3 channels)."""
    img = img.convert("L").convert("RGB") if grayscale else img.convert("RGB")
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).contiguous()


def normalise(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 N×3×H×W or 3×H×W -> float32, scaled to [0, 1] then (x − mean) / std per channel."""
    x = x.float().div_(255)
    shape = (-1, 1, 1)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(shape)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(shape)
    return (x - m) / s


@dataclass(frozen=True)
class Preprocessor:
    """Image -> normalised model input 3×size×size (float32), as recorded in a model card."""

    size: int
    grayscale: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def from_card(cls, card: dict) -> "Preprocessor":
        p = card["preprocessing"]
        return cls(int(p["image_size"]), bool(p["grayscale"]), tuple(p["mean"]), tuple(p["std"]))

    def to_card(self) -> dict:
        return {"image_size": self.size, "grayscale": self.grayscale, "mean": list(self.mean),
                "std": list(self.std), "resize": "letterbox", "pad_fill": PAD_FILL}

    def canvas(self, img: Image.Image) -> tuple[torch.Tensor, Letterbox]:
        """uint8 3×size×size letterboxed canvas and the image's placement in it."""
        canvas, box = letterbox(img, self.size)
        return to_uint8_tensor(canvas, self.grayscale), box

    def __call__(self, img: Image.Image) -> torch.Tensor:
        """PIL image -> float32 3×size×size."""
        return normalise(self.canvas(img)[0], self.mean, self.std)
