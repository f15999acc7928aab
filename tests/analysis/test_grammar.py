"""Constrained decoding against the real Keye tokenizer: whatever the logits, the answer parses
and validates against its task schema, within the computed token bound."""

import jsonschema
import pytest
import torch

from analysis import config as C
from analysis.grammar import STOP_ID, GrammarBook, GrammarMasks, prelude_ebnf
from analysis.output import parse_output
from analysis.schemas import max_output_tokens, task_schema
from tests.support.analysis import tight_raw

TASKS = ("tags", "summary", "moderation", "products")


@pytest.fixture(scope="module")
def books(tokenizer):
    """One grammar book per moderation thinking mode."""
    return {
        mode: GrammarBook(
            C.parse_config(tight_raw(moderation=mode, tags=mode if mode != "think" else "no_think")), tokenizer
        )
        for mode in ("no_think", "think", "auto")
    }


def sample(book, task, n_segments, seed, greedy=False, budget=None):
    """Decode with random logits under the mask; returns (token ids without the stop, stopped)."""
    gen = torch.Generator().manual_seed(seed)
    budget = budget or book.cfg.task(task).max_new_tokens
    masks = GrammarMasks([book.compiled(task, n_segments)], [budget])
    out: list[int] = []
    for _ in range(budget):
        logits = torch.randn(1, 151936, generator=gen) * 4
        logits = masks(logits, [out])
        if greedy:
            tok = int(logits.argmax(-1))
        else:
            tok = int(torch.multinomial(logits.softmax(-1), 1, generator=gen))
        out.append(tok)
        if tok == STOP_ID:
            return out[:-1], True
    return out, False


# every task without thinking, and the tasks whose thinking mode the other books change
CASES = [("no_think", t) for t in TASKS] + [("think", "moderation"), ("auto", "moderation"), ("auto", "tags")]


@pytest.mark.parametrize("mode, task", CASES)
def test_random_sampling_under_the_mask_always_validates(books, tokenizer, task, mode):
    book = books[mode]
    for seed in range(3):
        n_seg = 1 + seed % 3
        ids, stopped = sample(book, task, n_seg, seed, greedy=seed == 0)
        assert stopped, "the grammar must force termination within the budget"
        assert len(ids) + 1 <= max_output_tokens(book.cfg, task, n_seg)
        text = tokenizer.decode(ids)
        parsed = parse_output(text)
        assert parsed.ok, (text, parsed.problems)
        jsonschema.validate(parsed.answer, task_schema(book.cfg, task, n_seg))
        thinking = book.cfg.task(task).thinking
        if thinking == "think":
            assert text.startswith("<think>") and parsed.think is not None
        if thinking == "no_think":
            assert parsed.reasoning is None and text.startswith("{")
        assert "<think>" not in parsed.answer_text and "</think>" not in parsed.answer_text


def accepts(book, task, n_segments, text, tokenizer):
    masks = GrammarMasks([book.compiled(task, n_segments)], [10_000])
    ids = tokenizer.encode(text) + [STOP_ID]
    m = masks.rows[0].matcher
    return all(m.accept_token(t) for t in ids) and m.is_terminated()


def test_thinking_block_then_json_is_accepted(books, tokenizer):
    answer = '{"categories": [{"category": "violence", "severity": 2, "confidence": 70, "evidence": [{"shot": 1, "reason": "a fight"}]}]}'
    think = books["think"]
    assert accepts(think, "moderation", 2, "<think>\nshot 1 fight\n</think>\n\n" + answer, tokenizer)
    assert not accepts(think, "moderation", 2, answer, tokenizer), "think mode requires the reasoning first"
    assert not accepts(think, "moderation", 2, "<think>" + "x" * 17 + "</think>" + answer, tokenizer), (
        "bounded reasoning"
    )
    auto = books["auto"]
    assert accepts(auto, "moderation", 2, answer, tokenizer)
    assert accepts(auto, "moderation", 2, "<analysis>simple</analysis>\n" + answer, tokenizer)
    assert accepts(auto, "moderation", 2, "<analysis>hard</analysis>\n<think>look</think>\n\n" + answer, tokenizer)
    assert not accepts(books["no_think"], "moderation", 2, "<think>a</think>" + answer, tokenizer)


@pytest.mark.parametrize(
    "bad",
    [
        '{"categories": [{"category": "spoilers", "severity": 2, "confidence": 70, "evidence": []}]}',  # unknown category
        '{"categories": [{"category": "violence", "severity": 4, "confidence": 70, "evidence": []}]}',  # severity range
        '{"categories": [{"category": "violence", "severity": 2, "confidence": 101, "evidence": []}]}',  # confidence range
        '{"categories": [{"category": "violence", "severity": 2, "confidence": 7, "evidence": [{"shot": 2, "reason": "x"}]}]}',  # no shot 2
        '{"categories": [{"category": "violence", "severity": 2, "confidence": 7, "evidence": [{"shot": 0, "reason": "123456789"}]}]}',  # too long
        '{"categories": [{"category": "violence", "severity": 2.5, "confidence": 7, "evidence": []}]}',  # not an integer
        '{"categories": []} trailing',
    ],
)
def test_invalid_content_is_impossible(books, tokenizer, bad):
    assert not accepts(books["no_think"], "moderation", 2, bad, tokenizer)
    assert accepts(books["no_think"], "moderation", 2, '{"categories": []}', tokenizer)


def test_special_tokens_never_admitted_inside_strings(books, tokenizer):
    book = books["no_think"]
    masks = GrammarMasks([book.compiled("summary", 1)], [100])
    prefix = tokenizer.encode('{"title": "a')
    logits = masks(torch.zeros(1, 151936), [prefix])
    allowed = torch.isfinite(logits[0])
    for special in (151643, 151644, 151652, 151655, 151656, 151700):
        assert not allowed[special]
    assert allowed[tokenizer.encode("b")[0]] and not allowed[STOP_ID]


def test_budget_exhaustion_forces_a_stop_and_is_reported(books, tokenizer):
    ids, stopped = sample(books["no_think"], "summary", 1, seed=1, budget=5)
    assert stopped and len(ids) == 4
    parsed = parse_output(tokenizer.decode(ids))
    assert not parsed.ok and parsed.problems


def test_prelude_grammar_text():
    assert prelude_ebnf("no_think", 10, 10) is None
    assert "<think>" in prelude_ebnf("think", 10, 0) and "<analysis>" not in prelude_ebnf("think", 10, 0)
    assert "<analysis>" in prelude_ebnf("auto", 10, 5)
