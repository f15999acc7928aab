"""The KEYE_KERNELS switch and its errors."""

from __future__ import annotations

import pytest
import torch

import kernels
from kernels import KernelBackendError, KernelInputError


def test_default_is_torch_on_cpu(monkeypatch):
    monkeypatch.delenv("KEYE_KERNELS", raising=False)
    assert kernels.backend(torch.device("cpu")) == "torch"
    assert kernels.backend("cuda") == "triton"


def test_explicit_switch(monkeypatch):
    monkeypatch.setenv("KEYE_KERNELS", "torch")
    assert kernels.backend("cuda") == "torch"
    monkeypatch.setenv("KEYE_KERNELS", "triton")
    if kernels.interpreting():
        assert kernels.backend("cpu") == "triton"
    else:
        with pytest.raises(KernelBackendError):
            kernels.backend("cpu")


def test_bad_value_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("KEYE_KERNELS", "cuda")
    with pytest.raises(KernelBackendError, match="not a backend"):
        kernels.rms_norm(torch.ones(2, 4), torch.ones(4), 1e-6)


def test_triton_on_cpu_needs_the_interpreter(monkeypatch):
    monkeypatch.setenv("KEYE_KERNELS", "triton")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(KernelBackendError, match="TRITON_INTERPRET"):
        kernels.rms_norm(torch.ones(2, 4, device="cpu"), torch.ones(4, device="cpu"), 1e-6)


def test_bad_shapes_raise_typed_errors():
    with pytest.raises(KernelInputError, match="weight must have shape"):
        kernels.rms_norm(torch.ones(2, 4), torch.ones(5), 1e-6)
    with pytest.raises(KernelInputError, match="multiple of kv heads"):
        q, k = torch.ones(3, 6, 8), torch.ones(3, 4, 8)
        cu = torch.tensor([0, 3], dtype=torch.int32)
        kernels.varlen_attention(q, k, k, cu, cu, 3, 3, True, 1.0)
    with pytest.raises(KernelInputError, match="int32"):
        q = torch.ones(3, 2, 8)
        cu = torch.tensor([0, 3])
        kernels.varlen_attention(q, q, q, cu, cu, 3, 3, True, 1.0)
    with pytest.raises(KernelInputError, match="class ids"):
        kernels.fused_linear_cross_entropy(torch.ones(2, 4), torch.ones(7, 4), torch.tensor([0, 7]))
    assert issubclass(KernelInputError, ValueError)
