"""Triton row kernel for the chunked fused linear cross-entropy (see cross_entropy.py).

One program per token row of a logits chunk: pass 1 streams the vocabulary with an online
max/sum to get logsumexp and reads the target logit; pass 2 (only when a gradient is wanted)
overwrites the row IN PLACE with (softmax - onehot(target)) * grad_scale, so the chunk's logits
buffer becomes its gradient without a second (rows, V) allocation.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .dispatch import interpreting


@triton.jit
def _ce_rows(
    LOGITS, TARGETS, SCALE, LSE, TGT, stride, V, ignore_index, WRITE_GRAD: tl.constexpr, BLOCK_V: tl.constexpr
):
    row = tl.program_id(0).to(tl.int64)
    base = LOGITS + row * stride
    target = tl.load(TARGETS + row).to(tl.int64)
    valid = target != ignore_index
    safe_target = tl.where(valid, target, 0)
    # Scalar running max and sum (online softmax) keep register use flat for wide blocks.
    m = tl.full([], float("-inf"), dtype=tl.float32)
    s = tl.full([], 0.0, dtype=tl.float32)
    for start in range(0, V, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        x = tl.load(base + cols, mask=cols < V, other=float("-inf")).to(tl.float32)
        m_new = tl.maximum(m, tl.max(x, axis=0))
        s = s * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new), axis=0)
        m = m_new
    lse = m + tl.log(s)
    tgt = tl.where(valid, tl.load(base + safe_target).to(tl.float32), 0.0)
    tl.store(LSE + row, lse)
    tl.store(TGT + row, tgt)
    if WRITE_GRAD:
        scale = tl.load(SCALE + row)
        hit = tl.where(valid, scale, 0.0)
        for start in range(0, V, BLOCK_V):
            cols = start + tl.arange(0, BLOCK_V)
            x = tl.load(base + cols, mask=cols < V, other=0.0).to(tl.float32)
            g = tl.exp(x - lse) * scale - tl.where(cols == safe_target, hit, 0.0)
            tl.store(base + cols, g.to(LOGITS.dtype.element_ty), mask=cols < V)


def rows_triton(
    logits: torch.Tensor, targets: torch.Tensor, ignore_index: int, grad_scale: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    rows, v = logits.shape
    assert logits.stride(1) == 1, "logits chunk must be row-contiguous"
    lse = torch.empty(rows, dtype=torch.float32, device=logits.device)
    tgt = torch.empty_like(lse)
    if rows:
        block_v = min(triton.next_power_of_2(v), 1024 if interpreting() else 8192)
        scale = grad_scale.contiguous().float() if grad_scale is not None else lse
        _ce_rows[(rows,)](
            logits,
            targets.contiguous(),
            scale,
            lse,
            tgt,
            logits.stride(0),
            v,
            ignore_index,
            WRITE_GRAD=grad_scale is not None,
            BLOCK_V=block_v,
            num_warps=16 if block_v >= 8192 else 4,
        )
    return lse, tgt
