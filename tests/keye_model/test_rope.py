"""Properties of the rotary positions: 3D M-RoPE ids and cos/sin layouts of both towers."""

from __future__ import annotations

import math

import pytest
import torch

import keye_model
from keye_model.errors import InputError
from keye_model.rope import VisionGrids, mrope_cos_sin, mrope_positions, text_inv_freq, vision_cos_sin
from tests.support.prompts import IMG, VEND, VID, VSTART

CFG = keye_model.preset_config("keye-tiny")


def test_text_only_collapses_to_1d():
    pos, nxt = mrope_positions(list(range(10, 17)), VisionGrids(), CFG)
    assert torch.equal(pos, torch.arange(7).expand(3, -1)) and nxt == 7
    cos, sin = mrope_cos_sin(pos, CFG, torch.float32)
    # With equal rows, M-RoPE is plain 1D RoPE: angle = position * inv_freq on both halves.
    ang = torch.arange(7).float()[:, None] * text_inv_freq(CFG)[None]
    assert torch.allclose(cos, torch.cat([ang, ang], -1).cos()) and torch.allclose(sin, torch.cat([ang, ang], -1).sin())


def test_image_block_uses_merged_grid_and_text_continues_after_max():
    toks = [5, VSTART] + [IMG] * 6 + [VEND, 7]  # image grid (1, 4, 6) -> merged 2 x 3
    pos, nxt = mrope_positions(toks, VisionGrids(image_grid_thw=torch.tensor([[1, 4, 6]])), CFG)
    s = 2  # the block starts after 2 text tokens
    assert pos[:, :2].tolist() == [[0, 1]] * 3
    assert pos[0, 2:8].tolist() == [s] * 6
    assert pos[1, 2:8].tolist() == [s, s, s, s + 1, s + 1, s + 1]
    assert pos[2, 2:8].tolist() == [s, s + 1, s + 2] * 2
    assert pos[:, 8].tolist() == [s + 3] * 3  # <|vision_end|> = max (s + 2) + 1
    assert nxt == s + 5


@pytest.mark.parametrize("seconds", [0.5, 1.0, 2.0, 1 / 1.7])
def test_video_temporal_index_follows_sampling_rate(seconds):
    t, h, w = 5, 2, 2
    toks = [VSTART] + [VID] * t + [VEND]
    g = VisionGrids(video_grid_thw=torch.tensor([[t, h, w]]), second_per_grid_ts=torch.tensor([seconds]))
    pos, _ = mrope_positions(toks, g, CFG)
    tps = CFG.vision.tokens_per_second
    expected = [1 + math.floor(i * torch.tensor(seconds).item() * tps + 1e-9) for i in range(t)]
    assert pos[0, 1 : 1 + t].tolist() == expected
    assert pos[1, 1 : 1 + t].tolist() == [1] * t and pos[2, 1 : 1 + t].tolist() == [1] * t


def test_faster_sampling_compresses_time():
    def temporal(seconds):
        g = VisionGrids(video_grid_thw=torch.tensor([[8, 2, 2]]), second_per_grid_ts=torch.tensor([seconds]))
        return mrope_positions([VID] * 8, g, CFG)[0][0]

    assert temporal(0.5).tolist() == list(range(8))  # 2 fps sampling -> one step per frame
    assert temporal(1.0).tolist() == list(range(0, 16, 2))  # 1 fps -> two steps per frame


def test_start_offset_shifts_every_row_and_bad_blocks_error():
    toks = [VSTART] + [IMG] * 4 + [VEND]
    grid = torch.tensor([[1, 4, 4]])
    a, na = mrope_positions(toks, VisionGrids(image_grid_thw=grid), CFG)
    b, nb = mrope_positions(toks, VisionGrids(image_grid_thw=grid), CFG, start=9)
    assert torch.equal(a + 9, b) and nb == na + 9
    with pytest.raises(InputError, match="more image blocks"):
        mrope_positions(toks, VisionGrids(), CFG)
    with pytest.raises(InputError, match="should hold 4 pad tokens"):
        mrope_positions([VSTART, IMG, IMG, VEND], VisionGrids(image_grid_thw=grid), CFG)


def test_mrope_sections_take_their_rows():
    pos = torch.tensor([[3], [5], [7]])
    cos, _ = mrope_cos_sin(pos, CFG, torch.float32)
    inv = text_inv_freq(CFG)
    row = [0] * 16 + [1] * 24 + [2] * 24
    want = torch.tensor([[3, 5, 7][r] * inv[j].item() for j, r in enumerate(row)])
    assert torch.allclose(cos[0, :64], want.cos()) and torch.allclose(cos[0, 64:], want.cos())


def test_vision_rotary_layout():
    cos, sin = vision_cos_sin([(1, 2, 3)], 72)
    assert cos.shape == (6, 72)
    inv = 1.0 / (10000 ** (torch.arange(0, 36, 2).float() / 36))
    # patch 5 is row 1, column 2: channels 0-17 rotate with the row, 18-35 with the column
    assert torch.allclose(sin[5, :18], (1 * inv).sin()) and torch.allclose(sin[5, 18:36], (2 * inv).sin())
    assert torch.equal(cos[:, :36], cos[:, 36:])
    # every frame of a video restarts at row 0, column 0
    c2, _ = vision_cos_sin([(2, 2, 3)], 72)
    assert torch.equal(c2[:6], c2[6:])
