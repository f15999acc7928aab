"""Tanh-approximate GELU (SigLIP MLP)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .checks import require_float


def _check(x: torch.Tensor) -> None:
    require_float("x", x)


def gelu_tanh_torch(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")
