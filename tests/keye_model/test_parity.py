"""Parity with the official Keye implementation (float32).

data/reference_logits.json was produced by gen_reference_logits.py with the official
modeling_keye.py (transformers 4.51.3) on the deterministic keye-tiny weights (seed, scale in
the file); only small slices of its outputs are stored. Here we rebuild the same weights and
inputs and require the spec's 1e-4 logits tolerance, identical rotary positions and identical
greedy generations.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import keye_model
from tests.support.prompts import Prompt, batch, text_prompt

REF = json.loads((Path(__file__).parent / "data" / "reference_logits.json").read_text())


def parity_prompts():  # the same prompts as gen_reference_logits.py
    return [
        text_prompt(21, 9),
        Prompt().text(10, 11).image(4, 6, seed=22).text(12, 13, 14),
        Prompt().text(15).video(3, 4, 4, 1 / 1.5, seed=23).text(16).image(6, 4, seed=24).text(17, 18),
    ]


@pytest.fixture(scope="module")
def model():
    m = keye_model.load("keye-tiny", seed=REF["seed"])
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() >= 2:
                p.mul_(REF["scale"])
    return m


@pytest.fixture(scope="module")
def inputs():
    return batch(parity_prompts())


@torch.no_grad()
def test_logits_match_the_reference(model, inputs):
    logits = model(**inputs)
    mask = inputs["attention_mask"].bool()
    for i, ref in enumerate(REF["rows"]):
        real = logits[i][mask[i]]
        assert (real[-4:, :16] - torch.tensor(ref["last4_first16"])).abs().max() < 1e-4
        assert real.argmax(-1).tolist() == ref["argmax"]
        top = real[-1].topk(5)
        assert top.indices.tolist() == ref["last_top5"]
        assert (top.values - torch.tensor(ref["last_top5_values"])).abs().max() < 1e-4


def test_rotary_positions_match_the_reference(model, inputs):
    packed = model.pack(**inputs)
    for ref, pos in zip(REF["rows"], packed.positions.split(packed.lengths, dim=1)):
        assert pos.tolist() == ref["positions"]


@torch.no_grad()
def test_vision_features_match_the_reference(model, inputs):
    img, vid = model.encode_vision(
        inputs["pixel_values"], inputs["image_grid_thw"], inputs["pixel_values_videos"], inputs["video_grid_thw"]
    )
    ref_img = torch.cat([torch.tensor(f) for f in REF["image_features_first8"]])
    ref_vid = torch.cat([torch.tensor(f) for f in REF["video_features_first8"]])
    assert (img[:, :8] - ref_img).abs().max() < 1e-4
    assert (vid[:, :8] - ref_vid).abs().max() < 1e-4
    assert ref_img.abs().max() > 1e-2  # the check is not vacuous: features are far from zero


def test_greedy_generation_matches_the_reference(model, inputs):
    got = model.generate(**inputs, max_new_tokens=REF["new_tokens"], temperature=0, stop_token_ids=[])
    assert got.tolist() == [r["greedy"] for r in REF["rows"]]


@torch.no_grad()
def test_bfloat16_is_as_faithful_as_the_reference_in_bfloat16(model, inputs):
    """bf16 cannot match to 1e-4; it must stay as close to the float32 truth as the official
    bf16 run does, and close to that run itself."""
    bf = keye_model.load("keye-tiny", seed=REF["seed"], dtype=torch.bfloat16)
    for p16, p32 in zip(bf.parameters(), model.parameters()):
        p16.copy_(p32)
    logits = bf(**inputs).float()
    mask = inputs["attention_mask"].bool()
    for i, ref in enumerate(REF["rows"]):
        ours = logits[i][mask[i]][-4:, :16]
        truth, ref16 = torch.tensor(ref["last4_first16"]), torch.tensor(ref["bf16_last4_first16"])
        ref_err = (ref16 - truth).abs().max()
        assert (ours - truth).abs().max() <= 1.5 * ref_err + 1e-3
        assert (ours - ref16).abs().max() <= 2 * ref_err + 1e-3
