"""The bf16-screened greedy head picks exactly argmax of the float32 logits, near-ties included."""

from __future__ import annotations

import torch

from keye_model.engine import Engine, SamplingParams
from keye_model.engine.head import ScreenedGreedyHead, screened_head


def float32_argmax(weight: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    return (hidden.double() @ weight.double().t()).argmax(-1)  # float64: no rounding ties


def test_random_rows_match_the_float32_argmax():
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(20000, 64, generator=g) * 0.05
    head = ScreenedGreedyHead(weight)
    for batch in (1, 3, 8):
        hidden = torch.randn(batch, 64, generator=g) * 4
        assert torch.equal(head(hidden), float32_argmax(weight, hidden))


def test_rows_the_bf16_screen_cannot_tell_apart_are_decided_in_float32():
    g = torch.Generator().manual_seed(1)
    weight = torch.randn(5000, 64, generator=g) * 0.05
    hidden = torch.randn(4, 64, generator=g)
    # Pairs (10, 4000) and (3000, 20): the second row is the first scaled by 1 + 2^-12, below
    # bf16 resolution, so the screen scores them equally; in float32 the second is the best.
    base = (hidden[:2] * 0.5).bfloat16().float()
    weight[10], weight[4000] = base[0], base[0] * (1 + 2.0**-12)
    weight[3000], weight[20] = base[1], base[1] * (1 + 2.0**-12)
    assert torch.equal(weight[10].bfloat16(), weight[4000].bfloat16())
    assert torch.equal(weight[20].bfloat16(), weight[3000].bfloat16())
    weight[30] = weight[31] = hidden[2] * 0.5  # an exact tie: argmax keeps the smaller id
    got = ScreenedGreedyHead(weight)(hidden)
    assert got[:3].tolist() == [4000, 20, 30]
    assert torch.equal(got, float32_argmax(weight, hidden))


def test_more_near_ties_than_the_screen_takes_are_still_decided_in_float32():
    weight = torch.ones(ScreenedGreedyHead.max_candidates * ScreenedGreedyHead.block + 1, 16)
    weight[123] *= 1 + 2.0**-12  # every screen score is equal; row 123 is the float32 best
    assert ScreenedGreedyHead(weight)(torch.ones(2, 16)).tolist() == [123, 123]


def test_all_negative_logits_and_a_vocabulary_of_partial_blocks():
    g = torch.Generator().manual_seed(3)
    weight = -(torch.rand(1000, 32, generator=g) + 0.1)  # 1000 rows: the last block is padded
    hidden = torch.rand(3, 32, generator=g) + 0.1  # every logit is negative, below the padding's 0
    assert torch.equal(ScreenedGreedyHead(weight)(hidden), float32_argmax(weight, hidden))


def test_the_screen_is_cached_per_weight_and_rebuilt_when_it_changes(tiny):
    first = screened_head(tiny.lm_head)
    assert screened_head(tiny.lm_head) is first
    saved = tiny.lm_head.weight.detach().clone()
    try:
        with torch.no_grad():
            tiny.lm_head.weight.mul_(2.0)
        rebuilt = screened_head(tiny.lm_head)
        assert rebuilt is not first and torch.equal(rebuilt.weight, tiny.lm_head.weight)
    finally:
        with torch.no_grad():
            tiny.lm_head.weight.copy_(saved)


def test_engine_greedy_with_and_without_the_screen_agree(tiny):
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(0, 150000, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # a left-padded row
    inputs = {"input_ids": ids, "attention_mask": mask}
    params = SamplingParams(max_new_tokens=6, stop_token_ids=())
    screened = Engine(tiny).generate(inputs, params).tokens
    assert screened == Engine(tiny, screen=False).generate(inputs, params).tokens
