"""Qwen3 decoder on packed tokens: RMSNorm (float32, cast back before the weight), per-head
q/k RMSNorm then M-RoPE, grouped-query attention, SwiGLU. Names mirror the checkpoint (`model.*`)."""

from __future__ import annotations

import torch
from torch import nn

from kernels import add_rms_norm, qk_norm_rope, rms_norm, swiglu
from keye_model.attention import Attend
from keye_model.config import KeyeConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


class Attention(nn.Module):
    def __init__(self, cfg: KeyeConfig) -> None:
        super().__init__()
        self.hq, self.hkv, self.d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.eps = cfg.rms_norm_eps
        self.q_proj = nn.Linear(cfg.hidden_size, self.hq * self.d, bias=False)
        self.k_proj = nn.Linear(cfg.hidden_size, self.hkv * self.d, bias=False)
        self.v_proj = nn.Linear(cfg.hidden_size, self.hkv * self.d, bias=False)
        self.o_proj = nn.Linear(self.hq * self.d, cfg.hidden_size, bias=False)
        self.q_norm = RMSNorm(self.d, cfg.rms_norm_eps)
        self.k_norm = RMSNorm(self.d, cfg.rms_norm_eps)

    def forward(self, x: torch.Tensor, cos, sin, attend: Attend, layer: int) -> torch.Tensor:
        T = x.shape[0]
        q = self.q_proj(x).view(T, self.hq, self.d)
        k = self.k_proj(x).view(T, self.hkv, self.d)
        v = self.v_proj(x).view(T, self.hkv, self.d)
        q, k = qk_norm_rope(q, k, self.q_norm.weight, self.k_norm.weight, cos, sin, self.eps)
        o = attend(layer, q, k, v, self.d**-0.5)
        return self.o_proj(o.reshape(T, self.hq * self.d))


class MLP(nn.Module):
    def __init__(self, cfg: KeyeConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(swiglu(self.gate_proj(x), self.up_proj(x)))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: KeyeConfig) -> None:
        super().__init__()
        self.eps = cfg.rms_norm_eps
        self.self_attn = Attention(cfg)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x, residual, cos, sin, attend: Attend, layer: int):
        """x: the previous sublayer's output (or the embeddings when residual is None).

        Returns (this layer's MLP output, residual stream); the next norm adds them (fused).
        """
        if residual is None:
            residual, h = x, rms_norm(x, self.input_layernorm.weight, self.eps)
        else:
            h, residual = add_rms_norm(x, residual, self.input_layernorm.weight, self.eps)
        a = self.self_attn(h, cos, sin, attend, layer)
        h, residual = add_rms_norm(a, residual, self.post_attention_layernorm.weight, self.eps)
        return self.mlp(h), residual


class Decoder(nn.Module):
    def __init__(self, cfg: KeyeConfig) -> None:
        super().__init__()
        self.eps = cfg.rms_norm_eps
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, embeds: torch.Tensor, cos, sin, attend: Attend) -> torch.Tensor:
        """embeds (T, hidden) packed tokens -> final-normed hidden states (T, hidden)."""
        x, residual = embeds, None
        for i, layer in enumerate(self.layers):
            x, residual = layer(x, residual, cos, sin, attend, i)
        if residual is None:
            return rms_norm(x, self.norm.weight, self.eps)
        return add_rms_norm(x, residual, self.norm.weight, self.eps)[0]
