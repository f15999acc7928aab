"""Triton RMSNorm and residual-add + RMSNorm, forward and backward (reference: rms_norm.py)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._launch import reduction_grid, row_tile, row_warps, rows_of


@triton.jit
def _rms_norm_fwd(
    X, RES, W, Y, RES_OUT, RSTD, R, D, eps, HAS_RES: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr
):
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_D)
    mask = (rows[:, None] < R) & (cols[None, :] < D)
    offs = rows[:, None] * D + cols[None, :]
    x = tl.load(X + offs, mask=mask, other=0.0)
    if HAS_RES:
        # Round the sum to the input dtype, exactly like torch's `x + residual`.
        x = (x.to(tl.float32) + tl.load(RES + offs, mask=mask, other=0.0).to(tl.float32)).to(X.dtype.element_ty)
        tl.store(RES_OUT + offs, x, mask=mask)
    xf = x.to(tl.float32)
    rstd = tl.math.rsqrt(tl.sum(xf * xf, axis=1) / D + eps)
    # Qwen3: cast the normalized value back to the input dtype BEFORE the weight multiply.
    normed = (xf * rstd[:, None]).to(X.dtype.element_ty).to(tl.float32)
    w = tl.load(W + cols, mask=cols < D, other=0.0).to(tl.float32)
    tl.store(Y + offs, (normed * w[None, :]).to(Y.dtype.element_ty), mask=mask)
    tl.store(RSTD + rows, rstd, mask=rows < R)


@triton.jit
def _rms_norm_bwd(
    DY,
    X,
    W,
    RSTD,
    DRES,
    DX,
    DW_PART,
    R,
    D,
    n_blocks,
    HAS_DRES: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_D)
    w = tl.load(W + cols, mask=cols < D, other=0.0).to(tl.float32)
    dw = tl.zeros((BLOCK_D,), dtype=tl.float32)
    for block in range(pid, n_blocks, tl.num_programs(0)):
        rows = block * BLOCK_R + tl.arange(0, BLOCK_R)
        mask = (rows[:, None] < R) & (cols[None, :] < D)
        offs = rows[:, None] * D + cols[None, :]
        x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(DY + offs, mask=mask, other=0.0).to(tl.float32)
        rstd = tl.load(RSTD + rows, mask=rows < R, other=0.0)
        xhat = x * rstd[:, None]
        g = dy * w[None, :]
        dx = rstd[:, None] * (g - xhat * (tl.sum(g * xhat, axis=1) / D)[:, None])
        if HAS_DRES:
            dx += tl.load(DRES + offs, mask=mask, other=0.0).to(tl.float32)
        tl.store(DX + offs, dx.to(DX.dtype.element_ty), mask=mask)
        dw += tl.sum(dy * xhat.to(X.dtype.element_ty).to(tl.float32), axis=0)
    tl.store(DW_PART + pid * D + cols, dw, mask=cols < D)


def _forward(x, residual, weight, eps):
    x2 = rows_of(x)
    r, d = x2.shape
    block_r, block_d = row_tile(d)
    y = torch.empty(r, d, dtype=torch.promote_types(x.dtype, weight.dtype), device=x.device)
    rstd = torch.empty(r, dtype=torch.float32, device=x.device)
    res_out = torch.empty_like(x2) if residual is not None else x2
    res_in = rows_of(residual) if residual is not None else x2
    if r:
        _rms_norm_fwd[(triton.cdiv(r, block_r),)](
            x2,
            res_in,
            weight.contiguous(),
            y,
            res_out,
            rstd,
            r,
            d,
            eps,
            HAS_RES=residual is not None,
            BLOCK_R=block_r,
            BLOCK_D=block_d,
            num_warps=row_warps(block_r, block_d),
        )
    return y, res_out, rstd


def _backward(dy, x2, weight, rstd, dres):
    r, d = x2.shape
    block_r, block_d = row_tile(d)
    n_blocks = triton.cdiv(r, block_r)
    grid = reduction_grid(n_blocks)
    dx = torch.empty_like(x2)
    dw_part = torch.zeros(grid, d, dtype=torch.float32, device=x2.device)
    if r:
        _rms_norm_bwd[(grid,)](
            rows_of(dy),
            x2,
            weight.contiguous(),
            rstd,
            rows_of(dres) if dres is not None else dx,
            dx,
            dw_part,
            r,
            d,
            n_blocks,
            HAS_DRES=dres is not None,
            BLOCK_R=block_r,
            BLOCK_D=block_d,
            num_warps=row_warps(block_r, block_d),
        )
    return dx, dw_part.sum(0).to(weight.dtype)


class _RMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, eps):
        y, x2, rstd = _forward(x, None, weight, eps)
        ctx.save_for_backward(x2, weight, rstd)
        return y.view(*x.shape[:-1], y.shape[-1])

    @staticmethod
    def backward(ctx, dy):
        x2, weight, rstd = ctx.saved_tensors
        dx, dw = _backward(dy, x2, weight, rstd, None)
        return dx.view(dy.shape), dw, None


class _AddRMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, residual, weight, eps):
        y, new_res, rstd = _forward(x, residual, weight, eps)
        ctx.save_for_backward(new_res, weight, rstd)
        return y.view(*x.shape[:-1], y.shape[-1]), new_res.view(x.shape)

    @staticmethod
    def backward(ctx, dy, dres):
        new_res, weight, rstd = ctx.saved_tensors
        dx, dw = _backward(dy, new_res, weight, rstd, dres)
        dx = dx.view(dy.shape)
        return dx, dx, dw, None


def rms_norm(x, weight, eps):
    return _RMSNorm.apply(x, weight, eps)


def add_rms_norm(x, residual, weight, eps):
    return _AddRMSNorm.apply(x, residual, weight, eps)
