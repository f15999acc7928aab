"""Typed errors raised by the kernels package."""

from __future__ import annotations


class KernelError(Exception):
    """Base class for every error raised by `kernels`."""


class KernelBackendError(KernelError):
    """The requested implementation cannot run here (bad KEYE_KERNELS value, no CUDA, no interpreter)."""


class KernelInputError(KernelError, ValueError):
    """A kernel was called with tensors of the wrong shape, dtype or device."""
