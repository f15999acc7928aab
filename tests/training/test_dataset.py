"""Feedback -> supervised examples: the analyzer's own prompt, a grammar-admissible corrected answer,
labels only on the answer, and every unusable event skipped with its reason."""

from __future__ import annotations

import json

import sqlalchemy as sa
import torch
from sqlmodel import Session

from analysis import prompts
from analysis.analyzer import chunk_video
from analysis.grammar import STOP_ID, GrammarBook
from analysis.output import parse_output
from analysis.segments import chunk_segments, segment_video
from service.schemas import utcnow
from stores.db import FeedbackRow
from tests.support.training import RECORD, store_feedback, store_video
from training.dataset import IGNORE, build_dataset, unused_feedback


def _build(session, processor, tight_config, settings):
    return build_dataset(session, unused_feedback(session), processor, tight_config, settings)


def test_labels_cover_only_the_answer_and_the_end_token(clip_dataset, processor):
    assert len(clip_dataset.examples) >= 9  # 3 clips x (tags, moderation, summary), one pass each
    for ex in clip_dataset.examples:
        n = ex.prompt_len
        assert n > 0 and (ex.labels[:n] == IGNORE).all()
        assert (ex.labels[n:] != IGNORE).all()
        assert torch.equal(ex.labels[n:], ex.input_ids[n:])
        assert int(ex.labels[-1]) == STOP_ID
        assert processor.decode(ex.input_ids[n:-1]) == ex.answer
        # the prompt ends with the assistant header: the answer is what generation would produce
        assert processor.decode(ex.input_ids[n - 3 : n]) == "<|im_start|>assistant\n"


def test_prompt_is_the_analyzers_prompt(clip_dataset, processor, tight_config, sample_clips):
    """Same tokens as the analyzer's shared video prefix + task continuation on the same decoded clip."""
    b = tight_config.video
    video = processor.load_video(
        str(sample_clips[0]), fps=b.fps, max_frames=b.max_frames, max_pixels=b.max_pixels, min_pixels=b.min_pixels
    )
    segs = segment_video(video.frames, video.timestamps, video.duration_s, tight_config.segmentation)
    chunk = chunk_segments(segs, video.timestamps, b.frames_per_pass)[0]
    for ex in [e for e in clip_dataset.examples if e.video_id == "clip0"]:
        prefix = prompts.prefix_inputs(processor, chunk_video(video, chunk))
        want = prefix["input_ids"][0].tolist() + prompts.continuation_ids(
            processor, tight_config, ex.task, chunk.segments
        )
        assert ex.input_ids[: ex.prompt_len].tolist() == want, ex.key
        assert torch.equal(ex.vision["pixel_values_videos"], prefix["pixel_values_videos"])


def test_answers_are_admitted_by_the_task_grammar(clip_dataset, processor, tight_config):
    import xgrammar as xgr

    book = GrammarBook(tight_config, processor.tokenizer)
    for ex in clip_dataset.examples:
        # the shot count of the example's pass is what the prompt states
        prompt = processor.decode(ex.input_ids[: ex.prompt_len])
        n_segments = int(prompt.split("The video has ")[1].split(" shot")[0])
        matcher = xgr.GrammarMatcher(book.compiled(ex.task, n_segments))
        for t in ex.input_ids[ex.prompt_len :].tolist():
            assert matcher.accept_token(t), f"{ex.key}: token {t} refused in {ex.answer!r}"
        assert matcher.is_terminated(), ex.key
        assert parse_output(ex.answer).ok


def test_corrections_shape_the_answers(clip_dataset):
    by_key = {ex.key: ex for ex in clip_dataset.examples}
    tags = json.loads(by_key["clip1:tags:0"].answer)["tags"]
    labels = [t["label"] for t in tags]
    assert labels[0] == "topic1" and "cat" in labels and "sofa" not in labels
    moderation = parse_output(by_key["clip1:moderation:0"].answer)
    assert moderation.think and [c["category"] for c in moderation.answer["categories"]] == ["drugs"]
    summary = json.loads(by_key["clip2:summary:0"].answer)
    assert summary == {"title": "A cat", "short": "Scene 2 in motion.", "long": "A cat naps on a sofa."}
    assert not clip_dataset.skipped


def test_confirm_makes_the_flag_certain_and_ratings_make_pairs(engine, settings, processor, tight_config, sample_clips):
    with Session(engine) as s:
        aid = store_video(s, "v", sample_clips[1], RECORD)
        confirm = store_feedback(
            s,
            "v",
            "moderation_decision",
            {"analysis_id": aid, "decision": "confirm", "category": "drugs", "note": "pills sold"},
        )
        low = store_feedback(
            s, "v", "summary_rating", {"analysis_id": aid, "rating": 1, "summary": RECORD["summary"]}, 1
        )
        good = store_feedback(
            s,
            "v",
            "summary_rating",
            {
                "analysis_id": aid,
                "rating": 5,
                "summary": {"title": "Bikes", "short": "Bikes race.", "long": "Riders race on a track."},
            },
            2,
        )
        neutral = store_feedback(s, "v", "summary_rating", {"analysis_id": aid, "rating": 3}, 3)
        ds = _build(s, processor, tight_config, settings)
    mod = [e for e in ds.examples if e.task == "moderation"][0]
    parsed = parse_output(mod.answer)
    drugs = [c for c in parsed.answer["categories"] if c["category"] == "drugs"][0]
    assert drugs["confidence"] == 100 and drugs["severity"] == tight_config.thresholds.flag_severity
    assert "pills sold" in parsed.think and mod.event_ids == (confirm,)
    summary = [e for e in ds.examples if e.task == "summary"][0]
    assert (
        json.loads(summary.answer)["short"] == "Bikes race." and summary.weight == 1.0 and summary.event_ids == (good,)
    )
    assert len(ds.pairs) == 1 and ds.pairs[0].chosen is summary
    assert json.loads(ds.pairs[0].rejected.answer)["short"] == "A cat naps." and ds.pairs[0].rejected.event_ids == (
        low,
    )
    assert (
        ds.pairs[0].rejected.input_ids[: ds.pairs[0].rejected.prompt_len].tolist()
        == summary.input_ids[: summary.prompt_len].tolist()
    )
    assert set(ds.skip_reasons()) == {neutral}


def test_unusable_events_are_skipped_with_reasons(engine, settings, processor, tight_config, sample_clips, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    with Session(engine) as s:
        aid = store_video(s, "ok", sample_clips[1], RECORD)
        ok = store_feedback(s, "ok", "summary_edit", {"analysis_id": aid, "text": "Fine."})
        esc = store_feedback(s, "ok", "moderation_decision", {"analysis_id": aid, "decision": "escalate"}, 1)
        eng = store_feedback(s, "ok", "engagement", {"metric": "watch_s", "value": 3.5}, 2)
        store_video(s, "gone", (tmp_path / "deleted.mp4").as_uri(), RECORD)
        gone = store_feedback(s, "gone", "summary_edit", {"text": "x"})
        store_video(s, "broken", broken, RECORD)
        undecodable = store_feedback(s, "broken", "tag_correction", {"add": ["x"]})
        store_video(s, "outside", "file:///etc/hostname", RECORD)
        refused = store_feedback(s, "outside", "summary_edit", {"text": "x"})
        store_video(s, "unanalyzed", sample_clips[1], None)
        unanalyzed = store_feedback(s, "unanalyzed", "summary_edit", {"text": "x"})
        unknown, malformed = "bogus-kind-event", "bad-rating-event"  # stored around the stream's validation
        s.execute(
            sa.insert(FeedbackRow.__table__).values(
                event_id=unknown, video_id="ok", kind="rumour", actor="t", payload={}, at=utcnow(), stored_at=utcnow()
            )
        )
        s.execute(
            sa.insert(FeedbackRow.__table__).values(
                event_id=malformed,
                video_id="ok",
                kind="summary_rating",
                actor="t",
                payload={"rating": "five"},
                at=utcnow(),
                stored_at=utcnow(),
            )
        )
        s.commit()
        ds = _build(s, processor, tight_config, settings)
    reasons = ds.skip_reasons()
    assert [(e.task, e.event_ids) for e in ds.examples] == [("summary", (ok,))]
    assert "escalation" in reasons[esc]
    assert "engagement" in reasons[eng]
    assert "cannot be read" in reasons[gone] and "no such file" in reasons[gone]
    assert "cannot be read" in reasons[undecodable]
    assert "outside the allowed file roots" in reasons[refused]
    assert "no analysis" in reasons[unanalyzed]
    assert "unknown feedback kind 'rumour'" in reasons[unknown]
    assert reasons[malformed].startswith("summary_rating: malformed payload: ValueError")
    assert ok in ds.used and not set(reasons) & ds.used
    assert set(ds.considered) == ds.used | set(reasons)


def test_a_video_analyzed_in_several_passes(engine, settings, processor, sample_clips):
    """One example per pass; moments map to that pass's shots and stay out of passes they are not in;
    a whole-video summary edit has no single-pass answer and is skipped."""
    from analysis import config as C
    from tests.support.training import tight_raw

    cfg = C.parse_config(tight_raw(max_frames=8, frames_per_pass=4))
    bikes = [c for c in sample_clips if c.name == "bikes.mp4"][0]  # 10 s: 8 frames at 1 fps, two passes
    with Session(engine) as s:
        aid = store_video(s, "bikes", bikes, RECORD)
        tags = store_feedback(s, "bikes", "tag_correction", {"analysis_id": aid, "add": ["bike"]})
        store_feedback(s, "bikes", "moderation_decision", {"analysis_id": aid, "decision": "confirm"}, 1)
        edit = store_feedback(s, "bikes", "summary_edit", {"analysis_id": aid, "text": "Bikes."}, 2)
        ds = _build(s, processor, cfg, settings)
    by_key = {e.key: e for e in ds.examples}
    n = len(by_key) // 2
    assert n >= 2 and sorted(by_key) == sorted(f"bikes:{t}:{k}" for t in ("moderation", "tags") for k in range(n))
    assert by_key["bikes:tags:0"].event_ids == (tags,)
    first = {t["label"]: t for t in json.loads(by_key["bikes:tags:0"].answer)["tags"]}
    last = {t["label"]: t for t in json.loads(by_key[f"bikes:tags:{n - 1}"].answer)["tags"]}
    assert first["cat"]["shots"] == [0] and "cat" not in last  # the cat is seen in 0-2 s only
    assert first["bike"]["shots"] == [] and last["bike"]["shots"] == []  # the whole video
    assert by_key["bikes:tags:0"].vision is by_key["bikes:moderation:0"].vision  # one prefix per pass
    assert not torch.equal(
        by_key["bikes:tags:0"].vision["pixel_values_videos"],
        by_key[f"bikes:tags:{n - 1}"].vision["pixel_values_videos"],
    )
    cats = [
        [c["category"] for c in parse_output(by_key[f"bikes:moderation:{k}"].answer).answer["categories"]]
        for k in (0, n - 1)
    ]
    assert cats == [["drugs", "violence"], ["drugs"]]  # both confirmed: severity 2, confidence 100, by name
    assert f"{n} passes" in ds.skip_reasons()[edit]


def test_an_edit_beats_an_earlier_good_rating(engine, settings, processor, tight_config, sample_clips):
    with Session(engine) as s:
        aid = store_video(s, "v", sample_clips[1], RECORD)
        rating = store_feedback(s, "v", "summary_rating", {"analysis_id": aid, "rating": 5})
        edit = store_feedback(s, "v", "summary_edit", {"analysis_id": aid, "field": "title", "text": "Bike race"}, 1)
        bad_field = store_feedback(s, "v", "summary_edit", {"analysis_id": aid, "field": "body", "text": "x"}, 2)
        ds = _build(s, processor, tight_config, settings)
    assert "field must be one of title, short, long" in ds.skip_reasons()[bad_field]
    [summary] = ds.examples
    assert summary.event_ids == (edit,) and json.loads(summary.answer)["title"] == "Bike race"
    assert "superseded by an edit" in ds.skip_reasons()[rating]
    assert set(ds.considered) == ds.used | set(ds.skip_reasons())
