"""Keye kernels: Triton kernels for the model's hot paths, each beside its plain-PyTorch reference.

Every public function checks its inputs, then dispatches on `backend()`: the env switch
KEYE_KERNELS=triton|torch, defaulting to Triton for CUDA tensors and torch elsewhere. Triton
kernels on CPU tensors need TRITON_INTERPRET=1 set before triton is imported. All functions are
autograd-aware (the Triton ones through autograd.Function with Triton backward kernels); the
Triton decode_attention serves inference and defers to its reference when autograd records.
Triton modules are imported only when first selected, so the torch path never needs triton.
"""

from __future__ import annotations

import importlib

import torch

from . import attention, cross_entropy, gelu
from . import decode_attention as _decode
from . import layer_norm as _ln
from . import qk_norm_rope as _qkr
from . import rms_norm as _rms
from . import swiglu as _swiglu
from . import vision_rope as _vr
from .dispatch import backend, interpreting, use_triton
from .errors import KernelBackendError, KernelError, KernelInputError

__all__ = [
    "backend",
    "interpreting",
    "KernelError",
    "KernelBackendError",
    "KernelInputError",
    "rms_norm",
    "add_rms_norm",
    "qk_norm_rope",
    "vision_rope",
    "layer_norm",
    "gelu_tanh",
    "swiglu",
    "varlen_attention",
    "decode_attention",
    "fused_linear_cross_entropy",
    "fused_linear_logprobs",
]


def _triton(family: str, name: str, *tensors: torch.Tensor):
    """The Triton implementation `name` of `family` when the switch selects Triton, else None."""
    if not use_triton(*tensors):
        return None
    module = importlib.import_module(f".{family}_triton", __name__)
    return getattr(module, name)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    _rms._check(x, weight)
    impl = _triton("rms_norm", "rms_norm", x, weight)
    return impl(x, weight, eps) if impl else _rms.rms_norm_torch(x, weight, eps)


def add_rms_norm(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    _rms._check(x, weight)
    if not isinstance(residual, torch.Tensor) or x.shape != residual.shape or x.dtype != residual.dtype:
        raise KernelInputError(
            f"x and residual must match in shape and dtype, got {tuple(x.shape)} {x.dtype} and "
            f"{tuple(getattr(residual, 'shape', ()))} {getattr(residual, 'dtype', type(residual).__name__)}"
        )
    impl = _triton("rms_norm", "add_rms_norm", x, residual, weight)
    return impl(x, residual, weight, eps) if impl else _rms.add_rms_norm_torch(x, residual, weight, eps)


def qk_norm_rope(q, k, q_weight, k_weight, cos, sin, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    _qkr._check(q, k, q_weight, k_weight, cos, sin)
    impl = _triton("qk_norm_rope", "qk_norm_rope", q, k, q_weight, k_weight, cos, sin)
    return (impl or _qkr.qk_norm_rope_torch)(q, k, q_weight, k_weight, cos, sin, eps)


def vision_rope(q, k, cos, sin) -> tuple[torch.Tensor, torch.Tensor]:
    _vr._check(q, k, cos, sin)
    impl = _triton("vision_rope", "vision_rope", q, k, cos, sin)
    return (impl or _vr.vision_rope_torch)(q, k, cos, sin)


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    _ln._check(x, weight, bias)
    impl = _triton("layer_norm", "layer_norm", x, weight, bias)
    return (impl or _ln.layer_norm_torch)(x, weight, bias, eps)


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    gelu._check(x)
    impl = _triton("gelu", "gelu_tanh", x)
    return (impl or gelu.gelu_tanh_torch)(x)


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    _swiglu._check(gate, up)
    impl = _triton("swiglu", "swiglu", gate, up)
    return (impl or _swiglu.swiglu_torch)(gate, up)


def varlen_attention(
    q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q: int, max_seqlen_k: int, causal: bool, scale: float
) -> torch.Tensor:
    attention._check(q, k, v, cu_seqlens_q, cu_seqlens_k)
    impl = _triton("attention", "varlen_attention", q, k, v, cu_seqlens_q, cu_seqlens_k)
    return (impl or attention.varlen_attention_torch)(
        q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal, scale
    )


def decode_attention(q, k_cache, v_cache, cache_seqlens, scale: float) -> torch.Tensor:
    _decode._check(q, k_cache, v_cache, cache_seqlens)
    impl = _triton("decode_attention", "decode_attention", q, k_cache, v_cache, cache_seqlens)
    return (impl or _decode.decode_attention_torch)(q, k_cache, v_cache, cache_seqlens, scale)


def fused_linear_cross_entropy(
    hidden, weight, targets, ignore_index: int = -100, chunk_size: int = cross_entropy.DEFAULT_CHUNK
) -> torch.Tensor:
    cross_entropy._check(hidden, weight, targets, ignore_index, chunk_size)
    rows = _triton("cross_entropy", "rows_triton", hidden, weight, targets) or cross_entropy.rows_torch
    return cross_entropy.fused_linear_cross_entropy_with(rows, hidden, weight, targets, ignore_index, chunk_size)


def fused_linear_logprobs(hidden, weight, targets, chunk_size: int = cross_entropy.DEFAULT_CHUNK) -> torch.Tensor:
    cross_entropy._check(hidden, weight, targets, None, chunk_size)
    rows = _triton("cross_entropy", "rows_triton", hidden, weight, targets) or cross_entropy.rows_torch
    return cross_entropy.fused_linear_logprobs_with(rows, hidden, weight, targets, chunk_size)
