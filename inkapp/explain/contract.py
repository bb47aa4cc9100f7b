"""What a model hands the explanation layer: its attention maps, declared with captions,
and its Grad-CAM target layer.

Every model family implements :class:`Explainable`. ``attention_info`` lists the maps
``forward_with_attention`` may return (a switched-off module's maps are simply absent),
each with what a curator or researcher is told about it; nothing downstream guesses a
map's meaning from its name or shape.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol, runtime_checkable

import torch
from torch import nn

MapKind = Literal["spatial", "gate", "channel"]


@dataclass(frozen=True)
class MapInfo:
    """One attention output of a model.

    ``kind``: ``spatial`` — N×1×h×w in [0, 1], shown as an overlay; ``gate`` — N×1×h×w
    mixing weights, shown as their image mean; ``channel`` — N×C weights in [0, 1].
    ``caption`` / ``meaning``: (English, Chinese) title and one sentence of what it means.
    """

    name: str
    kind: MapKind
    caption: tuple[str, str]
    meaning: tuple[str, str]


@runtime_checkable
class Explainable(Protocol):
    """The explanation contract of an inkapp model."""

    attention_info: ClassVar[tuple[MapInfo, ...]]

    def forward_with_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """N×3×S×S -> (logits N×K, the declared maps of the same pass by name)."""
        ...

    def cam_target_layer(self) -> nn.Module:
        """The module whose output Grad-CAM differentiates."""
        ...


def map_infos(model: nn.Module) -> dict[str, MapInfo]:
    """``model``'s declared attention maps by name (empty for a model without attention)."""
    return {info.name: info for info in getattr(model, "attention_info", ())}
