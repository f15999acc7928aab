"""Sampling settings and the per-step token choice (greedy, temperature, top-k, top-p, repetition penalty)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from keye_model.config import DEFAULT_STOP_IDS
from keye_model.errors import InputError

# A per-step hook: (logits (B, V) float32, tokens generated so far per row) -> logits.
# Grammar masks (xgrammar) plug in here; rows that finished are still passed and ignored.
LogitsProcessor = Callable[[torch.Tensor, Sequence[Sequence[int]]], torch.Tensor]


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0
    repetition_penalty: float = 1.0  # HF rule: positive logits / p, negative * p, over prompt + output
    stop_token_ids: tuple[int, ...] = DEFAULT_STOP_IDS
    stop_strings: tuple[str, ...] = ()
    seed: int | None = None

    @classmethod
    def released_defaults(cls, **override) -> SamplingParams:
        """The release's generation_config.json: temperature 0.6, top_k 20, top_p 0.95."""
        return cls(**{"temperature": 0.6, "top_k": 20, "top_p": 0.95, **override})

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise InputError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise InputError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise InputError(f"top_k must be >= 0, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise InputError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise InputError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if isinstance(self.stop_strings, str):
            raise InputError("stop_strings must be a sequence of strings, not one string")


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor | None, penalty: float) -> torch.Tensor:
    """seen (B, V) bool: tokens already in each row's prompt or output; None only when penalty is 1."""
    if penalty == 1.0:
        return logits
    assert seen is not None, "a repetition penalty needs the tokens seen so far"
    scaled = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, scaled, logits)


def filter_top_k_top_p(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # drop a token when the mass BEFORE it already reaches top_p (the first token always stays)
        drop = (probs.cumsum(-1) - probs) >= top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


def choose(
    logits: torch.Tensor, params: SamplingParams, seen: torch.Tensor | None, generator: torch.Generator | None
) -> torch.Tensor:
    """logits (B, V) float32 -> token ids (B,)."""
    logits = apply_repetition_penalty(logits, seen, params.repetition_penalty)
    if params.temperature == 0.0:
        return logits.argmax(-1)
    logits = filter_top_k_top_p(logits / params.temperature, params.top_k, params.top_p)
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
