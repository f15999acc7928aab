"""bfloat16 through the Triton interpreter: the bf16 code paths (casts, bf16 loads and stores) run
on the CPU too, judged like the GPU checks against a float32 reference.

Two interpreter limits shape this file (Triton 3.9):
- it truncates float32 -> bfloat16 casts (up to 1 ulp) where the GPU and torch round to nearest,
  so each output may also be off by up to 2 bf16 ulps of its magnitude (two casts in a chain);
- its tl.dot multiplies the raw uint16 storage of bfloat16 operands, so the attention kernels
  (tl.dot on bf16 tiles) are checked in bf16 only on the device, in test_gpu_bf16.py.
"""

from __future__ import annotations

import torch

import kernels
from tests.support.bf16_rule import flash_rule


def rule(fn, args, grad_mask, monkeypatch):
    # up to 2 bf16 ulps more: two truncating casts in a chain (see above)
    flash_rule(fn, args, grad_mask, monkeypatch, ulps=2.0)


def bf(*shape, scale=1.0):
    return (torch.randn(*shape) * scale).bfloat16()


def test_norms_and_activations(monkeypatch):
    rule(kernels.rms_norm, [bf(33, 256), bf(256), 1e-6], [True, True, False], monkeypatch)
    rule(kernels.add_rms_norm, [bf(9, 128), bf(9, 128), bf(128), 1e-6], [True, True, True, False], monkeypatch)
    rule(kernels.layer_norm, [bf(17, 72), bf(72), bf(72), 1e-6], [True, True, True, False], monkeypatch)
    rule(kernels.gelu_tanh, [bf(3000, scale=3)], [True], monkeypatch)
    rule(kernels.swiglu, [bf(40, 77, scale=3), bf(40, 77)], [True, True], monkeypatch)


def test_rotaries(monkeypatch):
    t = 12
    ang = torch.rand(t, 64) * 50
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
    rule(
        kernels.qk_norm_rope,
        [bf(t, 4, 128), bf(t, 2, 128), bf(128), bf(128), cos, sin, 1e-6],
        [True, True, True, True, False, False, False],
        monkeypatch,
    )
    vang = torch.rand(t, 36) * 10
    rule(
        kernels.vision_rope,
        [bf(t, 2, 72), bf(t, 2, 72), torch.cat([vang, vang], -1).cos(), torch.cat([vang, vang], -1).sin()],
        [True, True, False, False],
        monkeypatch,
    )


def test_fused_cross_entropy(monkeypatch):
    targets = torch.randint(0, 3000, (10,))
    targets[::4] = -100
    rule(
        kernels.fused_linear_cross_entropy,
        [bf(10, 64), bf(3000, 64, scale=0.1), targets],
        [True, True, False],
        monkeypatch,
    )
    rule(
        kernels.fused_linear_logprobs,
        [bf(10, 64), bf(3000, 64, scale=0.1), targets.clamp(min=0)],
        [True, True, False],
        monkeypatch,
    )
