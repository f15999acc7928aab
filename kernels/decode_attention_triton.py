"""Triton decode attention (flash-decoding): split the cached sequence, then reduce the splits.

Stage 1, grid (batch, kv heads, splits): the q heads of one GQA group share a tile (BLOCK_G rows,
padded to the 16 that tl.dot needs), so each K/V block is read once per group instead of once per
q head; each split writes its normalized partial output and base-2 logsumexp. Stage 2, grid
(batch, q heads): combine the splits with their logsumexp weights. Split count depends only on the
cache's S_max, never on cache_seqlens values, so there is no host sync (CUDA-graph friendly).
Inference only: with autograd recording it defers to the torch reference. Reference: decode_attention.py.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .dispatch import interpreting

LOG2E = 1.4426950408889634


@triton.jit
def _decode_split(
    Q,
    K,
    V,
    SEQLENS,
    MID_O,
    MID_LSE,
    qk_scale,
    sq_b,
    sq_h,
    sk_b,
    sk_s,
    sk_h,
    sv_b,
    sv_s,
    sv_h,
    n_heads,
    n_splits,
    split_len,
    S_MAX,
    D,
    GROUP,
    PRECISION: tl.constexpr,
    BLOCK_G: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    b, kvh, sp = tl.program_id(0).to(tl.int64), tl.program_id(1), tl.program_id(2)  # b * stride can pass 2**31
    # Clamped to the cache size: a bad length must not read past the row (checked on CPU only, no sync).
    length = tl.minimum(tl.load(SEQLENS + b), S_MAX)
    start = sp * split_len
    end = tl.minimum(start + split_len, length)
    offs_g = tl.arange(0, BLOCK_G)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < D
    g_ok = offs_g < GROUP
    heads = kvh * GROUP + offs_g
    q = tl.load(Q + b * sq_b + heads[:, None] * sq_h + offs_d[None, :], mask=g_ok[:, None] & d_ok[None, :], other=0.0)
    m_i = tl.full((BLOCK_G,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_G,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_G, BLOCK_D), dtype=tl.float32)
    for n in range(start, end, BLOCK_N):
        cols = n + tl.arange(0, BLOCK_N)
        ok = cols < end
        k = tl.load(
            K + b * sk_b + cols[:, None] * sk_s + kvh * sk_h + offs_d[None, :],
            mask=ok[:, None] & d_ok[None, :],
            other=0.0,
        )
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
        s = tl.where(ok[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        p = tl.exp2(s - m_new[:, None])
        alpha = tl.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v = tl.load(
            V + b * sv_b + cols[:, None] * sv_s + kvh * sv_h + offs_d[None, :],
            mask=ok[:, None] & d_ok[None, :],
            other=0.0,
        )
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    empty = l_i == 0.0  # split beyond this row's length
    safe_l = tl.where(empty, 1.0, l_i)
    row = (b * n_heads + heads) * n_splits + sp
    tl.store(MID_O + row[:, None] * BLOCK_D + offs_d[None, :], acc / safe_l[:, None], mask=g_ok[:, None])
    tl.store(MID_LSE + row, tl.where(empty, float("-inf"), m_i + tl.log2(safe_l)), mask=g_ok)


@triton.jit
def _decode_reduce(MID_O, MID_LSE, OUT, so_b, so_h, n_heads, n_splits, D, BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr):
    b, h = tl.program_id(0).to(tl.int64), tl.program_id(1)
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, BLOCK_D)
    s_ok = offs_s < n_splits
    row = (b * n_heads + h) * n_splits + offs_s
    lse = tl.load(MID_LSE + row, mask=s_ok, other=float("-inf"))
    top = tl.max(lse, axis=0)
    top = tl.where(top == float("-inf"), 0.0, top)  # empty cache row: every weight is 0
    w = tl.exp2(lse - top)
    parts = tl.load(MID_O + row[:, None] * BLOCK_D + offs_d[None, :], mask=s_ok[:, None], other=0.0)
    total = tl.sum(w, axis=0)
    out = tl.sum(parts * w[:, None], axis=0) / tl.where(total == 0.0, 1.0, total)
    tl.store(OUT + b * so_b + h * so_h + offs_d, out.to(OUT.dtype.element_ty), mask=offs_d < D)


def _plan(b: int, hkv: int, s_max: int) -> tuple[int, int, int]:
    """(BLOCK_N, split_len, n_splits): enough programs to fill the GPU, splits of whole blocks."""
    block_n = 16 if interpreting() else 64
    target_programs = 16 if interpreting() else 2 * 132
    blocks = triton.cdiv(max(s_max, 1), block_n)
    n_splits = max(1, min(blocks, triton.cdiv(target_programs, b * hkv), 64))
    split_len = triton.cdiv(blocks, n_splits) * block_n
    return block_n, split_len, triton.cdiv(max(s_max, 1), split_len)


def decode_attention(q, k_cache, v_cache, cache_seqlens, scale):
    if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k_cache, v_cache)):
        from .decode_attention import decode_attention_torch

        return decode_attention_torch(q, k_cache, v_cache, cache_seqlens, scale)
    q = q.contiguous()
    if k_cache.stride(-1) != 1:
        k_cache = k_cache.contiguous()
    if v_cache.stride(-1) != 1:
        v_cache = v_cache.contiguous()
    if interpreting():
        from .checks import require

        s_max = k_cache.shape[1]
        require(
            bool(((cache_seqlens >= 0) & (cache_seqlens <= s_max)).all()),
            f"cache_seqlens must lie in [0, {s_max}], got {cache_seqlens.tolist()}",
        )
    b, hq, d = q.shape
    hkv = k_cache.shape[2]
    group = hq // hkv
    block_n, split_len, n_splits = _plan(b, hkv, k_cache.shape[1])
    block_d = max(16, triton.next_power_of_2(d))
    out = torch.empty_like(q)
    if b == 0:
        return out
    mid_o = torch.empty(b, hq, n_splits, block_d, dtype=torch.float32, device=q.device)
    mid_lse = torch.empty(b, hq, n_splits, dtype=torch.float32, device=q.device)
    precision = "ieee" if q.dtype == torch.float32 else "tf32"
    _decode_split[(b, hkv, n_splits)](
        q,
        k_cache,
        v_cache,
        cache_seqlens.contiguous(),
        mid_o,
        mid_lse,
        scale * LOG2E,
        q.stride(0),
        q.stride(1),
        k_cache.stride(0),
        k_cache.stride(1),
        k_cache.stride(2),
        v_cache.stride(0),
        v_cache.stride(1),
        v_cache.stride(2),
        hq,
        n_splits,
        split_len,
        k_cache.shape[1],
        d,
        group,
        PRECISION=precision,
        BLOCK_G=max(16, triton.next_power_of_2(group)),
        BLOCK_N=block_n,
        BLOCK_D=block_d,
    )
    _decode_reduce[(b, hq)](
        mid_o,
        mid_lse,
        out,
        out.stride(0),
        out.stride(1),
        hq,
        n_splits,
        d,
        BLOCK_S=triton.next_power_of_2(n_splits),
        BLOCK_D=block_d,
    )
    return out
