"""Kernel tests: Triton against the torch references.

On a machine without CUDA the Triton kernels run on the CPU through the interpreter.
TRITON_INTERPRET is read when a kernel is decorated, i.e. when triton modules are imported, so it
is set here at import time (importing torch does not import triton). On a CUDA machine the same
tests run the compiled kernels on the GPU instead: tensors are created on CUDA by default.
"""

from __future__ import annotations

import os

import torch

ON_CUDA = torch.cuda.is_available()
if not ON_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402 - after TRITON_INTERPRET, which triton reads when imported

DEVICE = "cuda" if ON_CUDA else "cpu"


@pytest.fixture(autouse=True)
def _deterministic_on_device():
    torch.manual_seed(0)
    with torch.device(DEVICE):
        yield


@pytest.fixture
def backend_env(monkeypatch):
    """Run a block with KEYE_KERNELS set: `with backend_env("triton"): ...`."""
    import contextlib

    @contextlib.contextmanager
    def use(name: str):
        with monkeypatch.context() as m:
            m.setenv("KEYE_KERNELS", name)
            yield

    return use


def _as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


@pytest.fixture
def compare(monkeypatch):
    """Check a public kernel's Triton path against its torch path: outputs and input gradients.

    `compare(fn, *args, atol=..., grad=True, frozen=(i, ...))`: floating-point tensor args get
    gradients, except those at the `frozen` positions (buffers such as cos/sin); the same random
    upstream gradient is fed to both paths.
    """

    def run(fn, *args, atol=1e-5, rtol=1e-5, grad=True, frozen=(), **kwargs):
        results = {}
        for name in ("torch", "triton"):
            monkeypatch.setenv("KEYE_KERNELS", name)
            leaves = [
                a.detach().clone().requires_grad_(grad and i not in frozen)
                if isinstance(a, torch.Tensor) and a.is_floating_point()
                else a
                for i, a in enumerate(args)
            ]
            outs = _as_tuple(fn(*leaves, **kwargs))
            grads = []
            if grad:
                gen = torch.Generator().manual_seed(1)
                ups = [torch.randn(o.shape, generator=gen, device="cpu").to(o.device, o.dtype) for o in outs]
                torch.autograd.backward(list(outs), ups)
                grads = [leaf.grad for leaf in leaves if isinstance(leaf, torch.Tensor) and leaf.requires_grad]
            results[name] = ([o.detach() for o in outs], grads)
        (ref_out, ref_grads), (tri_out, tri_grads) = results["torch"], results["triton"]
        for i, (a, b) in enumerate(zip(ref_out, tri_out)):
            assert a.shape == b.shape and a.dtype == b.dtype, f"output {i}: {a.shape}/{a.dtype} vs {b.shape}/{b.dtype}"
            torch.testing.assert_close(b, a, atol=atol, rtol=rtol, msg=lambda m, i=i: f"output {i}: {m}")
        for i, (a, b) in enumerate(zip(ref_grads, tri_grads)):
            assert (a is None) == (b is None), f"gradient {i} missing on one path"
            if a is not None:
                torch.testing.assert_close(b, a, atol=atol, rtol=rtol, msg=lambda m, i=i: f"gradient {i}: {m}")
        return ref_out, tri_out

    return run
