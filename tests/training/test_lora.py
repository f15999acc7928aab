"""LoRA adapters: frozen base, trainable adapters on the decoder only, and a merge whose saved
checkpoint loads back (plain released layout) with the adapted model's logits."""

from __future__ import annotations

import pytest
import torch

import keye_model
from service.train_config import LoraConfig, TrainConfigError
from training.lora import LoraLinear, apply_lora, lora_parameters, merge_lora, set_lora_enabled


def _randomize_adapters(model, seed: int = 1) -> None:
    gen = torch.Generator().manual_seed(seed)
    for p in lora_parameters(model):
        p.data.copy_(torch.randn(p.shape, generator=gen) * 0.05)


def test_only_decoder_adapters_train():
    model = keye_model.load("keye-tiny", seed=0)
    apply_lora(model, LoraConfig(rank=2, targets=("q_proj", "v_proj", "down_proj")))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n and n.startswith("model.layers.") for n in trainable)
    wrapped = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, LoraLinear)}
    assert wrapped == {"q_proj", "v_proj", "down_proj"}
    assert not any(isinstance(m, LoraLinear) for m in model.visual.modules())
    assert len(trainable) == 2 * 3 * model.config.num_hidden_layers


def test_fresh_adapters_are_the_base_model(clip_dataset):
    ex = clip_dataset.examples[0]
    model = keye_model.load("keye-tiny", seed=0)
    with torch.no_grad():
        base = model(**ex.model_inputs())
        apply_lora(model, LoraConfig(rank=4))
        adapted = model(**ex.model_inputs())
    assert torch.equal(base, adapted)


def test_merge_save_load_gives_the_adapted_logits(clip_dataset, tmp_path):
    ex = clip_dataset.examples[0]
    model = keye_model.load("keye-tiny", seed=0)
    names = [n for n, _ in model.named_parameters()]
    with torch.no_grad():
        base = model(**ex.model_inputs())
        apply_lora(model, LoraConfig(rank=4, alpha=8.0))
        _randomize_adapters(model)
        adapted = model(**ex.model_inputs())
        set_lora_enabled(model, False)
        assert torch.equal(model(**ex.model_inputs()), base)  # switched off: the base again
        set_lora_enabled(model, True)
    assert (adapted - base).abs().max() > 1e-3  # the adapters do change the model
    merge_lora(model)
    assert [n for n, _ in model.named_parameters()] == names  # the released layout's names
    model.save_pretrained(tmp_path / "merged")
    loaded = keye_model.load(tmp_path / "merged")
    with torch.no_grad():
        reloaded = loaded(**ex.model_inputs())
    torch.testing.assert_close(reloaded, adapted, atol=2e-5, rtol=1e-4)


def test_bad_lora_settings_are_refused():
    with pytest.raises(TrainConfigError, match="rank"):
        LoraConfig(rank=0)
    with pytest.raises(TrainConfigError, match="targets"):
        LoraConfig(targets=("lm_head",))
    model = keye_model.load("keye-tiny", seed=0)
    apply_lora(model, LoraConfig(rank=2))
    with pytest.raises(TrainConfigError, match="already"):
        apply_lora(model, LoraConfig(rank=2))


def test_bfloat16_base_trains_float32_adapters_and_exports_bfloat16(clip_dataset, tmp_path):
    from training.sft import FrontCache, sft_loss

    ex = clip_dataset.examples[0]
    model = keye_model.load("keye-tiny", seed=0, dtype="bfloat16")
    with torch.no_grad():
        base = model(**ex.model_inputs()).float()
    apply_lora(model, LoraConfig(rank=4))
    _randomize_adapters(model)
    loss, _ = sft_loss(model, FrontCache(model, False), [ex])
    loss.backward()
    params = lora_parameters(model)
    assert all(p.dtype == torch.float32 and p.grad is not None and torch.isfinite(p.grad).all() for p in params)
    assert any(p.grad.abs().sum() > 0 for p in params)
    with torch.no_grad():
        adapted = model(**ex.model_inputs()).float()
    merge_lora(model)
    assert model.model.layers[0].self_attn.q_proj.weight.dtype == torch.bfloat16
    model.save_pretrained(tmp_path / "bf16")
    loaded = keye_model.load(tmp_path / "bf16")
    assert loaded.dtype == torch.bfloat16
    with torch.no_grad():
        reloaded = loaded(**ex.model_inputs()).float()
    # the merged weight is rounded to bfloat16 once, where the adapted model added its float32 update:
    # the export carries the adapters' change up to that rounding
    change, error = (adapted - base).norm(), (reloaded - adapted).norm()
    assert change > 1.0 and error < 0.05 * change, (float(change), float(error))
