"""The released HF layout on disk: its file names, and writing a model into it (checkpoint.py reads it).

Apart from checkpoint.py so that `KeyeModel.save_pretrained` can write without importing the loader,
which builds KeyeModels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import torch

from keye_model import safetensors_io as st
from keye_model.config import KeyeConfig

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
GENERATION_CONFIG = {
    "bos_token_id": 151643,
    "do_sample": True,
    "eos_token_id": [151645, 151643],
    "pad_token_id": 151643,
    "temperature": 0.6,
    "top_k": 20,
    "top_p": 0.95,
}


class Saveable(Protocol):
    """What save() reads of a KeyeModel (not imported here: model.py imports this module)."""

    config: KeyeConfig

    @property
    def dtype(self) -> torch.dtype: ...

    def state_dict(self, *, keep_vars: bool = ...) -> dict[str, Any]: ...


def save(model: Saveable, folder: str | Path, max_shard_size: int = 5 * 2**30) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = list(model.state_dict(keep_vars=False).items())
    shards: list[list[tuple[str, torch.Tensor]]] = [[]]
    size = 0
    for name, t in tensors:
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > max_shard_size:
            shards.append([])
            size = 0
        shards[-1].append((name, t))
        size += nbytes
    for stale in list(folder.glob("model*.safetensors")) + [folder / INDEX]:
        stale.unlink(missing_ok=True)
    if len(shards) == 1:
        st.write(folder / SINGLE, shards[0])
    else:
        weight_map, total = {}, 0
        for i, shard in enumerate(shards, 1):
            fname = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            st.write(folder / fname, shard)
            for name, t in shard:
                weight_map[name] = fname
                total += t.numel() * t.element_size()
        (folder / INDEX).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    cfg = model.config.with_dtype(model.dtype)
    (folder / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    (folder / "generation_config.json").write_text(json.dumps(GENERATION_CONFIG, indent=2))
