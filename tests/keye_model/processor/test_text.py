"""Tokenizer and chat template: ids identical to the official tokenizer + template."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keye_model.processor import KeyeProcessor, ProcessorInputError
from keye_model.processor.template import RELEASED_TEMPLATE, render, render_jinja, with_thinking
from tests.support.conversations import CONVERSATIONS, IMAGE_TOKENS, THINKING, VIDEO_TOKENS
from tests.support.paths import RELEASED

RELEASED_CKPT = RELEASED

EXPECTED = json.loads((Path(__file__).parent / "data" / "expected_ids.json").read_text())


def _materialize(conv, tmp_path: Path):
    """Swap the IMG/VID markers for media whose grids give IMAGE_TOKENS / VIDEO_TOKENS."""
    img = tmp_path / "img.png"
    Image.fromarray(np.full((56, 84, 3), 200, np.uint8)).save(img)  # grid (1, 4, 6) -> 6 tokens
    frames = [Image.fromarray(np.full((56, 56, 3), 10 * i, np.uint8)) for i in range(4)]  # (4, 4, 4) -> 16
    conv = copy.deepcopy(conv)
    for m in conv:
        if isinstance(m["content"], list):
            for c in m["content"]:
                if c.get("image") == "IMG":
                    c["image"] = str(img)
                if c.get("video") == "VID":
                    c["video"] = frames
    return conv


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_input_ids_match_official(processor, key, tmp_path):
    name, mode = key.split("/")
    conv = _materialize(CONVERSATIONS[name], tmp_path)
    out = processor(conv, thinking=THINKING[mode])
    assert out.input_ids.tolist() == [EXPECTED[key]["ids"]]
    assert out.attention_mask.all()
    n_img = sum(1 for m in conv if isinstance(m["content"], list) for c in m["content"] if "image" in c)
    assert (out.input_ids == 151655).sum().item() == n_img * IMAGE_TOKENS
    if out.video_grid_thw is not None:
        assert out.video_grid_thw.tolist() == [[4, 4, 4]]
        assert (out.input_ids == 151656).sum().item() == VIDEO_TOKENS


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
@pytest.mark.parametrize("mode", sorted(THINKING))
def test_python_template_equals_released_jinja(name, mode):
    conv = with_thinking(CONVERSATIONS[name], THINKING[mode])
    for gen in (True, False):
        for vid in (False, True):
            assert render(conv, gen, vid) == render_jinja(RELEASED_TEMPLATE, conv, gen, vid)


def test_released_template_is_the_vendored_one():
    released = json.loads((RELEASED_CKPT / "chat_template.json").read_text())["chat_template"]
    assert released == RELEASED_TEMPLATE


def test_from_pretrained_falls_back_to_packaged_vocabulary(processor):
    p = KeyeProcessor.from_pretrained(RELEASED_CKPT)
    assert p.budgets.processor_max_pixels == 1003520 and p.budgets.processor_min_pixels == 3136
    text = "<|im_start|>user\nHello, 世界<|im_end|><|clip_time_start|>"
    assert p.tokenizer.encode(text) == processor.tokenizer.encode(text)
    cfg = json.loads((RELEASED_CKPT / "tokenizer_config.json").read_text())["added_tokens_decoder"]
    for tid, tok in cfg.items():
        assert p.tokenizer.token_to_id(tok["content"]) == int(tid)
    assert len(p.tokenizer) == 151675


def test_special_tokens_never_split(processor):
    ids = processor.tokenizer.encode("a<|video_pad|><|video_pad|>b<think>")
    assert ids[1:3] == [151656, 151656] and ids[-1] == 151667


def test_decode_roundtrip_and_skip_special(processor):
    text = "<|im_start|>assistant\n<think>\nhmm\n</think>\n\nA cat 🐈 on 2 mats.<|im_end|>"
    ids = processor.tokenizer.encode(text)
    assert processor.decode(ids) == text
    # only special tokens go; <think> is an added but not special token, as in the release
    assert processor.decode(ids, skip_special_tokens=True) == "assistant\n<think>\nhmm\n</think>\n\nA cat 🐈 on 2 mats."
    assert processor.batch_decode([ids, ids[:3]]) == [text, processor.decode(ids[:3])]


def test_batch_is_left_padded(processor):
    short = [{"role": "user", "content": "hi"}]
    long = [{"role": "user", "content": "a much longer question about the video"}]
    out = processor([short, long])
    single = [processor(c).input_ids[0].tolist() for c in (short, long)]
    n = out.input_ids.shape[1]
    assert n == len(single[1])
    pad = n - len(single[0])
    assert out.input_ids[0, :pad].tolist() == [151643] * pad
    assert out.input_ids[0, pad:].tolist() == single[0]
    assert out.attention_mask[0].tolist() == [0] * pad + [1] * len(single[0])
    assert out.input_ids[1].tolist() == single[1]


def test_bad_messages_raise_typed_errors(processor):
    with pytest.raises(ProcessorInputError):
        processor([])
    with pytest.raises(ProcessorInputError):
        processor([{"content": "no role"}])
    with pytest.raises(ProcessorInputError):
        processor([{"role": "user", "content": "x"}], thinking="maybe")
    with pytest.raises(ProcessorInputError, match="pad"):
        processor([{"role": "user", "content": "sneaky <|image_pad|>"}])


def test_top_level_export_and_thinking_parse(processor):
    import keye_model

    assert keye_model.KeyeProcessor is KeyeProcessor
    generated = processor.tokenizer.encode(
        "<think>\nThe clip shows a bike.\n</think>\n\n<answer>cycling</answer><|im_end|>"
    )
    text = processor.decode(generated, skip_special_tokens=True)
    assert text.endswith("</answer>")  # <|im_end|> is special and goes; <think> is not special and stays
    parsed = processor.parse_thinking(text)
    assert parsed.reasoning.strip() == "The clip shows a bike." and parsed.answer == "cycling"
