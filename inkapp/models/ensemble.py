"""An ensemble of k trained members as ONE model (issue 15), so the one scoring path,
:class:`inkapp.inference.Predictor`, calibration, ``scan`` and the bench use it unchanged.

* :meth:`Ensemble.forward` returns the LOG of the members' mean softmax (N×K), so
  ``softmax(forward(x))`` is exactly the mean probability (the log-probabilities of a
  distribution are their own log-softmax). The card's test-time views
  (``preprocessing.tta_hflip``) are applied around the whole ensemble by
  :func:`inkapp.scoring.score_canvases`: with the flip, every member sees both views and
  the 2k probability vectors are averaged with equal weight.
* Explanations (:mod:`inkapp.explain.contract`): the heat map and attention maps come
  from ONE member, the "CAM member" — the member whose validation predictions agree best
  with the ensemble's (most equal arg-max labels; ties: lowest mean KL divergence from the
  ensemble's probabilities), chosen when the ensemble is built (:func:`cam_member_index`)
  and stored in the card. Grad-CAM differentiates the ENSEMBLE's output (the log of the
  mean probability) with respect to that member's target layer, so the map explains the
  ensemble's score through the features of the member that best stands for it. Chosen
  over averaging the members' maps because the CAM seam hooks one target layer (one
  forward + one backward pass, as for a single model) and because the members' coarse
  (8×8) maps of differently trained feature spaces blur when averaged.

Folder layout (written by :func:`save_ensemble`, read by
:func:`inkapp.models.serialization.load_model` when the card lists ``members``)::

    <folder>/card.json                     classes, preprocessing, calibration, "members", "ensemble"
    <folder>/members/<i>/model.safetensors each member, fp16 large tensors (< 10 MiB each)
    <folder>/members/<i>/card.json         the member's own card: model, recipe (training config), seed
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..explain.contract import MapInfo
from ..store.files import atomic_write_text
from .serialization import CARD_FILE, ModelLoadError, load_model, save_model

#: Card keys every member must share with the ensemble (the one preprocessing contract).
SHARED_PREPROCESSING = ("image_size", "grayscale", "mean", "std", "resize", "pad_fill")
MEMBERS_DIR = "members"


class EnsembleError(ModelLoadError):
    """Members that cannot form one ensemble (different classes or preprocessing, none at all)."""


@dataclass
class EnsembleConfig:
    """What the card's ``model`` key holds for an ensemble (read by the bench and the README
    writer like a single model's :class:`inkapp.models.registry.ModelConfig`): the members'
    shared backbone/input, ``arch`` = ``ensemble``, the member count in ``options``."""

    num_classes: int
    backbone: str
    image_size: int
    grayscale: bool
    pretrained: str | None = None
    arch: str = "ensemble"
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Ensemble(nn.Module):
    """k members with the same classes, averaged in probability; see the module docstring."""

    def __init__(self, members: list[nn.Module], cam_member: int = 0) -> None:
        super().__init__()
        if not members:
            raise EnsembleError("an ensemble needs at least one member")
        if not 0 <= cam_member < len(members):
            raise EnsembleError(f"cam_member {cam_member} out of range for {len(members)} members")
        sizes = {m.config.num_classes for m in members}
        if len(sizes) != 1:
            raise EnsembleError(f"members disagree on the number of classes: {sorted(sizes)}")
        self.members = nn.ModuleList(members)
        self.cam_member = cam_member
        first = members[0].config
        backbones = sorted({m.config.backbone for m in members})
        self.config = EnsembleConfig(first.num_classes, "+".join(backbones), first.image_size, first.grayscale,
                                     first.pretrained, options={"members": len(members), "cam_member": cam_member})
        # the explanation contract: the CAM member's maps, under its own names and captions
        self.attention_info: tuple[MapInfo, ...] = tuple(getattr(members[cam_member], "attention_info", ()))

    @staticmethod
    def _log_mean(probs: torch.Tensor) -> torch.Tensor:
        """k×N×K probabilities -> N×K log of their mean (floored at the smallest float)."""
        mean = probs.mean(0)
        return torch.log(mean.clamp_min(torch.finfo(mean.dtype).tiny))

    def member_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """N×3×S×S normalised -> k×N×K float32 member probabilities."""
        return torch.stack([torch.softmax(m(x).float(), dim=1) for m in self.members])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N×3×S×S normalised -> N×K log of the members' mean probability (float32)."""
        return self._log_mean(self.member_probabilities(x))

    def forward_with_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Like :meth:`forward`, plus the CAM member's attention maps of the same pass."""
        probs, maps = [], {}
        for i, m in enumerate(self.members):
            if i == self.cam_member:
                logits, maps = m.forward_with_attention(x)
            else:
                logits = m(x)
            probs.append(torch.softmax(logits.float(), dim=1))
        return self._log_mean(torch.stack(probs)), maps

    def cam_target_layer(self) -> nn.Module:
        """The CAM member's target layer (the ensemble output is differentiated through it)."""
        return self.members[self.cam_member].cam_target_layer()


def cam_member_index(member_probs: np.ndarray) -> int:
    """The member that agrees best with the ensemble: k×N×K member probabilities (e.g. on
    the validation split) -> index of the member with the most arg-max labels equal to
    the mean's; ties broken by the lowest mean KL(ensemble ‖ member) in nats."""
    member_probs = np.asarray(member_probs, dtype=np.float64)
    if member_probs.ndim != 3 or member_probs.shape[0] < 1:
        raise EnsembleError(f"member probabilities must be k×N×K, got shape {member_probs.shape}")
    mean = member_probs.mean(0)
    agree = (member_probs.argmax(2) == mean.argmax(1)[None]).sum(1)
    eps = 1e-12
    kl = (mean[None] * (np.log(mean[None] + eps) - np.log(member_probs + eps))).sum(2).mean(1)
    return int(min(range(len(agree)), key=lambda i: (-agree[i], kl[i])))


def check_members(cards: list[dict[str, Any]]) -> None:
    """Raise :class:`EnsembleError` unless all member cards share classes, task and preprocessing."""
    if not cards:
        raise EnsembleError("an ensemble needs at least one member")
    first = cards[0]
    for i, c in enumerate(cards[1:], start=1):
        if c["classes"] != first["classes"]:
            raise EnsembleError(f"member {i} has classes {c['classes']}, member 0 has {first['classes']}")
        if c.get("task") != first.get("task"):
            raise EnsembleError(f"member {i} is for task {c.get('task')!r}, member 0 for {first.get('task')!r}")
        for key in SHARED_PREPROCESSING:
            a, b = first["preprocessing"].get(key), c["preprocessing"].get(key)
            if a != b:
                raise EnsembleError(f"member {i} has preprocessing {key}={b!r}, member 0 has {a!r}")


def member_entry(i: int, model: nn.Module, card: dict[str, Any]) -> dict[str, Any]:
    """The top card's record of member ``i`` (``model`` with its ``card``): folder, recipe and seed."""
    training = card.get("training") or {}
    return {"folder": f"{MEMBERS_DIR}/{i}", "version": card.get("version"), "seed": (training.get("train") or {}).get("seed"),
            "arch": model.config.arch, "backbone": model.config.backbone,
            "val_metrics": card.get("val_metrics"), "recipe": training}


def save_ensemble(members: list[nn.Module], member_cards: list[dict[str, Any]], folder: str | Path,
                  card: dict[str, Any], cam_member: int, half: bool = True) -> Path:
    """Write ``members`` (each with its own card, large tensors fp16 when ``half``) under
    ``folder/members/<i>/`` and the ensemble card (``card`` + ``members`` + ``ensemble`` +
    ``model``) as ``folder/card.json``. ``card`` must hold ``classes`` and ``preprocessing``."""
    check_members(member_cards)
    folder = Path(folder)
    for i, (m, c) in enumerate(zip(members, member_cards)):
        save_model(m, folder / MEMBERS_DIR / str(i), {k: v for k, v in c.items() if k not in ("model", "weights_dtype")},
                   half=half)
    ens = Ensemble(members, cam_member)
    top = {**card, "model": ens.config.to_dict(), "members": [member_entry(i, m, c) for i, (m, c) in enumerate(zip(members, member_cards))],
           "ensemble": {"combine": "mean of member softmax probabilities (forward returns its log)",
                        "cam_member": cam_member,
                        "cam_member_rule": "most arg-max agreement with the ensemble on validation, then lowest KL"},
           "weights_dtype": "float16" if half else "float32"}
    atomic_write_text(folder / CARD_FILE, json.dumps(top, indent=2, ensure_ascii=False))
    return folder


def load_ensemble(folder: str | Path, card: dict[str, Any],
                  device: str | torch.device = "cpu") -> tuple[Ensemble, dict[str, Any]]:
    """The :class:`Ensemble` (eval mode, float32, on ``device``) of a folder whose ``card``
    lists ``members``; each member folder is loaded with :func:`load_model` and must share
    the ensemble card's classes and preprocessing."""
    folder = Path(folder)
    entries = card["members"]
    if not isinstance(entries, list) or not entries:
        raise EnsembleError(f"{folder}: card lists no members")
    members, cards = [], []
    for i, entry in enumerate(entries):
        sub = folder / str(entry.get("folder", f"{MEMBERS_DIR}/{i}"))
        if folder.resolve() not in sub.resolve().parents:
            raise EnsembleError(f"{folder}: member folder {entry.get('folder')!r} lies outside the model folder")
        model, member_card = load_model(sub, device)
        members.append(model)
        cards.append(member_card)
    check_members([card] + cards)
    cam = int((card.get("ensemble") or {}).get("cam_member", 0))
    return Ensemble(members, cam).to(device).eval(), card
