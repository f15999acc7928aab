"""Triton LayerNorm with weight and bias, forward and backward (reference: layer_norm.py)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._launch import reduction_grid, row_tile, row_warps, rows_of


@triton.jit
def _layer_norm_fwd(X, W, B, Y, MEAN, RSTD, R, D, eps, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_D)
    mask = (rows[:, None] < R) & (cols[None, :] < D)
    offs = rows[:, None] * D + cols[None, :]
    x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
    mean = tl.sum(x, axis=1) / D
    centered = tl.where(mask, x - mean[:, None], 0.0)
    rstd = tl.math.rsqrt(tl.sum(centered * centered, axis=1) / D + eps)
    w = tl.load(W + cols, mask=cols < D, other=0.0).to(tl.float32)
    b = tl.load(B + cols, mask=cols < D, other=0.0).to(tl.float32)
    y = centered * rstd[:, None] * w[None, :] + b[None, :]
    tl.store(Y + offs, y.to(Y.dtype.element_ty), mask=mask)
    tl.store(MEAN + rows, mean, mask=rows < R)
    tl.store(RSTD + rows, rstd, mask=rows < R)


@triton.jit
def _layer_norm_bwd(
    DY, X, W, MEAN, RSTD, DX, DW_PART, DB_PART, R, D, n_blocks, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr
):
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_D)
    w = tl.load(W + cols, mask=cols < D, other=0.0).to(tl.float32)
    dw = tl.zeros((BLOCK_D,), dtype=tl.float32)
    db = tl.zeros((BLOCK_D,), dtype=tl.float32)
    for block in range(pid, n_blocks, tl.num_programs(0)):
        rows = block * BLOCK_R + tl.arange(0, BLOCK_R)
        mask = (rows[:, None] < R) & (cols[None, :] < D)
        offs = rows[:, None] * D + cols[None, :]
        x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(DY + offs, mask=mask, other=0.0).to(tl.float32)
        mean = tl.load(MEAN + rows, mask=rows < R, other=0.0)
        rstd = tl.load(RSTD + rows, mask=rows < R, other=0.0)
        xhat = tl.where(mask, (x - mean[:, None]) * rstd[:, None], 0.0)
        g = dy * w[None, :]
        dx = rstd[:, None] * (g - (tl.sum(g, axis=1) / D)[:, None] - xhat * (tl.sum(g * xhat, axis=1) / D)[:, None])
        tl.store(DX + offs, dx.to(DX.dtype.element_ty), mask=mask)
        dw += tl.sum(dy * xhat, axis=0)
        db += tl.sum(dy, axis=0)
    tl.store(DW_PART + pid * D + cols, dw, mask=cols < D)
    tl.store(DB_PART + pid * D + cols, db, mask=cols < D)


class _LayerNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        x2 = rows_of(x)
        r, d = x2.shape
        block_r, block_d = row_tile(d)
        y = torch.empty_like(x2)
        mean = torch.empty(r, dtype=torch.float32, device=x.device)
        rstd = torch.empty_like(mean)
        if r:
            _layer_norm_fwd[(triton.cdiv(r, block_r),)](
                x2,
                weight.contiguous(),
                bias.contiguous(),
                y,
                mean,
                rstd,
                r,
                d,
                eps,
                BLOCK_R=block_r,
                BLOCK_D=block_d,
                num_warps=row_warps(block_r, block_d),
            )
        ctx.save_for_backward(x2, weight, mean, rstd)
        return y.view(x.shape)

    @staticmethod
    def backward(ctx, dy):
        x2, weight, mean, rstd = ctx.saved_tensors
        r, d = x2.shape
        block_r, block_d = row_tile(d)
        n_blocks = triton.cdiv(r, block_r)
        grid = reduction_grid(n_blocks)
        dx = torch.empty_like(x2)
        dw_part = torch.zeros(grid, d, dtype=torch.float32, device=x2.device)
        db_part = torch.zeros_like(dw_part)
        if r:
            _layer_norm_bwd[(grid,)](
                rows_of(dy),
                x2,
                weight.contiguous(),
                mean,
                rstd,
                dx,
                dw_part,
                db_part,
                r,
                d,
                n_blocks,
                BLOCK_R=block_r,
                BLOCK_D=block_d,
                num_warps=row_warps(block_r, block_d),
            )
        return dx.view(dy.shape), dw_part.sum(0).to(weight.dtype), db_part.sum(0).to(weight.dtype), None


def layer_norm(x, weight, bias, eps):
    return _LayerNorm.apply(x, weight, bias, eps)
