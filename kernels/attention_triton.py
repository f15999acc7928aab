"""Triton variable-length flash attention over packed segments, forward and backward.

Forward grid: (query blocks of the longest segment, segments, kv heads). Each program holds a few
queries times all q heads of its GQA group in one tile (q head h uses kv head h // group), so every
K/V block is loaded once per group, and streams the segment's key blocks with an online softmax
(base-2 exponent, scale folded in). head_dim is padded to a power of two with masks (72 -> 128
for the vision tower). Causal masking is bottom-right aligned: query i sees keys j <= i + (Lk - Lq).
Backward follows FlashAttention-2: one kernel per key block accumulates dK/dV over every q head of
its group (no atomics), one kernel per query block accumulates dQ. Reference: attention.py.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .checks import require_max_seqlen
from .dispatch import interpreting

LOG2E = 1.4426950408889634


def _config(dtype: torch.dtype, kernel: str) -> dict:
    """Tiles and launch settings per kernel, chosen from sm_90 compiles without register spills
    (tests/kernels/sm90_compile.py reports shared memory, registers and spills)."""
    if interpreting():
        # Small tiles so that short test segments still span several blocks.
        return dict(BLOCK_M=16, BLOCK_N=16)
    if dtype == torch.float32:  # exact float32 products have no tensor cores: small tiles
        return dict(BLOCK_M=16, BLOCK_N=16, num_warps=4, num_stages=1)
    if kernel == "dkdv":
        return dict(BLOCK_M=32, BLOCK_N=64, num_warps=8, num_stages=2)
    return dict(BLOCK_M=64, BLOCK_N=64, num_warps=8, num_stages=3 if kernel == "fwd" else 2)


@triton.jit
def _attn_fwd(
    Q,
    K,
    V,
    OUT,
    LSE,
    CU_Q,
    CU_K,
    qk_scale,
    sq_t,
    sq_h,
    sk_t,
    sk_h,
    so_t,
    so_h,
    n_heads,
    D,
    GROUP,
    CAUSAL: tl.constexpr,
    PRECISION: tl.constexpr,
    GROUP_P: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    # One program: BLOCK_M queries x all GROUP q heads of one kv head, as BLOCK_M * GROUP_P tile
    # rows (row = query * GROUP_P + head in group), so each K/V block is loaded once per group.
    m_block, seg, kvh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    q0 = tl.load(CU_Q + seg).to(tl.int64)  # token * stride can pass 2**31 on long packs
    lq = tl.load(CU_Q + seg + 1) - q0
    k0 = tl.load(CU_K + seg).to(tl.int64)
    lk = tl.load(CU_K + seg + 1) - k0
    if m_block * BLOCK_M >= lq:
        return
    # 64-bit scalar bases, 32-bit per-element offsets: keeps address registers low.
    q_base = Q + q0 * sq_t + kvh * GROUP * sq_h
    o_base = OUT + q0 * so_t + kvh * GROUP * so_h
    k_base = K + k0 * sk_t + kvh * sk_h
    v_base = V + k0 * sk_t + kvh * sk_h
    rows = tl.arange(0, BLOCK_M * GROUP_P)
    offs_m = m_block * BLOCK_M + rows // GROUP_P  # query index within the segment
    g = rows % GROUP_P  # head within the group
    row_ok = (offs_m < lq) & (g < GROUP)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < D
    q = tl.load(
        q_base + (offs_m * sq_t + g * sq_h)[:, None] + offs_d[None, :], mask=row_ok[:, None] & d_ok[None, :], other=0.0
    )
    m_i = tl.full((BLOCK_M * GROUP_P,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_M * GROUP_P,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_M * GROUP_P, BLOCK_D), dtype=tl.float32)
    shift = lk - lq
    end = lk
    if CAUSAL:
        end = tl.maximum(tl.minimum(lk, (m_block + 1) * BLOCK_M + shift), 0)
    for start in range(0, end, BLOCK_N):
        cols = start + offs_n
        kv_ok = (cols < lk)[:, None] & d_ok[None, :]
        k = tl.load(k_base + cols[:, None] * sk_t + offs_d[None, :], mask=kv_ok, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
        valid = (cols < lk)[None, :]
        if CAUSAL:
            valid = valid & (cols[None, :] <= offs_m[:, None] + shift)
        s = tl.where(valid, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows that saw no key yet
        p = tl.exp2(s - m_safe[:, None])
        alpha = tl.exp2(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v = tl.load(v_base + cols[:, None] * sk_t + offs_d[None, :], mask=kv_ok, other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    empty = l_i == 0.0  # a query that sees no key outputs zeros
    safe_l = tl.where(empty, 1.0, l_i)
    out = acc / safe_l[:, None]
    tl.store(
        o_base + (offs_m * so_t + g * so_h)[:, None] + offs_d[None, :],
        out.to(OUT.dtype.element_ty),
        mask=row_ok[:, None] & d_ok[None, :],
    )
    # +inf for empty rows makes every backward probability exp2(s - lse) exactly 0.
    lse = tl.where(empty, float("inf"), m_i + tl.log2(safe_l))
    tl.store(LSE + q0 * n_heads + kvh * GROUP + offs_m * n_heads + g, lse, mask=row_ok)


@triton.jit
def _attn_bwd_dkdv(
    Q,
    K,
    V,
    DO,
    LSE,
    DELTA,
    DK,
    DV,
    CU_Q,
    CU_K,
    qk_scale,
    sm_scale,
    sq_t,
    sq_h,
    sk_t,
    sk_h,
    n_heads,
    D,
    GROUP,
    CAUSAL: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    n_block, seg, kvh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    q0 = tl.load(CU_Q + seg).to(tl.int64)  # token * stride can pass 2**31 on long packs
    lq = tl.load(CU_Q + seg + 1) - q0
    k0 = tl.load(CU_K + seg).to(tl.int64)
    lk = tl.load(CU_K + seg + 1) - k0
    if n_block * BLOCK_N >= lk:
        return
    offs_n = n_block * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m0 = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < D
    kv_ok = (offs_n < lk)[:, None] & d_ok[None, :]
    kv_base = k0 * sk_t + kvh * sk_h  # 64-bit scalar; per-element offsets stay 32-bit
    kv_offs = offs_n[:, None] * sk_t + offs_d[None, :]
    k = tl.load(K + kv_base + kv_offs, mask=kv_ok, other=0.0)
    v = tl.load(V + kv_base + kv_offs, mask=kv_ok, other=0.0)
    dk = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
    dv = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
    shift = lk - lq
    first_m = 0
    if CAUSAL:
        # Queries before (first key of this block - shift) cannot see any key of the block.
        first_m = tl.maximum(n_block * BLOCK_N - shift, 0) // BLOCK_M * BLOCK_M
    for g in range(0, GROUP):
        h = kvh * GROUP + g
        q_ptr = Q + (q0 * sq_t + h * sq_h)
        do_ptr = DO + (q0 * sq_t + h * sq_h)
        lse_ptr = LSE + (q0 * n_heads + h)
        delta_ptr = DELTA + (q0 * n_heads + h)
        for m_start in range(first_m, lq, BLOCK_M):
            offs_m = m_start + offs_m0
            q_ok = (offs_m < lq)[:, None] & d_ok[None, :]
            q_offs = offs_m[:, None] * sq_t + offs_d[None, :]
            q = tl.load(q_ptr + q_offs, mask=q_ok, other=0.0)
            do = tl.load(do_ptr + q_offs, mask=q_ok, other=0.0)
            lse = tl.load(lse_ptr + offs_m * n_heads, mask=offs_m < lq, other=float("inf"))
            delta = tl.load(delta_ptr + offs_m * n_heads, mask=offs_m < lq, other=0.0)
            s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
            valid = (offs_n < lk)[None, :]
            if CAUSAL:
                valid = valid & (offs_n[None, :] <= offs_m[:, None] + shift)
            p = tl.where(valid, tl.exp2(s - lse[:, None]), 0.0)
            dv += tl.dot(tl.trans(p).to(do.dtype), do, input_precision=PRECISION)
            dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
            ds = p * (dp - delta[:, None])
            dk += tl.dot(tl.trans(ds).to(q.dtype), q, input_precision=PRECISION)
    tl.store(DK + kv_base + kv_offs, (dk * sm_scale).to(DK.dtype.element_ty), mask=kv_ok)
    tl.store(DV + kv_base + kv_offs, dv.to(DV.dtype.element_ty), mask=kv_ok)


@triton.jit
def _attn_bwd_dq(
    Q,
    K,
    V,
    DO,
    LSE,
    DELTA,
    DQ,
    CU_Q,
    CU_K,
    qk_scale,
    sm_scale,
    sq_t,
    sq_h,
    sk_t,
    sk_h,
    n_heads,
    D,
    GROUP,
    CAUSAL: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    m_block, seg, h = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    q0 = tl.load(CU_Q + seg).to(tl.int64)  # token * stride can pass 2**31 on long packs
    lq = tl.load(CU_Q + seg + 1) - q0
    k0 = tl.load(CU_K + seg).to(tl.int64)
    lk = tl.load(CU_K + seg + 1) - k0
    if m_block * BLOCK_M >= lq:
        return
    kvh = h // GROUP
    offs_m = m_block * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n0 = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < D
    q_ok = (offs_m < lq)[:, None] & d_ok[None, :]
    q_base = q0 * sq_t + h * sq_h
    q_offs = offs_m[:, None] * sq_t + offs_d[None, :]
    q = tl.load(Q + q_base + q_offs, mask=q_ok, other=0.0)
    do = tl.load(DO + q_base + q_offs, mask=q_ok, other=0.0)
    lse = tl.load(LSE + q0 * n_heads + h + offs_m * n_heads, mask=offs_m < lq, other=float("inf"))
    delta = tl.load(DELTA + q0 * n_heads + h + offs_m * n_heads, mask=offs_m < lq, other=0.0)
    dq = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
    kv_base = k0 * sk_t + kvh * sk_h
    shift = lk - lq
    end = lk
    if CAUSAL:
        end = tl.maximum(tl.minimum(lk, (m_block + 1) * BLOCK_M + shift), 0)
    for start in range(0, end, BLOCK_N):
        cols = start + offs_n0
        kv_ok = (cols < lk)[:, None] & d_ok[None, :]
        kv_offs = cols[:, None] * sk_t + offs_d[None, :]
        k = tl.load(K + kv_base + kv_offs, mask=kv_ok, other=0.0)
        v = tl.load(V + kv_base + kv_offs, mask=kv_ok, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
        valid = (cols < lk)[None, :]
        if CAUSAL:
            valid = valid & (cols[None, :] <= offs_m[:, None] + shift)
        p = tl.where(valid, tl.exp2(s - lse[:, None]), 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PRECISION)
    tl.store(DQ + q_base + q_offs, (dq * sm_scale).to(DQ.dtype.element_ty), mask=q_ok)


def _precision(t: torch.Tensor) -> str:
    # float32 inputs get exact float32 products (no TF32) so they can serve as a reference.
    return "ieee" if t.dtype == torch.float32 else "tf32"


def _check_max_seqlen(cu: torch.Tensor, max_seqlen: int, name: str) -> None:
    # Checked where it costs no GPU sync; on CUDA the caller's max_seqlen is trusted.
    if cu.device.type != "cuda":
        require_max_seqlen(name, cu.tolist(), max_seqlen)


class _VarlenAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, cu_q, cu_k, max_q, max_k, causal, scale):
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        tq, hq, d = q.shape
        hkv = k.shape[1]
        o = torch.empty_like(q)
        lse = torch.empty(tq, hq, dtype=torch.float32, device=q.device)
        n_seg = cu_q.numel() - 1
        group = hq // hkv
        group_p = triton.next_power_of_2(group)
        cfg = _config(q.dtype, "fwd")
        cfg["BLOCK_M"] = max(1, cfg["BLOCK_M"] // group_p)  # the tile holds BLOCK_M queries x the group
        block_d = max(16, triton.next_power_of_2(d))
        if tq and n_seg and max_q > 0:
            grid = (triton.cdiv(max_q, cfg["BLOCK_M"]), n_seg, hkv)
            _attn_fwd[grid](
                q,
                k,
                v,
                o,
                lse,
                cu_q,
                cu_k,
                scale * LOG2E,
                q.stride(0),
                q.stride(1),
                k.stride(0),
                k.stride(1),
                o.stride(0),
                o.stride(1),
                hq,
                d,
                group,
                CAUSAL=causal,
                PRECISION=_precision(q),
                GROUP_P=group_p,
                BLOCK_D=block_d,
                **cfg,
            )
        ctx.save_for_backward(q, k, v, o, lse, cu_q, cu_k)
        ctx.meta = (max_q, max_k, causal, scale)
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse, cu_q, cu_k = ctx.saved_tensors
        max_q, max_k, causal, scale = ctx.meta
        do = do.contiguous()
        tq, hq, d = q.shape
        hkv = k.shape[1]
        delta = (o.float() * do.float()).sum(-1)  # rowwise dO . O of FlashAttention-2
        dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
        n_seg = cu_q.numel() - 1
        block_d = max(16, triton.next_power_of_2(d))
        common = dict(CAUSAL=causal, PRECISION=_precision(q), BLOCK_D=block_d)
        args = (scale * LOG2E, scale, q.stride(0), q.stride(1), k.stride(0), k.stride(1), hq, d, hq // hkv)
        if n_seg and max_k > 0 and k.shape[0]:
            cfg = _config(q.dtype, "dkdv")
            _attn_bwd_dkdv[(triton.cdiv(max_k, cfg["BLOCK_N"]), n_seg, hkv)](
                q, k, v, do, lse, delta, dk, dv, cu_q, cu_k, *args, **common, **cfg
            )
        if n_seg and max_q > 0 and tq:
            cfg = _config(q.dtype, "dq")
            _attn_bwd_dq[(triton.cdiv(max_q, cfg["BLOCK_M"]), n_seg, hq)](
                q, k, v, do, lse, delta, dq, cu_q, cu_k, *args, **common, **cfg
            )
        return dq, dk, dv, None, None, None, None, None, None


def varlen_attention(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal, scale):
    _check_max_seqlen(cu_seqlens_q, max_seqlen_q, "max_seqlen_q")
    _check_max_seqlen(cu_seqlens_k, max_seqlen_k, "max_seqlen_k")
    return _VarlenAttention.apply(
        q,
        k,
        v,
        cu_seqlens_q.contiguous(),
        cu_seqlens_k.contiguous(),
        int(max_seqlen_q),
        int(max_seqlen_k),
        bool(causal),
        float(scale),
    )
