"""The answer loss every objective shares: the model's front per example, the packed forward, the
answer tokens' log-probabilities and NLL. Its own module so that sft.py (the LoRA loop) and
preference.py (DPO over the same log-probabilities) both import it and not each other."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from kernels import fused_linear_logprobs
from keye_model.attention import PackedCausal
from keye_model.model import KeyeModel
from service.train_config import TrainConfigError
from training.dataset import IGNORE, Example
from training.vocab import UsedHead

# An example's input embeddings and positions: a FrontCache, or full.PassFront (each visual pass through the tower once).
Front = Callable[[Example], tuple[torch.Tensor, torch.Tensor]]


class FrontCache:
    """The front of the model per example: input embeddings (vision merged in) and positions.

    Frozen (LoRA) it runs without gradients and may be kept; trained (full training) it runs with them
    every time, so the vision tower, projector and token embeddings learn."""

    def __init__(self, model: KeyeModel, keep: bool, frozen: bool = True) -> None:
        if keep and not frozen:
            raise TrainConfigError("a trained front changes every step; it cannot be cached (cache_inputs)")
        self.model, self.keep, self.frozen = model, keep, frozen
        self.store: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, ex: Example) -> tuple[torch.Tensor, torch.Tensor]:
        hit = self.store.get(ex.key)
        if hit is not None:
            return hit
        vision: dict[str, Any] = ex.vision  # Any: only pack's vision tensors, none of its other parameters
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            packed = self.model.pack(ex.input_ids[None], **vision)
        out = (packed.embeds, packed.positions)
        if self.keep:
            self.store[ex.key] = out
        return out


def packed_hidden(model: KeyeModel, front: Front, batch: Sequence[Example]) -> torch.Tensor:
    """Final-normed hidden states of the batch's examples packed end to end (no padding)."""
    parts = [front(ex) for ex in batch]
    embeds = torch.cat([e for e, _ in parts])
    positions = torch.cat([p for _, p in parts], dim=1)
    lengths = [ex.input_ids.shape[0] for ex in batch]
    dev = model.device
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda"):
        return model.run(embeds, positions, PackedCausal(lengths, dev))


def answer_logprobs(
    model: KeyeModel,
    front: Front,
    batch: Sequence[Example],
    sampled_vocab: int = 0,
    hidden: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of every answer token of the batch (packed), and the example index of each;
    `hidden`: the batch's packed_hidden when the caller already has it.

    sampled_vocab > 0: a sampled softmax, over the batch's answer tokens and that many other token
    ids drawn uniformly (torch's global generator, so a resumed run draws the same) instead of the
    whole vocabulary. It costs a fraction of the full lm_head, which dominates a narrow model's step;
    every row of the lm_head is still pushed below the answers whenever it is drawn."""
    if hidden is None:
        hidden = packed_hidden(model, front, batch)
    dev = model.device
    rows, targets, owner = [], [], []
    start = 0
    for i, ex in enumerate(batch):
        nxt = ex.labels[1:].to(dev)  # position t predicts token t+1
        where = (nxt != IGNORE).nonzero().squeeze(1)
        rows.append(where + start)
        targets.append(nxt[where])
        owner.append(torch.full_like(where, i))
        start += ex.input_ids.shape[0]
    rows_t, targets_t = torch.cat(rows), torch.cat(targets)
    if isinstance(model.lm_head, UsedHead):  # training.vocab: the exact full softmax over the used rows
        return model.lm_head.logprobs(hidden[rows_t], targets_t), torch.cat(owner)
    w = model.lm_head.weight
    if sampled_vocab:
        drawn = torch.randint(0, w.shape[0], (sampled_vocab,)).to(dev)
        vocab, targets_t = torch.unique(torch.cat([targets_t, drawn]), return_inverse=True)
        targets_t = targets_t[: rows_t.numel()]
        w = w[vocab]
    logp = fused_linear_logprobs(hidden[rows_t].to(w.dtype).contiguous(), w, targets_t)
    return logp, torch.cat(owner)


def answer_nll(
    model: KeyeModel,
    front: Front,
    batch: Sequence[Example],
    weighted: bool = True,
    sampled_vocab: int = 0,
    hidden: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(NLL of the answer tokens summed, each weighted by its example's weight; the weights' sum; tokens)."""
    logp, owner = answer_logprobs(model, front, batch, sampled_vocab, hidden)
    w = torch.tensor([ex.weight if weighted else 1.0 for ex in batch], device=logp.device)[owner]
    return -(w * logp).sum(), w.sum(), int(logp.numel())


def answer_weight(ex: Example) -> float:
    """What `answer_nll` sums as the weights of one example, known before any forward."""
    return ex.weight * int((ex.labels[1:] != IGNORE).sum())


def sft_loss(
    model: KeyeModel, front: Front, batch: Sequence[Example], weighted: bool = True
) -> tuple[torch.Tensor, int]:
    """(mean NLL of the answer tokens, weighted by each example's weight; number of answer tokens)."""
    total, weights, n = answer_nll(model, front, batch, weighted)
    return total / weights.clamp(min=1e-8), n


@torch.no_grad()
def eval_loss(model: KeyeModel, front: Front, examples: Sequence[Example]) -> float | None:
    """Unweighted mean NLL per answer token over the examples (comparable between models)."""
    if not examples:
        return None
    was = model.training
    model.eval()
    total, count = 0.0, 0
    for ex in examples:
        logp, _ = answer_logprobs(model, front, [ex])
        total += float(-logp.sum())
        count += logp.numel()
    model.train(was)
    return total / max(count, 1)
