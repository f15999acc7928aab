"""LayerNorm with affine weight and bias (SigLIP tower, projector)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .checks import require, require_float


def _check(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> None:
    require_float("x", x)
    d = x.shape[-1]
    for name, t in (("weight", weight), ("bias", bias)):
        require_float(name, t)
        require(t.dim() == 1 and t.shape[0] == d, f"{name} must have shape ({d},), got {tuple(t.shape)}")


def layer_norm_torch(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), weight, bias, eps)
