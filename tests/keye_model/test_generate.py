"""Cached generation equals full recomputation; batching, prefix reuse, sampling and stops."""

from __future__ import annotations

import pytest
import torch

from keye_model.engine import Engine, SamplingParams
from keye_model.engine.sampling import filter_top_k_top_p
from keye_model.errors import InputError
from tests.support.prompts import Prompt, batch, text_prompt

PAD = 151643
N = 6


def recompute_greedy(model, inputs: dict, n: int) -> list[int]:
    """Argmax decoding by running the whole sequence again for every new token (one row)."""
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    out = []
    with torch.no_grad():
        for _ in range(n):
            logits = model(**{**inputs, "input_ids": ids, "attention_mask": mask})
            nxt = int(logits[0, -1].argmax())
            out.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]])], 1)
            mask = torch.cat([mask, torch.ones(1, 1, dtype=mask.dtype)], 1)
    return out


CASES = {
    "text": lambda: text_prompt(11, 12),
    "image": lambda: Prompt().text(1, 2, 3).image(4, 6, seed=1).text(7, 8),
    "video": lambda: Prompt().text(4).video(3, 4, 4, 0.5, seed=2).text(9, 10, 11),
    "mixed": lambda: (
        Prompt().text(5).image(4, 4, seed=3).text(6).video(2, 4, 6, 1 / 1.5, seed=4).image(2, 2, seed=5).text(12)
    ),
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_greedy_with_cache_equals_full_recomputation(tiny, kind):
    inputs = batch([CASES[kind]()])
    got = tiny.generate(**inputs, max_new_tokens=N, temperature=0, stop_token_ids=[])
    assert got.shape == (1, N)
    assert got[0].tolist() == recompute_greedy(tiny, inputs, N)


def test_padded_batch_generates_what_each_row_generates_alone(tiny):
    prompts = [CASES["mixed"](), text_prompt(7, 3), CASES["video"](), CASES["image"]()]
    together = tiny.generate(**batch(prompts), max_new_tokens=N, stop_token_ids=[])
    for i, p in enumerate(prompts):
        alone = tiny.generate(**batch([p]), max_new_tokens=N, stop_token_ids=[])
        assert together[i].tolist() == alone[0].tolist()


def test_prefix_reuse_equals_running_each_full_prompt(tiny):
    prefix = Prompt().text(100, 101).video(3, 4, 4, 0.5, seed=8).text(102)
    tasks = [[200, 201, 202], [300], [400, 401, 402, 403, 404]]
    engine = Engine(tiny)
    pre = engine.prefill_prefix(batch([prefix]))
    params = SamplingParams(max_new_tokens=N, stop_token_ids=())
    tower_calls = []
    hook = tiny.visual.register_forward_hook(lambda *a: tower_calls.append(1))
    try:
        reused = engine.generate_from_prefix(pre, tasks, params)
    finally:
        hook.remove()
    assert tower_calls == []  # the video is not encoded again
    for task, got in zip(tasks, reused.tokens):
        full = Prompt(ids=prefix.ids + task, videos=prefix.videos)
        assert got == tiny.generate(**batch([full]), max_new_tokens=N, stop_token_ids=[])[0].tolist()
    # the prefix cache is untouched and can be continued again
    again = engine.generate_from_prefix(pre, tasks[:1], params)
    assert again.tokens[0] == reused.tokens[0]


def test_stop_token_ends_a_row_and_pads_it(tiny):
    prompts = [text_prompt(1, 5), text_prompt(2, 8)]
    free = tiny.generate(**batch(prompts), max_new_tokens=N, stop_token_ids=[])
    stop = int(free[0, 2])
    stopped = tiny.generate(**batch(prompts), max_new_tokens=N, stop_token_ids=[stop])
    first = free[0].tolist().index(stop)
    assert stopped[0, : first + 1].tolist() == free[0, : first + 1].tolist()
    assert (stopped[0, first + 1 :] == PAD).all()
    if stop not in free[1].tolist():
        assert stopped[1].tolist() == free[1].tolist()


def test_stream_yields_the_generated_tokens_step_by_step(tiny):
    inputs = batch([text_prompt(3, 6), CASES["image"]()])
    params = SamplingParams(max_new_tokens=N, stop_token_ids=())
    steps = list(Engine(tiny).stream(inputs, params))
    assert [s.step for s in steps] == list(range(N))
    streamed = [[s.tokens[i] for s in steps] for i in range(2)]
    assert streamed == Engine(tiny).generate(inputs, params).tokens


def test_stop_strings_use_the_decoder(tiny):
    letters = lambda ids: "".join(chr(65 + t % 26) for t in ids)  # noqa: E731 - a toy detokenizer
    inputs = batch([text_prompt(4, 6)])
    free = Engine(tiny, decode=letters).generate(inputs, SamplingParams(max_new_tokens=N, stop_token_ids=()))
    target = letters(free.tokens[0][2:4])
    res = Engine(tiny, decode=letters).generate(
        inputs, SamplingParams(max_new_tokens=N, stop_token_ids=(), stop_strings=(target,))
    )
    assert target in letters(res.tokens[0]) and len(res.tokens[0]) <= 4 and res.finish_reasons == ["stop_string"]
    with pytest.raises(InputError, match="decode"):
        Engine(tiny).generate(inputs, SamplingParams(max_new_tokens=2, stop_strings=("x",)))


def test_sampling_is_seeded_and_top_k_1_is_greedy(tiny):
    inputs = batch([text_prompt(5, 6), text_prompt(6, 4)])
    kw = dict(max_new_tokens=N, temperature=1.5, top_p=0.95, stop_token_ids=[])
    a, b = tiny.generate(**inputs, seed=1, **kw), tiny.generate(**inputs, seed=1, **kw)
    c = tiny.generate(**inputs, seed=2, **kw)
    assert torch.equal(a, b) and not torch.equal(a, c)
    greedy = tiny.generate(**inputs, max_new_tokens=N, stop_token_ids=[])
    assert torch.equal(
        tiny.generate(**inputs, temperature=0.8, top_k=1, seed=3, max_new_tokens=N, stop_token_ids=[]), greedy
    )


def test_repetition_penalty_avoids_seen_tokens(tiny):
    p = text_prompt(9, 5)
    out = tiny.generate(**batch([p]), max_new_tokens=8, repetition_penalty=1e6, stop_token_ids=[])[0].tolist()
    assert len(set(out)) == len(out) and not set(out) & set(p.ids)


def test_logits_processor_hook_is_applied_every_step(tiny):
    calls = []

    def force(logits, generated):
        calls.append([len(g) for g in generated])
        out = torch.full_like(logits, float("-inf"))
        out[:, 4242] = 0.0
        return out

    got = tiny.generate(
        **batch([text_prompt(1, 4), text_prompt(2, 6)]), max_new_tokens=3, stop_token_ids=[], logits_processors=[force]
    )
    assert (got == 4242).all() and calls == [[0, 0], [1, 1], [2, 2]]


def test_top_p_keeps_the_smallest_head_reaching_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = filter_top_k_top_p(logits, 0, 0.6).isfinite()[0].tolist()
    assert kept == [True, True, False, False]
    assert filter_top_k_top_p(logits, 3, 1.0).isfinite()[0].tolist() == [True, True, True, False]


def test_bad_sampling_settings_are_clear_errors():
    for kw, msg in (
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(temperature=-1), "temperature"),
        (dict(top_p=0), "top_p"),
        (dict(top_k=-2), "top_k"),
        (dict(repetition_penalty=0), "repetition"),
    ):
        with pytest.raises(InputError, match=msg):
            SamplingParams(**kw)


def test_several_prefixes_continue_in_one_batch(tiny):
    a = Prompt().text(100).video(2, 4, 4, 0.5, seed=11).text(101)
    b = Prompt().text(7, 8, 9).image(4, 4, seed=12).text(10)
    engine = Engine(tiny)
    pa, pb = engine.prefill_prefix(batch([a]), embed=True), engine.prefill_prefix(batch([b]))
    assert pb.embedding is None
    assert torch.allclose(pa.embedding, tiny.embed(**batch([a]))[0], atol=1e-5)
    rows = [(pa, [200, 201]), (pb, [300]), (pa, [400, 401, 402])]
    params = SamplingParams(max_new_tokens=N, stop_token_ids=())
    got = engine.generate_from_prefixes(rows, params).tokens
    for (pre, task), tokens in zip(rows, got):
        src = a if pre is pa else b
        full = Prompt(ids=src.ids + task, images=src.images, videos=src.videos)
        assert tokens == tiny.generate(**batch([full]), max_new_tokens=N, stop_token_ids=[])[0].tolist()
