"""Bottleneck Attention Module (Park et al., 2018) and its one-branch variants.

Combination choice (SPEC.md leaves it open): we follow the BAM paper,
``F' = F ⊗ (1 + σ(M_c + M_s))``, not the authors' code (which multiplies M_c · M_s).
The channel-only and spatial-only ablations drop one term: ``F ⊗ (1 + σ(M_c))`` and
``F ⊗ (1 + σ(M_s))``.

The channel branch's BatchNorm1d cannot compute batch statistics from one sample;
in training mode with batch size 1 it normalises with its running statistics
instead (and does not update them), so batch-1 training steps work.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SafeBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d that falls back to running statistics for a batch of one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


class BAMChannel(nn.Module):
    """M_c: GAP -> FC(C, C/r) -> BN -> ReLU -> FC(C/r, C). N×C×H×W -> N×C (logits)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 8)
        self.fc1 = nn.Linear(channels, hidden)
        self.bn = SafeBatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.bn(self.fc1(x.mean((2, 3))))))


class BAMSpatial(nn.Module):
    """M_s: 1×1 conv (C -> C/r), two 3×3 convs with dilation ``dilation``, 1×1 conv to one
    map (BN + ReLU after each hidden conv). N×C×H×W -> N×1×H×W (logits)."""

    def __init__(self, channels: int, reduction: int = 16, dilation: int = 4) -> None:
        super().__init__()
        hidden = max(channels // reduction, 8)
        layers: list[nn.Module] = [nn.Conv2d(channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True)]
        for _ in range(2):
            layers += [
                nn.Conv2d(hidden, hidden, 3, padding=dilation, dilation=dilation, bias=False),
                nn.BatchNorm2d(hidden),
                nn.ReLU(inplace=True),
            ]
        layers.append(nn.Conv2d(hidden, 1, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class BAM(nn.Module):
    """BAM on a feature map: N×C×H×W -> (N×C×H×W, attention maps).

    ``use_channel`` / ``use_spatial`` select the branches (both: full BAM).
    Maps: ``bam_channel`` N×C = σ(M_c); ``bam_spatial`` N×1×H×W = σ(M_s);
    ``bam_attention`` N×1×H×W = channel mean of σ(M_c + M_s) (all in [0, 1]).
    """

    def __init__(self, channels: int, reduction: int = 16, use_channel: bool = True, use_spatial: bool = True) -> None:
        super().__init__()
        if not (use_channel or use_spatial):
            raise ValueError("BAM needs at least one branch")
        self.channel = BAMChannel(channels, reduction) if use_channel else None
        self.spatial = BAMSpatial(channels, reduction) if use_spatial else None
        self.out = nn.Identity()  # hook point for Grad-CAM: its output is F'

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        maps: dict[str, torch.Tensor] = {}
        logit = torch.zeros((), dtype=x.dtype, device=x.device)
        if self.channel is not None:
            m_c = self.channel(x)
            maps["bam_channel"] = torch.sigmoid(m_c)
            logit = logit + m_c[:, :, None, None]
        if self.spatial is not None:
            m_s = self.spatial(x)
            maps["bam_spatial"] = torch.sigmoid(m_s)
            logit = logit + m_s
        att = torch.sigmoid(logit)
        maps["bam_attention"] = att.mean(1, keepdim=True).expand(-1, -1, *x.shape[-2:])
        return self.out(x * (1 + att)), maps
