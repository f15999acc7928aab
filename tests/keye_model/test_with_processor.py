"""The processor's output drives the model unchanged (keys, padding, media layout)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

import keye_model.processor as processor_mod
from keye_model.engine import Engine, SamplingParams, text_deltas
from keye_model.thinking import parse_thinking


def _messages(seed: int, text: str):
    rng = np.random.RandomState(seed)
    img = Image.fromarray((rng.rand(60, 90, 3) * 255).astype("uint8"))
    frames = torch.from_numpy((rng.rand(8, 3, 56, 84) * 255).astype("uint8"))
    return [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": img},
                {"type": "video", "video": frames, "fps": 4.0},
                {"type": "text", "text": text},
            ],
        }
    ]


def test_processor_batch_generates_like_each_conversation_alone(tiny):
    proc = processor_mod.KeyeProcessor()
    convs = [_messages(0, "Describe the clip."), _messages(1, "Tags?")]
    both = proc(convs, thinking="no_think").model_inputs()
    assert both["attention_mask"][1].sum() < both["attention_mask"].shape[1]  # really left-padded
    together = tiny.generate(**both, max_new_tokens=4, stop_token_ids=[])
    for i, conv in enumerate(convs):
        alone = tiny.generate(**proc(conv, thinking="no_think").model_inputs(), max_new_tokens=4, stop_token_ids=[])
        assert together[i].tolist() == alone[0].tolist()


def test_engine_decodes_with_the_tokenizer(tiny):
    proc = processor_mod.KeyeProcessor()
    inputs = proc(_messages(2, "What happens?"), thinking="think")  # KeyeInputs as-is
    engine = Engine(tiny, decode=proc.decode)
    res = engine.generate(inputs, SamplingParams(max_new_tokens=5, stop_token_ids=()))
    text = proc.decode(res.tokens[0])
    assert isinstance(text, str) and len(res.tokens[0]) == 5
    assert parse_thinking(text).answer == text.strip()  # random weights write no tags


def test_text_deltas_add_up_to_the_decoded_text(tiny):
    proc = processor_mod.KeyeProcessor()
    inputs = proc([_messages(3, "Hi"), _messages(4, "Tags for this video?")]).model_inputs()
    engine = Engine(tiny, decode=proc.decode)
    params = SamplingParams(max_new_tokens=6, stop_token_ids=())
    pieces = list(text_deltas(engine.stream(inputs, params), proc.decode, 2))
    final = engine.generate(inputs, params)
    for i in range(2):
        streamed = "".join(p[i] for p in pieces)
        assert streamed == proc.decode(final.tokens[i]) and "\ufffd" not in streamed
