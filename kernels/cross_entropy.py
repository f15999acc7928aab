"""Chunked fused linear + cross-entropy (and per-token log-probabilities) over the vocabulary.

Training never holds the (N, V) logits: tokens are processed `chunk_size` rows at a time; each
chunk's logits come from a torch matmul, a row kernel turns them IN PLACE into d(loss)/d(logits)
while computing logsumexp and the target logit, and the chunk's contributions to grad_hidden and
grad_weight are accumulated immediately. The row kernel is the only part Triton replaces.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .checks import require, require_float

DEFAULT_CHUNK = 2048  # 2048 x 151936 bf16 logits = 0.6 GB per chunk

# rows(logits, targets, ignore_index, grad_scale) -> (lse, target_logit), both float32 (rows,).
# With grad_scale (rows,), logits is overwritten with (softmax - onehot(target)) * grad_scale.
RowsFn = Callable[[torch.Tensor, torch.Tensor, int, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor]]


def _check(hidden, weight, targets, ignore_index: int | None, chunk_size: int) -> None:
    require_float("hidden", hidden)
    require_float("weight", weight)
    require(
        hidden.dim() == 2 and weight.dim() == 2 and hidden.shape[1] == weight.shape[1],
        f"hidden (N, H) and weight (V, H) must share H, got {tuple(hidden.shape)} and {tuple(weight.shape)}",
    )
    require(
        isinstance(targets, torch.Tensor) and targets.dim() == 1 and targets.shape[0] == hidden.shape[0],
        f"targets must be ({hidden.shape[0]},), got {tuple(getattr(targets, 'shape', ()))}",
    )
    require(not targets.is_floating_point(), f"targets must be integer class ids, got {targets.dtype}")
    require(isinstance(chunk_size, int) and chunk_size > 0, f"chunk_size must be a positive int, got {chunk_size!r}")
    v = weight.shape[0]
    in_range = (targets >= 0) & (targets < v)
    if ignore_index is not None:
        in_range |= targets == ignore_index
    require(
        bool(in_range.all()),
        f"targets must be class ids in [0, {v})"
        + (f" or ignore_index {ignore_index}" if ignore_index is not None else ""),
    )


def rows_torch(
    logits: torch.Tensor, targets: torch.Tensor, ignore_index: int, grad_scale: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    lf = logits.float()
    lse = torch.logsumexp(lf, dim=-1)
    valid = targets != ignore_index
    safe = torch.where(valid, targets, torch.zeros_like(targets)).long()
    tgt = lf.gather(1, safe[:, None]).squeeze(1) * valid
    if grad_scale is not None:
        grad = torch.exp(lf - lse[:, None])
        grad[torch.arange(len(safe), device=lf.device), safe] -= valid.float()
        logits.copy_(grad * grad_scale[:, None])
    return lse, tgt


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, ignore_index: int, chunk_size: int, rows: RowsFn, grad_mode: bool):
        valid = targets != ignore_index
        n_valid = valid.sum().clamp(min=1).float()
        # Gradients are computed here, chunk by chunk, only when a backward can follow
        # (needs_input_grad alone stays True under torch.no_grad()).
        need_h, need_w = grad_mode and ctx.needs_input_grad[0], grad_mode and ctx.needs_input_grad[1]
        scale = valid.float() / n_valid if (need_h or need_w) else None
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros_like(weight) if need_w else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for s in range(0, hidden.shape[0], chunk_size):
            h, t = hidden[s : s + chunk_size], targets[s : s + chunk_size]
            logits = h @ weight.t()
            lse, tgt = rows(logits, t, ignore_index, None if scale is None else scale[s : s + chunk_size])
            total += ((lse - tgt) * valid[s : s + chunk_size]).sum()
            if grad_h is not None:  # allocated exactly when need_h
                grad_h[s : s + chunk_size] = logits @ weight
            if grad_w is not None:  # allocated exactly when need_w
                grad_w.addmm_(logits.t(), h)
        ctx.save_for_backward(grad_h, grad_w)
        return total / n_valid  # 0 when every target is ignored, not nan

    @staticmethod
    def backward(ctx, grad_loss):
        grad_h, grad_w = ctx.saved_tensors
        gh = grad_h * grad_loss.to(grad_h.dtype) if grad_h is not None else None
        gw = grad_w * grad_loss.to(grad_w.dtype) if grad_w is not None else None
        return gh, gw, None, None, None, None, None


class _LinearLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_size: int, rows: RowsFn):
        logp = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        for s in range(0, hidden.shape[0], chunk_size):
            logits = hidden[s : s + chunk_size] @ weight.t()
            lse, tgt = rows(logits, targets[s : s + chunk_size], -1, None)
            logp[s : s + chunk_size] = tgt - lse
        ctx.save_for_backward(hidden, weight, targets)
        ctx.chunk_size, ctx.rows = chunk_size, rows
        return logp

    @staticmethod
    def backward(ctx, grad_logp):
        # Recompute each chunk's logits: the upstream gradient is only known now.
        hidden, weight, targets = ctx.saved_tensors
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros_like(weight) if need_w else None
        c = ctx.chunk_size
        for s in range(0, hidden.shape[0], c):
            h = hidden[s : s + c]
            logits = h @ weight.t()
            # d logp / d logits = onehot - softmax, i.e. the row kernel's output scaled by -g.
            ctx.rows(logits, targets[s : s + c], -1, -grad_logp[s : s + c].float())
            if need_h:
                grad_h[s : s + c] = logits @ weight
            if need_w:
                grad_w.addmm_(logits.t(), h)
        return grad_h, grad_w, None, None, None


def fused_linear_cross_entropy_with(
    rows: RowsFn, hidden, weight, targets, ignore_index: int, chunk_size: int
) -> torch.Tensor:
    return _LinearCrossEntropy.apply(hidden, weight, targets, ignore_index, chunk_size, rows, torch.is_grad_enabled())


def fused_linear_logprobs_with(rows: RowsFn, hidden, weight, targets, chunk_size: int) -> torch.Tensor:
    return _LinearLogprobs.apply(hidden, weight, targets, chunk_size, rows)


def linear_cross_entropy_reference(hidden, weight, targets, ignore_index: int = -100) -> torch.Tensor:
    """Unfused reference (materializes the logits): for tests and the benchmark only."""
    logits = (hidden @ weight.t()).float()
    if bool((targets == ignore_index).all()):
        return logits.sum() * 0.0
    return torch.nn.functional.cross_entropy(logits, targets.long(), ignore_index=ignore_index)


def linear_logprobs_reference(hidden, weight, targets) -> torch.Tensor:
    logits = (hidden @ weight.t()).float()
    return torch.log_softmax(logits, dim=-1).gather(1, targets.long()[:, None]).squeeze(1)
