"""Where tensors run: CUDA when present (the local rank's GPU under torchrun), else CPU."""
from __future__ import annotations

import os

import torch


def default_device() -> torch.device:
    """``cuda:<LOCAL_RANK>`` when CUDA is available, else ``cpu``."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")
