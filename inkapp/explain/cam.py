"""Class activation maps (Grad-CAM, Grad-CAM++, EigenCAM) via ``pytorch-grad-cam``.

One call costs one forward and (for the gradient methods) one backward pass: the
logits and the model's own attention maps are taken from the same forward pass the
CAM object runs (:class:`LogitsOnly` stashes the maps, the CAM object keeps the
logits in ``outputs``).

How the library is attached (and why):

* The library hooks its ``target_layers`` for the lifetime of the CAM object. The
  model's real target layer (``model.cam_target_layer()``) is shared with threads
  running plain predictions, so the library's hooks go on a private per-call
  ``nn.Identity`` *tap* instead. One forward hook on the real layer (removed on
  exit) feeds the layer's output through the tap, and only for the calling
  thread; other threads' forward passes through the layer are left alone.
* The hook hands the tap a detached copy of the activation that requires grad, so
  the backward pass stops at the target layer (only the head is differentiated)
  and the model's parameters need not require grad.
* Quirks of grad-cam 1.5.x handled here: the CAM classes take no device argument
  (the device is that of the model's first parameter); ``BaseCAM.__exit__``
  swallows ``IndexError`` (it prints it and returns True), so an ``IndexError``
  inside the ``with`` block is re-raised as ``ValueError``; the constructor calls
  ``model.eval()`` and ``forward`` calls ``model.zero_grad()``.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn



@dataclass(frozen=True)
class CamMethod:
    """A heat-map method: its menu label and the ``pytorch-grad-cam`` class that computes it."""

    label: str
    cam_class: type[BaseCAM]


#: The explanation seam: method key -> :class:`CamMethod`. Adding a heat-map method is one
#: :func:`register_cam_method` call (any ``BaseCAM`` subclass, the library's or our own).
CAM_METHODS: dict[str, CamMethod] = {}


def register_cam_method(key: str, label: str, cam_class: type[BaseCAM]) -> None:
    """Offer ``cam_class`` as heat-map method ``key`` (shown to curators as ``label``)."""
    CAM_METHODS[key] = CamMethod(label, cam_class)


register_cam_method("gradcam", "Grad-CAM", GradCAM)
register_cam_method("gradcam++", "Grad-CAM++", GradCAMPlusPlus)
register_cam_method("eigencam", "eigencam", EigenCAM)


class LogitsOnly(nn.Module):
    """Wraps an inkapp model so that calling it returns the logits tensor only.

    It calls ``model.forward_with_attention`` (same logits as ``model.forward``) and
    keeps that pass's attention maps in :attr:`attention`. Make one wrapper per call:
    the stash is per instance, which is what keeps concurrent calls apart.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.attention: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N×3×S×S -> logits N×K (the attention maps are stored on the wrapper)."""
        logits, self.attention = self.model.forward_with_attention(x)
        return logits

    def train(self, mode: bool = True) -> "LogitsOnly":
        """pytorch-grad-cam calls ``eval()`` on the wrapper for every heat map, which walks
        all of the model's modules (297 in Lite0, ~0.5 ms on the 2-core CPU). A model whose
        top module is already in eval mode is left alone (:func:`class_activation_map`
        requires eval mode); anything else goes through :meth:`nn.Module.train`."""
        if mode or self.model.training:
            return super().train(mode)
        self.training = False
        return self


@dataclass(frozen=True)
class CamResult:
    """Outcome of one :func:`class_activation_map` call on a batch of N canvases.

    * ``logits`` — N×K float32 tensor (detached, on the model's device);
    * ``heat`` — N×S×S float32 array in [0, 1], over the whole square input canvas;
    * ``targets`` — the class index each heat map explains (one per image);
    * ``attention`` — the model's attention maps of the same pass, detached
      (see the model's ``attention_maps``; empty for models without attention).
    """

    logits: torch.Tensor
    heat: np.ndarray
    targets: list[int]
    attention: dict[str, torch.Tensor]


def class_activation_map(
    model: nn.Module, x: torch.Tensor, method: str = "gradcam", target: int | None = None
) -> CamResult:
    """Run ``method`` (a key of :data:`CAM_METHODS`) on a batch ``x`` (N×3×S×S, normalised).

    ``target`` is the class index every heat map explains; None explains each image's
    predicted (arg-max) class. The model must be in eval mode; the call works under
    ``torch.inference_mode`` as well (it re-enables autograd locally). All hooks are
    removed before it returns, also on error. The hook acts only for the calling
    thread, so other threads' forward passes through the model are unaffected
    (:class:`inkapp.inference.Predictor` still serialises CAM calls to bound memory).
    """
    try:
        cam_class = CAM_METHODS[method].cam_class
    except KeyError:
        raise ValueError(f"unknown CAM method '{method}'; choose from {', '.join(CAM_METHODS)}") from None
    wrapper = LogitsOnly(model)
    tap = nn.Identity()
    owner = threading.get_ident()

    def route_through_tap(module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor | None:
        if threading.get_ident() != owner:
            return None
        return tap(output.detach().requires_grad_())

    if target is not None and target < 0:
        raise ValueError(f"target class index must be >= 0, got {target}")
    handle = model.cam_target_layer().register_forward_hook(route_through_tap, prepend=True)
    try:
        with torch.inference_mode(False), torch.enable_grad():
            x = x.clone() if x.is_inference() else x
            with cam_class(model=wrapper, target_layers=[tap]) as cam:
                try:
                    targets = None if target is None else [ClassifierOutputTarget(target)] * x.shape[0]
                    heat = cam(input_tensor=x, targets=targets)
                except IndexError as err:  # BaseCAM.__exit__ would swallow it
                    raise ValueError(f"Grad-CAM failed (target class index {target} out of range?): {err}") from err
                logits = cam.outputs.detach().float()
    finally:
        handle.remove()
    chosen = logits.argmax(1).tolist() if target is None else [target] * x.shape[0]
    attention = {k: v.detach() for k, v in wrapper.attention.items()}
    return CamResult(logits, np.clip(heat.astype(np.float32, copy=False), 0.0, 1.0), chosen, attention)
