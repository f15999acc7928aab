"""The analyzer end to end with the random-weight keye-tiny model on real clips.

A random model answers nonsense, but under the grammars it must still produce schema-valid
answers and records, and reusing the visual prefix must not change a single answer token.
"""

import math

import jsonschema
import pytest
import torch

from analysis import prompts
from analysis.config import parse_config
from analysis.generation import generate_rows
from analysis.grammar import GrammarMasks
from analysis.schemas import task_schema
from analysis.segments import segment_video
from keye_model.engine import SamplingParams
from keye_model.processor import MediaError
from service.schemas import AnalysisRecord, Submission, utcnow
from tests.support.analysis import tight_raw

ALL = ["tags", "summary", "moderation", "products", "embedding"]


def sub(video_id, tasks=ALL):
    return Submission(
        video_id=video_id,
        uri=f"file:///{video_id}.mp4",
        submitted_at=utcnow(),
        tasks=tasks,
        creator_id="c1",
        language="en",
    )


@pytest.fixture(scope="module")
def clips(sample_clips):
    by_name = {c.name: c for c in sample_clips}
    return [by_name["bikes.mp4"], by_name["carphone_pristine.mp4"]]


@pytest.fixture(scope="module")
def batch(analyzer, clips):
    return analyzer.analyze_with_answers([(clips[0], sub("bikes")), (clips[1], sub("carphone"))])


def check_record(cfg, record, chunk_answers, tasks, dim):
    again = AnalysisRecord.model_validate_json(record.model_dump_json())
    assert again == record
    assert record.model_version == "keye-tiny" and record.prompt_version == cfg.version
    assert record.embedding_dim == len(record.embedding) == dim
    assert math.isclose(sum(x * x for x in record.embedding), 1.0, rel_tol=1e-4)
    for ch in chunk_answers:
        assert set(ch.outputs) == set(tasks) - {"embedding"}
        for task, out in ch.outputs.items():
            assert out.ok, (task, out.problems)
            jsonschema.validate(out.answer, task_schema(cfg, task, len(ch.segments)))
            assert "<think>" not in out.answer_text
    bounds = {s.start_s for ch in chunk_answers for s in ch.segments} | {
        s.end_s for ch in chunk_answers for s in ch.segments
    }
    for t in record.tags:
        assert (t.start_s is None) == (t.end_s is None)
        assert t.start_s is None or (t.start_s in bounds and t.end_s in bounds and t.start_s < t.end_s)
    for flag in record.moderation.categories:
        assert flag.category in cfg.categories and 0 <= flag.severity <= 3
        for e in flag.evidence:
            assert e.start_s in bounds and e.end_s in bounds and 0 <= e.start_s < e.end_s <= record.duration_s + 1e-6


def test_every_task_returns_valid_output_for_real_clips(analyzer, batch, tight_config):
    for record, chunk_answers in batch:
        check_record(tight_config, record, chunk_answers, ALL, analyzer.model.config.hidden_size)
        assert record.status == "ok" and record.frames_used == 8
        assert record.creator_id == "c1" and record.language == "en"
        assert record.summary.title and record.summary.short and record.summary.long
        mod = record.moderation
        assert mod.reasoning, "moderation thinks by default and keeps its reasoning"
        th = tight_config.thresholds
        flagged = any(f.severity >= th.flag_severity and f.confidence >= th.flag_confidence for f in mod.categories)
        assert (mod.status == "flagged") == flagged
        assert {"decode_ms", "segment_ms", "prefill_ms", "generate_ms", "total_ms"} <= set(record.timings_ms)
    assert batch[0][0].video_id == "bikes" and batch[1][0].analysis_id != batch[0][0].analysis_id


def test_batching_videos_gives_each_the_answers_it_gets_alone(analyzer, batch, clips):
    record, answers = analyzer.analyze_with_answers([(clips[1], sub("carphone"))])[0]
    assert [ch.outputs["moderation"].answer for ch in answers] == [
        ch.outputs["moderation"].answer for ch in batch[1][1]
    ]
    assert record.tags == batch[1][0].tags and record.summary == batch[1][0].summary
    assert torch.allclose(torch.tensor(record.embedding), torch.tensor(batch[1][0].embedding), atol=1e-5)


def test_prefix_reuse_gives_the_same_answers_as_separate_full_prompts(analyzer, processor, tiny_model, clips):
    cfg, engine = analyzer.cfg, analyzer.engine
    b = cfg.video
    video = processor.load_video(
        str(clips[0]), max_frames=b.max_frames, max_pixels=b.max_pixels, min_pixels=b.min_pixels
    )
    segs = segment_video(video.frames, video.timestamps, video.duration_s, cfg.segmentation)
    tasks = ["tags", "summary", "moderation", "products"]
    prefix = engine.prefill_prefix(prompts.prefix_inputs(processor, video), embed=True)
    conts = [prompts.continuation_ids(processor, cfg, t, segs) for t in tasks]
    grammars = [analyzer.grammars.compiled(t, len(segs)) for t in tasks]
    budgets = [cfg.task(t).max_new_tokens for t in tasks]
    params = SamplingParams(max_new_tokens=max(budgets))
    shared = generate_rows(engine, [(prefix, c) for c in conts], grammars, budgets, params)  # the analyzer's decoder
    # the engine's own decode loop with the grammars as a logits processor (plain constrained decoding)
    via_engine = engine.generate_from_prefix(prefix, conts, params, [GrammarMasks(grammars, budgets)])
    assert shared.tokens == via_engine.tokens
    for i, task in enumerate(tasks):
        full = prompts.full_inputs(processor, cfg, task, video, segs)
        assert full["input_ids"][0].tolist() == prefix.tokens + conts[i], "prefix + continuation is the whole prompt"
        alone = engine.generate(
            full, SamplingParams(max_new_tokens=budgets[i]), [GrammarMasks([grammars[i]], [budgets[i]])]
        )
        assert alone.tokens[0] == shared.tokens[i], task
        assert alone.finish_reasons[0] == "stop_token"
    # the embedding of the shared prefill is the model's embedding of the prefix prompt
    ref = tiny_model.embed(**prompts.prefix_inputs(processor, video))[0]
    assert torch.allclose(prefix.embedding, ref, atol=1e-5)


def test_long_videos_are_analyzed_per_chunk_and_merged(processor, tiny_model, clips):
    from analysis import VideoAnalyzer

    raw = tight_raw()
    raw["video"]["frames_per_pass"] = 4
    raw["segmentation"]["min_shot_s"] = 0.5
    cfg = parse_config(raw)
    analyzer = VideoAnalyzer(tiny_model, processor, cfg, model_version="keye-tiny")
    record, answers = analyzer.analyze_with_answers([(clips[0], sub("bikes-long", ["tags", "summary", "moderation"]))])[
        0
    ]
    assert len(answers) >= 2
    assert [f for ch in answers for s in ch.segments for f in s.frames] == list(range(record.frames_used))
    check_record(cfg, record, answers, ["tags", "summary", "moderation"], tiny_model.config.hidden_size)
    assert record.products == [] and record.summary.long.startswith("[0s-")
    assert record.moderation.reasoning.startswith("[0.0s-")


def test_task_selection_follows_the_submission(analyzer, clips):
    record, answers = analyzer.analyze_with_answers([(clips[1], sub("only-tags", ["tags", "embedding"]))])[0]
    assert set(answers[0].outputs) == {"tags"}
    assert record.summary.short == "" and record.moderation.categories == [] and record.products == []
    assert record.embedding_dim == analyzer.model.config.hidden_size
    assert analyzer.tasks_for(sub("default", [])) == ("tags", "summary", "moderation")


def test_text_queries_share_the_video_space(analyzer, batch):
    a, b = analyzer.embed_text("people riding bikes"), analyzer.embed_text("a man on the phone in a car")
    assert len(a) == len(batch[0][0].embedding) and math.isclose(sum(x * x for x in a), 1.0, rel_tol=1e-4)
    assert a == analyzer.embed_text("people riding bikes") and a != b


def test_bad_inputs_raise_typed_errors(analyzer, tmp_path):
    from analysis.errors import AnalysisError

    with pytest.raises(AnalysisError, match="non-empty"):
        analyzer.embed_text("  ")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all")
    with pytest.raises(MediaError):
        analyzer.analyze(junk, sub("junk"))
    assert analyzer.analyze_many([]) == []


def test_query_framing_matches_the_video_prefix_framing(analyzer, processor, tiny_model):
    from analysis import embed_text
    from analysis.errors import AnalysisError

    vec = torch.tensor(embed_text(tiny_model, processor, "bikes"))
    ids = processor.tokenizer.encode(
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nbikes"
    )
    assert torch.allclose(vec, tiny_model.embed(torch.tensor([ids]))[0], atol=1e-6)
    with pytest.raises(AnalysisError, match="at most"):
        embed_text(tiny_model, processor, "x" * 5000)


def test_from_settings_with_a_config_path(tmp_path):
    from analysis import VideoAnalyzer
    from service.settings import Settings

    raw = tight_raw()
    raw["version"] = "tight-1"
    (tmp_path / "analysis.json").write_text(__import__("json").dumps(raw))
    an = VideoAnalyzer.from_settings(Settings(model="keye-tiny"), tmp_path / "analysis.json")
    assert an.model_version == "keye-tiny" and an.prompt_version == "tight-1"
    assert an.cfg.task("tags").limit("max_items") == 2


def test_batches_respect_the_cache_limits_without_changing_answers(tiny_model, processor, tight_config, batch, clips):
    from analysis import VideoAnalyzer

    small = VideoAnalyzer(tiny_model, processor, tight_config, model_version="keye-tiny", max_batch_tokens=4000)
    rows = [(object(), 0, t) for t in ("tags", "summary", "moderation", "products")]
    prefixes = {(id(v), 0): type("P", (), {"tokens": [0] * 1000})() for v, _, _ in rows}
    batches = small._batches(rows, prefixes)
    need = {t: 1000 + 512 + tight_config.task(t).max_new_tokens for _, _, t in rows}
    cost = [len(b) * max(need[t] for _, _, t in b) for b in batches]
    assert [r for b in batches for r in b] == rows and len(batches) > 1
    assert all(c <= 4000 for c in cost)
    for b, nxt in zip(batches, batches[1:]):  # greedy: the next row would not have fitted
        assert (len(b) + 1) * max(need[t] for _, _, t in b + nxt[:1]) > 4000
    one_row = VideoAnalyzer(tiny_model, processor, tight_config, max_batch_rows=1)
    assert [len(b) for b in one_row._batches(rows, prefixes)] == [1, 1, 1, 1]
    record, answers = small.analyze_with_answers([(clips[1], sub("carphone"))])[0]
    assert [ch.outputs["tags"].answer for ch in answers] == [ch.outputs["tags"].answer for ch in batch[1][1]]
    assert record.moderation == batch[1][0].moderation
