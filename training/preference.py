"""Direct preference optimization over summary pairs (a better summary against one rated 1-2).

loss = -log sigmoid(beta * ((log pi(chosen) - log ref(chosen)) - (log pi(rejected) - log ref(rejected))))

with sequence log-probabilities summed over the answer tokens. The reference model is the base
model itself: the same network with its LoRA adapters switched off, so no second copy is held.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from keye_model.model import KeyeModel
from training.answer_loss import Front, answer_logprobs
from training.dataset import PreferencePair
from training.lora import set_lora_enabled


def sequence_logprobs(model: KeyeModel, front: Front, pair: PreferencePair) -> torch.Tensor:
    """(2,) summed answer log-probabilities of (chosen, rejected)."""
    logp, owner = answer_logprobs(model, front, [pair.chosen, pair.rejected])
    return torch.zeros(2, device=logp.device).index_add(0, owner, logp.float())


def dpo_loss(model: KeyeModel, front: Front, pair: PreferencePair, beta: float) -> torch.Tensor:
    policy = sequence_logprobs(model, front, pair)
    with torch.no_grad():
        set_lora_enabled(model, False)
        try:
            ref = sequence_logprobs(model, front, pair)
        finally:
            set_lora_enabled(model, True)
    margin = (policy[0] - ref[0]) - (policy[1] - ref[1])
    return -F.logsigmoid(beta * margin)
