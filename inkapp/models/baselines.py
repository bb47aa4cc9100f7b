"""Baselines: the plain backbone with a linear head, and a small conventional CNN."""
from __future__ import annotations

import torch
from torch import nn

from .backbones import Pretrained, create_trunk
from .registry import register_arch


class PlainNet(nn.Module):
    """The backbone trunk, global average pooling, dropout and one linear layer —
    the same backbone and recipe as the papers' models, without their modules.
    N×3×H×W (or N×1×H×W) -> logits N×num_classes."""

    def __init__(
        self, num_classes: int, backbone: str = "tf_efficientnet_lite0", pretrained: Pretrained = "offline", drop_rate: float = 0.3
    ) -> None:
        super().__init__()
        self.trunk = create_trunk(backbone, pretrained)
        self.num_features = self.trunk.num_features
        self.dropout = nn.Dropout(drop_rate)
        self.classifier = nn.Linear(self.num_features, num_classes)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.trunk.forward_features(x).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self._features(x)))

    def forward_with_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.forward(x), {}

    def forward_embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self._features(x)
        return self.classifier(self.dropout(feat)), nn.functional.normalize(feat, dim=1)

    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The plain backbone has no attention module: always an empty dict."""
        return {}

    def cam_target_layer(self) -> nn.Module:
        return self.trunk.bn2 if hasattr(self.trunk, "bn2") else list(self.trunk.children())[-2]


class SmallCNN(nn.Module):
    """Paper B's "conventional CNN": four conv-BN-ReLU-maxpool blocks (32, 64, 128, 256
    channels), global average pooling, dropout 0.3, FC 256, FC classes. Random init."""

    def __init__(self, num_classes: int, in_chans: int = 3, widths: tuple[int, ...] = (32, 64, 128, 256), drop_rate: float = 0.3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_chans
        for w in widths:
            layers += [nn.Conv2d(cin, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            cin = w
        self.features = nn.Sequential(*layers)
        self.in_chans = in_chans
        self.num_features = cin
        self.head = nn.Sequential(nn.Dropout(drop_rate), nn.Linear(cin, 256), nn.ReLU(inplace=True), nn.Linear(256, num_classes))

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1 and self.in_chans == 3:
            x = x.expand(-1, 3, -1, -1)
        return self.features(x).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self._features(x))

    def forward_with_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.forward(x), {}

    def forward_embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self._features(x)
        return self.head(feat), nn.functional.normalize(feat, dim=1)

    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """No attention module: always an empty dict."""
        return {}

    def cam_target_layer(self) -> nn.Module:
        return self.features[-2]  # the last ReLU, before the final pooling


register_arch("plain", PlainNet, {"backbone": "tf_efficientnet_lite0", "image_size": 224, "grayscale": False,
                                  "description": "plain backbone + linear head (honest baseline)"})
register_arch("smallcnn", SmallCNN, {"backbone": "none", "image_size": 224, "grayscale": False, "pretrained": None,
                                     "description": "paper B's conventional small CNN"})
