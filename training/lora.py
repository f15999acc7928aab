"""LoRA: low-rank adapters on the decoder's linear projections, merged into the weights for export.

    adapted = apply_lora(model, LoraConfig(rank=8))   # freezes everything, wraps the targets
    ... train lora_parameters(model) ...
    merge_lora(model)                                 # plain nn.Linear again, same names as the release
    model.save_pretrained(folder)                     # keye_model.load(folder) gives the adapted logits

A wrapped projection computes base(x) + (alpha / rank) * B(A(dropout(x))), with B starting at
zero so the adapted model starts exactly at the base model. Only decoder layers are wrapped (the
vision tower and projector stay frozen and untouched). Adapter weights are float32 whatever the
base dtype (bf16 training keeps its updates), and merging adds B @ A in float32 before casting back.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from keye_model.model import KeyeModel
from service.train_config import ATTENTION, MLP, LoraConfig, TrainConfigError


class LoraLinear(nn.Module):
    """A frozen nn.Linear plus a trainable rank-r update."""

    def __init__(self, base: nn.Linear, cfg: LoraConfig, generator: torch.Generator) -> None:
        super().__init__()
        self.base = base
        self.scale = cfg.scale
        self.enabled = True
        a = torch.empty(cfg.rank, base.in_features)
        nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=generator)  # nn.Linear's own init
        self.lora_a = nn.Parameter(a.to(base.weight.device))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, cfg.rank, device=base.weight.device))
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if not self.enabled:
            return y
        update = self.dropout(x).to(self.lora_a.dtype) @ self.lora_a.t() @ self.lora_b.t()
        return y + (self.scale * update).to(y.dtype)

    def merged(self) -> nn.Linear:
        w = self.base.weight
        delta = self.scale * (self.lora_b.detach().float() @ self.lora_a.detach().float())
        out = nn.Linear(
            self.base.in_features,
            self.base.out_features,
            bias=self.base.bias is not None,
            device=w.device,
            dtype=w.dtype,
        )
        out.weight = nn.Parameter((w.detach().float() + delta).to(w.dtype), requires_grad=False)
        if self.base.bias is not None:
            out.bias = nn.Parameter(self.base.bias.detach().clone(), requires_grad=False)
        return out


def _targets(model: KeyeModel, names: tuple[str, ...]):
    for layer in model.model.layers:
        for part in (layer.self_attn, layer.mlp):
            for name in names:
                if isinstance(getattr(part, name, None), (nn.Linear, LoraLinear)):
                    yield part, name


def apply_lora(model: KeyeModel, cfg: LoraConfig) -> KeyeModel:
    """Freeze the model and wrap the configured decoder projections (in place; returns the model)."""
    if any(isinstance(m, LoraLinear) for m in model.modules()):
        raise TrainConfigError("the model already carries LoRA adapters; merge them first")
    model.requires_grad_(False)
    gen = torch.Generator().manual_seed(cfg.seed)
    for part, name in _targets(model, cfg.targets):
        setattr(part, name, LoraLinear(getattr(part, name), cfg, gen))
    return model


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for m in model.modules() if isinstance(m, LoraLinear) for p in (m.lora_a, m.lora_b)]


def set_lora_enabled(model: nn.Module, enabled: bool) -> None:
    """Switch the adapters off to get the base model back (the reference model of DPO, base metrics)."""
    for m in model.modules():
        if isinstance(m, LoraLinear):
            m.enabled = enabled


def merge_lora(model: KeyeModel) -> KeyeModel:
    """Fold every adapter into its base weight and drop the wrappers (in place; returns the model)."""
    for part, name in _targets(model, ATTENTION + MLP):
        mod = getattr(part, name)
        if isinstance(mod, LoraLinear):
            setattr(part, name, mod.merged() if mod.enabled else mod.base)
    return model
