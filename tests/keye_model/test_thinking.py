"""Thinking-mode prompts and robust parsing of <analysis>/<think>/<answer> outputs."""

from __future__ import annotations

import pytest

from keye_model.errors import InputError
from keye_model.thinking import ThinkingMode, apply_mode, parse_thinking, prompt_suffix, with_mode


def test_suffixes_follow_the_release():
    assert prompt_suffix("think") == "/think" and prompt_suffix(ThinkingMode.NO_THINK) == "/no_think"
    assert prompt_suffix(ThinkingMode.AUTO) == ""
    assert with_mode("Describe the video.", "think") == "Describe the video./think"
    assert with_mode("Describe the video. /think", "no_think") == "Describe the video./no_think"
    assert with_mode("Describe the video./no_think", "auto") == "Describe the video."
    with pytest.raises(InputError, match="unknown thinking mode"):
        prompt_suffix("deep")


def test_apply_mode_touches_only_the_last_user_text():
    msgs = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": [{"type": "video", "video": "a.mp4"}, {"type": "text", "text": "Tags?"}]},
    ]
    out = apply_mode(msgs, "no_think")
    assert out[1]["content"][1]["text"] == "Tags?/no_think" and msgs[1]["content"][1]["text"] == "Tags?"
    assert apply_mode([{"role": "user", "content": "Hi"}], "think")[0]["content"] == "Hi/think"
    with pytest.raises(InputError, match="no user message"):
        apply_mode([{"role": "system", "content": "x"}], "think")


@pytest.mark.parametrize(
    "raw, analysis, reasoning, answer, truncated",
    [
        (
            "<analysis>Simple question, no need to think.</analysis>A cat on a sofa.<|im_end|>",
            "Simple question, no need to think.",
            None,
            "A cat on a sofa.",
            False,
        ),
        (
            "<think>\nThe frames show a kitchen.\n</think>\n\n<answer>Cooking</answer>",
            None,
            "The frames show a kitchen.",
            "Cooking",
            False,
        ),
        (
            "<analysis>Hard.</analysis><think>step 1 ... step 2</think><answer>42</answer>",
            "Hard.",
            "step 1 ... step 2",
            "42",
            False,
        ),
        ("<think>\n\n</think>\n\nJust the answer", None, "", "Just the answer", False),
        ("Plain answer with no tags", None, None, "Plain answer with no tags", False),
        ("reasoning that lost its open tag</think>final", None, "reasoning that lost its open tag", "final", False),
        ("<think>I was cut off in the midd", None, "I was cut off in the midd", "", True),
        ("<analysis>deciding whether", "deciding whether", None, "", True),
        ("<think>ok</think><answer>partial ans", None, "ok", "partial ans", True),
        ("<answer>a</answer> then <answer>b</answer>", None, None, "b", False),
    ],
)
def test_parse_thinking(raw, analysis, reasoning, answer, truncated):
    out = parse_thinking(raw)
    assert (out.analysis, out.reasoning, out.answer, out.truncated) == (analysis, reasoning, answer, truncated)


def test_thought_flag():
    assert parse_thinking("<think>x</think>y").thought
    assert not parse_thinking("<think> </think>y").thought and not parse_thinking("y").thought
