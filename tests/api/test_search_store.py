"""Search through the API on the embedded vector store: it follows writes made after the first
search (a moderation decision's payload edit, a re-analysis, a deleted point), and it serves the
same answers with the SQL side on PostgreSQL."""

from __future__ import annotations

import random

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from api.app import create_app
from api.keys import create_key
from service.schemas import Submission
from stores.db import write_analysis
from stores.vectors import VectorStore
from tests.support.api import auth, make_record, random_vector

DIM = 16


def _cos_ranking(q, records) -> list[str]:
    q = np.asarray(q) / np.linalg.norm(q)
    return [
        r.video_id
        for r in sorted(records, key=lambda r: -float(q @ np.asarray(r.embedding) / np.linalg.norm(r.embedding)))
    ]


def _ids(client: TestClient, key: str, body: dict) -> list[str]:
    res = client.post("/v1/search", json=body, headers=auth(key))
    assert res.status_code == 200, res.text
    return [h["video_id"] for h in res.json()["hits"]]


def test_search_follows_writes_after_the_first_search(client: TestClient, keys, seed, app) -> None:
    rng = random.Random(11)
    records = [seed(f"m{i}", embedding=random_vector(DIM, rng)) for i in range(8)]
    store: VectorStore = app.state.services.vectors
    key, q = keys["recommender"], random_vector(DIM, rng)
    assert _ids(client, key, {"vector": q, "limit": 20}) == _cos_ranking(q, records)

    # A decision's payload edit, written the way api/cases.py writes it.
    store.set_payload([records[2].analysis_id, records[5].analysis_id], {"moderation_status": "flagged"})
    flagged = _ids(client, key, {"vector": q, "limit": 20, "filters": {"moderation_status": ["flagged"]}})
    assert sorted(flagged) == ["m2", "m5"]

    # A re-analysis overwrites its point (same id): the new vector is the one searched.
    records[0] = seed("m0", embedding=q, tags=("dog",))
    assert _ids(client, key, {"vector": q, "limit": 1}) == ["m0"]
    assert _ids(client, key, {"vector": q, "limit": 20, "filters": {"tags": ["dog"]}}) == ["m0"]

    store.delete([records[1].analysis_id])
    assert _ids(client, key, {"vector": q, "limit": 20}) == _cos_ranking(q, records[:1] + records[2:])
    missing = client.post("/v1/search", json={"video_id": "m1"}, headers=auth(key))
    assert missing.status_code == 404


@pytest.mark.postgres
def test_search_with_postgresql_matches_the_cosine_ranking(
    api_settings, pg_database, text_embedder, sample_clips
) -> None:
    store = VectorStore(path=api_settings.resolved_qdrant_path)
    app = create_app(
        api_settings.model_copy(update={"database_url": pg_database}), vectors=store, embedder=text_embedder
    )
    rng = random.Random(5)
    try:
        with Session(app.state.services.engine) as s:
            key = create_key(s, ["recommender"], name="rec")[1]
            records = [
                make_record(f"p{i}", embedding=random_vector(DIM, rng), language=["en", "fr"][i % 2]) for i in range(10)
            ]
            for r in records:
                write_analysis(
                    s,
                    r,
                    Submission(video_id=r.video_id, uri=sample_clips[0].resolve().as_uri(), submitted_at=r.created_at),
                )
            s.commit()
        store.upsert(records)
        with TestClient(app) as client:
            q = random_vector(DIM, rng)
            assert _ids(client, key, {"vector": q, "limit": 20}) == _cos_ranking(q, records)
            french = [r for r in records if r.language == "fr"]
            assert _ids(client, key, {"vector": q, "limit": 20, "filters": {"language": ["fr"]}}) == _cos_ranking(
                q, french
            )
            near = _ids(client, key, {"video_id": "p3", "limit": 3})
            assert near == [v for v in _cos_ranking(records[3].embedding, records) if v != "p3"][:3]
    finally:
        store.close()
        app.state.services.engine.dispose()
