"""Triton 2D rotary for the vision tower (head_dim 72, padded to a 128-wide tile with masks).

Shares the rotary kernel of qk_norm_rope_triton.py without the norm. Reference: vision_rope.py.
"""

from __future__ import annotations

import torch

from .qk_norm_rope_triton import rope_backward, rope_forward


class _VisionRope(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, cos, sin):
        cos, sin = cos.contiguous(), sin.contiguous()
        q_out, qc = rope_forward(q, cos, sin, None, 0.0, False)
        k_out, kc = rope_forward(k, cos, sin, None, 0.0, False)
        ctx.save_for_backward(qc, kc, cos, sin)
        return q_out, k_out

    @staticmethod
    def backward(ctx, dq, dk):
        qc, kc, cos, sin = ctx.saved_tensors
        dq_in, _ = rope_backward(dq, qc, cos, sin, None, 0.0, False)
        dk_in, _ = rope_backward(dk, kc, cos, sin, None, 0.0, False)
        return dq_in, dk_in, None, None


def vision_rope(q, k, cos, sin):
    return _VisionRope.apply(q, k, cos, sin)
