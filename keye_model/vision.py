"""SigLIP vision tower of Keye: patch + interpolated absolute position embedding, 2D rotary,
bidirectional attention within each image and within each whole video (packed, cu_seqlens).

Attribute names mirror the checkpoint (`visual.vision_model.*`) so state dicts load unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kernels import gelu_tanh, layer_norm, varlen_attention, vision_rope
from keye_model.config import VisionConfig
from keye_model.rope import vision_cos_sin

Grid = tuple[int, int, int]


def cu_seqlens_for(lengths: Sequence[int], device) -> tuple[torch.Tensor, int]:
    cu = torch.zeros(len(lengths) + 1, dtype=torch.int32)
    cu[1:] = torch.tensor(list(lengths), dtype=torch.int64).cumsum(0)
    return cu.to(device), max(lengths, default=0)


class VisionEmbeddings(nn.Module):
    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.hidden_size
        self.patch_embedding = nn.Conv2d(cfg.num_channels, c, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.position_embedding = nn.Embedding(cfg.position_grid**2, c)
        # Unused by the forward pass; kept so checkpoints round-trip with the reference.
        self.packing_position_embedding = nn.Embedding(32768, c)

    def position_table(self, h: int, w: int) -> torch.Tensor:
        """The square table resized bilinearly (align_corners=False) to an (h, w) patch grid."""
        g = self.cfg.position_grid
        table = self.position_embedding.weight.reshape(1, g, g, -1).permute(0, 3, 1, 2)
        table = F.interpolate(table, size=(h, w), mode="bilinear", align_corners=False)
        return table.permute(0, 2, 3, 1).reshape(h * w, -1)

    def forward(self, pixel_values: torch.Tensor, grids: Sequence[Grid]) -> torch.Tensor:
        w = self.patch_embedding.weight
        x = F.conv2d(pixel_values.to(w.dtype), w, self.patch_embedding.bias, stride=self.cfg.patch_size)
        x = x.flatten(1)  # (N, C): one 14x14 patch per row
        tables: dict[tuple[int, int], torch.Tensor] = {}
        pos = []
        for t, h, wd in grids:
            if (h, wd) not in tables:
                tables[(h, wd)] = self.position_table(h, wd)
            pos.append(tables[(h, wd)].repeat(t, 1))  # every frame gets the same table
        return x + torch.cat(pos)


class VisionAttention(nn.Module):
    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        c = cfg.hidden_size
        self.heads = cfg.num_attention_heads
        self.head_dim = cfg.head_dim
        self.q_proj = nn.Linear(c, c)
        self.k_proj = nn.Linear(c, c)
        self.v_proj = nn.Linear(c, c)
        self.out_proj = nn.Linear(c, c)

    def forward(self, x, cos, sin, cu_seqlens, max_len):
        T = x.shape[0]
        q = self.q_proj(x).view(T, self.heads, self.head_dim)
        k = self.k_proj(x).view(T, self.heads, self.head_dim)
        v = self.v_proj(x).view(T, self.heads, self.head_dim)
        q, k = vision_rope(q, k, cos, sin)
        o = varlen_attention(
            q.to(v.dtype),
            k.to(v.dtype),
            v,
            cu_seqlens,
            cu_seqlens,
            max_len,
            max_len,
            causal=False,
            scale=self.head_dim**-0.5,
        )
        return self.out_proj(o.reshape(T, -1))


class VisionMLP(nn.Module):
    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.fc2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size)

    def forward(self, x):
        return self.fc2(gelu_tanh(self.fc1(x)))


class VisionLayer(nn.Module):
    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.eps = cfg.layer_norm_eps
        self.layer_norm1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.self_attn = VisionAttention(cfg)
        self.layer_norm2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.mlp = VisionMLP(cfg)

    def forward(self, x, cos, sin, cu_seqlens, max_len):
        h = layer_norm(x, self.layer_norm1.weight, self.layer_norm1.bias, self.eps)
        x = x + self.self_attn(h, cos, sin, cu_seqlens, max_len)
        h = layer_norm(x, self.layer_norm2.weight, self.layer_norm2.bias, self.eps)
        return x + self.mlp(h)


class VisionEncoder(nn.Module):
    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(VisionLayer(cfg) for _ in range(cfg.num_hidden_layers))


class PoolingHead(nn.Module):
    """SigLIP attention-pooling head. Keye never runs it; its tensors are loaded and saved as-is."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        c = cfg.hidden_size
        self.probe = nn.Parameter(torch.empty(1, 1, c))
        self.attention = nn.MultiheadAttention(c, cfg.num_attention_heads, batch_first=True)
        self.layernorm = nn.LayerNorm(c, eps=cfg.layer_norm_eps)
        self.mlp = VisionMLP(cfg)


class VisionTransformer(nn.Module):
    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embeddings = VisionEmbeddings(cfg)
        self.encoder = VisionEncoder(cfg)
        self.post_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        if cfg.use_head:
            self.head = PoolingHead(cfg)

    def forward(self, pixel_values: torch.Tensor, grids: Sequence[Grid]) -> torch.Tensor:
        """pixel_values (sum t*h*w, C, p, p), patches row-major per frame -> (same count, width).

        Each grid row (an image or a whole video) is one attention segment.
        """
        x = self.embeddings(pixel_values, grids)
        cos, sin = vision_cos_sin(grids, self.cfg.head_dim, device=x.device)
        cu, max_len = cu_seqlens_for([t * h * w for t, h, w in grids], x.device)
        for layer in self.encoder.layers:
            x = layer(x, cos, sin, cu, max_len)
        return layer_norm(x, self.post_layernorm.weight, self.post_layernorm.bias, self.cfg.layer_norm_eps)


class VisionModel(nn.Module):
    """Wrapper that only exists to give the checkpoint's `visual.vision_model.` prefix."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.vision_model = VisionTransformer(cfg)

    def forward(self, pixel_values: torch.Tensor, grids: Sequence[Grid]) -> torch.Tensor:
        return self.vision_model(pixel_values, grids)
