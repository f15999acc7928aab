"""RMSNorm, alone and fused with the residual add (Qwen3 decoder norms)."""

from __future__ import annotations

import torch

from .checks import require, require_float


def _check(x: torch.Tensor, weight: torch.Tensor) -> None:
    require_float("x", x)
    require_float("weight", weight)
    require(
        weight.dim() == 1 and weight.shape[0] == x.shape[-1],
        f"weight must have shape ({x.shape[-1]},) to match x's last dim, got {tuple(weight.shape)}",
    )


# ---------------------------------------------------------------- torch reference


def rms_norm_torch(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # Float32 statistics; cast back BEFORE the weight multiply, as Qwen3 does (matters in bf16).
    xf = x.float()
    normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * normed.to(x.dtype)


def add_rms_norm_torch(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    new_residual = x + residual
    return rms_norm_torch(new_residual, weight, eps), new_residual
