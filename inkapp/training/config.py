"""Training configuration: a YAML file with sections ``task``, ``domain``, ``data``,
``model`` (see :mod:`inkapp.models.registry`), ``train``, ``split`` and optional
``dynasty`` (class -> dynasty name, copied into the model card).

Relative ``data`` paths are resolved against the current directory first and then by
their last component under :func:`inkapp.paths.shared_data_root` (so a packaged config
works from any directory and from a non-editable install).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from ..paths import shared_data_root
from ..tasks import config_path


@dataclass
class OptimConfig:
    """Optimisation and regularisation settings (units: epochs, learning rates per step)."""

    epochs: int = 10
    batch_size: int = 16
    optimizer: str = "adamw"  # adam | adamw
    lr: float = 1e-3
    backbone_lr_mult: float = 0.1  # pretrained layers learn at lr × this
    weight_decay: float = 1e-4
    scheduler: str = "cosine"  # cosine (paper A) | plateau (paper B) | none
    warmup_epochs: int = 0
    label_smoothing: float = 0.1
    contrastive_weight: float = 0.0  # λ of paper A's regulariser; 0 = off
    contrastive_margin: float = 1.0  # δ, in L2 distance of normalised embeddings
    class_balance: str = "none"  # none | weights | sampler
    freeze_stages: int = 0  # stem + this many backbone stages minus one are frozen
    early_stop_patience: int = 5  # epochs without val-accuracy gain; 0 = off
    augment: str = "painting"  # see inkapp.data.augment.RECIPES
    crop: int = 0  # train on random crop×crop windows of the canvas (0 = whole canvas); evaluation sees the whole canvas
    tta_hflip: bool = False  # average predictions over the image and its mirror
    seed: int = 0
    amp: bool = True  # mixed precision, used only on CUDA
    num_workers: int = 0


@dataclass
class SplitConfig:
    ratios: tuple[float, float, float] = (0.7, 0.2, 0.1)
    seed: int = 0
    phash_threshold: int = 8
    #: near-duplicate grouping of the split (inkapp.data.splits.GROUPINGS): ``loose`` (pHash ≤ 12 or
    #: dHash-256 ≤ 12 bits, pages of one source work together) is the default; the configs of the
    #: models shipped before issue 15 pin ``strict`` (pHash ≤ phash_threshold) so they reproduce.
    grouping: str = "loose"


@dataclass
class TrainConfig:
    task: str
    domain: str
    data: str
    model: dict[str, Any]
    train: OptimConfig = field(default_factory=OptimConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    dynasty: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _section(cls: type, values: dict[str, Any] | None, where: str) -> Any:
    values = dict(values or {})
    names = {f.name for f in fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    if "ratios" in values:
        values["ratios"] = tuple(values["ratios"])
    return cls(**values)


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML training config (a path, or the name of a packaged config such as
    ``painting-technique``, see :func:`inkapp.tasks.config_path`). A relative ``data``
    folder that does not exist from the working directory is looked up by its name under
    :func:`inkapp.paths.shared_data_root`. ``overrides`` may set ``data`` and ``train.*`` keys
    (dotted names, e.g. ``{"train.epochs": 2}``)."""
    path = config_path(str(path))
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for key, value in (overrides or {}).items():
        section, _, name = key.rpartition(".")
        (doc.setdefault(section, {}) if section else doc)[name] = value
    missing = [k for k in ("task", "domain", "data", "model") if k not in doc]
    if missing:
        raise ValueError(f"{path}: missing {', '.join(missing)}")
    data = Path(doc["data"])
    if not data.is_absolute() and not data.exists() and (shared_data_root() / data.name).exists():
        data = (shared_data_root() / data.name).resolve()
    return TrainConfig(
        task=doc["task"], domain=doc["domain"], data=str(data), model=dict(doc["model"]),
        train=_section(OptimConfig, doc.get("train"), f"{path}: train"),
        split=_section(SplitConfig, doc.get("split"), f"{path}: split"),
        dynasty=doc.get("dynasty"),
    )
