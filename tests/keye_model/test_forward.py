"""Forward pass behaviour: padding invariance, packed vision segments, projector merge, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from keye_model.errors import InputError
from keye_model.projector import merge_windows
from tests.support.prompts import Prompt, batch, text_prompt


@torch.no_grad()
def test_logits_shape_and_padded_batch_equals_each_alone(tiny):
    prompts = [
        text_prompt(1, 9),
        Prompt().text(1, 2).image(4, 4, seed=3).text(9),
        Prompt().text(3).video(3, 4, 4, 0.5, seed=4).text(5, 6).image(2, 4, seed=5),
    ]
    both = tiny(**batch(prompts))
    assert both.shape == (3, max(len(p.ids) for p in prompts), tiny.config.vocab_size)
    for i, p in enumerate(prompts):
        alone = tiny(**batch([p]))[0]
        n = len(p.ids)
        assert torch.allclose(both[i, -n:], alone, atol=1e-5, rtol=0)
        assert (both[i, :-n] == 0).all()  # padding positions carry no logits


@torch.no_grad()
def test_vision_segments_do_not_see_each_other(tiny):
    """An image's features depend only on its own pixels, even when packed with others."""
    a, b = torch.randn(16, 3, 14, 14), torch.randn(24, 3, 14, 14)
    grids = [(1, 4, 4), (1, 4, 6)]
    feats = tiny.visual(torch.cat([a, b]), grids)
    b2 = torch.randn(24, 3, 14, 14)
    feats2 = tiny.visual(torch.cat([a, b2]), grids)
    assert torch.allclose(feats[:16], feats2[:16], atol=1e-6) and not torch.allclose(feats[16:], feats2[16:])
    alone = tiny.visual(a, grids[:1])
    assert torch.allclose(feats[:16], alone, atol=1e-5)


@torch.no_grad()
def test_a_video_is_one_segment_across_frames(tiny):
    """Frames of one video attend to each other: changing frame 2 changes frame 1's features."""
    v = torch.randn(2 * 16, 3, 14, 14)
    f1 = tiny.visual(v, [(2, 4, 4)])
    v2 = v.clone()
    v2[16:] = torch.randn(16, 3, 14, 14)
    f2 = tiny.visual(v2, [(2, 4, 4)])
    assert not torch.allclose(f1[:16], f2[:16], atol=1e-4)


@torch.no_grad()
def test_images_and_videos_share_one_packed_pass(tiny):
    img, vid = torch.randn(16, 3, 14, 14), torch.randn(32, 3, 14, 14)
    both_img, both_vid = tiny.encode_vision(img, [[1, 4, 4]], vid, [[2, 4, 4]])
    only_img, _ = tiny.encode_vision(img, [[1, 4, 4]])
    _, only_vid = tiny.encode_vision(None, None, vid, [[2, 4, 4]])
    assert both_img.shape == (4, tiny.config.hidden_size) and both_vid.shape == (8, tiny.config.hidden_size)
    assert torch.allclose(both_img, only_img, atol=1e-5) and torch.allclose(both_vid, only_vid, atol=1e-5)


def test_merge_order_is_row_then_column_then_channel():
    # raw grid 2 x 4, channel value encodes (row, col): one output row per 2x2 window
    h, w = 2, 4
    x = torch.tensor([[r * 10 + c, 100 + r * 10 + c] for r in range(h) for c in range(w)], dtype=torch.float32)
    out = merge_windows(x, [(1, h, w)], 2)
    assert out.shape == (2, 8)
    assert out[0].tolist() == [0, 100, 1, 101, 10, 110, 11, 111]
    assert out[1].tolist() == [2, 102, 3, 103, 12, 112, 13, 113]


@torch.no_grad()
def test_position_table_is_exact_at_native_size_and_interpolated_otherwise(tiny):
    emb = tiny.visual.vision_model.embeddings
    g = tiny.config.vision.position_grid
    assert torch.equal(emb.position_table(g, g), emb.position_embedding.weight)
    small = emb.position_table(4, 6)
    table = emb.position_embedding.weight.reshape(1, g, g, -1).permute(0, 3, 1, 2)
    want = F.interpolate(table, size=(4, 6), mode="bilinear", align_corners=False)[0].permute(1, 2, 0).reshape(24, -1)
    assert torch.equal(small, want)


def test_mismatched_media_is_a_clear_error(tiny):
    p = Prompt().text(1).image(4, 4, seed=1)
    inputs = batch([p])
    with pytest.raises(InputError, match="grids cover 16 patches but 15"):
        tiny(**{**inputs, "pixel_values": inputs["pixel_values"][:15]})
    with pytest.raises(InputError, match="should hold 8 pad tokens for grid"):
        tiny(**{**inputs, "pixel_values": torch.randn(32, 3, 14, 14), "image_grid_thw": torch.tensor([[1, 4, 8]])})
    with pytest.raises(InputError, match="image tokens and features do not match: 4 tokens, 8 features"):
        tiny(**{**inputs, "pixel_values": torch.randn(32, 3, 14, 14), "image_grid_thw": torch.tensor([[1, 4, 4]] * 2)})
    with pytest.raises(InputError, match="multiples of 2"):
        tiny(**{**inputs, "image_grid_thw": torch.tensor([[1, 1, 16]]), "pixel_values": torch.randn(16, 3, 14, 14)})
    with pytest.raises(InputError, match="unexpected model inputs"):
        tiny(**inputs, pixel_value=None)


@torch.no_grad()
def test_bfloat16_runs_and_stays_close(tiny):
    import keye_model

    bf = keye_model.load("keye-tiny", dtype=torch.bfloat16)
    inputs = batch([Prompt().text(1, 2).image(4, 4, seed=2).text(3)])
    a, b = tiny(**inputs), bf(**inputs)
    assert b.dtype == torch.bfloat16
    assert torch.allclose(a, b.float(), atol=0.05)
    top_a, top_b = set(a[0, -1].topk(5).indices.tolist()), set(b[0, -1].float().topk(5).indices.tolist())
    assert len(top_a & top_b) >= 3
    out = bf.generate(**inputs, max_new_tokens=3, stop_token_ids=[])  # bf16 KV cache and decode
    assert out.shape == (1, 3) and out.dtype == torch.long


@torch.no_grad()
def test_hidden_states_feed_the_fused_loss(tiny):
    from kernels import fused_linear_cross_entropy

    inputs = batch([text_prompt(4, 6), Prompt().text(1).image(4, 4, seed=6).text(2, 3)])
    hidden = tiny.hidden_states(**inputs)
    logits = tiny(**inputs)
    mask = inputs["attention_mask"].bool()
    assert torch.allclose(tiny.lm_head(hidden[mask]), logits[mask], atol=1e-5)
    targets = inputs["input_ids"][:, 1:][mask[:, 1:] & mask[:, :-1]]
    h = hidden[:, :-1][mask[:, 1:] & mask[:, :-1]]
    want = F.cross_entropy(tiny.lm_head(h), targets)
    assert torch.allclose(fused_linear_cross_entropy(h, tiny.lm_head.weight, targets), want, atol=1e-4)


@torch.no_grad()
def test_logits_to_keep_returns_each_rows_last_positions(tiny):
    prompts = [text_prompt(1, 9), Prompt().text(1, 2).image(4, 4, seed=3).text(9), text_prompt(2, 2)]
    inputs = batch(prompts)
    full = tiny(**inputs)
    last = tiny(**inputs, logits_to_keep=3)
    assert last.shape == (3, 3, tiny.config.vocab_size)
    assert torch.allclose(last[:2], full[:2, -3:], atol=1e-5)
    assert torch.allclose(last[2, 1:], full[2, -2:], atol=1e-5) and (last[2, 0] == 0).all()
