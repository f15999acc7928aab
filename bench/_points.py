"""The synthetic points of the vector benchmarks (bench/api.py, bench/vectors.py): one payload rule
and one filter, so both measure the same selectivity (tags cat or dog and language en, ~15%)."""

from __future__ import annotations

from datetime import datetime, timedelta

TAGS = ["cat", "dog", "car", "food", "music", "sport", "travel", "game"]
LANGS = ["en", "fr", "de"]
VERSION = "keye-tiny"
FILTERS = {"tags": ["cat", "dog"], "language": ["en"]}


def payload(i: int, now: datetime, digits: int = 6) -> dict:
    return {
        "video_id": f"bench-{i:0{digits}d}",
        "model_version": VERSION,
        "tags": [TAGS[i % 8], TAGS[(i // 8) % 8]],
        "language": LANGS[i % 3],
        "creator_id": f"c{i % 100}",
        "duration_s": float(5 + i % 50),
        "moderation_status": "clear",
        "max_severity": 0,
        "created_at": (now - timedelta(minutes=i)).isoformat(),
    }


def bench_filter():
    """FILTERS and this version, as a qdrant-client Filter."""
    from qdrant_client import models

    return models.Filter(
        must=[models.FieldCondition(key="model_version", match=models.MatchValue(value=VERSION))]
        + [models.FieldCondition(key=k, match=models.MatchAny(any=v)) for k, v in FILTERS.items()]
    )
