"""The one scoring path: letterboxed uint8 canvases -> class probabilities, as the model
card says.

``evaluate``, ``ship``, candidate comparison, training's validation and test figures,
:class:`inkapp.inference.Predictor` (the app, ``predict``, ``scan``) and the bench all
call :func:`score_canvases`, so a card's figures are what the app reproduces.

What the card decides (``card["preprocessing"]``): the normalisation ``mean`` / ``std``
and ``tta_hflip`` — when true, the probabilities of the canvas and of its horizontal
mirror are averaged (the softmax of each view is taken first, then the mean).
Numerics: float32 on CPU; on CUDA the forward pass runs under float16 autocast and the
softmax in float32. Inputs are fed channels-last (1.7× faster on CPU, same outputs up to
float rounding).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .data.dataset import decode_canvases
from .data.preprocess import Preprocessor, normalise


@dataclass(frozen=True)
class ScoringSpec:
    """How a model's canvases are scored: normalisation and test-time views."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    tta_hflip: bool = False

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> "ScoringSpec":
        p = card["preprocessing"]
        return cls(tuple(p["mean"]), tuple(p["std"]), bool(p.get("tta_hflip", False)))


def score_canvases(model: nn.Module, canvases: torch.Tensor, spec: ScoringSpec,
                   device: torch.device | None = None, batch_size: int = 32) -> torch.Tensor:
    """uint8 N×3×S×S canvases -> N×K float32 class probabilities on the CPU.

    ``model`` must be in eval mode on ``device`` (default: the device of its first
    parameter). Runs under ``torch.inference_mode``; thread-safe for a model that is
    not being trained. ``batch_size`` canvases go through the model at a time.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = device if device is not None else next(model.parameters()).device
    out: list[torch.Tensor] = []
    with torch.inference_mode(), torch.autocast(device.type, enabled=device.type == "cuda"):
        for start in range(0, len(canvases), batch_size):
            x = normalise(canvases[start:start + batch_size].to(device, non_blocking=True), spec.mean, spec.std)
            x = x.contiguous(memory_format=torch.channels_last)
            p = torch.softmax(model(x).float(), dim=1)
            if spec.tta_hflip:
                p = (p + torch.softmax(model(x.flip(-1)).float(), dim=1)) / 2
            out.append(p.cpu())
    if not out:
        return torch.zeros((0, 0))
    return torch.cat(out)


def score_files(model: nn.Module, card: dict[str, Any], paths: Sequence[str | Path],
                device: torch.device | None = None) -> tuple[np.ndarray, list[str]]:
    """Decode and letterbox ``paths`` as the card says, then :func:`score_canvases`.

    Returns ``(probabilities, errors)``: an M×K array for the M decodable files, in the
    order of ``paths``, and one message per path ("" for a file that was scored).
    """
    pre = Preprocessor.from_card(card)
    canvases, errors = decode_canvases([str(p) for p in paths], pre.size, pre.grayscale, progress=False)
    keep = [i for i, err in enumerate(errors) if not err]
    k = len(card["classes"])
    if not keep:
        return np.zeros((0, k), dtype=np.float32), list(errors)
    probs = score_canvases(model.eval(), canvases[keep], ScoringSpec.from_card(card), device).numpy()
    return probs, list(errors)
