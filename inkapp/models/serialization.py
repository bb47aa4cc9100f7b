"""Saving and loading models: ``model.safetensors`` + ``card.json`` in one folder.

Only safetensors and JSON are ever read (no pickle). A folder whose card lists ``members``
holds an ensemble (:mod:`inkapp.models.ensemble`), one model folder per member. A card whose class list or
architecture does not match the tensors fails with :class:`ModelLoadError` naming
the mismatch.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..store.files import atomic_path, atomic_write_text
from .fold import ActOnly
from .registry import ModelConfig, build_model, resolve_config

WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "card.json"


#: With ``half``, only tensors this large are stored as fp16. The small ones (stem conv,
#: depthwise kernels, norm parameters, BatchNorm statistics) stay fp32: EfficientNet-Lite
#: has channels whose BatchNorm variance is 0, which amplify fp16 rounding of their
#: inputs by 1/sqrt(eps); keeping small tensors exact costs < 0.2 MiB.
HALF_MIN_NUMEL = 4096


class ModelLoadError(ValueError):
    """A model folder that cannot be loaded: missing files, bad card, mismatched tensors."""


def save_model(model: nn.Module, folder: str | Path, card: dict[str, Any], half: bool = False) -> Path:
    """Write the weights (large tensors as fp16 when ``half``, see :data:`HALF_MIN_NUMEL`) and ``card`` (which must hold ``classes``;
    the model config is added under ``model``) to ``folder``. A model whose batch norms were
    folded for inference (every :class:`inkapp.inference.Predictor` does that) is refused:
    its weights no longer match its architecture."""
    if any(isinstance(m, ActOnly) for m in model.modules()):
        raise ValueError("this model's batch norms were folded for inference (inkapp.models.fold); "
                         "save the model as load_model or training returns it")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        if half and v.is_floating_point() and v.numel() >= HALF_MIN_NUMEL and not k.endswith(("running_mean", "running_var")):
            v = v.half()
        tensors[k] = v.contiguous()
    with atomic_path(folder / WEIGHTS_FILE) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    card = {**card, "model": model.config.to_dict(), "weights_dtype": "float16" if half else "float32"}
    atomic_write_text(folder / CARD_FILE, json.dumps(card, indent=2, ensure_ascii=False))
    return folder


def read_card(folder: str | Path) -> dict[str, Any]:
    """The card of a model folder, checked for the keys a model needs."""
    path = Path(folder) / CARD_FILE
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ModelLoadError(f"{path}: no model card") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelLoadError(f"{path}: card is not valid JSON ({err})") from err
    for key in ("classes", "model"):
        if key not in card:
            raise ModelLoadError(f"{path}: card lacks '{key}'")
    if card["model"].get("num_classes") != len(card["classes"]):
        raise ModelLoadError(
            f"{path}: card lists {len(card['classes'])} classes but the model has {card['model'].get('num_classes')} outputs"
        )
    return card


def load_model(folder: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Model (eval mode, float32, on ``device``) and card from a folder written by :func:`save_model`,
    or an :class:`inkapp.models.ensemble.Ensemble` when the card lists ``members``
    (a folder written by :func:`inkapp.models.ensemble.save_ensemble`)."""
    folder = Path(folder)
    card = read_card(folder)
    if "members" in card:  # an ensemble folder (issue 15): members/<i>/ each a model folder
        from .ensemble import load_ensemble  # ensemble.py builds on this module

        return load_ensemble(folder, card, device)
    try:
        cfg: ModelConfig = resolve_config({**card["model"], "pretrained": None})
        model = build_model(cfg)
    except (TypeError, ValueError) as err:
        raise ModelLoadError(f"{folder}: card describes no buildable model ({err})") from err
    try:
        tensors = load_file(str(folder / WEIGHTS_FILE))
    except FileNotFoundError as err:
        raise ModelLoadError(f"{folder}: no {WEIGHTS_FILE}") from err
    except (SafetensorError, OSError) as err:
        raise ModelLoadError(f"{folder}/{WEIGHTS_FILE}: unreadable ({err})") from err
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    extra = sorted(set(tensors) - set(own))
    wrong = [k for k in own if k in tensors and tensors[k].shape != own[k].shape]
    if missing or extra or wrong:
        detail = "; ".join(
            s for s in (
                f"missing {missing[:3]}" if missing else "",
                f"unexpected {extra[:3]}" if extra else "",
                f"wrong shape {[(k, tuple(tensors[k].shape), tuple(own[k].shape)) for k in wrong[:3]]}" if wrong else "",
            ) if s
        )
        raise ModelLoadError(f"{folder}: weights do not match the card's model: {detail}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in tensors.items()})
    cfg.pretrained = card["model"].get("pretrained")
    return model.to(device).eval(), card
