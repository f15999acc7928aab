"""Supervised fine-tuning on feedback examples: LoRA adapters, or every parameter (`full`).

AdamW on the adapter parameters (or on every parameter), gradient accumulation, gradient-norm
clipping, warmup then a cosine or linear decay, bf16 autocast on CUDA and float32 on CPU, one seed for everything random
(adapter init, dropout, example order). The frozen front of the model (token embeddings, vision
tower, projector) runs once per example under no_grad and is cached when `cache_inputs` is on: with
LoRA the decoder with its adapters is all that trains. The loss is the weighted mean negative
log-likelihood of the answer tokens only (labels -100 elsewhere), computed by the chunked fused
lm_head + log-softmax kernel on the answer positions alone, so no (tokens x vocabulary) logits of
the prompt are ever built.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from keye_model.model import KeyeModel
from service.train_config import TrainConfig
from training.answer_loss import (
    FrontCache,
    answer_logprobs,
    answer_nll,
    answer_weight,
    eval_loss,
    packed_hidden,
    sft_loss,
)
from training.dataset import Example, PreferencePair
from training.errors import NotEnoughExamples
from training.lora import apply_lora, lora_parameters

__all__ = [
    "FrontCache",
    "answer_logprobs",
    "answer_nll",
    "answer_weight",
    "eval_loss",
    "packed_hidden",
    "sft_loss",
    "train",
]  # the answer loss is re-exported: callers of the LoRA loop find it here


@dataclass
class TrainResult:
    losses: list[float]  # per optimizer step (mean over its micro-batches)
    eval_loss_base: float | None  # the base model (adapters at zero) on the held-out examples
    eval_loss: float | None  # the adapted model on the same examples
    train_examples: int
    eval_examples: int
    answer_tokens: int  # supervised tokens seen
    seconds: float
    dpo_losses: list[float] = field(default_factory=list)

    def metrics(self) -> dict[str, Any]:
        return {
            "eval_loss_base": self.eval_loss_base,
            "eval_loss": self.eval_loss,
            "train_loss_first": self.losses[0] if self.losses else None,
            "train_loss_last": self.losses[-1] if self.losses else None,
            "steps": len(self.losses),
            "train_examples": self.train_examples,
            "eval_examples": self.eval_examples,
            "answer_tokens": self.answer_tokens,
            "seconds": round(self.seconds, 3),
            "dpo_loss_last": self.dpo_losses[-1] if self.dpo_losses else None,
        }


# ---- data ---------------------------------------------------------------------------------------


def split_by_video(examples: Sequence[Example], eval_fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Held-out videos (never a task of a training video): deterministic by hash, at least one each side."""
    videos = sorted({e.video_id for e in examples}, key=lambda v: hashlib.sha256(f"{seed}:{v}".encode()).hexdigest())
    n_eval = 0
    if eval_fraction > 0 and len(videos) >= 2:
        n_eval = min(max(1, round(eval_fraction * len(videos))), len(videos) - 1)
    held = set(videos[:n_eval])
    return [e for e in examples if e.video_id not in held], [e for e in examples if e.video_id in held]


def lr_lambda(cfg: TrainConfig):
    decay_steps = max(cfg.steps - cfg.warmup_steps, 1)

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / (cfg.warmup_steps + 1)
        t = min((step - cfg.warmup_steps) / decay_steps, 1.0)
        if cfg.schedule == "constant":
            return 1.0
        shape = 0.5 * (1 + math.cos(math.pi * t)) if cfg.schedule == "cosine" else 1.0 - t
        return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * shape

    return factor


# ---- the loop -----------------------------------------------------------------------------------


def make_optimizer(params: list[nn.Parameter], cfg: TrainConfig):
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))


def optimizer_step(params: list[nn.Parameter], opt, sched, max_grad_norm: float) -> None:
    """Clip the accumulated gradients, step, advance the schedule, clear the gradients."""
    torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)


def train(
    model: KeyeModel, examples: Sequence[Example], cfg: TrainConfig, pairs: Sequence[PreferencePair] = (), log=None
) -> TrainResult:
    """Adapt `model` in place (LoRA adapters added and trained, or every weight with `full`); the caller
    merges and exports."""
    if len(examples) < cfg.min_examples:
        raise NotEnoughExamples(f"{len(examples)} usable example(s); the run needs at least {cfg.min_examples}")
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    train_set, eval_set = split_by_video(examples, cfg.eval_fraction, cfg.seed)
    front = FrontCache(model, cfg.cache_inputs, frozen=not cfg.full)
    base_loss = eval_loss(model, front, eval_set)  # before any change: exactly the base model
    if cfg.full:
        model.requires_grad_(True)
        params = list(model.parameters())
    else:
        apply_lora(model, cfg.lora)
        params = lora_parameters(model)
    opt, sched = make_optimizer(params, cfg)
    order = batches(train_set, cfg.batch_size, cfg.seed)
    pair_order = batches(list(pairs), 1, cfg.seed + 1) if pairs and cfg.dpo_weight > 0 else None
    model.train()
    losses, dpo_losses, tokens = [], [], 0
    for step in range(cfg.steps):
        step_loss = step_dpo = 0.0
        for _ in range(cfg.grad_accum):
            loss, n = sft_loss(model, front, next(order))
            tokens += n
            if pair_order is not None:
                from training.preference import dpo_loss

                d = dpo_loss(model, front, next(pair_order)[0], cfg.dpo_beta)
                step_dpo += float(d.detach()) / cfg.grad_accum
                loss = loss + cfg.dpo_weight * d
            (loss / cfg.grad_accum).backward()
            step_loss += float(loss.detach()) / cfg.grad_accum
        optimizer_step(params, opt, sched, cfg.max_grad_norm)
        losses.append(step_loss)
        if pair_order is not None:
            dpo_losses.append(step_dpo)
        if log is not None:
            log(step, step_loss, sched.get_last_lr()[0])
    model.eval()
    return TrainResult(
        losses,
        base_loss,
        eval_loss(model, front, eval_set),
        len(train_set),
        len(eval_set),
        tokens,
        time.perf_counter() - t0,
        dpo_losses,
    )


def batches(items: list, size: int, seed: int):
    """Endless micro-batches: a fresh seeded permutation every epoch."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(len(items), generator=gen).tolist()
        for i in range(0, len(perm), size):
            yield [items[j] for j in perm[i : i + size]]
