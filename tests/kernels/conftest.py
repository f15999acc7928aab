"""Kernel tests run the Triton kernels on the CPU through the interpreter.

TRITON_INTERPRET is read when a kernel is decorated, i.e. when triton modules are imported, so it
is set here at import time, before any test module imports `kernels`' Triton files.
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
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
