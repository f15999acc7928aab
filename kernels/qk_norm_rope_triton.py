"""Triton rotary kernels: per-head RMSNorm fused with rotate-half rotary, forward and backward.

One kernel serves the decoder (NORM=True: q/k RMSNorm then M-RoPE, head_dim 128) and the vision
tower (NORM=False, head_dim 72, see vision_rope_triton.py). Each row is one (token, head); the
rotate-half partner of channel c is c +- D/2, loaded a second time instead of shuffled in registers.
References: qk_norm_rope.py and vision_rope.py.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._launch import reduction_grid, row_tile, row_warps


@triton.jit
def _rope_fwd(X, COS, SIN, W, Y, R, H, D, HALF, eps, NORM: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_D)
    mask = (rows[:, None] < R) & (cols[None, :] < D)
    partner = tl.where(cols < HALF, cols + HALF, cols - HALF)
    base = rows[:, None] * D
    x = tl.load(X + base + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    xp = tl.load(X + base + partner[None, :], mask=mask, other=0.0).to(tl.float32)
    if NORM:
        rstd = tl.math.rsqrt(tl.sum(x * x, axis=1) / D + eps)[:, None]
        w = tl.load(W + cols, mask=cols < D, other=0.0).to(tl.float32)
        wp = tl.load(W + partner, mask=cols < D, other=0.0).to(tl.float32)
        # Qwen3 order: normalized value rounded to the input dtype, then times the weight.
        x = (x * rstd).to(X.dtype.element_ty).to(tl.float32) * w[None, :]
        xp = (xp * rstd).to(X.dtype.element_ty).to(tl.float32) * wp[None, :]
    tok = (rows // H)[:, None] * D
    c = tl.load(COS + tok + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    s = tl.load(SIN + tok + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    rot = tl.where(cols[None, :] < HALF, -xp, xp)
    tl.store(Y + base + cols[None, :], (x * c + rot * s).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _rope_bwd(
    DY,
    X,
    COS,
    SIN,
    W,
    DX,
    DW_PART,
    R,
    H,
    D,
    HALF,
    eps,
    n_blocks,
    NORM: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_D)
    partner = tl.where(cols < HALF, cols + HALF, cols - HALF)
    first = cols[None, :] < HALF
    dw = tl.zeros((BLOCK_D,), dtype=tl.float32)
    if NORM:
        w = tl.load(W + cols, mask=cols < D, other=0.0).to(tl.float32)
    for block in range(pid, n_blocks, tl.num_programs(0)):
        rows = block * BLOCK_R + tl.arange(0, BLOCK_R)
        mask = (rows[:, None] < R) & (cols[None, :] < D)
        base = rows[:, None] * D
        tok = (rows // H)[:, None] * D
        dy = tl.load(DY + base + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        dyp = tl.load(DY + base + partner[None, :], mask=mask, other=0.0).to(tl.float32)
        c = tl.load(COS + tok + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        sp = tl.load(SIN + tok + partner[None, :], mask=mask, other=0.0).to(tl.float32)
        # Transpose of the rotation: the gradient of the rotated input.
        dn = dy * c + tl.where(first, dyp * sp, -dyp * sp)
        if NORM:
            x = tl.load(X + base + cols[None, :], mask=mask, other=0.0).to(tl.float32)
            rstd = tl.math.rsqrt(tl.sum(x * x, axis=1) / D + eps)[:, None]
            xhat = x * rstd
            g = dn * w[None, :]
            dx = rstd * (g - xhat * (tl.sum(g * xhat, axis=1) / D)[:, None])
            dw += tl.sum(dn * xhat.to(X.dtype.element_ty).to(tl.float32), axis=0)
        else:
            dx = dn
        tl.store(DX + base + cols[None, :], dx.to(DX.dtype.element_ty), mask=mask)
    if NORM:
        tl.store(DW_PART + pid * D + cols, dw, mask=cols < D)


def rope_forward(x, cos, sin, weight, eps, norm: bool):
    t, h, d = x.shape
    xc = x.contiguous()
    y = torch.empty_like(xc)
    r = t * h
    block_r, block_d = row_tile(d)
    if r:
        _rope_fwd[(triton.cdiv(r, block_r),)](
            xc,
            cos,
            sin,
            weight if norm else xc,
            y,
            r,
            h,
            d,
            d // 2,
            eps,
            NORM=norm,
            BLOCK_R=block_r,
            BLOCK_D=block_d,
            num_warps=row_warps(block_r, block_d),
        )
    return y, xc


def rope_backward(dy, xc, cos, sin, weight, eps, norm: bool):
    t, h, d = xc.shape
    r = t * h
    block_r, block_d = row_tile(d)
    n_blocks = triton.cdiv(r, block_r)
    grid = reduction_grid(n_blocks)
    dx = torch.empty_like(xc)
    dw_part = torch.zeros(grid if norm else 1, d, dtype=torch.float32, device=xc.device)
    if r:
        _rope_bwd[(grid,)](
            dy.contiguous(),
            xc,
            cos,
            sin,
            weight if norm else xc,
            dx,
            dw_part,
            r,
            h,
            d,
            d // 2,
            eps,
            n_blocks,
            NORM=norm,
            BLOCK_R=block_r,
            BLOCK_D=block_d,
            num_warps=row_warps(block_r, block_d),
        )
    return dx, (dw_part.sum(0).to(weight.dtype) if norm else None)


class _QKNormRope(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, q_weight, k_weight, cos, sin, eps):
        cos, sin = cos.contiguous(), sin.contiguous()
        q_out, qc = rope_forward(q, cos, sin, q_weight.contiguous(), eps, True)
        k_out, kc = rope_forward(k, cos, sin, k_weight.contiguous(), eps, True)
        ctx.save_for_backward(qc, kc, q_weight, k_weight, cos, sin)
        ctx.eps = eps
        return q_out, k_out

    @staticmethod
    def backward(ctx, dq, dk):
        qc, kc, q_weight, k_weight, cos, sin = ctx.saved_tensors
        dq_in, dqw = rope_backward(dq, qc, cos, sin, q_weight.contiguous(), ctx.eps, True)
        dk_in, dkw = rope_backward(dk, kc, cos, sin, k_weight.contiguous(), ctx.eps, True)
        return dq_in, dk_in, dqw, dkw, None, None, None


def qk_norm_rope(q, k, q_weight, k_weight, cos, sin, eps):
    return _QKNormRope.apply(q, k, q_weight, k_weight, cos, sin, eps)
