"""BamNet (paper B): backbone trunk -> attention on the last feature map -> head.

* Backbone: paper B uses EfficientNet-B2 (8×8×1408 at 260 px); only the Lite family has
  offline ImageNet weights here, so the default is ``tf_efficientnet_lite2`` (native
  260 px, 1280-channel last map). Any timm model name works with ``pretrained="hub"``.
* Input: grayscale replicated to three channels — an N×1×H×W tensor is expanded
  in :meth:`BamNet.forward`; preprocessing does the same for images.
* Attention (``attention``): ``none``, ``channel`` / ``spatial`` (one BAM branch),
  ``se``, ``eca``, ``cbam`` (timm.layers), ``bam`` (both branches; see :mod:`.bam`).
* Head: global average pooling -> dropout 0.3 -> FC 256 -> ReLU -> FC num_classes.
  (The paper lists "FC 256, FC classes"; we put a ReLU between them, since two
  stacked linear layers without one collapse into a single linear map.)
"""
from __future__ import annotations

from typing import ClassVar

import torch
from timm.layers import EcaModule, SEModule
from timm.layers.cbam import CbamModule
from torch import nn

from ..explain.contract import MapInfo
from .backbones import Pretrained, create_trunk
from .registry import register_arch, register_variant
from .bam import BAM

ATTENTIONS = ("none", "channel", "spatial", "se", "eca", "cbam", "bam")


class _TimmAttention(nn.Module):
    """Adapter giving timm's SE/ECA/CBAM the BAM interface (output, maps={})."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.module(x), {}


def make_attention(kind: str, channels: int, reduction: int = 16) -> nn.Module | None:
    """The attention block for ``kind`` (one of :data:`ATTENTIONS`), or None for ``none``."""
    if kind == "none":
        return None
    if kind == "bam":
        return BAM(channels, reduction)
    if kind == "channel":
        return BAM(channels, reduction, use_spatial=False)
    if kind == "spatial":
        return BAM(channels, reduction, use_channel=False)
    if kind == "se":
        return _TimmAttention(SEModule(channels, rd_ratio=1 / reduction))
    if kind == "eca":
        return _TimmAttention(EcaModule(channels))
    if kind == "cbam":
        return _TimmAttention(CbamModule(channels, rd_ratio=1 / reduction))
    raise ValueError(f"unknown attention '{kind}'; choose from {', '.join(ATTENTIONS)}")


class BamNet(nn.Module):
    """N×3×H×W (or N×1×H×W) -> logits N×num_classes."""

    attention_info: ClassVar[tuple[MapInfo, ...]] = (
        MapInfo("bam_spatial", "spatial", ("Where the attention module looks", "注意力模块关注的位置"),
                ("Spatial branch M_s of the bottleneck attention module (paper B's BAM) on the last feature map: "
                 "bright areas are the strokes that weigh most.",
                 "论文B瓶颈注意力模块(BAM)空间分支M_s：亮处是权重最高的笔画。")),
        MapInfo("bam_attention", "spatial", ("Combined attention", "综合注意力"),
                ("BAM's full attention 1 + σ(M_c + M_s), averaged over channels: where and how strongly the "
                 "features are amplified.",
                 "BAM完整注意力1 + σ(M_c + M_s)的通道平均：特征被放大的位置与强度。")),
        MapInfo("bam_channel", "channel", ("Channel attention", "通道注意力"),
                ("BAM's channel branch σ(M_c): the feature channels emphasised for this image.",
                 "BAM通道分支σ(M_c)：对这幅作品着重使用的特征通道。")),
    )

    def __init__(
        self,
        num_classes: int,
        backbone: str = "tf_efficientnet_lite2",
        pretrained: Pretrained = "offline",
        attention: str = "bam",
        reduction: int = 16,
        hidden: int = 256,
        drop_rate: float = 0.3,
    ) -> None:
        super().__init__()
        self.trunk = create_trunk(backbone, pretrained)
        channels = self.trunk.num_features
        self.attention_kind = attention
        self.attention = make_attention(attention, channels, reduction)
        self.num_features = channels
        self.head = nn.Sequential(
            nn.Dropout(drop_rate), nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes)
        )

    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        f = self.trunk.forward_features(x)
        maps: dict[str, torch.Tensor] = {}
        if self.attention is not None:
            f, maps = self.attention(f)
        return f.mean((2, 3)), maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self._features(x)[0])

    def forward_with_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        feat, maps = self._features(x)
        return self.head(feat), maps

    def forward_embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and the L2-normalised pooled feature (N×C) as the embedding."""
        feat, _ = self._features(x)
        return self.head(feat), nn.functional.normalize(feat, dim=1)

    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """For BAM variants: ``bam_spatial`` N×1×H/32×W/32 and ``bam_attention`` (same
        shape), ``bam_channel`` N×C, all in [0, 1]; absent branches are absent.
        SE/ECA/CBAM/none return an empty dict."""
        return self.forward_with_attention(x)[1]

    def cam_target_layer(self) -> nn.Module:
        """The attention block's output if it is BAM, else the trunk's last activation."""
        if isinstance(self.attention, BAM):
            return self.attention.out
        return self.trunk.bn2 if hasattr(self.trunk, "bn2") else list(self.trunk.children())[-2]


register_arch("bamnet", BamNet, {"backbone": "tf_efficientnet_lite2", "image_size": 260, "grayscale": True,
                                 "description": "BamNet (paper B): EfficientNet + BAM before pooling"})
for _att in ATTENTIONS:
    register_variant(f"bamnet-{_att}", "bamnet", f"paper B ablation: attention = {_att}", attention=_att)
