"""Load the released HF layout (layout.py writes it); random-weight presets.

Loading builds the model on the meta device, then reads each shard tensor by tensor straight
into freshly allocated parameters in the requested dtype: peak memory stays near the weights'
size (plus one tensor when casting). Missing, unexpected or mis-shaped tensors are errors.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from keye_model import safetensors_io as st
from keye_model.config import PRESETS, KeyeConfig, preset_config
from keye_model.errors import CheckpointError, ConfigError
from keye_model.layout import INDEX, SINGLE
from keye_model.model import KeyeModel
from keye_model.rope import text_inv_freq

DEMO_NAME = "keye-demo"  # the model `keye train demo` trains (training/demo.py), selected by KEYE_MODEL=keye-demo


def _on_meta(cfg: KeyeConfig) -> KeyeModel:
    with torch.device("meta"):
        return KeyeModel(cfg)


def _finish(model: KeyeModel, device) -> KeyeModel:
    model.inv_freq = text_inv_freq(model.config).to(device)
    model.requires_grad_(False)  # inference first; training calls requires_grad_(True)
    return model.eval()


def _resolve(dtype, cfg: KeyeConfig) -> torch.dtype:
    if dtype is None:
        return cfg.dtype
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ConfigError(f"unsupported dtype {dtype}; use float32, bfloat16 or float16")
    return dtype


def _set(model: nn.Module, name: str, value: torch.Tensor) -> None:
    owner, _, leaf = name.rpartition(".")
    module = model.get_submodule(owner) if owner else model
    module._parameters[leaf] = nn.Parameter(value, requires_grad=False)


def random_init(model: KeyeModel, seed: int, device) -> None:
    """Deterministic small weights: N(0, 0.02) matrices, zero biases, unit norms."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    norms = (nn.LayerNorm,)
    for module in model.modules():
        for leaf, p in list(module._parameters.items()):
            if p is None:
                continue
            t = torch.empty(p.shape, dtype=p.dtype, device="cpu")
            if leaf.endswith("bias"):
                t.zero_()
            elif isinstance(module, norms) or type(module).__name__ == "RMSNorm":
                t.fill_(1.0)
            else:
                t.normal_(0.0, 0.02, generator=gen)
            module._parameters[leaf] = nn.Parameter(t.to(device), requires_grad=False)


def from_preset(name: str, dtype=None, device=None, seed: int = 0) -> KeyeModel:
    return from_config(preset_config(name), dtype, device, seed)


def from_config(cfg: KeyeConfig, dtype=None, device=None, seed: int = 0) -> KeyeModel:
    """A random-weight model of any shape of the architecture (deterministic by seed)."""
    dt = _resolve(dtype, cfg)
    cfg = cfg.with_dtype(dt)
    model = _on_meta(cfg).to(dtype=dt)
    random_init(model, seed, device or "cpu")
    return _finish(model, device or "cpu")


def _weight_files(folder: Path) -> list[Path]:
    if (folder / INDEX).exists():
        try:
            index = json.loads((folder / INDEX).read_text())
            files = sorted(set(index["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, AttributeError) as e:
            raise CheckpointError(f"{folder / INDEX} is not a valid shard index: {e}") from None
        return [folder / f for f in files]
    if (folder / SINGLE).exists():
        return [folder / SINGLE]
    raise CheckpointError(f"{folder} holds neither {SINGLE} nor {INDEX}")


def from_folder(folder: str | Path, dtype=None, device=None) -> KeyeModel:
    folder = Path(folder)
    if not folder.is_dir():
        hint = "; `keye train demo` builds it" if folder.name == DEMO_NAME else ""
        raise CheckpointError(
            f"{folder} is not a checkpoint folder (and not a preset: {', '.join(sorted(PRESETS))})" + hint
        )
    cfg = KeyeConfig.from_json(folder / "config.json")
    dt = _resolve(dtype, cfg)
    cfg = cfg.with_dtype(dt)
    model = _on_meta(cfg)
    want = {n: (p.shape, dt) for n, p in model.named_parameters()}
    seen: set[str] = set()
    unexpected: list[str] = []
    device = torch.device(device or "cpu")
    for path in _weight_files(folder):
        for name, tensor in st.iter_tensors(path, want):
            if tensor is None:
                unexpected.append(name)
                continue
            if name in seen:
                raise CheckpointError(f"tensor '{name}' appears twice in the checkpoint")
            seen.add(name)
            _set(model, name, tensor.to(device))
    if unexpected:
        raise CheckpointError(f"unexpected tensors in {folder}: {', '.join(sorted(unexpected)[:10])}")
    missing = sorted(set(want) - seen)
    if missing and cfg.tie_word_embeddings and missing == ["lm_head.weight"]:
        model.lm_head.weight = model.model.embed_tokens.weight
        missing = []
    if missing:
        raise CheckpointError(
            f"missing tensors in {folder}: {', '.join(missing[:10])}" + (" ..." if len(missing) > 10 else "")
        )
    return _finish(model, device)


def load(path_or_preset: str | Path, dtype=None, device=None, seed: int = 0) -> KeyeModel:
    """A model from a released-layout folder, or a random-weight preset (deterministic by seed)."""
    if isinstance(path_or_preset, str) and path_or_preset in PRESETS:
        return from_preset(path_or_preset, dtype, device, seed)
    return from_folder(path_or_preset, dtype, device)
