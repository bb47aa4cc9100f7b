"""One registry of architectures and their named variants, built from a config.

A config is a dict (or a YAML file holding one) with keys:

* ``arch`` — an architecture (``inkfusion``, ``bamnet``, ``plain``, ``smallcnn``) or a
  named variant (``inkfusion-base``, ``bamnet-se``, ...), see :func:`list_variants`;
* ``backbone`` — a timm model name (not used by ``smallcnn``);
* ``pretrained`` — ``offline`` (default), ``hub`` or ``None``;
* ``num_classes``;
* ``image_size`` — side of the square letterboxed input, pixels;
* ``grayscale`` — images are converted to grayscale and replicated to 3 channels;
* ``options`` — architecture keyword arguments (ablation flags such as ``ms_hcm``,
  ``dpafm``, ``cross_layer``, ``attention``), overriding the variant's.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml
from torch import nn

from .bamnet import ATTENTIONS, BamNet
from .baselines import PlainNet, SmallCNN
from .inkfusion import InkFusionNet

_ARCHS: dict[str, Callable[..., nn.Module]] = {}
_VARIANTS: dict[str, dict[str, Any]] = {}


def register_arch(name: str, builder: Callable[..., nn.Module], defaults: dict[str, Any]) -> None:
    """Register an architecture; ``defaults`` are its default config values (backbone, image_size, ...)."""
    _ARCHS[name] = builder
    _VARIANTS[name] = {"arch": name, **defaults}


def register_variant(name: str, arch: str, description: str, **options: Any) -> None:
    """Register a named variant of ``arch`` with fixed ``options``."""
    base = {k: v for k, v in _VARIANTS[arch].items() if k not in ("options", "description")}
    _VARIANTS[name] = {**base, "options": options, "description": description}


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model (stored in its card)."""

    arch: str
    num_classes: int
    backbone: str = "tf_efficientnet_lite0"
    pretrained: str | None = "offline"
    image_size: int = 224
    grayscale: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_config(config: dict[str, Any] | str | Path) -> ModelConfig:
    """Config dict or YAML path -> :class:`ModelConfig` with the variant's defaults filled in.

    A variant name in ``arch`` is replaced by its architecture, its options merged under
    the config's own ``options``.
    """
    if isinstance(config, (str, Path)):
        config = yaml.safe_load(Path(config).read_text())
    config = dict(config.get("model", config))
    name = config.get("arch")
    if name not in _VARIANTS:
        raise ValueError(f"unknown architecture '{name}'; registered: {', '.join(list_variants())}")
    variant = _VARIANTS[name]
    merged = {k: v for k, v in variant.items() if k != "description"}
    merged.update({k: v for k, v in config.items() if k != "options"})
    merged["arch"] = variant["arch"]
    merged["options"] = {**variant.get("options", {}), **config.get("options", {})}
    merged.setdefault("num_classes", 0)  # filled in from the data by the training scripts
    known = set(ModelConfig.__dataclass_fields__)
    unknown = set(merged) - known
    if unknown:
        raise ValueError(f"unknown model config keys: {', '.join(sorted(unknown))}")
    return ModelConfig(**merged)


def build_model(config: dict[str, Any] | str | Path | ModelConfig) -> nn.Module:
    """Build the model a config describes (weights per ``pretrained``)."""
    cfg = config if isinstance(config, ModelConfig) else resolve_config(config)
    if cfg.num_classes < 1:
        raise ValueError(f"model config needs num_classes ≥ 1, got {cfg.num_classes}")
    kwargs = dict(cfg.options)
    if cfg.arch != "smallcnn":
        kwargs.update(backbone=cfg.backbone, pretrained=cfg.pretrained)
    model = _ARCHS[cfg.arch](num_classes=cfg.num_classes, **kwargs)
    model.config = cfg
    return model


def list_variants() -> list[str]:
    """All registered architectures and variants, in registration order."""
    return list(_VARIANTS)


def describe(name: str) -> dict[str, Any]:
    """The registered defaults of an architecture or variant."""
    return dict(_VARIANTS[name])


register_arch("inkfusion", InkFusionNet, {"backbone": "tf_efficientnet_lite0", "image_size": 256, "grayscale": False,
                                          "description": "InkFusionNet (paper A): MS-HCM + DPAFM + cross-layer gates"})
register_variant("inkfusion-base", "inkfusion", "paper A ablation: backbone with multi-level pooling, no modules",
                 ms_hcm=False, dpafm=False, cross_layer=False)
register_variant("inkfusion-mshcm", "inkfusion", "paper A ablation: + MS-HCM", ms_hcm=True, dpafm=False, cross_layer=False)
register_variant("inkfusion-mshcm-dpafm", "inkfusion", "paper A ablation: + MS-HCM + DPAFM", ms_hcm=True, dpafm=True, cross_layer=False)
register_arch("bamnet", BamNet, {"backbone": "tf_efficientnet_lite2", "image_size": 260, "grayscale": True,
                                 "description": "BamNet (paper B): EfficientNet + BAM before pooling"})
for _att in ATTENTIONS:
    register_variant(f"bamnet-{_att}", "bamnet", f"paper B ablation: attention = {_att}", attention=_att)
register_arch("plain", PlainNet, {"backbone": "tf_efficientnet_lite0", "image_size": 224, "grayscale": False,
                                  "description": "plain backbone + linear head (honest baseline)"})
register_arch("smallcnn", SmallCNN, {"backbone": "none", "image_size": 224, "grayscale": False, "pretrained": None,
                                     "description": "paper B's conventional small CNN"})
