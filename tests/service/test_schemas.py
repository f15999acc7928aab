"""Message schemas: one serialization, versioned, strict where it matters."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from service.schemas import (
    SCHEMA_VERSION,
    AnalysisRecord,
    DeadLetter,
    FeedbackEvent,
    FlagMessage,
    SchemaError,
    Submission,
    WorkItem,
    analysis_id_for,
    check_feedback,
    decode,
    encode,
    video_id_hint,
)

AT = datetime(2026, 5, 1, 12, 30, tzinfo=UTC)


def test_submission_roundtrip_and_version() -> None:
    s = Submission(video_id="vid-1", uri="https://example.com/a.mp4", hashtags=["cats"], submitted_at=AT)
    raw = encode(s)
    assert json.loads(raw)["schema_version"] == SCHEMA_VERSION
    assert decode(Submission, raw) == s
    w = WorkItem(**s.model_dump(), accepted_at=AT)
    assert decode(WorkItem, encode(w)).accepted_at == AT
    # a work item is also a valid submission (extra fields are ignored), not the reverse
    assert decode(Submission, encode(w)).video_id == "vid-1"
    with pytest.raises(SchemaError, match="accepted_at"):
        decode(WorkItem, raw)


@pytest.mark.parametrize(
    "bad, reason",
    [
        (b"{not json", "Invalid JSON"),
        (json.dumps({"video_id": "v", "uri": "ftp://x/y", "submitted_at": "2026-01-01T00:00:00Z"}), "uri must start"),
        (json.dumps({"video_id": "../etc", "uri": "file:///a", "submitted_at": "2026-01-01T00:00:00Z"}), "video_id"),
        (json.dumps({"video_id": "v", "uri": "file:///a"}), "submitted_at"),
        (
            json.dumps(
                {"schema_version": 99, "video_id": "v", "uri": "file:///a", "submitted_at": "2026-01-01T00:00:00Z"}
            ),
            "schema_version 99 is not supported",
        ),
        (None, "no value"),
    ],
)
def test_bad_submissions_raise_schema_error_with_reason(bad, reason: str) -> None:
    with pytest.raises(SchemaError, match=reason):
        decode(Submission, bad)


def test_analysis_ids_are_deterministic_per_video_and_model() -> None:
    a = analysis_id_for("v1", "m1")
    assert a == analysis_id_for("v1", "m1") and uuid.UUID(a).version == 5
    assert len({a, analysis_id_for("v1", "m2"), analysis_id_for("v2", "m1")}) == 3


def test_flag_message_from_record_takes_max_severity_and_all_evidence() -> None:
    r = AnalysisRecord.model_validate(
        {
            "analysis_id": analysis_id_for("v", "m"),
            "video_id": "v",
            "model_version": "m",
            "prompt_version": "p",
            "duration_s": 3.0,
            "frames_used": 4,
            "embedding_dim": 0,
            "created_at": AT.isoformat(),
            "moderation": {
                "status": "flagged",
                "categories": [
                    {
                        "category": "violence",
                        "severity": 1,
                        "confidence": 0.5,
                        "evidence": [{"start_s": 0, "end_s": 1, "reason": "a"}],
                    },
                    {
                        "category": "weapons",
                        "severity": 3,
                        "confidence": 0.9,
                        "evidence": [{"start_s": 2, "end_s": 3, "reason": "b"}],
                    },
                ],
            },
        }
    )
    f = FlagMessage.from_record(r)
    assert f.max_severity == 3 and [e.reason for e in f.evidence] == ["a", "b"]
    assert decode(FlagMessage, encode(f)) == f


@pytest.mark.parametrize(
    "kind, payload, ok",
    [
        ("moderation_decision", {"decision": "confirm", "category": "violence"}, True),
        ("moderation_decision", {"decision": "maybe"}, False),
        ("moderation_decision", {"decision": "clear", "category": "not-a-category"}, False),
        ("tag_correction", {"add": ["dog"], "remove": ["cat"]}, True),
        ("tag_correction", {}, False),
        ("summary_rating", {"rating": 5}, True),
        ("summary_rating", {"rating": True}, False),
        ("summary_rating", {"rating": 0}, False),
        ("summary_edit", {"text": "better"}, True),
        ("summary_edit", {"text": "  "}, False),
        ("engagement", {"metric": "watch_s", "value": 3.5}, True),
        ("engagement", {"metric": "watch_s", "value": "3"}, False),
    ],
)
def test_feedback_kind_rules(kind: str, payload: dict, ok: bool) -> None:
    e = FeedbackEvent(event_id="e1", video_id="v", kind=kind, actor="a", payload=payload, at=AT)
    if ok:
        assert check_feedback(e) is e
    else:
        with pytest.raises(SchemaError, match=kind):
            check_feedback(e)


def test_dead_letter_keeps_the_original_message() -> None:
    d = DeadLetter.of(b'{"video_id": "v"}', SchemaError("bad uri"), stage="streams.gate")
    assert d.original == {"video_id": "v"} and d.error_type == "SchemaError" and d.error == "bad uri"
    assert DeadLetter.of(b"\xff garbage", ValueError("x"), stage="s").original == "\ufffd garbage"
    assert video_id_hint(b'{"video_id": "v9", "uri": 3}') == "v9"
    assert video_id_hint(b"[1, 2]") is None and video_id_hint(b"nope") is None
