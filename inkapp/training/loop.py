"""The training loop: one model, one split, early stopping on validation accuracy,
checkpoints every epoch (safetensors + JSON, resumable), optional DistributedDataParallel.

Distributed runs are detected from torchrun's environment (``WORLD_SIZE`` > 1): gloo on
CPU, NCCL on CUDA; each rank trains on its shard of the training set, rank 0 evaluates
and writes every file.
"""
from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, WeightedRandomSampler
from tqdm import tqdm

from ..data.augment import build_augment
from ..data.dataset import CanvasDataset
from ..data.preprocess import normalise
from ..device import default_device, init_distributed
from ..models.backbones import stage_modules
from ..scoring import ScoringSpec, score_canvases
from ..store.files import atomic_path, atomic_write_text
from .config import OptimConfig
from .losses import class_weights, contrastive_loss


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def backbone_of(model: nn.Module) -> nn.Module | None:
    return getattr(model, "backbone", None) or getattr(model, "trunk", None)


def frozen_modules(model: nn.Module, n_stages: int) -> list[nn.Module]:
    """The first ``n_stages`` backbone stages (stem counts as one)."""
    bb = backbone_of(model)
    return stage_modules(bb)[:n_stages] if bb is not None and n_stages > 0 else []


def set_train_mode(model: nn.Module, frozen: list[nn.Module]) -> None:
    """Train mode, except frozen stages whose BatchNorm statistics stay fixed."""
    model.train()
    for m in frozen:
        m.eval()


def _optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    bb = backbone_of(model)
    bb_ids = {id(p) for p in bb.parameters()} if bb is not None else set()
    pretrained = getattr(getattr(model, "config", None), "pretrained", None) is not None
    mult = cfg.backbone_lr_mult if pretrained else 1.0
    groups = [
        {"params": [p for p in model.parameters() if p.requires_grad and id(p) in bb_ids], "lr": cfg.lr * mult},
        {"params": [p for p in model.parameters() if p.requires_grad and id(p) not in bb_ids], "lr": cfg.lr},
    ]
    groups = [g for g in groups if g["params"]]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer '{cfg.optimizer}' (adam | adamw)")


class EpochScheduler:
    """Per-epoch learning-rate policy: linear warm-up, then cosine annealing to 1 % of the
    base rate, or ReduceLROnPlateau on validation accuracy (factor 0.5, patience 3,
    min 1e-5, paper B), or constant. State is JSON-serialisable for resuming."""

    def __init__(self, opt: torch.optim.Optimizer, cfg: OptimConfig) -> None:
        if cfg.scheduler not in ("cosine", "plateau", "none"):
            raise ValueError(f"unknown scheduler '{cfg.scheduler}' (cosine | plateau | none)")
        self.opt, self.cfg = opt, cfg
        self.base = [g["lr"] for g in opt.param_groups]
        self.scale, self.best, self.bad = 1.0, -math.inf, 0

    def start_epoch(self, epoch: int) -> None:
        c = self.cfg
        if c.scheduler == "cosine":
            if epoch < c.warmup_epochs:
                f = (epoch + 1) / (c.warmup_epochs + 1)
            else:
                t = (epoch - c.warmup_epochs) / max(1, c.epochs - c.warmup_epochs)
                f = 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t))
        else:
            f = self.scale
        for g, b in zip(self.opt.param_groups, self.base):
            g["lr"] = max(b * f, 1e-5 if c.scheduler == "plateau" else 0.0)

    def end_epoch(self, val_acc: float) -> None:
        if self.cfg.scheduler != "plateau":
            return
        if val_acc > self.best:
            self.best, self.bad = val_acc, 0
        else:
            self.bad += 1
            if self.bad > 3:
                self.scale, self.bad = self.scale * 0.5, 0

    def state(self) -> dict[str, float]:
        return {"scale": self.scale, "best": self.best, "bad": self.bad}

    def load(self, s: dict[str, float]) -> None:
        self.scale, self.best, self.bad = s["scale"], s["best"], s["bad"]


class _WithEmbedding(nn.Module):
    """Makes ``forward`` return (logits, embedding), so DDP sees the contrastive path."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.forward_embedding(x)


def _save_optimizer(opt: torch.optim.Optimizer, path: Path) -> None:
    tensors = {}
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            tensors[f"{i}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))


def _load_optimizer(opt: torch.optim.Optimizer, path: Path) -> None:
    sd = opt.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in load_file(str(path)).items():
        i, k = key.split(".", 1)
        state.setdefault(int(i), {})[k] = v
    sd["state"] = state
    opt.load_state_dict(sd)


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path) -> None:
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))


def train_model(
    model: nn.Module,
    canvases: torch.Tensor,
    targets: list[int],
    split: dict[str, list[int]],
    num_classes: int,
    spec: ScoringSpec,
    cfg: OptimConfig,
    ckpt_dir: Path,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> tuple[nn.Module, list[dict[str, float]]]:
    """Train ``model`` on ``split["train"]``, select the epoch with the best validation
    accuracy, return the model holding those weights and the per-epoch history.

    Checkpoints (``last.safetensors``, ``optimizer.safetensors``, ``state.json``,
    ``best.safetensors``) go to ``ckpt_dir`` after every epoch; with ``resume`` the run
    continues from them.
    """
    info = init_distributed()
    device = default_device()
    seed_everything(cfg.seed)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    model.to(device)
    frozen = frozen_modules(model, cfg.freeze_stages)
    for m in frozen:
        for p in m.parameters():
            p.requires_grad_(False)
    net: nn.Module = _WithEmbedding(model) if cfg.contrastive_weight > 0 else model
    if info.world > 1:
        net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None,
                                                  find_unused_parameters=True)
    tr = [targets[i] for i in split["train"]]
    train_ds = CanvasDataset(canvases[split["train"]], tr, lambda x: normalise(x, spec.mean, spec.std),
                             build_augment(cfg.augment, cfg.crop))
    gen = torch.Generator().manual_seed(cfg.seed)
    if info.world > 1:
        sampler = DistributedSampler(train_ds, info.world, info.rank, shuffle=True, seed=cfg.seed)
    elif cfg.class_balance == "sampler":
        w = class_weights(tr, num_classes)[torch.tensor(tr)]
        sampler = WeightedRandomSampler(w.double(), len(tr), replacement=True, generator=gen)
    else:
        sampler = None
    loader = DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                        num_workers=cfg.num_workers, drop_last=len(tr) > cfg.batch_size, generator=gen)
    ce_weight = class_weights(tr, num_classes).to(device) if cfg.class_balance == "weights" else None
    opt = _optimizer(model, cfg)
    sched = EpochScheduler(opt, cfg)
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    val_canvases = canvases[split["val"]]
    val_y = np.array([targets[i] for i in split["val"]])

    history: list[dict[str, float]] = []
    start, best_acc, best_epoch = 0, -1.0, -1
    state_file = ckpt_dir / "state.json"
    if resume and state_file.exists():
        st = json.loads(state_file.read_text())
        model.load_state_dict(load_file(str(ckpt_dir / "last.safetensors")))
        _load_optimizer(opt, ckpt_dir / "optimizer.safetensors")
        sched.load(st["scheduler"])
        history, start, best_acc, best_epoch = st["history"], st["epoch"] + 1, st["best_acc"], st["best_epoch"]
        log(f"resumed from epoch {st['epoch'] + 1}")

    for epoch in range(start, cfg.epochs):
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
        sched.start_epoch(epoch)
        set_train_mode(model, frozen)
        seen = correct = 0
        loss_sum = 0.0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not (progress and info.main), leave=False)
        for x, y in bar:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, enabled=use_amp):
                out = net(x)
                logits, emb = out if isinstance(out, tuple) else (out, None)
                loss = F.cross_entropy(logits.float(), y, weight=ce_weight, label_smoothing=cfg.label_smoothing)
                if emb is not None:
                    loss = loss + cfg.contrastive_weight * contrastive_loss(emb, y, cfg.contrastive_margin)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        record = {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1),
                  "lr": opt.param_groups[-1]["lr"]}
        if info.main:
            probs = score_canvases(model.eval(), val_canvases, spec, device).numpy()
            record["val_acc"] = float((probs.argmax(1) == val_y).mean()) if len(val_y) else 0.0
            record["val_loss"] = float(-np.log(np.clip(probs[np.arange(len(val_y)), val_y], 1e-12, 1)).mean()) if len(val_y) else 0.0
        if info.world > 1:
            acc = torch.tensor([record.get("val_acc", 0.0)])
            dist.broadcast(acc, 0)
            record["val_acc"] = float(acc)
        sched.end_epoch(record["val_acc"])
        history.append(record)
        improved = record["val_acc"] > best_acc
        if improved:
            best_acc, best_epoch = record["val_acc"], epoch + 1
        if info.main:
            log(json.dumps(record))
            if improved:
                _atomic_save(model.state_dict(), ckpt_dir / "best.safetensors")
            _atomic_save(model.state_dict(), ckpt_dir / "last.safetensors")
            _save_optimizer(opt, ckpt_dir / "optimizer.safetensors")
            state = {"epoch": epoch, "history": history, "best_acc": best_acc, "best_epoch": best_epoch,
                     "scheduler": sched.state()}
            atomic_write_text(state_file, json.dumps(state))
        if cfg.early_stop_patience and epoch + 1 - best_epoch >= cfg.early_stop_patience:
            if info.main:
                log(f"early stop: no validation gain for {cfg.early_stop_patience} epochs (best epoch {best_epoch})")
            break
    if info.world > 1:
        dist.barrier()
    best = ckpt_dir / "best.safetensors"
    if best.exists():
        model.load_state_dict(load_file(str(best)))
    return model.eval(), history
