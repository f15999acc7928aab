"""Small launch helpers shared by the Triton files (tile sizes, flattening)."""

from __future__ import annotations

import torch
import triton


def rows_of(x: torch.Tensor) -> torch.Tensor:
    """x as a contiguous (rows, D) matrix (rows may be 0)."""
    return x.reshape(-1, x.shape[-1]).contiguous()


def row_tile(d: int) -> tuple[int, int]:
    """(BLOCK_R, BLOCK_D) for row-wise kernels: a whole row per tile, several short rows at once."""
    block_d = triton.next_power_of_2(max(d, 1))
    block_r = max(1, min(16, 4096 // block_d))
    return block_r, block_d


def row_warps(block_r: int, block_d: int) -> int:
    return 8 if block_r * block_d >= 4096 else 4


def reduction_grid(n_row_blocks: int) -> int:
    """Programs for a backward that also reduces a weight gradient: bounded so partials stay small."""
    return max(1, min(n_row_blocks, 256))
