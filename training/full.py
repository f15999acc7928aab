"""Full-parameter training: every weight learns (token embeddings, vision tower, projector, decoder,
lm_head), beside the LoRA path of sft.py and sharing its pieces (optimizer and schedule, the packed
answer loss, example order, the optimizer step).

    result = train_full(model, examples, FullConfig(steps=200, checkpoint_every=50), Supervised(),
                        checkpoint_dir=folder)          # resumes from folder's latest checkpoint

An objective (Supervised here, contrastive.Contrastive) gives each micro-batch a loss *sum* and a
weight known before the forward; a step divides by the total weight of all its micro-batches (of
all ranks), so accumulating 2 micro-batches of 1 is one batch of 2, and 2 ranks of 1 are one
process with a batch of 2. bf16 autocast on CUDA, float32 on CPU. A checkpoint (model, optimizer,
schedule, step, RNG state) is written every `checkpoint_every` steps by rank 0, atomically (a temporary
file renamed into place); the example order is a function of the seed and the step, so a resumed
run continues the same schedule on the same batches.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from keye_model.model import KeyeModel, Packed
from keye_model.rope import VisionGrids, mrope_positions
from service.train_config import TrainConfig, TrainConfigError
from training.answer_loss import FrontCache, answer_nll, answer_weight
from training.dataset import Example
from training.distributed import ALONE, World, barrier, sum_across, wrap
from training.sft import batches, make_optimizer, optimizer_step
from training.vocab import used_vocabulary

log = logging.getLogger("training.full")
CHECKPOINT = re.compile(r"^step-(\d{8})\.pt$")


@dataclass(frozen=True)
class FullConfig(TrainConfig):
    """TrainConfig's optimizer, schedule and batching; its LoRA, feedback and eval-split options do not apply."""

    checkpoint_every: int = 0  # steps between checkpoints; 0: none
    keep_checkpoints: int = 2  # the newest ones kept

    def __post_init__(self) -> None:
        super().__post_init__()
        checks = [
            (self.checkpoint_every >= 0, "checkpoint_every must be >= 0"),
            (self.keep_checkpoints >= 1, "keep_checkpoints must be >= 1"),
            (not self.cache_inputs, "full training trains the front; cache_inputs must be off"),
            (self.dpo_weight == 0, "full training has no preference loss yet; dpo_weight must be 0"),
        ]
        for ok, reason in checks:
            if not ok:
                raise TrainConfigError(reason)


class PassFront:
    """The trained front of one micro-batch: each visual pass through the vision tower once, the tasks of
    that pass continuing its prefix as text (the analyzer's prefill-then-continue), so the pass's vision
    gradients of all its tasks add up in one backward."""

    def __init__(self, model: KeyeModel) -> None:
        self.model = model
        self.plain = FrontCache(model, keep=False, frozen=False)
        self.passes: dict[int, Packed] = {}

    def __call__(self, ex: Example) -> tuple[torch.Tensor, torch.Tensor]:
        if not ex.prefix_len:
            return self.plain(ex)
        prefix = self.passes.get(id(ex.vision))  # one pass's examples share its vision tensors (dataset.py)
        if prefix is None:
            vision: dict[str, Any] = ex.vision  # Any: only pack's vision tensors, none of its other parameters
            prefix = self.passes[id(ex.vision)] = self.model.pack(ex.input_ids[None, : ex.prefix_len], **vision)
        rest = ex.input_ids[ex.prefix_len :]
        pos, _ = mrope_positions(rest.tolist(), VisionGrids(), self.model.config, start=prefix.next_positions[0])
        embeds = torch.cat([prefix.embeds, self.model.model.embed_tokens(rest.to(self.model.device))])
        return embeds, torch.cat([prefix.positions, pos.to(self.model.device)], dim=1)


class Supervised(nn.Module):
    """The answer tokens' weighted NLL, the vision front trained with the rest; `sampled_vocab` > 0
    takes the softmax over the answers and that many drawn tokens (sft.answer_logprobs)."""

    def __init__(self, sampled_vocab: int = 0) -> None:
        super().__init__()
        self.sampled_vocab = sampled_vocab

    def weight(self, batch: Sequence[Example]) -> float:
        return sum(answer_weight(ex) for ex in batch)

    def loss_sum(self, model: KeyeModel, batch: Sequence[Example]) -> torch.Tensor:
        return answer_nll(model, PassFront(model), batch, sampled_vocab=self.sampled_vocab)[0]


class Objective(Protocol):
    """What train_full trains under (an nn.Module, so that its own parameters train and checkpoint too)."""

    def weight(self, batch: Sequence[Any]) -> float: ...

    def loss_sum(self, model: KeyeModel, batch: Sequence[Any]) -> torch.Tensor: ...


class _Trainee(nn.Module):
    """Model and objective in one module: what DDP wraps, what a checkpoint holds."""

    def __init__(self, model: KeyeModel, objective: Objective) -> None:
        super().__init__()
        self.model, self.objective = model, objective

    def forward(self, batch: Sequence) -> torch.Tensor:
        return self.objective.loss_sum(self.model, batch)


@dataclass
class FullResult:
    losses: list[float]  # per optimizer step of this call (a resumed run: from its first new step)
    first_step: int  # 0, or the step a checkpoint resumed at
    seconds: float
    checkpoints: list[Path] = field(default_factory=list)


def train_full(
    model: KeyeModel,
    items: Sequence,
    cfg: FullConfig,
    objective: Objective,
    checkpoint_dir: str | Path | None = None,
    world: World = ALONE,
    log_step: Callable[[int, float, float], None] | None = None,
    vocab: torch.Tensor | None = None,
) -> FullResult:
    """Train every parameter of `model` (in place) on `items` under `objective`; resume when a checkpoint exists.
    `vocab`: the token ids the data uses; only their embedding and lm_head rows train (training.vocab)."""
    with used_vocabulary(model, vocab) if vocab is not None else nullcontext():
        return _train_full(model, items, cfg, objective, checkpoint_dir, world, log_step)


def _train_full(model, items, cfg: FullConfig, objective, checkpoint_dir, world: World, log_step) -> FullResult:
    if len(items) < cfg.min_examples:
        raise TrainConfigError(f"{len(items)} item(s); the run needs at least {cfg.min_examples}")
    per_step = cfg.batch_size * world.size  # a global micro-batch: each rank takes its slice
    if world.size > 1 and len(items) % per_step:
        raise TrainConfigError(
            f"{len(items)} items do not split into global micro-batches of {per_step} "
            f"({cfg.batch_size} per rank x {world.size} ranks)"
        )
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    model.requires_grad_(True)
    trainee = _Trainee(model, objective)
    params = [p for p in trainee.parameters() if p.requires_grad]
    opt, sched = make_optimizer(params, cfg)
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    start = 0
    latest = latest_checkpoint(folder) if folder is not None else None
    if latest is not None:
        start = restore(latest, trainee, opt, sched, _schedule_of(cfg, world))
        log.info("resuming at step %d from %s", start, latest)
    net = wrap(trainee, world)  # after the restore: DDP broadcasts rank 0's weights
    # what skips DDP's gradient sync on all but a step's last micro-batch (one process always syncs)
    no_sync = net.no_sync if isinstance(net, DistributedDataParallel) else nullcontext
    order = batches(list(items), per_step, cfg.seed)
    for _ in range(start * cfg.grad_accum):  # the order is a function of the step: skip what was trained
        next(order)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=model.device.type == "cuda")
    result = FullResult([], start, 0.0)
    model.train()
    for step in range(start, cfg.steps):
        micro = [next(order) for _ in range(cfg.grad_accum)]
        total = sum(objective.weight(b) for b in micro)
        local = 0.0
        for i, b in enumerate(micro):
            mine = b[world.rank * cfg.batch_size : (world.rank + 1) * cfg.batch_size]
            sync = i == len(micro) - 1 or world.size == 1
            with nullcontext() if sync else no_sync(), autocast:
                loss = net(mine) * (world.size / max(total, 1e-8))  # DDP averages over ranks
            loss.backward()
            local += float(loss.detach())
        optimizer_step(params, opt, sched, cfg.max_grad_norm)
        step_loss = sum_across(local, world) / world.size
        result.losses.append(step_loss)
        log.info("step %d/%d loss %.4f lr %.3g", step + 1, cfg.steps, step_loss, sched.get_last_lr()[0])
        if log_step is not None:
            log_step(step, step_loss, sched.get_last_lr()[0])
        if folder is not None and cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0:
            if world.main:
                result.checkpoints.append(save_checkpoint(folder, step + 1, trainee, opt, sched, cfg, world))
            barrier(world)
    model.eval()
    result.seconds = time.perf_counter() - t0
    return result


# ---- checkpoints --------------------------------------------------------------------------------


def latest_checkpoint(folder: Path) -> Path | None:
    found = sorted(p for p in folder.glob("step-*.pt") if CHECKPOINT.match(p.name)) if folder.is_dir() else []
    return found[-1] if found else None


def _schedule_of(cfg: FullConfig, world: World) -> dict:
    """What fixes the batches and the learning rate of every step: a resumed run must share it."""
    keys = ("steps", "batch_size", "grad_accum", "lr", "warmup_steps", "schedule", "min_lr_ratio", "seed")
    return {**{k: getattr(cfg, k) for k in keys}, "world_size": world.size}


def save_checkpoint(
    folder: Path, step: int, trainee: nn.Module, opt, sched, cfg: FullConfig, world: World = ALONE
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        "step": step,
        "schedule": _schedule_of(cfg, world),
        "trainee": trainee.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "config": cfg.to_dict(),
    }  # the whole configuration, for the record
    path = folder / f"step-{step:08d}.pt"
    tmp = folder / f".{path.name}.tmp"
    with tmp.open("wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)  # a reader sees the whole checkpoint or none
    for old in sorted(folder.glob("step-*.pt"))[: -cfg.keep_checkpoints]:
        old.unlink()
    log.info("checkpoint %s", path)
    return path


def restore(path: Path, trainee: nn.Module, opt, sched, schedule: dict) -> int:
    """Load a checkpoint into the trainee, optimizer and schedule; returns the step to continue at."""
    state = torch.load(path, map_location=next(trainee.parameters()).device, weights_only=False)
    if state["schedule"] != schedule:
        differ = sorted(k for k in schedule if state["schedule"].get(k) != schedule[k])
        raise TrainConfigError(
            f"{path} belongs to another schedule (differs in {', '.join(differ)}); "
            "give a new checkpoint folder or the same options"
        )
    trainee.load_state_dict(state["trainee"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"].cpu())
    if state["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
    return int(state["step"])
