"""An analysis record as the workers write it, for the stores tests and the workers tests that store one."""

from __future__ import annotations

from datetime import UTC, datetime

from service.schemas import AnalysisRecord, analysis_id_for

AT = datetime(2026, 5, 1, 12, 30, tzinfo=UTC)


def record(
    video_id: str = "v1", model: str = "m1", tags=("cat", "dog"), severity: int | None = 2, embedding=(1.0, 0.0, 0.0)
) -> AnalysisRecord:
    cats = (
        []
        if severity is None
        else [
            {
                "category": "violence",
                "severity": severity,
                "confidence": 0.8,
                "evidence": [{"start_s": 1.0, "end_s": 2.0, "reason": "punch"}],
            }
        ]
    )
    return AnalysisRecord.model_validate(
        {
            "analysis_id": analysis_id_for(video_id, model),
            "video_id": video_id,
            "model_version": model,
            "prompt_version": "p1",
            "duration_s": 5.0,
            "frames_used": 8,
            "embedding_dim": len(embedding),
            "tags": [{"label": t, "score": 0.9} for t in tags],
            "summary": {"short": "a cat", "long": "", "title": "t"},
            "moderation": {"status": "flagged" if cats else "clear", "categories": cats},
            "created_at": AT.isoformat(),
            "creator_id": "c1",
            "language": "en",
            "embedding": list(embedding),
        }
    )
