"""Parsing of generated answers with analysis, think and answer blocks, well-formed or not."""

import pytest

from analysis.output import parse_output

ANSWER = '{"tags": [{"label": "bike", "score": 90, "shots": [0]}]}'


def test_plain_json():
    p = parse_output(ANSWER)
    assert p.ok and p.answer["tags"][0]["label"] == "bike" and p.reasoning is None


def test_think_then_json_keeps_reasoning_out_of_the_answer():
    p = parse_output("<think>\nThe rider jumps; {not json}\n</think>\n\n" + ANSWER)
    assert p.ok and p.think == "The rider jumps; {not json}"
    assert p.answer_text == ANSWER and "rider" not in p.answer_text


def test_analysis_think_and_answer_wrapper():
    p = parse_output("<analysis>needs care</analysis><think>look at shot 2</think><answer>" + ANSWER + "</answer>")
    assert p.ok and p.analysis == "needs care" and p.think == "look at shot 2"
    assert p.reasoning == "needs care\n\nlook at shot 2"


def test_prefilled_opening_tag_and_code_fence():
    p = parse_output("reasoning only</think>\n```json\n" + ANSWER + "\n```")
    assert p.ok and p.think == "reasoning only"


@pytest.mark.parametrize(
    "text, problem",
    [
        ("<think>the model ran out of tokens while thin", "not closed"),
        ("<analysis>simple case", "not closed"),
        ("<think>done</think>", "no answer"),
        ("<think>done</think>" + ANSWER[:-3], "not valid JSON"),
        ("<answer>" + ANSWER, "not closed"),
        ("", "no answer"),
    ],
)
def test_malformed_and_truncated(text, problem):
    p = parse_output(text)
    assert not p.ok
    assert any(problem in x for x in p.problems), p.problems


def test_truncated_thinking_is_kept_as_reasoning_never_as_answer():
    p = parse_output("<think>partial reasoning " + ANSWER)
    assert p.answer is None and p.think.startswith("partial reasoning") and p.answer_text == ""


def test_end_of_turn_text_and_reasoning_that_looks_like_an_answer():
    p = parse_output('<think>maybe {"tags": []}</think>' + ANSWER + "<|im_end|>")
    assert p.ok and p.answer["tags"][0]["label"] == "bike" and p.think == 'maybe {"tags": []}'
