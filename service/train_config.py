"""A fine-tuning run's configuration (TrainConfig, its LoraConfig) and the errors of training.

Plain dataclasses, no torch: whoever queues a run (the streams app's feedback trigger, `keye train`)
validates KEYE_TRAIN_CONFIG with them without loading the trainer, and a queued run's row keeps
`TrainConfig.to_dict()`, which the worker turns back into the same config (training/runner.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

# The decoder projections LoRA may wrap (training/lora.py).
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")


class TrainingError(Exception):
    """Base class: something a fine-tuning run cannot do, with a human reason."""


class TrainConfigError(TrainingError, ValueError):
    """A training configuration value out of range."""


@dataclass(frozen=True)
class LoraConfig:
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: tuple[str, ...] = ATTENTION + MLP
    seed: int = 0  # initialization of the A matrices

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise TrainConfigError(f"LoRA rank must be >= 1, got {self.rank}")
        if not 0.0 <= self.dropout < 1.0:
            raise TrainConfigError(f"LoRA dropout must lie in [0, 1), got {self.dropout}")
        unknown = set(self.targets) - set(ATTENTION + MLP)
        if not self.targets or unknown:
            raise TrainConfigError(f"LoRA targets must be a non-empty subset of {ATTENTION + MLP}, got {self.targets}")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 100
    batch_size: int = 1  # examples per micro-batch (packed, no padding)
    grad_accum: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    min_lr_ratio: float = 0.0  # the decay ends at lr * min_lr_ratio
    max_grad_norm: float = 1.0
    seed: int = 0
    eval_fraction: float = 0.2  # of the videos, held out for the eval loss
    # Keep each example's frozen front (input embeddings, vision merged in) between steps: saves the
    # vision tower's forward per step at (tokens x hidden) memory per example; worth it for small sets.
    cache_inputs: bool = False
    max_events: int | None = 5000  # feedback events one run reads (oldest first); the rest wait for the next
    dpo_weight: float = 0.0  # > 0 adds the preference loss over summary pairs (training/preference.py)
    dpo_beta: float = 0.1
    min_examples: int = 1
    # Train every parameter (vision tower, projector, decoder) instead of LoRA adapters: what a small
    # model needs to learn something its frozen vision features do not separate (a new category).
    full: bool = False
    # Rehearsal: every task's ground truth on clips of a labelled corpus folder (`keye corpus make`; the
    # first `replay_clips`, None: all) trained beside the feedback, so what feedback does not correct
    # (other tasks, other categories) is not forgotten. The runner adds them (training/runner.py).
    replay_corpus: str | None = None
    replay_clips: int | None = None
    lora: LoraConfig = field(default_factory=LoraConfig)

    def __post_init__(self) -> None:
        checks = [
            (self.steps >= 1, "steps must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.grad_accum >= 1, "grad_accum must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (0 <= self.warmup_steps, "warmup_steps must be >= 0"),
            (self.schedule in ("cosine", "linear", "constant"), "schedule must be cosine, linear or constant"),
            (0.0 <= self.eval_fraction < 1.0, "eval_fraction must lie in [0, 1)"),
            (self.max_grad_norm > 0, "max_grad_norm must be > 0"),
            (self.dpo_weight >= 0, "dpo_weight must be >= 0"),
            (self.min_examples >= 1, "min_examples must be >= 1"),
            (not (self.full and self.cache_inputs), "full training trains the front; cache_inputs must be off"),
            (not (self.full and self.dpo_weight), "full training keeps no reference model; dpo_weight must be 0"),
            (self.max_events is None or self.max_events >= 1, "max_events must be >= 1 or None"),
            (self.replay_clips is None or self.replay_clips >= 1, "replay_clips must be >= 1 or None"),
        ]
        for ok, reason in checks:
            if not ok:
                raise TrainConfigError(reason)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> TrainConfig:
        raw = dict(raw or {})
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise TrainConfigError(f"unknown training option(s) {sorted(unknown)}; known: {sorted(known)}")
        if isinstance(raw.get("lora"), dict):
            lora = dict(raw["lora"])
            if "targets" in lora:
                lora["targets"] = tuple(lora["targets"])
            raw["lora"] = LoraConfig(**lora)
        if "betas" in raw:
            raw["betas"] = tuple(raw["betas"])
        try:
            return cls(**raw)
        except TypeError as e:
            raise TrainConfigError(str(e)) from None
