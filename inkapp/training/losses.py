"""Losses: cross-entropy with label smoothing, plus paper A's contrastive regulariser.

Paper A prints ``λ Σ max(0, δ − ‖f_i − f_j‖₂)``, which only pushes pairs apart; its text
asks for same-class pairs to be pulled together and other-class pairs pushed past the
margin δ. We implement that standard contrastive form (Hadsell et al., 2006) over all
in-batch pairs of L2-normalised embeddings:
``mean_{same} d² + mean_{different} max(0, δ − d)²``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def pairwise_distances(emb: torch.Tensor) -> torch.Tensor:
    """N×D -> N×N Euclidean distances, with a gradient that stays finite at d = 0."""
    sq = (emb.unsqueeze(1) - emb.unsqueeze(0)).pow(2).sum(-1)
    return sq.clamp_min(1e-12).sqrt()


def contrastive_loss(emb: torch.Tensor, labels: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Mean squared distance of same-class pairs plus mean squared hinge
    ``max(0, margin − d)²`` of different-class pairs (each term 0 when it has no pairs)."""
    d = pairwise_distances(emb.float())
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    off_diag = ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos, neg = same & off_diag, ~same
    loss = emb.new_zeros((), dtype=torch.float32)
    if pos.any():
        loss = loss + d[pos].pow(2).mean()
    if neg.any():
        loss = loss + F.relu(margin - d[neg]).pow(2).mean()
    return loss


def class_weights(targets: list[int], k: int) -> torch.Tensor:
    """Inverse-frequency weights N / (k · n_c), so a balanced set gets all ones."""
    counts = torch.bincount(torch.tensor(targets), minlength=k).float().clamp_min(1)
    return counts.sum() / (k * counts)
