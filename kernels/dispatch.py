"""The one switch that picks Triton kernels or the plain-PyTorch references.

`KEYE_KERNELS=triton|torch` forces a backend; unset means Triton for CUDA tensors and torch
elsewhere. Triton on CPU tensors only works under the Triton interpreter (TRITON_INTERPRET=1,
which must be set before triton is imported), so that case is checked and reported clearly.
"""

from __future__ import annotations

import os

import torch

from .errors import KernelBackendError, KernelInputError

BACKENDS = ("triton", "torch")
ENV = "KEYE_KERNELS"


def interpreting() -> bool:
    """True when Triton kernels run on the CPU through the interpreter."""
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in ("1", "true", "yes", "on")


def backend(device: torch.device | str | None = None) -> str:
    """The backend a kernel call on `device` uses: "triton" or "torch"."""
    value = os.environ.get(ENV, "").strip().lower()
    if value and value not in BACKENDS:
        raise KernelBackendError(f"{ENV}={value!r} is not a backend; use one of {', '.join(BACKENDS)}")
    on_cuda = device is not None and torch.device(device).type == "cuda"
    if not value:
        return "triton" if on_cuda else "torch"
    if value == "triton" and device is not None and not on_cuda and not interpreting():
        raise KernelBackendError(
            f"{ENV}=triton with tensors on {torch.device(device)}: Triton kernels need CUDA tensors, "
            "or TRITON_INTERPRET=1 set before triton is imported to run them on the CPU"
        )
    return value


def use_triton(*tensors: torch.Tensor) -> bool:
    """Dispatch decision for a call; all tensors must share one device."""
    devices = {t.device for t in tensors if t is not None}
    if len(devices) > 1:
        raise KernelInputError(f"kernel inputs are on different devices: {sorted(map(str, devices))}")
    return backend(next(iter(devices)) if devices else None) == "triton"
