"""The analysis decoder's shortcuts (jump-forward, sparse projection, screened greedy head) must
change the cost, never a token: they are checked against plain constrained decoding (full
float32 logits and the grammar mask for every token) on real clips with the keye-tiny model."""

import jsonschema
import pytest
import torch
import xgrammar as xgr

from analysis import prompts
from analysis.allowed import RowGrammar, admitted_ids
from analysis.generation import PLAIN, DecodeOptions, DecodeStats, generate_rows
from analysis.grammar import STOP_ID
from analysis.output import parse_output
from analysis.schemas import task_schema
from analysis.segments import segment_video
from keye_model.engine import SamplingParams
from keye_model.errors import InputError

TASKS = ["tags", "summary", "moderation", "products"]
VOCAB = 151936


@pytest.fixture(scope="module")
def rows(analyzer, processor, sample_clips):
    """Four tasks on each of two clips: eight rows over two different prefixes, in one batch."""
    cfg, out = analyzer.cfg, {"rows": [], "grammars": [], "budgets": [], "segments": []}
    by_name = {c.name: c for c in sample_clips}
    for name in ("bikes.mp4", "carphone_pristine.mp4"):
        b = cfg.video
        video = processor.load_video(
            str(by_name[name]), max_frames=b.max_frames, max_pixels=b.max_pixels, min_pixels=b.min_pixels
        )
        segs = segment_video(video.frames, video.timestamps, video.duration_s, cfg.segmentation)
        prefix = analyzer.engine.prefill_prefix(prompts.prefix_inputs(processor, video))
        for task in TASKS:
            out["rows"].append((prefix, prompts.continuation_ids(processor, cfg, task, segs)))
            out["grammars"].append(analyzer.grammars.compiled(task, len(segs)))
            out["budgets"].append(cfg.task(task).max_new_tokens)
            out["segments"].append(len(segs))
    return out


def run(analyzer, rows, options, params=None, budgets=None):
    stats = DecodeStats()
    budgets = budgets or rows["budgets"]
    params = params or SamplingParams(max_new_tokens=max(budgets))
    result = generate_rows(analyzer.engine, rows["rows"], rows["grammars"], budgets, params, options, stats)
    return result, stats


@pytest.fixture(scope="module")
def plain(analyzer, rows):
    return run(analyzer, rows, PLAIN)


@pytest.mark.parametrize(
    "options",
    [
        DecodeOptions(),
        DecodeOptions(jump_forward=True, sparse_limit=0, screen=False),
        DecodeOptions(jump_forward=False, sparse_limit=4096, screen=False),
        DecodeOptions(jump_forward=False, sparse_limit=0, screen=True),
        DecodeOptions(jump_forward=True, sparse_limit=64, screen=True),
    ],
    ids=["all", "jump-forward", "sparse", "screen", "small-sparse"],
)
def test_shortcuts_give_the_plain_greedy_tokens(analyzer, rows, plain, options):
    (want, plain_stats), (got, stats) = plain, run(analyzer, rows, options)
    assert got.tokens == want.tokens
    assert got.finish_reasons == want.finish_reasons == ["stop_token"] * len(rows["rows"])
    # the shortcut really ran, and replaced the work it claims to replace
    assert plain_stats.full == sum(len(t) for t in want.tokens) and plain_stats.forced == 0
    assert stats.forced + stats.sparse + stats.screened + stats.full == plain_stats.full
    if options.jump_forward:
        assert stats.forced > 0 and stats.forwards < plain_stats.forwards
    assert (stats.sparse > 0) == (options.sparse_limit > 0)
    assert (stats.screened > 0) == options.screen
    assert stats.full < plain_stats.full or options == DecodeOptions(True, 0, False)


def test_every_answer_parses_and_validates(analyzer, rows, plain):
    for (_, _cont), n_seg, task, tokens in zip(rows["rows"], rows["segments"], TASKS * 2, plain[0].tokens):
        parsed = parse_output(analyzer.processor.decode([t for t in tokens if t != STOP_ID]))
        assert parsed.ok, (task, parsed.problems)
        jsonschema.validate(parsed.answer, task_schema(analyzer.cfg, task, n_seg))


def test_sampling_with_sparse_projection_draws_as_plain(analyzer, rows):
    params = SamplingParams(max_new_tokens=max(rows["budgets"]), temperature=0.9, top_p=0.95, seed=3)
    want, _ = run(analyzer, rows, PLAIN, params)
    got, stats = run(analyzer, rows, DecodeOptions(jump_forward=False, sparse_limit=4096, screen=False), params)
    assert got.tokens == want.tokens and stats.sparse > 0
    # jump-forward skips draws for forced tokens (other draws follow), but answers stay valid
    jumped, stats = run(analyzer, rows, DecodeOptions(), params)
    assert stats.forced > 0 and stats.screened == 0, "the screened head is for greedy decoding only"
    for n_seg, task, tokens in zip(rows["segments"], TASKS * 2, jumped.tokens):
        parsed = parse_output(analyzer.processor.decode([t for t in tokens if t != STOP_ID]))
        assert parsed.ok, (task, parsed.problems)
        jsonschema.validate(parsed.answer, task_schema(analyzer.cfg, task, n_seg))


def test_budget_stop_is_the_same_with_and_without_shortcuts(analyzer, rows):
    budgets = [6] * len(rows["rows"])
    want, _ = run(analyzer, rows, PLAIN, budgets=budgets)
    got, _ = run(analyzer, rows, DecodeOptions(), budgets=budgets)
    assert got.tokens == want.tokens
    assert all(len(t) == 6 and t[-1] == STOP_ID for t in got.tokens)
    assert not parse_output(analyzer.processor.decode(got.tokens[0][:-1])).ok


def test_admitted_ids_read_the_xgrammar_bitmask():
    ids = torch.tensor([0, 5, 31, 32, 63, 4097, STOP_ID, VOCAB - 1])
    logits = torch.zeros(1, VOCAB)
    logits[0, ids] = 1.0
    mask = torch.zeros(1, VOCAB // 32, dtype=torch.int32)
    for i in ids.tolist():  # bit 31 of a word is its sign bit
        bit = 1 << (i % 32)
        mask[0, i // 32] |= bit - (1 << 32) if bit >= 1 << 31 else bit
    ref = torch.zeros(1, VOCAB)
    xgr.apply_token_bitmask_inplace(ref, mask)
    assert torch.equal(torch.isfinite(ref[0]).nonzero().squeeze(1), ids)
    assert torch.equal(admitted_ids(mask[0], 8), ids)
    assert admitted_ids(mask[0], 7) is None and admitted_ids(mask[0], 0) is None
    assert admitted_ids(torch.full((VOCAB // 32,), -1, dtype=torch.int32), 4096) is None


def test_a_spent_budget_admits_only_the_stop_token(analyzer):
    row = RowGrammar(analyzer.grammars.compiled("summary", 1), 3, STOP_ID, VOCAB)
    first = row.admitted(4096)
    assert first.forced is None and first.ids is not None and 1 < first.ids.numel() <= 4096  # '{' and friends
    row.accept(int(first.ids[0]))
    row.accept(int(row.admitted(4096).ids[0]))
    spent = row.admitted(4096)
    logits = torch.zeros(1, VOCAB)
    xgr.apply_token_bitmask_inplace(logits, spent.mask)
    assert spent.forced == STOP_ID and torch.isfinite(logits[0]).nonzero().squeeze(1).tolist() == [STOP_ID]


def test_bad_requests_raise_input_errors(analyzer, rows):
    r, g, b = rows["rows"][:1], rows["grammars"][:1], rows["budgets"][:1]
    params = SamplingParams(max_new_tokens=8)
    with pytest.raises(InputError, match="must match"):
        generate_rows(analyzer.engine, r, g + g, b, params)
    with pytest.raises(InputError, match="at least one token"):
        generate_rows(analyzer.engine, [(r[0][0], [])], g, b, params)
    with pytest.raises(InputError, match="repetition penalty"):
        generate_rows(analyzer.engine, r, g, b, SamplingParams(max_new_tokens=8, repetition_penalty=1.1))
    with pytest.raises(InputError, match="no rows"):
        generate_rows(analyzer.engine, [], [], [], params)
