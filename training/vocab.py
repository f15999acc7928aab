"""Training only the vocabulary rows the data uses, with the exact full-vocabulary softmax.

A narrow model spends most of a step on its two 151,936-row matrices: the embedding's dense gradient,
the lm_head, and Adam's update of both (39M of keye-demo's 43M parameters). Data of a few thousand
distinct tokens reaches a few thousand rows. While `used_vocabulary` is active the embedding trains
only the used rows (the others keep their values), and the lm_head holds only the used rows, every
other row being exactly zero: an unused token's logit is 0 whatever the hidden state, so the
full softmax's normaliser is logsumexp(used logits, log(unused count)) in closed form. The loss is
the full-vocabulary NLL, not an approximation, and a decoded token outside the trained set can only
win where no trained token's logit is above 0 (which the loss pushes away from).

On exit the model is the released architecture again: nn.Embedding and nn.Linear of the full
vocabulary, the trained rows in place, the lm_head's other rows zero. It starts from a model whose
unused head rows are zero already (keye-demo, or one from scratch, which `zero_unused` makes so).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from keye_model.model import KeyeModel
from service.train_config import TrainConfigError


class UsedEmbedding(nn.Module):
    """nn.Embedding whose used rows are a parameter and the others a frozen (non-saved) buffer."""

    used: torch.Tensor  # the buffers registered in __init__
    frozen: torch.Tensor
    index: torch.Tensor

    def __init__(self, full: nn.Embedding, used: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("used", used, persistent=False)
        self.register_buffer("frozen", full.weight.detach(), persistent=False)  # never written: rows train
        self.rows = nn.Parameter(full.weight.detach()[used].clone())
        index = torch.full((full.num_embeddings,), -1, dtype=torch.long, device=used.device)
        index[used] = torch.arange(used.numel(), device=used.device)
        self.register_buffer("index", index, persistent=False)

    @property
    def weight(self) -> torch.Tensor:
        return self.frozen.index_copy(0, self.used, self.rows)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        at = self.index[ids]
        return torch.where(
            (at >= 0).unsqueeze(-1), F.embedding(at.clamp(min=0), self.rows), F.embedding(ids, self.frozen)
        )

    def restored(self) -> nn.Embedding:
        out = nn.Embedding(self.frozen.shape[0], self.frozen.shape[1], device=self.rows.device, dtype=self.rows.dtype)
        out.weight.data.copy_(self.weight.detach())
        return out


class UsedHead(nn.Module):
    """The lm_head as its used rows; every other row is zero."""

    used: torch.Tensor  # the buffers registered in __init__
    index: torch.Tensor

    def __init__(self, full: nn.Linear, used: torch.Tensor) -> None:
        super().__init__()
        self.vocab_size, hidden = full.weight.shape
        self.register_buffer("used", used, persistent=False)
        self.rows = nn.Parameter(full.weight.detach()[used].clone())
        index = torch.full((self.vocab_size,), -1, dtype=torch.long, device=used.device)
        index[used] = torch.arange(used.numel(), device=used.device)
        self.register_buffer("index", index, persistent=False)
        self.log_unused = math.log(self.vocab_size - used.numel()) if self.vocab_size > used.numel() else -math.inf

    @property
    def weight(self) -> torch.Tensor:  # what model.dtype/device and any serving path read
        full = torch.zeros(self.vocab_size, self.rows.shape[1], device=self.rows.device, dtype=self.rows.dtype)
        return full.index_copy(0, self.used, self.rows)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, self.weight)

    def logprobs(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The full-vocabulary log-probability of each target (all of them among the used ids)."""
        at = self.index[targets]
        if bool((at < 0).any()):
            raise TrainConfigError("an answer token is outside the trained vocabulary")
        logits = (hidden.to(self.rows.dtype) @ self.rows.t()).float()
        norm = torch.logaddexp(logits.logsumexp(-1), torch.tensor(self.log_unused, device=logits.device))
        return logits.gather(1, at[:, None]).squeeze(1) - norm

    def restored(self) -> nn.Linear:
        out = nn.Linear(self.rows.shape[1], self.vocab_size, bias=False, device=self.rows.device, dtype=self.rows.dtype)
        out.weight.data.copy_(self.weight.detach())
        return out


def used_ids(sequences: Iterable[torch.Tensor], vocab_size: int) -> torch.Tensor:
    """The sorted distinct token ids of the sequences (inputs and answers alike)."""
    seen = torch.zeros(vocab_size, dtype=torch.bool)
    for ids in sequences:
        seen[ids.reshape(-1).long().cpu()] = True
    return seen.nonzero().squeeze(1)


def zero_unused(model: KeyeModel, used: torch.Tensor) -> None:
    """Set the lm_head's rows outside `used` to zero (a model trained from scratch, before its first step)."""
    with torch.no_grad():
        keep = model.lm_head.weight[used].clone()
        model.lm_head.weight.zero_()
        model.lm_head.weight[used] = keep


@contextmanager
def used_vocabulary(model: KeyeModel, used: torch.Tensor) -> Iterator[None]:
    """Swap the embedding and lm_head for their used-rows forms; swap back (trained) on exit."""
    head = model.lm_head.weight.detach()
    outside = torch.ones(head.shape[0], dtype=torch.bool, device=head.device)
    outside[used.to(head.device)] = False
    if bool(head[outside].any()):
        raise TrainConfigError(
            "used_vocabulary needs a model whose lm_head rows outside the data are zero "
            "(keye-demo's are; training.vocab.zero_unused makes a new model so)"
        )
    used = used.to(head.device)
    embed, lm_head = UsedEmbedding(model.model.embed_tokens, used), UsedHead(model.lm_head, used)
    # register_module: the same swap as assigning the attributes, which KeyeModel types as the full modules
    model.model.register_module("embed_tokens", embed)
    model.register_module("lm_head", lm_head)
    try:
        yield
    finally:
        model.model.embed_tokens = embed.restored()
        model.lm_head = lm_head.restored()
