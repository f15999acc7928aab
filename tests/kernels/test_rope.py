"""q/k RMSNorm + M-RoPE and the vision 2D rotary: Triton (interpreter) against the torch references."""

from __future__ import annotations

import pytest
import torch

import kernels


def mrope_cos_sin(
    positions: torch.Tensor, head_dim: int = 128, theta: float = 1e6, sections=(16, 24, 24)
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token cos/sin from 3 position rows (T, as keye_model/rope.py assembles them)."""
    inv = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = positions.float()[:, :, None] * inv  # (3, T, 64)
    row = torch.cat([torch.full((n,), i % 3) for i, n in enumerate(list(sections) * 2)])  # 128 channels
    full = torch.cat([angles, angles], dim=-1)  # (3, T, 128)
    chosen = full.gather(0, row[None, None, :].expand(1, full.shape[1], head_dim)).squeeze(0)
    return chosen.cos(), chosen.sin()


def vision_cos_sin(rows: torch.Tensor, cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    inv = 1.0 / 10000 ** (torch.arange(0, 36, 2, dtype=torch.float32) / 36)
    angles = torch.cat([rows[:, None] * inv, cols[:, None] * inv], dim=-1)  # (T, 36)
    full = torch.cat([angles, angles], dim=-1)
    return full.cos(), full.sin()


@pytest.mark.parametrize("t,hq,hkv,d", [(1, 2, 1, 128), (5, 4, 2, 16), (13, 32, 8, 128)])
def test_qk_norm_rope_matches_reference(compare, t, hq, hkv, d):
    positions = torch.stack([torch.arange(t), torch.arange(t) // 2, torch.arange(t) % 3]) + 7
    if d == 128:
        cos, sin = mrope_cos_sin(positions)
    else:
        ang = torch.rand(t, d // 2) * 6
        cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
    q, k = torch.randn(t, hq, d) * 2, torch.randn(t, hkv, d)
    compare(kernels.qk_norm_rope, q, k, torch.rand(d) + 0.5, torch.rand(d) + 0.5, cos, sin, 1e-6, frozen=(4, 5))


@pytest.mark.parametrize("t,h", [(1, 1), (7, 3), (40, 16)])
def test_vision_rope_matches_reference(compare, t, h):
    cos, sin = vision_cos_sin(torch.arange(t) // 4, torch.arange(t) % 4)
    compare(kernels.vision_rope, torch.randn(t, h, 72), torch.randn(t, h, 72), cos, sin, frozen=(2, 3))


def test_vision_rope_rotates_channel_pairs():
    # Independent check of the convention: channel c pairs with c + 36 as a 2D rotation.
    t = 6
    rows, cols = torch.arange(t) // 3, torch.arange(t) % 3
    cos, sin = vision_cos_sin(rows, cols)
    q = torch.randn(t, 2, 72)
    out, _ = kernels.vision_rope(q, q, cos, sin)
    z = torch.complex(q[..., :36], q[..., 36:]) * torch.exp(1j * torch.atan2(sin[:, None, :36], cos[:, None, :36]))
    torch.testing.assert_close(out, torch.cat([z.real, z.imag], -1), atol=1e-5, rtol=1e-5)


def test_qk_norm_rope_preserves_norm_of_normalized_heads():
    # A rotation keeps the length: with unit weights every output head has RMS 1.
    t = 4
    cos, sin = mrope_cos_sin(torch.arange(3 * t).view(3, t))
    q, k = torch.randn(t, 4, 128) * 5, torch.randn(t, 2, 128)
    qo, ko = kernels.qk_norm_rope(q, k, torch.ones(128), torch.ones(128), cos, sin, 1e-6)
    torch.testing.assert_close(qo.pow(2).mean(-1), torch.ones(t, 4), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ko.pow(2).mean(-1), torch.ones(t, 2), atol=1e-4, rtol=1e-4)
