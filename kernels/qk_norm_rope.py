"""Per-head q/k RMSNorm fused with the decoder's rotary embedding (M-RoPE, rotate-half).

cos/sin arrive already assembled per token (T, head_dim) by keye_model/rope.py from the three
position rows and the [16, 24, 24] sections, so the kernel only needs one angle per channel.
"""

from __future__ import annotations

import torch

from .checks import require, require_float


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _check(q, k, q_weight, k_weight, cos, sin) -> None:
    for name, t in (("q", q), ("k", k), ("q_weight", q_weight), ("k_weight", k_weight), ("cos", cos), ("sin", sin)):
        require_float(name, t)
    require(
        q.dim() == 3 and k.dim() == 3,
        f"q and k must be (T, heads, head_dim), got {tuple(q.shape)} and {tuple(k.shape)}",
    )
    t, _, d = q.shape
    require(k.shape[0] == t and k.shape[2] == d, f"k must be ({t}, Hkv, {d}) to match q, got {tuple(k.shape)}")
    require(d % 2 == 0, f"head_dim must be even for rotate-half, got {d}")
    for name, w in (("q_weight", q_weight), ("k_weight", k_weight)):
        require(tuple(w.shape) == (d,), f"{name} must have shape ({d},), got {tuple(w.shape)}")
    for name, c in (("cos", cos), ("sin", sin)):
        require(tuple(c.shape) == (t, d), f"{name} must have shape ({t}, {d}), got {tuple(c.shape)}")


def _norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    xf = x.float()
    normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * normed.to(x.dtype)


def qk_norm_rope_torch(q, k, q_weight, k_weight, cos, sin, eps: float):
    cos_h = cos.unsqueeze(1).to(q.dtype)
    sin_h = sin.unsqueeze(1).to(q.dtype)
    qn = _norm(q, q_weight, eps)
    kn = _norm(k, k_weight, eps)
    return qn * cos_h + rotate_half(qn) * sin_h, kn * cos_h + rotate_half(kn) * sin_h
