"""Image embeddings for similar-work search, duplicates and suspect labels.

Two embedders, each used where it measured better (``train/retrieval_quality.py`` →
``docs/results/retrieval.json``, test splits):

* :class:`TaskEmbedder` — the shipped task model's own embedding
  (``model.forward_embedding``): BamNet's L2-normalised pooled feature (1280-d),
  InkFusionNet's L2-normalised contrastive projection (128-d, trained with the
  contrastive term of the paper's loss). Used for **similar works**: its neighbours
  share the class more often than the generic network's (higher precision@5). One
  index per task, since the spaces differ. It is poor at telling a copy from another
  work of the same class (trained to pull a class together), so not used for duplicates.
* :class:`GenericEmbedder` — the ImageNet EfficientNet-Lite0 trunk (offline weights),
  global-average pooled, L2-normalised, 1280-d, on a 224 px RGB letterbox. Used for
  **duplicates** (it finds re-encoded, resized and cropped copies with far fewer false
  pairs) and for **suspect labels**: these features never saw our labels, so a probe
  trained on them out of fold gives honest out-of-fold probabilities (the task model
  was trained on the very labels being audited and has fitted its training images,
  mislabelled ones included). One task-independent index.

All embeddings are float32, one unit-length row per image; similarity is the inner
product (= cosine, in [-1, 1]).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from inkapp.data.preprocess import Preprocessor, letterbox, normalise, to_uint8_tensor
from inkapp.inference import Predictor
from inkapp.models.backbones import create_trunk, normalisation

GENERIC_BACKBONE = "tf_efficientnet_lite0"
GENERIC_SIZE = 224  # pixels; the Lite0 ImageNet resolution


def _batches(canvases: torch.Tensor, batch_size: int):
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, len(canvases), batch_size):
        yield canvases[start:start + batch_size]


def _embed_images(embedder: "TaskEmbedder | GenericEmbedder", images: Sequence[Image.Image], batch_size: int) -> np.ndarray:
    if not images:
        raise ValueError("no images to embed")
    return embedder.embed_canvases(torch.stack([embedder.canvas(img) for img in images]), batch_size)


class TaskEmbedder:
    """Embeddings from a task model (:class:`Predictor`)."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.task = predictor.task
        self.preprocessor: Preprocessor = predictor.preprocessor

    @property
    def name(self) -> str:
        """Identifies the embedding space: ``task:<model version>``."""
        return f"task:{self.predictor.version}"

    def embed_canvases(self, canvases: torch.Tensor, batch_size: int = 32) -> np.ndarray:
        """uint8 N×3×S×S canvases (S = the card's image size) -> N×D float32 unit
        embeddings (float32 forward, no autocast). Class probabilities are not
        returned: they come from :meth:`Predictor.probabilities` (the card's scoring)."""
        p = self.predictor
        out = []
        with torch.inference_mode():
            for chunk in _batches(canvases, batch_size):
                x = normalise(chunk.to(p.device), p.preprocessor.mean, p.preprocessor.std)
                emb = p.model.forward_embedding(x.contiguous(memory_format=torch.channels_last))[1]
                out.append(nn.functional.normalize(emb.float(), dim=1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    def canvas(self, img: Image.Image) -> torch.Tensor:
        """The model's uint8 3×S×S letterboxed canvas of ``img``."""
        return self.preprocessor.canvas(img)[0]

    def embed(self, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        """PIL images (any size/mode) -> N×D float32 unit embeddings."""
        return _embed_images(self, images, batch_size)


class GenericEmbedder:
    """ImageNet EfficientNet-Lite0 pooled features (1280-d), label-independent."""

    name = f"generic:{GENERIC_BACKBONE}"
    size = GENERIC_SIZE

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.trunk = create_trunk(GENERIC_BACKBONE, "offline").to(self.device).eval().requires_grad_(False)
        self.mean, self.std = normalisation(GENERIC_BACKBONE)

    def canvas(self, img: Image.Image) -> torch.Tensor:
        """uint8 3×224×224 RGB letterboxed canvas of ``img`` (paper-white padding)."""
        return to_uint8_tensor(letterbox(img, self.size)[0], False)

    def embed(self, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        """PIL images (any size/mode) -> N×1280 float32 unit embeddings."""
        return _embed_images(self, images, batch_size)

    def embed_canvases(self, canvases: torch.Tensor, batch_size: int = 32) -> np.ndarray:
        """uint8 N×3×224×224 canvases -> N×1280 float32 unit embeddings."""
        out = []
        with torch.inference_mode():
            for chunk in _batches(canvases, batch_size):
                x = normalise(chunk.to(self.device), self.mean, self.std)
                feat = self.trunk.forward_features(x).mean((2, 3))
                out.append(nn.functional.normalize(feat.float(), dim=1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.trunk.num_features), np.float32)
