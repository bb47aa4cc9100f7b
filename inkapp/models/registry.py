"""One registry of architectures and their named variants, built from a config.

Each model family registers itself and its ablation variants at the end of its own file
(``inkfusion.py``, ``bamnet.py``, ``baselines.py``, the way timm's family files carry
their entrypoints); importing :mod:`inkapp.models` imports every family.

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
