"""Triton tanh-approximate GELU, forward and backward (reference: gelu.py)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 1024
SQRT_2_OVER_PI = 0.7978845608028654


@triton.jit
def _tanh(u):
    # tanh from exp(-2|u|) <= 1: no overflow for large |u|, and it runs under the interpreter too.
    e = tl.exp(-2.0 * tl.abs(u))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(u < 0, -t, t)


@triton.jit
def _gelu_fwd(X, Y, N, C: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
    t = _tanh(C * (x + 0.044715 * x * x * x))
    tl.store(Y + offs, (0.5 * x * (1.0 + t)).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _gelu_bwd(DY, X, DX, N, C: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
    dy = tl.load(DY + offs, mask=mask, other=0.0).to(tl.float32)
    t = _tanh(C * (x + 0.044715 * x * x * x))
    dydx = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * C * (1.0 + 3.0 * 0.044715 * x * x)
    tl.store(DX + offs, (dy * dydx).to(DX.dtype.element_ty), mask=mask)


class _GeluTanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        xc = x.contiguous()
        y = torch.empty_like(xc)
        n = xc.numel()
        if n:
            _gelu_fwd[(triton.cdiv(n, BLOCK),)](xc, y, n, C=SQRT_2_OVER_PI, BLOCK=BLOCK)
        ctx.save_for_backward(xc)
        return y

    @staticmethod
    def backward(ctx, dy):
        (xc,) = ctx.saved_tensors
        dx = torch.empty_like(xc)
        n = xc.numel()
        if n:
            _gelu_bwd[(triton.cdiv(n, BLOCK),)](dy.contiguous(), xc, dx, n, C=SQRT_2_OVER_PI, BLOCK=BLOCK)
        return dx


def gelu_tanh(x):
    return _GeluTanh.apply(x)
