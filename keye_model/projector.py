"""Projector `mlp_AR`: LayerNorm per vision token, 2x2 merge of raw-grid neighbours, MLP to the LM width."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kernels import layer_norm
from keye_model.config import KeyeConfig

Grid = tuple[int, int, int]


def merge_windows(x: torch.Tensor, grids: Sequence[Grid], m: int) -> torch.Tensor:
    """(sum t*h*w, C) row-major patches -> (sum t*h*w/m^2, m*m*C).

    One output row per m x m window, windows in row-major order of the merged grid; inside a row
    the features are ordered (row-in-window, col-in-window, channel).
    """
    out, start = [], 0
    c = x.shape[-1]
    for t, h, w in grids:
        n = t * h * w
        seg = x[start : start + n].view(t, h // m, m, w // m, m, c)
        out.append(seg.permute(0, 1, 3, 2, 4, 5).reshape(-1, m * m * c))
        start += n
    return torch.cat(out)


class Projector(nn.Module):
    def __init__(self, cfg: KeyeConfig) -> None:
        super().__init__()
        self.merge = cfg.vision.spatial_merge_size
        vis, wide = cfg.vision.hidden_size, cfg.merge_dim
        self.pre_norm = nn.LayerNorm(vis, eps=1e-5)
        self.linear_1 = nn.Linear(wide, wide)
        self.linear_2 = nn.Linear(wide, cfg.hidden_size)

    def forward(self, features: torch.Tensor, grids: Sequence[Grid]) -> torch.Tensor:
        x = layer_norm(features, self.pre_norm.weight, self.pre_norm.bias, 1e-5)  # norm BEFORE merging
        x = merge_windows(x, grids, self.merge)
        return self.linear_2(F.gelu(self.linear_1(x)))  # exact (erf) GELU, unlike the tower's tanh
