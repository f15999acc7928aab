"""Decode attention: one new query per sequence over the engine's preallocated KV cache.

k_cache/v_cache are (B, S_max, Hkv, D); cache_seqlens counts the valid positions of each row,
including the token being decoded (already written to the cache).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .checks import require, require_float


def _check(q, k_cache, v_cache, cache_seqlens) -> None:
    for name, t in (("q", q), ("k_cache", k_cache), ("v_cache", v_cache)):
        require_float(name, t)
    require(q.dim() == 3, f"q must be (B, Hq, D), got {tuple(q.shape)}")
    require(k_cache.dim() == 4, f"k_cache must be (B, S_max, Hkv, D), got {tuple(k_cache.shape)}")
    require(
        k_cache.shape == v_cache.shape, f"k_cache and v_cache differ: {tuple(k_cache.shape)} vs {tuple(v_cache.shape)}"
    )
    require(
        q.dtype == k_cache.dtype == v_cache.dtype,
        f"q and the caches must share a dtype, got {q.dtype}, {k_cache.dtype}, {v_cache.dtype}",
    )
    b, hq, d = q.shape
    require(
        k_cache.shape[0] == b and k_cache.shape[3] == d,
        f"k_cache must be ({b}, S_max, Hkv, {d}) to match q, got {tuple(k_cache.shape)}",
    )
    require(
        k_cache.shape[2] > 0 and hq % k_cache.shape[2] == 0,
        f"q heads ({hq}) must be a multiple of kv heads ({k_cache.shape[2]})",
    )
    require(
        isinstance(cache_seqlens, torch.Tensor)
        and cache_seqlens.dtype == torch.int32
        and tuple(cache_seqlens.shape) == (b,),
        f"cache_seqlens must be int32 of shape ({b},)",
    )


def decode_attention_torch(q, k_cache, v_cache, cache_seqlens, scale: float) -> torch.Tensor:
    b, hq, d = q.shape
    s_max, hkv = k_cache.shape[1], k_cache.shape[2]
    lo, hi = (int(x) for x in cache_seqlens.aminmax())
    require(lo >= 0 and hi <= s_max, f"cache_seqlens must lie in [0, {s_max}], got {cache_seqlens.tolist()}")
    # Positions past the longest row are never valid: attention reads only the first `hi`.
    k, v = k_cache[:, :hi].float().transpose(1, 2), v_cache[:, :hi].float().transpose(1, 2)  # (B, Hkv, S, D)
    mask = None
    if lo < hi:  # rows of different lengths: mask each row's tail
        valid = (torch.arange(hi, device=q.device) < cache_seqlens[:, None])[:, None, :, None]
        # Zero the unused slots too: a preallocated cache may hold NaN there, and 0 * NaN = NaN.
        k, v = k.masked_fill(~valid, 0.0), v.masked_fill(~valid, 0.0)
        mask = valid.transpose(2, 3)  # (B, 1, 1, S)
    # SDPA with grouped heads: one fused op, no (B, Hq, S, D) copies of the grouped keys.
    out = F.scaled_dot_product_attention(
        q.float()[:, :, None], k, v, attn_mask=mask, scale=scale, enable_gqa=hq != hkv
    )[:, :, 0]
    if lo == 0:  # an empty cache row outputs zeros
        out = out.masked_fill((cache_seqlens == 0)[:, None, None], 0.0)
    return out.to(q.dtype)
