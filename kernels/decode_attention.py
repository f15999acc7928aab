"""Decode attention: one new query per sequence over the engine's preallocated KV cache.

k_cache/v_cache are (B, S_max, Hkv, D); cache_seqlens counts the valid positions of each row,
including the token being decoded (already written to the cache).
"""

from __future__ import annotations

import torch

from .checks import require, require_float


def _check(q, k_cache, v_cache, cache_seqlens) -> None:
    for name, t in (("q", q), ("k_cache", k_cache), ("v_cache", v_cache)):
        require_float(name, t)
    require(q.dim() == 3, f"q must be (B, Hq, D), got {tuple(q.shape)}")
    require(k_cache.dim() == 4, f"k_cache must be (B, S_max, Hkv, D), got {tuple(k_cache.shape)}")
    require(k_cache.shape == v_cache.shape, f"k_cache and v_cache differ: {tuple(k_cache.shape)} vs {tuple(v_cache.shape)}")
    require(q.dtype == k_cache.dtype == v_cache.dtype,
            f"q and the caches must share a dtype, got {q.dtype}, {k_cache.dtype}, {v_cache.dtype}")
    b, hq, d = q.shape
    require(k_cache.shape[0] == b and k_cache.shape[3] == d,
            f"k_cache must be ({b}, S_max, Hkv, {d}) to match q, got {tuple(k_cache.shape)}")
    require(k_cache.shape[2] > 0 and hq % k_cache.shape[2] == 0,
            f"q heads ({hq}) must be a multiple of kv heads ({k_cache.shape[2]})")
    require(isinstance(cache_seqlens, torch.Tensor) and cache_seqlens.dtype == torch.int32
            and tuple(cache_seqlens.shape) == (b,), f"cache_seqlens must be int32 of shape ({b},)")


def decode_attention_torch(q, k_cache, v_cache, cache_seqlens, scale: float) -> torch.Tensor:
    b, hq, d = q.shape
    s_max, hkv = k_cache.shape[1], k_cache.shape[2]
    require(bool((cache_seqlens >= 0).all()) and bool((cache_seqlens <= s_max).all()),
            f"cache_seqlens must lie in [0, {s_max}], got {cache_seqlens.tolist()}")
    group = hq // hkv
    qg = q.float().view(b, hkv, group, d)
    scores = torch.einsum("bhgd,bshd->bhgs", qg, k_cache.float()) * scale
    valid = torch.arange(s_max, device=q.device)[None, :] < cache_seqlens[:, None].long()
    scores = scores.masked_fill(~valid[:, None, None, :], float("-inf"))
    probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # an empty cache row outputs zeros
    # Zero the unused cache slots: a preallocated cache may hold NaN garbage there, and 0 * NaN = NaN.
    values = v_cache.float().masked_fill(~valid[:, :, None, None], 0.0)
    out = torch.einsum("bhgs,bshd->bhgd", probs, values)
    return out.reshape(b, hq, d).to(q.dtype)
