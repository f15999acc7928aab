"""bfloat16 on a CUDA device at Keye-8B shapes, judged by the FlashAttention rule.

The Triton kernel's error against a float32 reference must be at most twice the error of PyTorch
computing in bfloat16. Skipped on machines without CUDA (see tests/conftest.py).
"""

from __future__ import annotations

import pytest
import torch

import kernels
from tests.support.bf16_rule import flash_rule

pytestmark = pytest.mark.gpu


def bf16(*shape, scale=1.0):
    return (torch.randn(*shape, device="cuda") * scale).bfloat16()


def test_norms_and_activations(monkeypatch):
    t = 2048
    flash_rule(kernels.rms_norm, [bf16(t, 4096), bf16(4096), 1e-6], [True, True, False], monkeypatch)
    flash_rule(
        kernels.add_rms_norm, [bf16(t, 4096), bf16(t, 4096), bf16(4096), 1e-6], [True, True, True, False], monkeypatch
    )
    flash_rule(
        kernels.layer_norm, [bf16(t, 1152), bf16(1152), bf16(1152), 1e-6], [True, True, True, False], monkeypatch
    )
    flash_rule(kernels.gelu_tanh, [bf16(t, 4304, scale=3)], [True], monkeypatch)
    flash_rule(kernels.swiglu, [bf16(t, 12288, scale=3), bf16(t, 12288)], [True, True], monkeypatch)


def test_rotaries(monkeypatch):
    t = 1024
    ang = torch.rand(t, 64, device="cuda") * 100
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
    flash_rule(
        kernels.qk_norm_rope,
        [bf16(t, 32, 128), bf16(t, 8, 128), bf16(128), bf16(128), cos, sin, 1e-6],
        [True, True, True, True, False, False, False],
        monkeypatch,
    )
    vang = torch.rand(t, 36, device="cuda") * 30
    vcos, vsin = torch.cat([vang, vang], -1).cos(), torch.cat([vang, vang], -1).sin()
    flash_rule(
        kernels.vision_rope, [bf16(t, 16, 72), bf16(t, 16, 72), vcos, vsin], [True, True, False, False], monkeypatch
    )


def _bf16_attention(q, k, v, cu_q, cu_k, max_q, max_k, causal, scale):
    """PyTorch computing attention in bfloat16 (matmuls and softmax output in bf16), per segment."""
    outs = []
    cq, ck = cu_q.tolist(), cu_k.tolist()
    group = q.shape[1] // k.shape[1]
    for q0, q1, k0, k1 in zip(cq[:-1], cq[1:], ck[:-1], ck[1:]):
        qs = q[q0:q1].transpose(0, 1)
        ks = k[k0:k1].repeat_interleave(group, 1).transpose(0, 1)
        vs = v[k0:k1].repeat_interleave(group, 1).transpose(0, 1)
        s = (qs @ ks.transpose(1, 2)) * scale
        if causal:
            i = torch.arange(q1 - q0, device=q.device)[:, None]
            j = torch.arange(k1 - k0, device=q.device)[None, :]
            s = s.masked_fill(j > i + (k1 - k0) - (q1 - q0), float("-inf"))
        outs.append((torch.softmax(s, -1) @ vs).transpose(0, 1))
    return torch.cat(outs)


@pytest.mark.parametrize(
    "causal,hq,hkv,d,lens",
    [
        (True, 32, 8, 128, [1000, 37, 2011]),  # Qwen3-8B prefill, 4:1
        (False, 16, 16, 72, [1024, 300, 729]),  # SigLIP tower, 1:1, head_dim 72
    ],
)
def test_varlen_attention(monkeypatch, causal, hq, hkv, d, lens):
    cu = torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int32, device="cuda")
    n = sum(lens)
    args = [bf16(n, hq, d), bf16(n, hkv, d), bf16(n, hkv, d), cu, cu, max(lens), max(lens), causal, d**-0.5]
    flash_rule(kernels.varlen_attention, args, [True, True, True] + [False] * 6, monkeypatch, baseline=_bf16_attention)


def test_decode_attention(monkeypatch):
    b, s_max = 8, 32768
    seqlens = torch.tensor([1, 100, 4096, 32768, 17, 30000, 2048, 5], dtype=torch.int32, device="cuda")
    args = [bf16(b, 32, 128), bf16(b, s_max, 8, 128), bf16(b, s_max, 8, 128), seqlens, 128**-0.5]

    def bf16_decode(q, kc, vc, lens, scale):
        rows = []
        for i, n in enumerate(lens.tolist()):
            k = kc[i, :n].repeat_interleave(4, 1).transpose(0, 1)
            v = vc[i, :n].repeat_interleave(4, 1).transpose(0, 1)
            p = torch.softmax((q[i][:, None, :] @ k.transpose(1, 2)) * scale, -1)
            rows.append((p @ v)[:, 0])
        return torch.stack(rows)

    flash_rule(kernels.decode_attention, args, [False] * 5, monkeypatch, baseline=bf16_decode)


def test_fused_cross_entropy_vocab(monkeypatch):
    n, h, v = 1024, 4096, 151_936
    hidden, weight = bf16(n, h), bf16(v, h, scale=0.02)
    targets = torch.randint(0, v, (n,), device="cuda")
    targets[::7] = -100
    flash_rule(kernels.fused_linear_cross_entropy, [hidden, weight, targets], [True, True, False], monkeypatch)


def test_fused_logprobs_vocab(monkeypatch):
    n, h, v = 512, 4096, 151_936
    hidden, weight = bf16(n, h), bf16(v, h, scale=0.02)
    targets = torch.randint(0, v, (n,), device="cuda")
    flash_rule(kernels.fused_linear_logprobs, [hidden, weight, targets], [True, True, False], monkeypatch)
