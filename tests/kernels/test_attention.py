"""Varlen attention: Triton (interpreter) against the torch reference, forward and backward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import kernels


def cu(lengths: list[int]) -> torch.Tensor:
    return torch.tensor([0] + torch.tensor(lengths).cumsum(0).tolist(), dtype=torch.int32)


def run(compare, q_lens, k_lens, hq, hkv, d, causal):
    q = torch.randn(sum(q_lens), hq, d)
    k, v = torch.randn(sum(k_lens), hkv, d), torch.randn(sum(k_lens), hkv, d)
    compare(
        kernels.varlen_attention,
        q,
        k,
        v,
        cu(q_lens),
        cu(k_lens),
        max(q_lens),
        max(k_lens),
        causal,
        d**-0.5,
        atol=2e-5,
        rtol=2e-5,
    )


@pytest.mark.parametrize("lens", [[1], [17, 0, 5], [0, 33, 2]])
def test_vision_bidirectional_head_dim_72(compare, lens):
    run(compare, lens, lens, 2, 2, 72, causal=False)


@pytest.mark.parametrize("hq,hkv", [(4, 1), (8, 2), (4, 2), (2, 2), (6, 2)])  # 4:1 Qwen3-8B, 2:1 keye-tiny
def test_causal_grouped_query(compare, hq, hkv):
    run(compare, [19, 1, 0, 34], [19, 1, 0, 34], hq, hkv, 32, causal=True)


def test_causal_continuation_with_cached_prefix(compare):
    # Queries continue a cached prefix: Lk > Lq, bottom-right aligned; also Lk == 0 and Lq > Lk.
    run(compare, [3, 20, 1, 4, 5], [40, 26, 1, 0, 2], 4, 2, 16, causal=True)


def test_keye_decoder_shape(compare):
    run(compare, [21, 9], [21, 9], 32, 8, 128, causal=True)


def test_strided_views_as_inputs(compare):
    # q/k/v cut from one fused projection output are non-contiguous views.
    lens = [7, 12]
    qkv = torch.randn(19, 4 + 2 + 2, 16)
    q, k, v = qkv[:, :4], qkv[:, 4:6], qkv[:, 6:]
    assert not q.is_contiguous()
    compare(kernels.varlen_attention, q, k, v, cu(lens), cu(lens), 12, 12, True, 0.25, atol=2e-5, rtol=2e-5)


def test_keye_vision_shape(compare):
    run(compare, [36, 20], [36, 20], 16, 16, 72, causal=False)


def test_reference_matches_sdpa_per_segment():
    lens = [5, 9]
    q, k, v = torch.randn(14, 4, 16), torch.randn(14, 2, 16), torch.randn(14, 2, 16)
    out = kernels.varlen_attention(q, k, v, cu(lens), cu(lens), 9, 9, True, 0.25)
    for s, e in ((0, 5), (5, 14)):
        ref = F.scaled_dot_product_attention(
            q[s:e].transpose(0, 1),
            k[s:e].transpose(0, 1).repeat_interleave(2, 0),
            v[s:e].transpose(0, 1).repeat_interleave(2, 0),
            is_causal=True,
            scale=0.25,
        ).transpose(0, 1)
        torch.testing.assert_close(out[s:e], ref, atol=1e-5, rtol=1e-5)


def test_segments_do_not_attend_to_each_other(backend_env):
    lens = [6, 7]
    q, k, v = torch.randn(13, 2, 8), torch.randn(13, 2, 8), torch.randn(13, 2, 8)
    for name in ("torch", "triton"):
        with backend_env(name):
            a = kernels.varlen_attention(q, k, v, cu(lens), cu(lens), 7, 7, False, 0.3)
            v2 = v.clone()
            v2[6:] += 100.0  # changes only the second segment
            b = kernels.varlen_attention(q, k, v2, cu(lens), cu(lens), 7, 7, False, 0.3)
        torch.testing.assert_close(a[:6], b[:6], atol=0, rtol=0)
        assert not torch.allclose(a[6:], b[6:])


def test_short_max_seqlen_is_rejected(backend_env):
    # Checked wherever it costs no GPU sync: the torch path, and Triton on CPU tensors.
    q = torch.randn(10, 2, 8, device="cpu")
    for name in ("torch", "triton") if kernels.interpreting() else ("torch",):
        with backend_env(name), pytest.raises(kernels.KernelInputError, match="longest segment"):
            kernels.varlen_attention(q, q, q, cu([10]).cpu(), cu([10]).cpu(), 4, 4, False, 1.0)


def test_no_tokens_at_all(backend_env):
    for name in ("torch", "triton"):
        q = torch.randn(0, 4, 16, requires_grad=True)
        k = torch.randn(0, 2, 16, requires_grad=True)
        with backend_env(name):
            out = kernels.varlen_attention(q, k, k, cu([0, 0]), cu([0, 0]), 0, 0, True, 0.25)
            out.sum().backward()
        assert out.shape == (0, 4, 16) and q.grad.shape == q.shape
