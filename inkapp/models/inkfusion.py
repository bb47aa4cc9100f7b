"""InkFusionNet (paper A): MS-HCM, DPAFM and cross-layer gated connections on a
timm ``features_only`` backbone (strides 4, 8, 16, 32).

Interpretations of the paper (see ``../shared/SPEC.md``), written down here and in
the model card:

* **Where the modules sit.** The paper's F0 is the stride-4 feature map. We project
  the backbone's stride-4 map with a 1×1 conv to ``ms_channels`` (default 48: the
  paper's grouped 1×1 conv with groups = 3 needs a channel count divisible by 3, and
  its 64 is not), run MS-HCM then DPAFM on it as a side path, and feed the result
  into the deep levels through the cross-layer connections. The backbone's own
  stages are left untouched, so ImageNet weights stay valid.
* **MS-HCM** has no residual connection (none is printed); the grouped 1×1 conv
  therefore gives each output group one dilation branch.
* **DPAFM spatial path** is coordinate attention: pooled H- and W-vectors are
  concatenated along the spatial axis, a 3×3 conv (padding 1) reduces channels to
  ``max(C/r, 8)``, BN + ReLU, then two 1×1 convs and sigmoids give per-channel
  H- and W-attention whose outer product is A_s (N×C×H×W). The gate is a 1×1 conv
  over the concatenation [A_c broadcast, A_s] giving two logits per pixel, softmax
  over the two paths: g_c, g_s are N×1×H×W maps with g_c + g_s = 1.
* **Cross-layer connection**: ``alpha = sigmoid(Conv1x1(BN(F_l)))`` is one map per
  pixel (N×1×h×w); the shallow map is resampled to the deep map's size with
  antialiased bilinear interpolation (the paper says "upsampling", but the shallow
  map is the larger one) and projected with a 1×1 conv to the deep channel count.
  Connections are made at the stride-16 and stride-32 levels.
* **Head**: the fused maps are globally average-pooled and concatenated; the
  classifier is dropout + linear; the contrastive embedding is a linear projection
  to ``embed_dim`` followed by L2 normalisation.
* **Ablation switches.** ``ms_hcm=False`` drops the multi-scale module,
  ``dpafm=False`` drops the attention module, ``cross_layer=False`` replaces the gated
  fusion by concatenating the pooled shallow path with the pooled deep levels.
  With all three off the shallow path disappears and the model is the backbone with
  multi-level pooling ("baseline" of the ablation).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from typing import ClassVar

from torch import nn

from ..explain.contract import MapInfo
from .backbones import Pretrained, create_backbone
from .registry import register_arch, register_variant


def _conv_bn_act(cin: int, cout: int, k: int = 1, dilation: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    pad = dilation * (k // 2)
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, padding=pad, dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class MSHCM(nn.Module):
    """Multi-scale heterogeneous convolution: N×C×H×W -> N×C×H×W.

    Three 3×3 conv-BN-ReLU branches with dilations ``dilations``, concatenated to 3C
    channels, then a grouped (groups = 3) 1×1 conv + BN back to C. C must be divisible by 3.
    """

    def __init__(self, channels: int, dilations: tuple[int, ...] = (1, 2, 4)) -> None:
        super().__init__()
        if channels % len(dilations):
            raise ValueError(f"MS-HCM needs channels divisible by {len(dilations)}, got {channels}")
        self.branches = nn.ModuleList(_conv_bn_act(channels, channels, 3, dilation=d) for d in dilations)
        self.fuse = _conv_bn_act(channels * len(dilations), channels, 1, groups=len(dilations), act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([b(x) for b in self.branches], dim=1))


class ChannelPath(nn.Module):
    """Squeeze-excitation channel attention: N×C×H×W -> A_c, N×C×1×1 in (0, 1)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 8)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))


class SpatialPath(nn.Module):
    """Coordinate attention: N×C×H×W -> A_s, N×C×H×W in (0, 1) (outer product of an
    H-direction and a W-direction attention per channel)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 8)
        self.reduce = _conv_bn_act(channels, hidden, 3)
        self.to_h = nn.Conv2d(hidden, channels, 1)
        self.to_w = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        pooled_h = x.mean(3, keepdim=True)  # N×C×H×1
        pooled_w = x.mean(2, keepdim=True).transpose(2, 3)  # N×C×W×1
        y = self.reduce(torch.cat([pooled_h, pooled_w], dim=2))
        y_h, y_w = torch.split(y, [h, w], dim=2)
        a_h = torch.sigmoid(self.to_h(y_h))  # N×C×H×1
        a_w = torch.sigmoid(self.to_w(y_w.transpose(2, 3)))  # N×C×1×W
        return a_h * a_w


class DPAFM(nn.Module):
    """Dual-path attention fusion: N×C×H×W -> N×C×H×W plus its attention tensors.

    ``F_att = g_c · (A_c ⊙ F) + g_s · (A_s ⊙ F)`` with ``[g_c, g_s] = softmax(Conv1x1([A_c, A_s]))``.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.channel = ChannelPath(channels, reduction)
        self.spatial = SpatialPath(channels, reduction)
        self.gate = nn.Conv2d(2 * channels, 2, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        a_c = self.channel(x)
        a_s = self.spatial(x)
        g = torch.softmax(self.gate(torch.cat([a_c.expand_as(a_s), a_s], dim=1)), dim=1)
        g_c, g_s = g[:, :1], g[:, 1:]
        out = g_c * (a_c * x) + g_s * (a_s * x)
        maps = {
            "dpafm_spatial": a_s.mean(1, keepdim=True),
            "dpafm_channel": a_c.flatten(1),
            "gate_channel": g_c,
            "gate_spatial": g_s,
        }
        return out, maps


class CrossLayerGate(nn.Module):
    """Gated fusion of a deep map (N×C_d×h×w) and a shallow one (N×C_s×H×W, H ≥ h):
    ``alpha · F_deep + (1 − alpha) · proj(resample(F_shallow))``, alpha N×1×h×w."""

    def __init__(self, deep_channels: int, shallow_channels: int) -> None:
        super().__init__()
        self.alpha = nn.Sequential(nn.BatchNorm2d(deep_channels), nn.Conv2d(deep_channels, 1, 1))
        self.project = _conv_bn_act(shallow_channels, deep_channels, 1, act=False)
        self.fused = nn.Identity()  # hook point for Grad-CAM: its output is F_fusion

    def forward(self, deep: torch.Tensor, shallow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns F_fusion (N×C_d×h×w) and alpha (N×1×h×w)."""
        alpha = torch.sigmoid(self.alpha(deep))
        shallow = F.interpolate(shallow, size=deep.shape[-2:], mode="bilinear", align_corners=False, antialias=True)
        return self.fused(alpha * deep + (1 - alpha) * self.project(shallow)), alpha


class InkFusionNet(nn.Module):
    """Paper A's classifier. Input N×3×H×W (any H, W multiple of 32 or not), output
    logits N×num_classes; :meth:`forward_with_attention` also returns the attention maps."""

    fused_levels = (2, 3)  # indices into the backbone outputs: stride 16 and 32
    attention_info: ClassVar[tuple[MapInfo, ...]] = (
        MapInfo("dpafm_spatial", "spatial", ("Where the fine-texture path looks", "细节通路关注的位置"),
                ("Spatial attention A_s of the dual-path attention module (paper A's DPAFM) on the stride-4 "
                 "features: bright areas are the brush-stroke textures it amplifies.",
                 "论文A双路注意力模块(DPAFM)的空间注意力A_s：亮处是模型强化的笔触纹理区域。")),
        MapInfo("alpha_0", "spatial", ("Mid-level fusion weight", "中层融合权重"),
                ("Cross-layer gate α at stride 16: bright where the deep features are kept, dark where the "
                 "shallow texture features are mixed in.",
                 "16倍下采样处的跨层门控α：亮处保留深层特征，暗处融入浅层纹理特征。")),
        MapInfo("alpha_1", "spatial", ("Deep fusion weight", "深层融合权重"),
                ("Cross-layer gate α at stride 32 (the deepest level), read like the mid-level one.",
                 "32倍下采样处(最深层)的跨层门控α，含义同中层。")),
        MapInfo("gate_channel", "gate", ("Share of the channel path", "通道通路占比"),
                ("Mean softmax gate g_c: how much the channel (what) path contributes; g_c + g_s = 1.",
                 "门控g_c的平均值：通道(“什么”)通路的贡献，g_c + g_s = 1。")),
        MapInfo("gate_spatial", "gate", ("Share of the spatial path", "空间通路占比"),
                ("Mean softmax gate g_s: how much the spatial (where) path contributes.",
                 "门控g_s的平均值：空间(“哪里”)通路的贡献。")),
        MapInfo("dpafm_channel", "channel", ("Channel attention", "通道注意力"),
                ("Squeeze-excitation weights A_c of the texture channels; high values are the feature "
                 "channels the model emphasises for this image.",
                 "纹理通道的SE权重A_c：数值高的通道是模型对这幅作品着重使用的特征。")),
    )

    def __init__(
        self,
        num_classes: int,
        backbone: str = "tf_efficientnet_lite0",
        pretrained: Pretrained = "offline",
        ms_hcm: bool = True,
        dpafm: bool = True,
        cross_layer: bool = True,
        ms_channels: int = 48,
        reduction: int = 16,
        embed_dim: int = 128,
        drop_rate: float = 0.3,
    ) -> None:
        super().__init__()
        self.backbone = create_backbone(backbone, pretrained)
        chans = self.backbone.feature_info.channels()
        self.use_shallow = ms_hcm or dpafm
        self.cross_layer = cross_layer and self.use_shallow
        if self.use_shallow:
            self.stem = _conv_bn_act(chans[0], ms_channels, 1)
            self.ms_hcm = MSHCM(ms_channels) if ms_hcm else None
            self.dpafm = DPAFM(ms_channels, reduction) if dpafm else None
        if self.cross_layer:
            self.gates = nn.ModuleList(CrossLayerGate(chans[i], ms_channels) for i in self.fused_levels)
        pooled = sum(chans[i] for i in self.fused_levels)
        if self.use_shallow and not self.cross_layer:
            pooled += ms_channels
        self.num_features = pooled
        self.dropout = nn.Dropout(drop_rate)
        self.classifier = nn.Linear(pooled, num_classes)
        self.embedding = nn.Linear(pooled, embed_dim)

    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        feats = self.backbone(x)
        maps: dict[str, torch.Tensor] = {}
        deep = [feats[i] for i in self.fused_levels]
        pooled: list[torch.Tensor] = []
        if self.use_shallow:
            s = self.stem(feats[0])
            if self.ms_hcm is not None:
                s = self.ms_hcm(s)
            if self.dpafm is not None:
                s, dp_maps = self.dpafm(s)
                maps.update(dp_maps)
            if self.cross_layer:
                fused = []
                for i, (gate, d) in enumerate(zip(self.gates, deep)):
                    f, maps[f"alpha_{i}"] = gate(d, s)
                    fused.append(f)
                deep = fused
            else:
                pooled.append(s.mean((2, 3)))
        pooled = [d.mean((2, 3)) for d in deep] + pooled
        return torch.cat(pooled, dim=1), maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N×3×H×W (or N×1×H×W) -> logits N×num_classes."""
        return self.classifier(self.dropout(self._features(x)[0]))

    def forward_with_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and the attention maps of the same forward pass (see :meth:`attention_maps`)."""
        feat, maps = self._features(x)
        return self.classifier(self.dropout(feat)), maps

    def forward_embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits N×K and L2-normalised embeddings N×embed_dim for the contrastive loss."""
        feat, _ = self._features(x)
        return self.classifier(self.dropout(feat)), F.normalize(self.embedding(feat), dim=1)

    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Attention maps, name -> tensor:

        * ``dpafm_spatial`` N×1×H/4×W/4 in [0, 1] — spatial path A_s averaged over channels;
        * ``dpafm_channel`` N×C_ms — channel path weights A_c;
        * ``gate_channel``, ``gate_spatial`` N×1×H/4×W/4 — softmax gate g_c, g_s (sum 1);
        * ``alpha_0`` N×1×H/16×W/16, ``alpha_1`` N×1×H/32×W/32 — cross-layer gates alpha.

        Maps of switched-off modules are absent.
        """
        return self.forward_with_attention(x)[1]

    def cam_target_layer(self) -> nn.Module:
        """Module whose output Grad-CAM should use: the deepest fused map (or the last backbone stage)."""
        if self.cross_layer:
            return self.gates[-1].fused
        return self.backbone.blocks[-1] if hasattr(self.backbone, "blocks") else list(self.backbone.children())[-1]


register_arch("inkfusion", InkFusionNet, {"backbone": "tf_efficientnet_lite0", "image_size": 256, "grayscale": False,
                                          "description": "InkFusionNet (paper A): MS-HCM + DPAFM + cross-layer gates"})
register_variant("inkfusion-base", "inkfusion", "paper A ablation: backbone with multi-level pooling, no modules",
                 ms_hcm=False, dpafm=False, cross_layer=False)
register_variant("inkfusion-mshcm", "inkfusion", "paper A ablation: + MS-HCM", ms_hcm=True, dpafm=False, cross_layer=False)
register_variant("inkfusion-mshcm-dpafm", "inkfusion", "paper A ablation: + MS-HCM + DPAFM", ms_hcm=True, dpafm=True,
                 cross_layer=False)
