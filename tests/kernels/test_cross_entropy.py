"""Chunked fused linear cross-entropy and log-probabilities against unfused references."""

from __future__ import annotations

import pytest
import torch

import kernels
from kernels.cross_entropy import linear_cross_entropy_reference, linear_logprobs_reference


def grads_of(fn, hidden, weight, *args, **kwargs):
    h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    out = fn(h, w, *args, **kwargs)
    upstream = torch.linspace(-1, 1, out.numel()).view(out.shape) if out.dim() else torch.tensor(1.7)
    (out * upstream).sum().backward()
    return out.detach(), h.grad, w.grad


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("n,v,h,chunk", [(1, 50, 8, 4), (13, 1500, 16, 5), (8, 2049, 32, 8)])
def test_cross_entropy_matches_unfused(backend_env, backend, n, v, h, chunk):
    hidden, weight = torch.randn(n, h), torch.randn(v, h) * 0.5
    targets = torch.randint(0, v, (n,))
    targets[::3] = -100
    if n == 1:
        targets[0] = 7
    ref = grads_of(linear_cross_entropy_reference, hidden, weight, targets)
    with backend_env(backend):
        got = grads_of(kernels.fused_linear_cross_entropy, hidden, weight, targets, chunk_size=chunk)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_logprobs_match_unfused(backend_env, backend):
    hidden, weight = torch.randn(11, 24), torch.randn(700, 24) * 0.5
    targets = torch.randint(0, 700, (11,))
    ref = grads_of(linear_logprobs_reference, hidden, weight, targets)
    with backend_env(backend):
        got = grads_of(kernels.fused_linear_logprobs, hidden, weight, targets, chunk_size=4)
    assert got[0].dtype == torch.float32 and got[0].shape == (11,)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_all_ignored_gives_zero_loss_and_gradient(backend_env, backend):
    hidden, weight = torch.randn(4, 8, requires_grad=True), torch.randn(30, 8, requires_grad=True)
    with backend_env(backend):
        loss = kernels.fused_linear_cross_entropy(hidden, weight, torch.full((4,), -100))
    loss.backward()
    assert loss.item() == 0.0 and not hidden.grad.any() and not weight.grad.any()


def test_frozen_head_only_gets_hidden_gradient(backend_env):
    hidden, weight = torch.randn(6, 8, requires_grad=True), torch.randn(40, 8)
    targets = torch.randint(0, 40, (6,))
    with backend_env("triton"):
        kernels.fused_linear_cross_entropy(hidden, weight, targets, chunk_size=4).backward()
    ref_h = hidden.detach().clone().requires_grad_()
    linear_cross_entropy_reference(ref_h, weight, targets).backward()
    torch.testing.assert_close(hidden.grad, ref_h.grad, atol=2e-5, rtol=2e-5)


def test_keye_vocabulary_without_full_logits(backend_env):
    # The real 151,936-token vocabulary, a few tokens: the loss still matches the unfused one.
    v, h = 151_936, 16
    hidden, weight = torch.randn(3, h), torch.randn(v, h) * 0.2
    targets = torch.tensor([0, 151_935, 77_000])
    with backend_env("triton"):
        loss = kernels.fused_linear_cross_entropy(hidden, weight, targets, chunk_size=2)
    torch.testing.assert_close(loss, linear_cross_entropy_reference(hidden, weight, targets), atol=1e-5, rtol=1e-5)


def test_no_gradient_work_under_no_grad():
    # Evaluation must not pay for the in-forward gradient: the row kernel is asked for no gradient.
    from kernels.cross_entropy import fused_linear_cross_entropy_with, rows_torch

    asked = []

    def rows(logits, targets, ignore_index, grad_scale):
        asked.append(grad_scale is not None)
        return rows_torch(logits, targets, ignore_index, grad_scale)

    hidden, weight = torch.randn(6, 8, requires_grad=True), torch.randn(40, 8, requires_grad=True)
    targets = torch.randint(0, 40, (6,))
    with torch.no_grad():
        loss = fused_linear_cross_entropy_with(rows, hidden, weight, targets, -100, 4)
    assert asked == [False, False]
    torch.testing.assert_close(loss, linear_cross_entropy_reference(hidden, weight, targets).detach())
    fused_linear_cross_entropy_with(rows, hidden, weight, targets, -100, 4)
    assert asked[2:] == [True, True]
