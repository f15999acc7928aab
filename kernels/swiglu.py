"""SwiGLU activation silu(gate) * up (Qwen3 MLP; the matmuls stay with cuBLAS)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .checks import require, require_float


def _check(gate: torch.Tensor, up: torch.Tensor) -> None:
    require_float("gate", gate)
    require_float("up", up)
    require(
        gate.shape == up.shape, f"gate and up must have the same shape, got {tuple(gate.shape)} and {tuple(up.shape)}"
    )


def swiglu_torch(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return F.silu(gate) * up
