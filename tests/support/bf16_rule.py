"""The FlashAttention rule for bfloat16 kernels, shared by the GPU and the interpreter checks.

The Triton kernel's error against a float32 reference (the torch path on upcast copies) must be at
most twice the error of PyTorch computing in bfloat16, plus `ulps` bf16 spacings of the largest
reference value where the platform rounds differently (the interpreter truncates casts).
"""

from __future__ import annotations

import torch

ULP = 2.0**-7  # bf16 spacing relative to the value


def run_backend(fn, args, grad_mask, backend, monkeypatch, upstream_seed=7):
    """Outputs then the gradients of the `grad_mask` args, as float32, through one backend."""
    monkeypatch.setenv("KEYE_KERNELS", backend)
    leaves = [
        a.detach().clone().requires_grad_(g) if isinstance(a, torch.Tensor) else a for a, g in zip(args, grad_mask)
    ]
    outs = fn(*leaves)
    outs = tuple(outs) if isinstance(outs, tuple) else (outs,)
    if any(grad_mask):
        gen = torch.Generator(device=outs[0].device).manual_seed(upstream_seed)
        ups = [torch.randn(o.shape, generator=gen, device=o.device).to(o.dtype) for o in outs]
        torch.autograd.backward(list(outs), ups)
    return [o.detach().float() for o in outs] + [leaf.grad.float() for leaf, g in zip(leaves, grad_mask) if g]


def flash_rule(fn, args, grad_mask, monkeypatch, baseline=None, ulps=0.0):
    """args: bfloat16 tensors; `baseline` replaces fn for the bf16 torch run (e.g. bf16 math)."""
    up = [a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args]
    ref = run_backend(fn, up, grad_mask, "torch", monkeypatch)
    low = run_backend(baseline or fn, args, grad_mask, "torch", monkeypatch)
    tri = run_backend(fn, args, grad_mask, "triton", monkeypatch)
    for i, (r, lo, t) in enumerate(zip(ref, low, tri)):
        err_t, err_lo = (t - r).abs().max().item(), (lo - r).abs().max().item()
        allowed = 2 * err_lo + ulps * ULP * r.abs().max().item() + 1e-6
        assert err_t <= allowed, f"tensor {i}: triton error {err_t:.3g} > {allowed:.3g} (torch bf16 {err_lo:.3g})"
