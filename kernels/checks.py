"""Shape and dtype checks shared by the kernel entry points (clear errors instead of garbage)."""

from __future__ import annotations

import torch

from .errors import KernelInputError


def require(condition: bool, message: str) -> None:
    if not condition:
        raise KernelInputError(message)


def require_float(name: str, t: torch.Tensor) -> None:
    require(isinstance(t, torch.Tensor), f"{name} must be a torch.Tensor, got {type(t).__name__}")
    require(t.is_floating_point(), f"{name} must be a floating-point tensor, got {t.dtype}")


def require_cu_seqlens(name: str, cu: torch.Tensor) -> None:
    """Offsets tensor shape/dtype; the values are checked where that costs no GPU sync."""
    require(
        isinstance(cu, torch.Tensor) and cu.dim() == 1 and cu.numel() >= 1,
        f"{name} must be a 1-D tensor of n_segments+1 offsets",
    )
    require(cu.dtype == torch.int32, f"{name} must be int32, got {cu.dtype}")


def require_max_seqlen(name: str, cu: list[int], max_seqlen: int) -> None:
    """max_seqlen covers every segment of the offsets `cu` (given as a host list: no GPU sync here)."""
    longest = max((b - a for a, b in zip(cu, cu[1:])), default=0)
    require(longest <= max_seqlen, f"{name}={max_seqlen} is shorter than the longest segment ({longest})")
