"""labels.jsonl follows the record schema and the contract with `keye eval`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from corpus import concepts as C
from corpus.labels import GroundTruth, load_corpus_info, load_labels, write_labels
from service.schemas import AnalysisRecord, analysis_id_for

CONFIG = json.loads((Path(__file__).parents[2] / "analysis/default_config.json").read_text())
LIMITS = CONFIG["tasks"]["summary"]["limits"]


def test_ground_truth_is_the_records_own_shape(small_corpus) -> None:
    assert set(GroundTruth.model_fields) <= set(AnalysisRecord.model_fields)
    _, clips = small_corpus
    for c in clips:
        record = AnalysisRecord(
            analysis_id=analysis_id_for(c.video_id, "truth"),
            video_id=c.video_id,
            model_version="truth",
            prompt_version="truth",
            duration_s=c.duration_s,
            frames_used=0,
            embedding_dim=0,
            created_at=datetime.now(UTC),
            **c.record.model_dump(),
        )
        assert record.tags == c.record.tags and record.moderation == c.record.moderation


def test_labels_are_consistent_with_the_clip(small_corpus) -> None:
    out, clips = small_corpus
    assert load_labels(out) == clips
    info = load_corpus_info(out)
    assert (info["seed"], info["split"], info["counts"]["clips"]) == (1000, "test", len(clips))
    assert set(info["sha256"]) == {c.video_id for c in clips}
    for c in clips:
        assert (out / c.file).is_file() and c.video_id.startswith("test-s1000-") and c.split == "test"
        assert c.shots[0].start_s == 0 and c.shots[-1].end_s == c.duration_s and c.shots[0].transition_in is None
        assert all(a.end_s == b.start_s and b.transition_in in ("cut", "fade") for a, b in zip(c.shots, c.shots[1:]))
        assert all(a.scene != b.scene for a, b in zip(c.shots, c.shots[1:]))
        bounds = {s.start_s for s in c.shots} | {c.duration_s}
        for t in c.record.tags:
            assert t.label in C.TAGS and t.score == 1.0 and t.start_s in bounds and t.end_s in bounds
        assert [f.t_s for f in c.facts] == sorted(f.t_s for f in c.facts)
        mentioned = {o for f in c.facts for o in f.objects}
        assert {t.label for t in c.record.tags if t.label in C.OBJECTS} <= mentioned
        s = c.record.summary
        assert 0 < len(s.title) <= LIMITS["title_chars"] and 0 < len(s.short) <= LIMITS["short_chars"]
        assert 0 < len(s.long) <= LIMITS["long_chars"] and c.caption
        m = c.record.moderation
        assert (m.status == "clear") == (not m.categories)
        for flag in m.categories:
            assert flag.category in C.MODERATION and flag.category in CONFIG["moderation_categories"]
            assert flag.severity in (2, 3) and flag.evidence
            assert all(e.start_s in bounds and e.end_s in bounds and e.reason for e in flag.evidence)
        for p in c.record.products:
            assert p["category"] in CONFIG["product_categories"] and C.OBJECTS[p["name"]] == p["category"]
            assert p["attributes"]["colour"] in C.COLOURS and p["start_s"] < p["end_s"]
            assert p["name"] in mentioned
    assert sum(c.record.moderation.status == "clear" for c in clips) > len(clips) / 2


def test_a_bad_line_names_its_file_and_line(tmp_path: Path, small_corpus) -> None:
    _, clips = small_corpus
    write_labels(tmp_path, clips[:2])
    with (tmp_path / "labels.jsonl").open("a") as f:
        f.write('{"video_id": "x"}\n')
    with pytest.raises(ValueError, match=r"labels.jsonl:3"):
        load_labels(tmp_path)
