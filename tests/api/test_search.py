"""Search: filters return only matching payloads, pagination and thresholds hold, and text queries
are embedded by the model into the space of the stored vectors."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.support.api import auth, random_vector

DIM = 16


def _cos(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture
def corpus(seed):
    rng = random.Random(7)
    records = []
    for i in range(14):
        records.append(
            seed(
                f"v{i:02d}",
                embedding=random_vector(DIM, rng),
                tags=(["cat", "dog", "car"][i % 3], "clip"),
                language=["en", "fr"][i % 2],
                creator_id=f"c{i % 4}",
                duration_s=float(2 + i),
                age_s=3600.0 * i,
                severity=i % 4,
                categories=("violence",) if i % 4 else (),
            )
        )
    seed("old-model", embedding=random_vector(DIM, rng), model_version="keye-old")
    return records


FILTERS = [
    {"tags": ["cat"]},
    {"tags": ["cat", "car"], "language": ["fr"]},
    {"creator_id": ["c1", "c2"]},
    {"moderation_status": ["clear"]},
    {"max_severity": 1},
    {"min_duration_s": 5, "max_duration_s": 9},
    {"language": ["en"], "moderation_status": ["flagged"], "max_severity": 2},
]


def _matches(r, f: dict, now: datetime) -> bool:
    p = {
        "tags": [t.label for t in r.tags],
        "language": r.language,
        "creator_id": r.creator_id,
        "moderation_status": r.moderation.status,
    }
    if any(
        k in f and not (set(f[k]) & set(p[k] if isinstance(p[k], list) else [p[k]]))
        for k in ("tags", "language", "creator_id", "moderation_status")
    ):
        return False
    if "max_severity" in f and r.moderation.max_severity > f["max_severity"]:
        return False
    if "min_duration_s" in f and not f["min_duration_s"] <= r.duration_s <= f["max_duration_s"]:
        return False
    return True


@pytest.mark.parametrize("flt", FILTERS, ids=[",".join(f) for f in FILTERS])
def test_filters_return_only_matching_videos(client: TestClient, keys, corpus, flt) -> None:
    now = datetime.now(UTC)
    q = random_vector(DIM, random.Random(1))
    res = client.post(
        "/v1/search", json={"vector": q, "filters": flt, "limit": 100}, headers=auth(keys["recommender"])
    ).json()
    expected = {r.video_id for r in corpus if _matches(r, flt, now)}
    assert expected, "the filter should match something in the corpus"
    assert {h["video_id"] for h in res["hits"]} == expected
    assert res["model_version"] == "keye-tiny"
    scores = [h["score"] for h in res["hits"]]
    assert scores == sorted(scores, reverse=True)
    by_id = {r.video_id: r for r in corpus}
    for h in res["hits"]:
        assert h["score"] == pytest.approx(_cos(q, by_id[h["video_id"]].embedding), abs=1e-5)


def test_date_range_pagination_threshold_and_model_version(client: TestClient, keys, corpus) -> None:
    h = auth(keys["recommender"])
    now = datetime.now(UTC)
    q = random_vector(DIM, random.Random(2))
    recent = client.post(
        "/v1/search",
        json={
            "vector": q,
            "limit": 100,
            "filters": {"created_after": (now - timedelta(hours=4.5)).isoformat(), "created_before": now.isoformat()},
        },
        headers=h,
    ).json()
    assert {x["video_id"] for x in recent["hits"]} == {"v00", "v01", "v02", "v03", "v04"}

    full = [
        x["video_id"] for x in client.post("/v1/search", json={"vector": q, "limit": 100}, headers=h).json()["hits"]
    ]
    assert len(full) == 14 and "old-model" not in full
    pages = [
        x["video_id"]
        for off in (0, 5, 10)
        for x in client.post("/v1/search", json={"vector": q, "limit": 5, "offset": off}, headers=h).json()["hits"]
    ]
    assert pages == full

    expected = {r.video_id for r in corpus if _cos(q, r.embedding) >= 0.2}
    above = client.post("/v1/search", json={"vector": q, "limit": 100, "score_threshold": 0.2}, headers=h).json()
    assert {x["video_id"] for x in above["hits"]} == expected

    old = client.post("/v1/search", json={"vector": q, "model_version": "keye-old"}, headers=h).json()
    assert [x["video_id"] for x in old["hits"]] == ["old-model"] and old["model_version"] == "keye-old"


def test_nearest_to_a_video_excludes_it(client: TestClient, keys, corpus) -> None:
    h = auth(keys["recommender"])
    res = client.post("/v1/search", json={"video_id": "v03", "limit": 3}, headers=h).json()
    ranked = sorted((r for r in corpus if r.video_id != "v03"), key=lambda r: -_cos(corpus[3].embedding, r.embedding))
    assert [x["video_id"] for x in res["hits"]] == [r.video_id for r in ranked[:3]]
    missing = client.post("/v1/search", json={"video_id": "nope"}, headers=h)
    assert missing.status_code == 404 and missing.json()["type"] == "urn:keye:problem:not-found"


def test_bad_queries_are_clear_problems(client: TestClient, keys, corpus) -> None:
    h = auth(keys["recommender"])
    wrong_dim = client.post("/v1/search", json={"vector": [0.1] * (DIM + 1)}, headers=h)
    assert wrong_dim.status_code == 422 and f"{DIM}-dimensional" in wrong_dim.json()["detail"]
    two = client.post("/v1/search", json={"vector": [0.1] * DIM, "text": "cat"}, headers=h)
    assert two.status_code == 422 and "exactly one" in two.json()["detail"]
    batch = client.post(
        "/v1/search/batch", json={"queries": [{"video_id": "v01", "limit": 2}, {"vector": [1.0, 2.0]}]}, headers=h
    ).json()
    assert len(batch["results"][0]["result"]["hits"]) == 2
    assert batch["results"][1]["error"]["status"] == 422 and "query 1" in batch["results"][1]["error"]["detail"]


def test_search_bodies_parse_like_every_other_json_body(client: TestClient, keys, corpus) -> None:
    """/v1/search parses JSON with pydantic-core, falling back to json.loads: malformed JSON is the
    same problem as on a route parsed by FastAPI, and a body only json.loads accepts still works."""
    h = {**auth(keys["recommender"]), "Content-Type": "application/json"}
    admin = {**auth(keys["admin"]), "Content-Type": "application/json"}
    broken = client.post("/v1/search", content=b'{"vector": [0.1,', headers=h)
    reference = client.post("/v1/admin/keys", content=b'{"name": "x",', headers=admin)
    assert broken.status_code == reference.status_code == 422
    assert broken.json()["type"] == reference.json()["type"]
    vector = ", ".join(["0.1"] * DIM)
    bom = client.post(
        "/v1/search", content=b"\xef\xbb\xbf" + f'{{"vector": [{vector}], "limit": 3}}'.encode(), headers=h
    )
    plain = client.post("/v1/search", content=f'{{"vector": [{vector}], "limit": 3}}'.encode(), headers=h)
    assert bom.status_code == plain.status_code == 200 and bom.json() == plain.json()
    nan = client.post("/v1/search", content=b'{"vector": [NaN' + b", 0.1" * (DIM - 1) + b"]}", headers=h)
    assert nan.status_code == 422


def test_text_query_uses_the_models_text_embedding(client: TestClient, keys, seed, text_embedder) -> None:
    summaries = [
        "a cat plays the piano",
        "surfing a huge wave at sunset",
        "street food in Bangkok at night",
        "how to change a bicycle tire",
    ]
    # The vectors of these videos are the model's embedding of their analyses' text.
    stored = {f"t{i}": text_embedder.embed_text(s) for i, s in enumerate(summaries)}
    for vid, s in zip(stored, summaries):
        seed(vid, summary=s, embedding=stored[vid])
    res = client.post("/v1/search", json={"text": summaries[2], "limit": 4}, headers=auth(keys["recommender"])).json()
    assert res["model_version"] == text_embedder.version
    assert res["hits"][0]["video_id"] == "t2" and res["hits"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    query = text_embedder.embed_text(summaries[2])
    assert [x["video_id"] for x in res["hits"]] == sorted(stored, key=lambda v: -_cos(query, stored[v]))
    for x in res["hits"]:
        assert x["score"] == pytest.approx(_cos(query, stored[x["video_id"]]), abs=1e-4)


def test_text_queries_use_the_model_of_the_version_searched(tmp_path) -> None:
    """After a promotion the active version's checkpoint embeds text queries, not KEYE_MODEL's."""
    import torch

    import keye_model
    from api.embedder import KeyeTextEmbedder
    from service.settings import Settings

    tuned = keye_model.load("keye-tiny")
    with torch.no_grad():
        tuned.model.norm.weight.mul_(-1.0)  # the pooled text vector flips sign
    tuned.save_pretrained(tmp_path / "ft-run1")
    embedder = KeyeTextEmbedder(Settings(model="keye-tiny"))
    base = torch.tensor(embedder.embed_text("cats playing piano"))
    assert embedder.version == "keye-tiny"
    promoted = torch.tensor(embedder.embed_text("cats playing piano", model=("ft-run1", str(tmp_path / "ft-run1"))))
    assert embedder.version == "ft-run1"
    assert torch.allclose(promoted, -base, atol=1e-5)
