"""bfloat16 through the Triton interpreter: the bf16 code paths (casts, bf16 loads and stores) run
on the CPU too, judged like the GPU checks against a float32 reference.

Two interpreter limits shape this file (Triton 3.9):
- it truncates float32 -> bfloat16 casts (up to 1 ulp) where the GPU and torch round to nearest,
  so each output may also be off by up to 2 bf16 ulps of its magnitude (two casts in a chain);
- its tl.dot multiplies the raw uint16 storage of bfloat16 operands, so the attention kernels
  (tl.dot on bf16 tiles) are checked in bf16 only on the device, in test_kernels_gpu_bf16.py.
"""

from __future__ import annotations

import torch

import kernels

ULP = 2.0**-7  # bf16 spacing relative to the value


def _run(fn, args, grad_mask, backend, monkeypatch):
    monkeypatch.setenv("KEYE_KERNELS", backend)
    leaves = [a.detach().clone().requires_grad_(g) if isinstance(a, torch.Tensor) else a for a, g in zip(args, grad_mask)]
    outs = fn(*leaves)
    outs = tuple(outs) if isinstance(outs, tuple) else (outs,)
    gen = torch.Generator().manual_seed(7)
    if any(grad_mask):
        ups = [torch.randn(o.shape, generator=gen, device="cpu").to(o.device, o.dtype) for o in outs]
        torch.autograd.backward(list(outs), ups)
    return [o.detach().float() for o in outs] + [leaf.grad.float() for leaf, g in zip(leaves, grad_mask) if g]


def rule(fn, args, grad_mask, monkeypatch):
    up = [a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args]
    ref = _run(fn, up, grad_mask, "torch", monkeypatch)
    low = _run(fn, args, grad_mask, "torch", monkeypatch)
    tri = _run(fn, args, grad_mask, "triton", monkeypatch)
    for i, (r, lo, t) in enumerate(zip(ref, low, tri)):
        err_t, err_lo = (t - r).abs().max().item(), (lo - r).abs().max().item()
        allowed = 2 * err_lo + 2 * ULP * r.abs().max().item() + 1e-6
        assert err_t <= allowed, f"tensor {i}: triton error {err_t:.3g} > {allowed:.3g} (torch bf16 {err_lo:.3g})"


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
    rule(kernels.qk_norm_rope, [bf(t, 4, 128), bf(t, 2, 128), bf(128), bf(128), cos, sin, 1e-6],
         [True, True, True, True, False, False, False], monkeypatch)
    vang = torch.rand(t, 36) * 10
    rule(kernels.vision_rope, [bf(t, 2, 72), bf(t, 2, 72), torch.cat([vang, vang], -1).cos(),
                               torch.cat([vang, vang], -1).sin()], [True, True, False, False], monkeypatch)


def test_fused_cross_entropy(monkeypatch):
    targets = torch.randint(0, 3000, (10,))
    targets[::4] = -100
    rule(kernels.fused_linear_cross_entropy, [bf(10, 64), bf(3000, 64, scale=0.1), targets], [True, True, False],
         monkeypatch)
    rule(kernels.fused_linear_logprobs, [bf(10, 64), bf(3000, 64, scale=0.1), targets.clamp(min=0)],
         [True, True, False], monkeypatch)
