"""Helpers of the training tests (a plain module; the fixtures are in
tests/training/conftest.py): a tight analysis configuration, and writers that store videos, analyses and feedback
the way the worker, the API and the streams app do."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from analysis import config as C

TIGHT_LIMITS = {
    "tags": {"max_items": 3, "text_chars": 12, "max_segments": 2},
    "summary": {"title_chars": 16, "short_chars": 24, "long_chars": 32},
    "moderation": {"max_items": 2, "max_evidence": 1, "text_chars": 12, "think_chars": 40, "analysis_chars": 8},
    "products": {"max_items": 1, "text_chars": 8, "max_attributes": 1, "max_segments": 1},
}


def tight_raw(**video) -> dict:
    raw = json.loads(C.DEFAULT_PATH.read_text())
    raw["version"] = "training-test"
    raw["video"].update(
        {"fps": 1.0, "max_frames": 4, "max_pixels": 12544, "min_pixels": 3136, "frames_per_pass": 4, **video}
    )
    for name, limits in TIGHT_LIMITS.items():
        raw["tasks"][name]["limits"] = dict(limits)
        raw["tasks"][name]["max_new_tokens"] = 100_000
    cfg = C.parse_config(raw)
    from analysis.schemas import max_output_tokens

    for name in TIGHT_LIMITS:
        raw["tasks"][name]["max_new_tokens"] = max_output_tokens(cfg, name)
    return raw


T0 = datetime(2026, 11, 1, tzinfo=UTC)


def store_video(
    session, video_id: str, path: Path | str, record: dict | None = None, model_version: str = "keye-tiny"
) -> str:
    """A video row and (unless record is None) its analysis; returns the analysis id."""
    from service.schemas import AnalysisRecord, Submission, analysis_id_for
    from stores.db import record_submission, write_analysis

    uri = path if isinstance(path, str) else Path(path).resolve().as_uri()
    sub = Submission(video_id=video_id, uri=uri, submitted_at=T0)
    record_submission(session, sub)
    aid = analysis_id_for(video_id, model_version)
    if record is not None:
        body = {
            "analysis_id": aid,
            "video_id": video_id,
            "model_version": model_version,
            "prompt_version": "training-test",
            "duration_s": 10.0,
            "frames_used": 4,
            "embedding_dim": 0,
            "created_at": T0,
            **record,
        }
        write_analysis(session, AnalysisRecord(**body), sub)
    session.commit()
    return aid


def store_feedback(session, video_id: str, kind: str, payload: dict, minutes: int = 0) -> str:
    from service.schemas import FeedbackEvent
    from stores.db import write_feedback

    event = FeedbackEvent(
        event_id=str(uuid.uuid4()),
        video_id=video_id,
        kind=kind,
        actor="tester",
        payload=payload,
        at=T0 + timedelta(minutes=minutes),
    )
    write_feedback(session, event)
    session.commit()
    return event.event_id


RECORD = {
    "tags": [{"label": "cat", "score": 0.9, "start_s": 0.0, "end_s": 2.0}, {"label": "sofa", "score": 0.4}],
    "summary": {"title": "A cat", "short": "A cat naps.", "long": "A cat naps on a sofa."},
    "moderation": {
        "status": "flagged",
        "categories": [
            {
                "category": "violence",
                "severity": 2,
                "confidence": 0.7,
                "evidence": [{"start_s": 0.0, "end_s": 1.0, "reason": "a fight"}],
            },
            {"category": "drugs", "severity": 1, "confidence": 0.5, "evidence": []},
        ],
    },
}


def seed_feedback(session, clips: list[Path]) -> dict[str, str]:
    """Corrections on three real clips (one of each kind that yields an example); event ids by name."""
    ids = {}
    for k, clip in enumerate(clips[:3]):
        vid = f"clip{k}"
        aid = store_video(session, vid, clip, RECORD)
        ids[f"tags{k}"] = store_feedback(
            session, vid, "tag_correction", {"analysis_id": aid, "add": [f"topic{k}"], "remove": ["sofa"]}, 10 * k
        )
        ids[f"clear{k}"] = store_feedback(
            session,
            vid,
            "moderation_decision",
            {"analysis_id": aid, "decision": "clear", "category": "violence"},
            10 * k + 1,
        )
        ids[f"edit{k}"] = store_feedback(
            session, vid, "summary_edit", {"analysis_id": aid, "text": f"Scene {k} in motion."}, 10 * k + 2
        )
    return ids
