"""Typed configuration of Keye-VL, read from (and written back to) the HF `config.json`.

Unknown keys are tolerated and kept, so that a saved config still loads in the official code.
The released values are copied here as constants: product code never reads ../shared at run time.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from keye_model.errors import ConfigError

# Token ids of the released tokenizer (tokenizer_config.json of Keye-VL-8B-Preview).
PAD_TOKEN_ID = 151643  # <|endoftext|>
IM_END_TOKEN_ID = 151645  # <|im_end|>
DEFAULT_STOP_IDS = (IM_END_TOKEN_ID, PAD_TOKEN_ID)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class VisionConfig:
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    patch_size: int = 14
    image_size: int = 384  # the absolute position table is (image_size / patch_size)^2 rows
    num_channels: int = 3
    layer_norm_eps: float = 1e-6
    hidden_act: str = "gelu_pytorch_tanh"
    spatial_merge_size: int = 2
    temporal_patch_size: int = 2  # stored in config.json; Keye feeds one frame per temporal step
    tokens_per_second: float = 2
    use_head: bool = True  # SigLIP pooling head: loaded and saved, never used in the forward pass

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def position_grid(self) -> int:
        return self.image_size // self.patch_size


@dataclass(frozen=True)
class KeyeConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vision: VisionConfig
    head_dim: int = 128
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    mrope_section: tuple[int, ...] = (16, 24, 24)
    max_position_embeddings: int = 40960
    tie_word_embeddings: bool = False
    torch_dtype: str = "bfloat16"
    image_token_id: int = 151655
    video_token_id: int = 151656
    vision_start_token_id: int = 151652
    vision_end_token_id: int = 151653
    pad_token_id: int = PAD_TOKEN_ID
    eos_token_id: int = IM_END_TOKEN_ID
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)  # raw config.json

    @property
    def dtype(self) -> torch.dtype:
        return _DTYPES.get(self.torch_dtype, torch.float32)

    @property
    def merge_dim(self) -> int:
        """Width of one 2x2-merged vision token entering the projector."""
        return self.vision.hidden_size * self.vision.spatial_merge_size**2

    def validate(self) -> KeyeConfig:
        v = self.vision
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        if 2 * sum(self.mrope_section) != self.head_dim:
            raise ConfigError(f"mrope_section {list(self.mrope_section)} must sum to head_dim/2 = {self.head_dim // 2}")
        if v.hidden_size % v.num_attention_heads:
            raise ConfigError(f"vision hidden_size {v.hidden_size} is not divisible by {v.num_attention_heads} heads")
        if v.head_dim % 4:
            raise ConfigError(f"vision head_dim {v.head_dim} must be a multiple of 4 for the 2D rotary embedding")
        if v.position_grid**2 < 1:
            raise ConfigError(f"vision image_size {v.image_size} is smaller than patch_size {v.patch_size}")
        return self

    # ---- HF config.json round trip -------------------------------------------------------------
    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> KeyeConfig:
        def need(d: dict[str, Any], key: str, where: str) -> Any:
            if key not in d:
                raise ConfigError(f"config.json{where} is missing the required key '{key}'")
            return d[key]

        vraw = need(raw, "vision_config", "")
        if not isinstance(vraw, dict):
            raise ConfigError("config.json 'vision_config' must be an object")
        w = " (vision_config)"
        vision = VisionConfig(
            hidden_size=int(need(vraw, "hidden_size", w)),
            intermediate_size=int(need(vraw, "intermediate_size", w)),
            num_hidden_layers=int(need(vraw, "num_hidden_layers", w)),
            num_attention_heads=int(need(vraw, "num_attention_heads", w)),
            patch_size=int(vraw.get("patch_size", 14)),
            image_size=int(vraw.get("image_size", 384)),
            num_channels=int(vraw.get("num_channels", 3)),
            layer_norm_eps=float(vraw.get("layer_norm_eps", 1e-6)),
            hidden_act=str(vraw.get("hidden_act", "gelu_pytorch_tanh")),
            spatial_merge_size=int(vraw.get("spatial_merge_size", 2)),
            temporal_patch_size=int(vraw.get("temporal_patch_size", 2)),
            tokens_per_second=vraw.get("tokens_per_second", 2),
            use_head=bool(vraw.get("vision_use_head", True)),
        )
        if vision.hidden_act not in ("gelu_pytorch_tanh", "gelu_new"):
            raise ConfigError(f"vision hidden_act '{vision.hidden_act}' is not supported (expected gelu_pytorch_tanh)")
        if raw.get("hidden_act", "silu") != "silu":
            raise ConfigError(f"hidden_act '{raw['hidden_act']}' is not supported (Qwen3 uses silu)")
        if raw.get("attention_bias", False):
            raise ConfigError("attention_bias=true is not supported: Qwen3 projections have no bias")
        rope = raw.get("rope_scaling") or {}
        section = tuple(int(s) for s in rope.get("mrope_section", (16, 24, 24)))
        heads = int(need(raw, "num_attention_heads", ""))
        hidden = int(need(raw, "hidden_size", ""))
        eos = raw.get("eos_token_id", IM_END_TOKEN_ID)
        cfg = cls(
            vocab_size=int(need(raw, "vocab_size", "")),
            hidden_size=hidden,
            intermediate_size=int(need(raw, "intermediate_size", "")),
            num_hidden_layers=int(need(raw, "num_hidden_layers", "")),
            num_attention_heads=heads,
            num_key_value_heads=int(raw.get("num_key_value_heads", heads)),
            head_dim=int(raw.get("head_dim") or hidden // heads),
            rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
            rope_theta=float(raw.get("rope_theta", 1_000_000.0)),
            mrope_section=section,
            max_position_embeddings=int(raw.get("max_position_embeddings", 40960)),
            tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
            torch_dtype=str(raw.get("torch_dtype", "bfloat16")),
            image_token_id=int(raw.get("image_token_id", 151655)),
            video_token_id=int(raw.get("video_token_id", 151656)),
            vision_start_token_id=int(raw.get("vision_start_token_id", 151652)),
            vision_end_token_id=int(raw.get("vision_end_token_id", 151653)),
            pad_token_id=int(raw.get("pad_token_id") or PAD_TOKEN_ID),
            eos_token_id=int(eos[0] if isinstance(eos, list) else eos),
            vision=vision,
            extra=copy.deepcopy(raw),
        )
        return cfg.validate()

    @classmethod
    def from_json(cls, path: str | Path) -> KeyeConfig:
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"no config.json at {path}") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path} is not valid JSON: {e}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path} must hold a JSON object")
        return cls.from_dict(raw)

    def to_dict(self) -> dict[str, Any]:
        """The HF config.json: the released template, our values, then any unknown keys kept."""
        out = copy.deepcopy(_RELEASED_CONFIG)
        for k, val in self.extra.items():
            out[k] = copy.deepcopy(val)
        v = self.vision
        out.update(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            max_window_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads,
            head_dim=self.head_dim,
            rms_norm_eps=self.rms_norm_eps,
            rope_theta=self.rope_theta,
            max_position_embeddings=self.max_position_embeddings,
            tie_word_embeddings=self.tie_word_embeddings,
            torch_dtype=self.torch_dtype,
            image_token_id=self.image_token_id,
            video_token_id=self.video_token_id,
            vision_start_token_id=self.vision_start_token_id,
            vision_end_token_id=self.vision_end_token_id,
        )
        out["rope_scaling"] = {"type": "mrope", "mrope_section": list(self.mrope_section)}
        vout = dict(out.get("vision_config") or {})
        vout.update(
            hidden_size=v.hidden_size,
            intermediate_size=v.intermediate_size,
            num_hidden_layers=v.num_hidden_layers,
            num_attention_heads=v.num_attention_heads,
            patch_size=v.patch_size,
            image_size=v.image_size,
            spatial_merge_size=v.spatial_merge_size,
            temporal_patch_size=v.temporal_patch_size,
            tokens_per_second=v.tokens_per_second,
        )
        if v.layer_norm_eps != 1e-6:
            vout["layer_norm_eps"] = v.layer_norm_eps
        out["vision_config"] = vout
        return out

    def with_dtype(self, dtype: torch.dtype) -> KeyeConfig:
        name = {d: n for n, d in _DTYPES.items()}.get(dtype)
        if name is None:
            raise ConfigError(f"unsupported dtype {dtype}; use one of {sorted(_DTYPES)}")
        return replace(self, torch_dtype=name)


# The released config.json of Keye-VL-8B-Preview (data, copied so that run time never needs ../shared).
_RELEASED_CONFIG: dict[str, Any] = {
    "architectures": ["KeyeForConditionalGeneration"],
    "auto_map": {
        "AutoConfig": "configuration_keye.KeyeConfig",
        "AutoModel": "modeling_keye.KeyeForConditionalGeneration",
        "AutoModelForCausalLM": "modeling_keye.KeyeForConditionalGeneration",
    },
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
    "vision_token_id": 151654,
    "image_token_id": 151655,
    "video_token_id": 151656,
    "head_dim": 128,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 12288,
    "max_position_embeddings": 40960,
    "max_window_layers": 36,
    "model_type": "Keye",
    "num_attention_heads": 32,
    "num_hidden_layers": 36,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000,
    "sliding_window": None,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.41.2",
    "use_cache": True,
    "use_sliding_window": False,
    "initializer_factor": 1.0,
    "vision_config": {
        "architectures": ["SiglipVisionModel"],
        "attention_dropout": 0.0,
        "auto_map": {
            "AutoConfig": "configuration_keye.KeyeVisionConfig",
            "AutoModel": "modeling_keye.SiglipVisionModel",
        },
        "hidden_size": 1152,
        "image_size": 384,
        "intermediate_size": 4304,
        "model_type": "siglip_vision_model",
        "num_attention_heads": 16,
        "num_hidden_layers": 27,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "tokens_per_second": 2,
        "temporal_patch_size": 2,
    },
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "vocab_size": 151936,
}

# ---- presets ------------------------------------------------------------------------------------
PRESETS: dict[str, dict[str, Any]] = {
    # The released shapes (8.7B parameters with the vision tower), random weights.
    "keye-vl-8b": {"torch_dtype": "bfloat16"},
    # ~200M parameters, most of them the full-vocabulary embedding and lm_head: for benchmarks.
    # The reference's attention reshapes to hidden_size, so heads * 128 must equal the width.
    "keye-mid": {
        "hidden_size": 512,
        "intermediate_size": 1536,
        "num_hidden_layers": 8,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "torch_dtype": "float32",
        "vision_config": {
            "hidden_size": 288,
            "intermediate_size": 1152,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
        },
    },
    # A few million parameters besides the 151,936-token embedding: for tests and demos.
    "keye-tiny": {
        "hidden_size": 256,
        "intermediate_size": 512,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "torch_dtype": "float32",
        "vision_config": {
            "hidden_size": 144,
            "intermediate_size": 256,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
        },
    },
}
PRESETS["keye-8b"] = PRESETS["keye-vl-8b"]


def preset_config(name: str) -> KeyeConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset '{name}'; known presets: {', '.join(sorted(PRESETS))}")
    return shaped_config(PRESETS[name])


def shaped_config(shape: dict[str, Any]) -> KeyeConfig:
    """The released architecture with some sizes overridden (a preset's dict: top-level keys and a
    partial vision_config), validated."""
    raw = copy.deepcopy(_RELEASED_CONFIG)
    override = copy.deepcopy(shape)
    vision = override.pop("vision_config", {})
    raw.update(override)
    raw["max_window_layers"] = raw["num_hidden_layers"]
    raw["vision_config"].update(vision)
    return KeyeConfig.from_dict(raw)
