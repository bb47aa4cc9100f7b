"""Models: backbones, paper A's InkFusionNet, paper B's BamNet, baselines, registry, serialization.

Importing this package imports every model family, and each family registers itself
(:mod:`inkapp.models.registry`).
"""
from . import inkfusion, bamnet, baselines  # noqa: F401  (each family registers its architectures)
from .backbones import create_backbone, create_trunk, normalisation
from .registry import ModelConfig, build_model, describe, list_variants, resolve_config
from .serialization import ModelLoadError, load_model, read_card, save_model

__all__ = [
    "ModelConfig", "ModelLoadError", "build_model", "create_backbone", "create_trunk", "describe",
    "list_variants", "load_model", "normalisation", "read_card", "resolve_config", "save_model",
]
