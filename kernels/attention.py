"""Variable-length attention over packed sequences (vision tower: bidirectional; prefill: causal GQA).

Segments are delimited by cumulative lengths; tokens never attend across segments. Causal masking
is bottom-right aligned so that Lq new queries continue Lk - Lq cached keys of the same segment.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .checks import require, require_cu_seqlens, require_float, require_max_seqlen


def _check(q, k, v, cu_q, cu_k) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        require_float(name, t)
        require(t.dim() == 3, f"{name} must be (tokens, heads, head_dim), got {tuple(t.shape)}")
    require(k.shape == v.shape, f"k and v must have the same shape, got {tuple(k.shape)} and {tuple(v.shape)}")
    require(q.shape[2] == k.shape[2], f"q and k head_dim differ: {q.shape[2]} vs {k.shape[2]}")
    require(
        k.shape[1] > 0 and q.shape[1] % k.shape[1] == 0,
        f"q heads ({q.shape[1]}) must be a multiple of kv heads ({k.shape[1]})",
    )
    require(q.dtype == k.dtype == v.dtype, f"q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    require_cu_seqlens("cu_seqlens_q", cu_q)
    require_cu_seqlens("cu_seqlens_k", cu_k)
    require(
        cu_q.numel() == cu_k.numel(),
        f"cu_seqlens_q and cu_seqlens_k must describe the same segments ({cu_q.numel()} vs {cu_k.numel()} offsets)",
    )


def _check_offsets(cu: list[int], total: int, name: str) -> None:
    require(
        cu[0] == 0 and cu[-1] == total and all(a <= b for a, b in zip(cu, cu[1:])),
        f"{name} must rise from 0 to the token count {total}, got {cu}",
    )


def segment_attention(q, k, v, causal: bool, scale: float) -> torch.Tensor:
    """One segment in float32: q (Lq, Hq, D), k/v (Lk, Hkv, D) -> (Lq, Hq, D).

    torch's fused scaled_dot_product_attention (its CPU flash kernel, forward and backward) is about 5x
    the explicit softmax(QK^T)V on the CPU, where this reference is the path that serves and trains."""
    lq, hq, d = q.shape
    lk, hkv, _ = k.shape
    if lq == 0 or lk == 0:
        return q.float() * 0.0  # zeros that stay in the autograd graph
    if causal and lq > lk:  # the first queries see no key at all: outputs of zeros, as the kernels give
        return torch.cat([q[: lq - lk].float() * 0.0, segment_attention(q[lq - lk :], k, v, causal, scale)])
    group = hq // hkv
    qf, kf, vf = (t.float().transpose(0, 1) for t in (q, k, v))  # (heads, L, D)
    mask = None
    if causal and lq < lk:  # bottom-right aligned: query i continues the lk - lq cached keys
        i = torch.arange(lq, device=q.device)[:, None]
        mask = torch.arange(lk, device=q.device)[None, :] <= i + (lk - lq)
    out = F.scaled_dot_product_attention(
        qf, kf, vf, attn_mask=mask, is_causal=causal and lq == lk, scale=scale, enable_gqa=group > 1
    )
    return out.transpose(0, 1)


def varlen_attention_torch(
    q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal: bool, scale: float
) -> torch.Tensor:
    cu_q = cu_seqlens_q.tolist()
    cu_k = cu_seqlens_k.tolist()
    _check_offsets(cu_q, q.shape[0], "cu_seqlens_q")
    _check_offsets(cu_k, k.shape[0], "cu_seqlens_k")
    require_max_seqlen("max_seqlen_q", cu_q, max_seqlen_q)
    require_max_seqlen("max_seqlen_k", cu_k, max_seqlen_k)
    parts = [
        segment_attention(q[q0:q1], k[k0:k1], v[k0:k1], causal, scale)
        for q0, q1, k0, k1 in zip(cu_q[:-1], cu_q[1:], cu_k[:-1], cu_k[1:])
    ]
    out = torch.cat(parts, dim=0) if parts else q.float() * 0.0
    return out.to(q.dtype)
