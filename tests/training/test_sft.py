"""The SFT loop on examples from real clips: the answer loss falls, runs repeat exactly by seed
(with or without the cached frozen front), the held-out loss is measured for base and adapted
model, and the preference loss moves the policy toward the chosen summary."""

from __future__ import annotations

import math

import pytest
import torch

import keye_model
from service.train_config import LoraConfig, TrainConfig, TrainConfigError
from training.errors import NotEnoughExamples
from training.sft import FrontCache, eval_loss, lr_lambda, sft_loss, split_by_video, train

FAST = dict(lr=3e-3, warmup_steps=2, cache_inputs=True, lora=LoraConfig(rank=4))


def test_loss_goes_down_over_twenty_steps(clip_dataset):
    model = keye_model.load("keye-tiny", seed=0)
    result = train(model, clip_dataset.examples, TrainConfig(steps=20, eval_fraction=0.34, **FAST))
    first, last = sum(result.losses[:3]) / 3, sum(result.losses[-3:]) / 3
    assert last < first - 1.0, result.losses
    assert result.train_examples + result.eval_examples == len(clip_dataset.examples)
    assert result.eval_examples > 0 and result.eval_loss_base is not None
    assert result.eval_loss != result.eval_loss_base
    # the measured held-out loss is the adapted model's, recomputed here independently
    train_set, eval_set = split_by_video(clip_dataset.examples, 0.34, 0)
    assert eval_loss(model, FrontCache(model, False), eval_set) == pytest.approx(result.eval_loss, rel=1e-5)


def test_same_seed_same_run_cached_or_not(clip_dataset):
    runs = []
    for cache in (True, False):
        model = keye_model.load("keye-tiny", seed=0)
        cfg = TrainConfig(steps=4, batch_size=2, grad_accum=2, eval_fraction=0.0, **{**FAST, "cache_inputs": cache})
        runs.append(train(model, clip_dataset.examples, cfg).losses)
    assert runs[0] == runs[1]
    model = keye_model.load("keye-tiny", seed=0)
    other = train(
        model,
        clip_dataset.examples,
        TrainConfig(steps=4, batch_size=2, grad_accum=2, eval_fraction=0.0, seed=1, **FAST),
    ).losses
    assert other != runs[0]


def test_weights_scale_each_examples_share(clip_dataset):
    model = keye_model.load("keye-tiny", seed=0)
    front = FrontCache(model, True)
    a, b = clip_dataset.examples[:2]
    with torch.no_grad():
        la, _ = sft_loss(model, front, [a])
        lb, _ = sft_loss(model, front, [b])
        b.weight = 0.0
        try:
            only_a, n = sft_loss(model, front, [a, b])
        finally:
            b.weight = 1.0
    assert float(only_a) == pytest.approx(float(la), rel=1e-5) and float(lb) != pytest.approx(float(la))
    # every answer token is predicted (the first one from the prompt's last position), no prompt token is
    assert n == int((a.labels != -100).sum() + (b.labels != -100).sum())


def test_schedules():
    cos = lr_lambda(TrainConfig(steps=10, warmup_steps=2, schedule="cosine"))
    lin = lr_lambda(TrainConfig(steps=10, warmup_steps=0, schedule="linear", min_lr_ratio=0.1))
    assert cos(0) < cos(1) < cos(2) == 1.0 and cos(9) < cos(5) < 1.0
    assert lin(0) == 1.0 and lin(10) == pytest.approx(0.1)


def test_bad_configs_are_refused(clip_dataset):
    with pytest.raises(TrainConfigError, match="steps"):
        TrainConfig(steps=0)
    with pytest.raises(TrainConfigError, match="unknown training option"):
        TrainConfig.from_dict({"stepz": 3})
    cfg = TrainConfig.from_dict(TrainConfig(lora=LoraConfig(rank=3, targets=("q_proj",))).to_dict())
    assert cfg.lora.rank == 3 and cfg.lora.targets == ("q_proj",)
    with pytest.raises(NotEnoughExamples):
        train(keye_model.load("keye-tiny", seed=0), clip_dataset.examples[:1], TrainConfig(min_examples=2))


def test_dpo_prefers_the_chosen_summary(clip_dataset):
    from training.dataset import PreferencePair
    from training.preference import dpo_loss

    summaries = [e for e in clip_dataset.examples if e.task == "summary"]
    # clip0's edited summary against clip0's prompt with clip1's answer tokens: same prompt, other answer
    chosen = summaries[0]
    other = summaries[1]
    n = chosen.prompt_len
    rejected = type(chosen)(
        chosen.key + ":rejected",
        chosen.video_id,
        "summary",
        (),
        torch.cat([chosen.input_ids[:n], other.input_ids[other.prompt_len :]]),
        torch.cat([chosen.labels[:n], other.labels[other.prompt_len :]]),
        chosen.vision,
        other.answer,
    )
    pair = PreferencePair(chosen, rejected)
    model = keye_model.load("keye-tiny", seed=0)
    cfg = TrainConfig(steps=8, eval_fraction=0.0, dpo_weight=1.0, dpo_beta=0.5, **FAST)
    result = train(model, [chosen], cfg, pairs=[pair])
    assert result.dpo_losses[0] == pytest.approx(math.log(2), abs=1e-4)  # policy == reference at the start
    front = FrontCache(model, False)
    with torch.no_grad():
        assert float(dpo_loss(model, front, pair, 0.5)) < math.log(2) - 0.05


def test_full_trains_every_parameter_the_vision_tower_included(clip_dataset):
    model = keye_model.load("keye-tiny", seed=0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    cfg = TrainConfig(steps=3, lr=1e-3, eval_fraction=0.34, full=True)
    result = train(model, clip_dataset.examples, cfg)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert any(n.startswith("visual.") for n in changed) and "lm_head.weight" in changed
    assert any(".mlp." in n and "visual" not in n for n in changed)
    assert not any("lora" in n for n, _ in model.named_parameters())  # no adapters to merge
    assert result.eval_loss is not None and result.eval_loss != result.eval_loss_base
    with pytest.raises(TrainConfigError, match="cache_inputs"):
        TrainConfig(full=True, cache_inputs=True)
    with pytest.raises(TrainConfigError, match="dpo_weight"):
        TrainConfig(full=True, dpo_weight=0.5)


def test_a_sampled_softmax_is_the_softmax_over_the_answers_and_the_drawn_tokens(clip_dataset):
    from training.sft import answer_logprobs

    model = keye_model.load("keye-tiny", seed=0)
    front = FrontCache(model, True)
    batch = clip_dataset.examples[:2]
    with torch.no_grad():
        full, _ = answer_logprobs(model, front, batch)
        torch.manual_seed(7)
        sampled, _ = answer_logprobs(model, front, batch, sampled_vocab=64)
        torch.manual_seed(7)
        drawn = torch.randint(0, model.config.vocab_size, (64,))
        targets = torch.cat([ex.labels[1:][ex.labels[1:] != -100] for ex in batch])
        vocab = torch.unique(torch.cat([targets, drawn]))
        # the same hidden states projected on the subset only: log-softmax over those rows
        hidden = torch.cat([model.run(*_packed(model, front, batch))[_answer_rows(batch)]])
        logits = hidden @ model.lm_head.weight[vocab].t()
        want = torch.log_softmax(logits, -1).gather(1, torch.searchsorted(vocab, targets)[:, None]).squeeze(1)
    torch.testing.assert_close(sampled, want, rtol=1e-4, atol=1e-4)
    assert bool((sampled > full).all())  # fewer competitors: every answer token is likelier


def _packed(model, front, batch):
    from keye_model.attention import PackedCausal

    parts = [front(ex) for ex in batch]
    return (
        torch.cat([e for e, _ in parts]),
        torch.cat([p for _, p in parts], dim=1),
        PackedCausal([ex.input_ids.shape[0] for ex in batch], model.device),
    )


def _answer_rows(batch):
    rows, start = [], 0
    for ex in batch:
        rows.append((ex.labels[1:] != -100).nonzero().squeeze(1) + start)
        start += ex.input_ids.shape[0]
    return torch.cat(rows)


def test_a_sampled_softmax_lowers_the_full_vocabulary_loss(clip_dataset):
    from training.full import FullConfig, Supervised, train_full

    model = keye_model.load("keye-tiny", seed=0)
    front = FrontCache(model, False)
    before = eval_loss(model, front, clip_dataset.examples)
    train_full(
        model,
        clip_dataset.examples,
        FullConfig(steps=12, batch_size=2, lr=1e-3, schedule="constant"),
        Supervised(sampled_vocab=2048),
    )
    after = eval_loss(model, FrontCache(model, False), clip_dataset.examples)
    assert after < before - 1.0, (before, after)  # the loss over all 151,936 tokens, never trained on
