"""Helpers shared by the API tests (plain functions; fixtures live in conftest.py)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from keye.schemas import AnalysisRecord, CategoryFlag, Evidence, Moderation, Summary, TagScore, analysis_id_for

MODEL_VERSION = "keye-tiny"


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def make_record(video_id: str, *, severity: int = 0, categories: tuple[str, ...] = (), status: str | None = None,
                tags: tuple[str, ...] = ("cat",), summary: str = "a short clip", language: str = "en",
                creator_id: str = "creator-1", duration_s: float = 4.0, age_s: float = 60.0,
                embedding: list[float] | None = None, model_version: str = MODEL_VERSION) -> AnalysisRecord:
    flags = [CategoryFlag(category=c, severity=severity, confidence=0.9,
                          evidence=[Evidence(start_s=0.5 + i, end_s=1.5 + i, reason=f"{c} visible")])
             for i, c in enumerate(categories)]
    status = status or ("flagged" if flags else "clear")
    return AnalysisRecord(
        analysis_id=analysis_id_for(video_id, model_version), video_id=video_id, model_version=model_version,
        prompt_version="p1", duration_s=duration_s, frames_used=8,
        tags=[TagScore(label=t, score=0.8) for t in tags],
        summary=Summary(short=summary, long=summary + " (long)", title=summary.title()),
        moderation=Moderation(status=status, categories=flags, reasoning=f"reasoning for {video_id}"),
        embedding_dim=len(embedding or []), created_at=datetime.now(timezone.utc) - timedelta(seconds=age_s),
        creator_id=creator_id, language=language, embedding=embedding)


def random_vector(dim: int, rng: random.Random) -> list[float]:
    return [rng.gauss(0.0, 1.0) for _ in range(dim)]
