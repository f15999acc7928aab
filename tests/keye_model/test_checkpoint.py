"""Save/load round trips of the released HF layout, presets, and clear errors on bad checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import keye_model
from keye_model import CheckpointError, ConfigError
from tests.support.prompts import Prompt, batch, text_prompt


def _inputs():
    p = Prompt().text(1, 2, 3).image(4, 4, seed=1).text(4, 5).video(2, 4, 6, 0.5, seed=2).text(6)
    return batch([p, text_prompt(3, 7)])


@torch.no_grad()
def test_save_load_single_file_gives_identical_logits(tiny, tmp_path):
    tiny.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and not (tmp_path / "model.safetensors.index.json").exists()
    back = keye_model.load(tmp_path)
    inputs = _inputs()
    assert torch.equal(tiny(**inputs), back(**inputs))


@torch.no_grad()
def test_sharded_save_loads_back_identically(tiny, tmp_path):
    tiny.save_pretrained(tmp_path, max_shard_size=20 * 2**20)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and all(s.startswith("model-0000") for s in shards)
    back = keye_model.load(tmp_path)
    for (n1, p1), (n2, p2) in zip(tiny.state_dict().items(), back.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2), n1
    inputs = _inputs()
    assert torch.equal(tiny(**inputs), back(**inputs))


def test_checkpoint_holds_official_names_and_unused_tensors(tiny, tmp_path):
    tiny.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as f:  # the library reads our writer
        names = set(f.keys())
        c = tiny.config.vision.hidden_size
        assert tuple(f.get_tensor("visual.vision_model.embeddings.packing_position_embedding.weight").shape) == (
            32768,
            c,
        )
        assert tuple(f.get_tensor("visual.vision_model.head.attention.in_proj_weight").shape) == (3 * c, c)
        assert tuple(f.get_tensor("visual.vision_model.head.probe").shape) == (1, 1, c)
    for name in (
        "lm_head.weight",
        "model.embed_tokens.weight",
        "model.layers.0.self_attn.q_norm.weight",
        "mlp_AR.pre_norm.weight",
        "mlp_AR.linear_1.weight",
        "mlp_AR.linear_2.bias",
        "visual.vision_model.embeddings.patch_embedding.weight",
        "visual.vision_model.embeddings.position_embedding.weight",
        "visual.vision_model.encoder.layers.1.self_attn.out_proj.bias",
        "visual.vision_model.head.mlp.fc2.weight",
        "visual.vision_model.post_layernorm.bias",
    ):
        assert name in names, name
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["architectures"] == ["KeyeForConditionalGeneration"]
    assert cfg["rope_scaling"]["mrope_section"] == [16, 24, 24]
    assert cfg["vision_config"]["hidden_size"] == tiny.config.vision.hidden_size


@torch.no_grad()
def test_loads_a_file_written_by_the_safetensors_library_and_casts_dtype(tiny, tmp_path):
    tiny.save_pretrained(tmp_path)
    sd = {k: v.clone().contiguous() for k, v in tiny.state_dict().items()}
    save_file(sd, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    back = keye_model.load(tmp_path, dtype=torch.bfloat16)
    assert back.dtype == torch.bfloat16
    assert torch.equal(back.lm_head.weight, tiny.lm_head.weight.to(torch.bfloat16))


def _tamper(tmp_path, tiny, change):
    tiny.save_pretrained(tmp_path)
    sd = {k: v.clone().contiguous() for k, v in tiny.state_dict().items()}
    change(sd)
    save_file(sd, str(tmp_path / "model.safetensors"))


def test_missing_tensor_is_named(tiny, tmp_path):
    _tamper(tmp_path, tiny, lambda sd: sd.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(CheckpointError, match=r"missing tensors.*model\.layers\.1\.mlp\.up_proj\.weight"):
        keye_model.load(tmp_path)


def test_unexpected_tensor_is_named(tiny, tmp_path):
    _tamper(tmp_path, tiny, lambda sd: sd.__setitem__("model.layers.9.extra.weight", torch.zeros(2)))
    with pytest.raises(CheckpointError, match=r"unexpected tensors.*model\.layers\.9\.extra\.weight"):
        keye_model.load(tmp_path)


def test_wrong_shape_is_named(tiny, tmp_path):
    _tamper(tmp_path, tiny, lambda sd: sd.__setitem__("lm_head.weight", torch.zeros(3, 256)))
    with pytest.raises(CheckpointError, match=r"lm_head\.weight.*shape \(3, 256\)"):
        keye_model.load(tmp_path)


def test_no_weights_and_missing_config_key_are_clear(tiny, tmp_path):
    tiny.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="neither model.safetensors"):
        keye_model.load(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    del cfg["vision_config"]["num_hidden_layers"]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="num_hidden_layers"):
        keye_model.load(tmp_path)
    with pytest.raises(CheckpointError, match="not a checkpoint folder"):
        keye_model.load(tmp_path / "nowhere")


def test_config_tolerates_and_keeps_unknown_keys(tiny, tmp_path):
    raw = tiny.config.to_dict()
    raw["some_future_key"] = {"a": 1}
    cfg = keye_model.KeyeConfig.from_dict(raw)
    assert cfg.to_dict()["some_future_key"] == {"a": 1}
    assert cfg == tiny.config


def test_released_config_parses_to_the_8b_shapes():
    from pathlib import Path

    released = Path(__file__).resolve().parents[1] / "data" / "keye-vl-8b-preview" / "config.json"
    cfg = keye_model.KeyeConfig.from_json(released)
    assert cfg == keye_model.preset_config("keye-vl-8b")
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads) == (
        4096,
        36,
        32,
        8,
    )
    assert (cfg.vision.hidden_size, cfg.vision.num_hidden_layers, cfg.vision.head_dim) == (1152, 27, 72)
    assert cfg.vision.layer_norm_eps == 1e-6 and cfg.merge_dim == 4608


def test_presets_are_deterministic_and_small():
    a, b = keye_model.load("keye-tiny"), keye_model.load("keye-tiny")
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    c = keye_model.load("keye-tiny", seed=1)
    assert not torch.equal(a.lm_head.weight, c.lm_head.weight)
    w = a.model.layers[0].mlp.up_proj.weight
    assert 0.015 < float(w.std()) < 0.025 and float(a.model.norm.weight.min()) == 1.0
    vocab = a.config.vocab_size * a.config.hidden_size
    other = sum(p.numel() for p in a.parameters()) - 2 * vocab
    assert other < 10_000_000
    with pytest.raises(ConfigError, match="unknown preset"):
        keye_model.preset_config("keye-huge")


def test_8b_preset_has_the_released_parameter_count():
    from keye_model.checkpoint import _on_meta

    meta = _on_meta(keye_model.preset_config("keye-vl-8b"))
    total = sum(p.numel() for p in meta.parameters())
    decoder = sum(p.numel() for n, p in meta.named_parameters() if n.startswith(("model.", "lm_head")))
    assert 8.1e9 < decoder < 8.3e9  # Qwen3-8B with an untied lm_head
    assert 8.6e9 < total < 8.8e9  # plus SigLIP-400M (with its unused pooling head) and the projector
