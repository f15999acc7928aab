"""RMSNorm and residual-add RMSNorm: Triton (interpreter) against the torch reference."""

from __future__ import annotations

import pytest
import torch

import kernels


@pytest.mark.parametrize("shape", [(1, 8), (5, 24), (3, 7, 40), (2, 128)])
def test_rms_norm_matches_reference(compare, shape):
    x = torch.randn(shape)
    w = torch.randn(shape[-1])
    compare(kernels.rms_norm, x, w, 1e-6)


@pytest.mark.parametrize("shape", [(1, 16), (9, 48), (2, 3, 4096)])
def test_add_rms_norm_matches_reference(compare, shape):
    x, res = torch.randn(shape), torch.randn(shape)
    w = torch.randn(shape[-1])
    compare(kernels.add_rms_norm, x, res, w, 1e-6)


def test_reference_casts_before_weight(backend_env):
    # In bf16 the Qwen3 order (cast, then multiply) differs from multiplying in float32.
    x = torch.randn(64, 256).bfloat16()
    w = (torch.rand(256) * 3).bfloat16()
    with backend_env("torch"):
        y = kernels.rms_norm(x, w, 1e-6)
    assert not torch.equal(
        y, (w.float() * x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6)).bfloat16()
    )
    xf = x.float()
    normed = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6)).bfloat16()
    assert torch.equal(y, w * normed)


@pytest.mark.gpu
def test_triton_bf16_forward_matches_torch_on_gpu(backend_env):
    # Not on the CPU: the interpreter truncates float32 -> bfloat16 casts instead of rounding.
    x, w = torch.randn(4000, 4096, device="cuda").bfloat16(), torch.randn(4096, device="cuda").bfloat16()
    with backend_env("torch"):
        ref = kernels.rms_norm(x, w, 1e-6)
    with backend_env("triton"):
        out = kernels.rms_norm(x, w, 1e-6)
    # Same cast order as torch; rsqrt approximations may still flip a rare last bf16 bit.
    torch.testing.assert_close(out, ref, atol=0, rtol=2**-7)
    assert (out != ref).float().mean().item() < 1e-3
