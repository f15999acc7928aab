"""Decode attention over the KV cache: Triton split-K (interpreter) against the torch reference."""

from __future__ import annotations

import pytest
import torch

import kernels


def run(backend_env, lengths, s_max, hq, hkv, d, dtype=torch.float32):
    b = len(lengths)
    q = torch.randn(b, hq, d, dtype=dtype)
    k, v = torch.randn(b, s_max, hkv, d, dtype=dtype), torch.randn(b, s_max, hkv, d, dtype=dtype)
    seqlens = torch.tensor(lengths, dtype=torch.int32)
    with backend_env("torch"):
        ref = kernels.decode_attention(q, k, v, seqlens, d**-0.5)
    with backend_env("triton"):
        out = kernels.decode_attention(q, k, v, seqlens, d**-0.5)
    assert out.shape == q.shape and out.dtype == q.dtype
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=2e-5)
    return q, k, v, seqlens, out


@pytest.mark.parametrize("hq,hkv", [(4, 1), (32, 8), (4, 2), (2, 2), (6, 2)])  # 4:1 Qwen3-8B, 2:1 keye-tiny
def test_grouped_query_ratios(backend_env, hq, hkv):
    run(backend_env, [1, 37, 70], 70, hq, hkv, 128 if hq == 32 else 16)


def test_long_cache_many_splits_and_an_empty_row(backend_env):
    run(backend_env, [0, 250, 3], 257, 4, 2, 32)


def test_head_dim_72(backend_env):
    run(backend_env, [5, 18], 20, 2, 1, 72)


def test_positions_past_the_length_are_ignored(backend_env):
    q, k, v, seqlens, out = run(backend_env, [9, 30], 40, 4, 2, 16)
    k[0, 9:] = 1e4
    v[:, 30:] = float("nan")  # garbage beyond every row's length, as in a torch.empty cache
    for name in ("torch", "triton"):
        with backend_env(name):
            again = kernels.decode_attention(q, k, v, seqlens, 16**-0.5)
        torch.testing.assert_close(again, out, atol=2e-5, rtol=2e-5)


def test_reference_equals_last_row_of_causal_attention():
    # Decoding the last token equals the last query of full causal attention over the prefix.
    length, hq, hkv, d = 11, 4, 2, 16
    k, v = torch.randn(1, 16, hkv, d), torch.randn(1, 16, hkv, d)
    q_all = torch.randn(length, hq, d)
    cu = torch.tensor([0, length], dtype=torch.int32)
    full = kernels.varlen_attention(q_all, k[0, :length], v[0, :length], cu, cu, length, length, True, 0.3)
    out = kernels.decode_attention(q_all[-1:], k, v, torch.tensor([length], dtype=torch.int32), 0.3)
    torch.testing.assert_close(out[0], full[-1], atol=1e-5, rtol=1e-5)


def test_bad_seqlens_rejected(backend_env):
    # Checked wherever it costs no GPU sync (on CUDA the Triton kernel clamps to the cache instead).
    q, k = torch.randn(1, 2, 8, device="cpu"), torch.randn(1, 4, 2, 8, device="cpu")
    for name in ("torch", "triton") if kernels.interpreting() else ("torch",):
        with backend_env(name), pytest.raises(kernels.KernelInputError, match="cache_seqlens"):
            kernels.decode_attention(q, k, k, torch.tensor([5], dtype=torch.int32, device="cpu"), 1.0)
