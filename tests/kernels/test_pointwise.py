"""LayerNorm, tanh GELU and SwiGLU: Triton (interpreter) against the torch references."""

from __future__ import annotations

import math

import pytest
import torch

import kernels


@pytest.mark.parametrize("shape", [(1, 8), (7, 72), (2, 5, 1152)])
def test_layer_norm_matches_reference(compare, shape):
    x = torch.randn(shape) * 3 + 1
    compare(kernels.layer_norm, x, torch.randn(shape[-1]), torch.randn(shape[-1]), 1e-6, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("n", [1, 1000, 4304 + 3])
def test_gelu_tanh_matches_reference(compare, n):
    x = torch.randn(n) * 4
    x[0] = 30.0  # saturated tail: tanh must not overflow into nan
    compare(kernels.gelu_tanh, x)


def test_gelu_tanh_formula():
    x = torch.tensor([-3.0, -0.5, 0.0, 0.5, 3.0])
    expected = [0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v**3))) for v in x.tolist()]
    torch.testing.assert_close(kernels.gelu_tanh(x), torch.tensor(expected))


@pytest.mark.parametrize("shape", [(1, 1), (3, 1025), (2, 4, 96)])
def test_swiglu_matches_reference(compare, shape):
    compare(kernels.swiglu, torch.randn(shape) * 3, torch.randn(shape))


def test_empty_inputs(backend_env):
    with backend_env("triton"):
        assert kernels.swiglu(torch.empty(0, 4), torch.empty(0, 4)).shape == (0, 4)
        assert kernels.gelu_tanh(torch.empty(0)).shape == (0,)
        assert kernels.rms_norm(torch.empty(0, 8), torch.ones(8), 1e-6).shape == (0, 8)
