"""Product routes: status, analysis, summary, feedback, and synchronous clip summaries on the
workers' analysis path (with SSRF-safe fetching by URI)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from api.app import create_app
from api.keys import create_key
from api.tables import Outbox
from service.schemas import FeedbackEvent, TagScore, decode, utcnow
from stores.db import ModelVersion, Tag, write_analysis
from tests.support.api import auth


def test_status_analysis_and_summary(client: TestClient, session: Session, keys, seed) -> None:
    r = seed("p1", tags=("cat", "piano"), summary="a cat plays the piano")
    timed = r.model_copy(
        update={
            "tags": [
                TagScore(label="jump", score=0.9, start_s=2.0, end_s=2.5),
                TagScore(label="piano", score=0.8, start_s=0.5, end_s=1.0),
                TagScore(label="piano", score=0.7, start_s=3.0, end_s=3.5),
            ]
        }
    )
    write_analysis(session, timed)
    session.commit()
    h = auth(keys["product"])
    status = client.get("/v1/videos/p1", headers=h).json()
    assert status["status"] == "analyzed" and [a["analysis_id"] for a in status["analyses"]] == [r.analysis_id]
    analysis = client.get("/v1/videos/p1/analysis", headers=h).json()
    assert analysis["summary"]["long"] == "a cat plays the piano (long)" and "embedding" not in analysis
    summary = client.get("/v1/videos/p1/summary", headers=h).json()
    assert summary["title"] == "A Cat Plays The Piano" and summary["tags"] == ["jump", "piano"]
    assert [(m["start_s"], m["label"]) for m in summary["key_moments"]] == [
        (0.5, "piano"),
        (2.0, "jump"),
        (3.0, "piano"),
    ]
    assert client.get("/v1/videos/p1/summary", params={"model_version": "other"}, headers=h).status_code == 404


def test_active_model_version_is_preferred(client: TestClient, session: Session, keys, seed) -> None:
    seed("p2", summary="old words", model_version="keye-old", age_s=10)
    seed("p2", summary="new words", age_s=100)
    h = auth(keys["product"])
    assert client.get("/v1/videos/p2/summary", headers=h).json()["short"] == "new words"  # configured model
    session.add(
        ModelVersion(version="keye-old", path="/m/old", status="active", created_at=utcnow(), promoted_at=utcnow())
    )
    session.commit()
    assert client.get("/v1/videos/p2/summary", headers=h).json()["short"] == "old words"
    models = client.get("/v1/admin/models", headers=auth(keys["admin"])).json()
    assert models["active"] == "keye-old" and [m["version"] for m in models["versions"]] == ["keye-old"]


def test_tag_corrections_and_ratings_are_applied_and_published(
    client: TestClient, session: Session, keys, seed
) -> None:
    r = seed("p3", tags=("cat", "dog"))
    resp = client.post(
        "/v1/videos/p3/tag-corrections",
        json={"add": ["Kitten"], "remove": ["dog"], "note": "no dog"},
        headers=auth(keys["moderator"]),
    )
    assert resp.status_code == 202, resp.text
    session.expire_all()
    assert {t.label for t in session.exec(select(Tag).where(Tag.analysis_id == r.analysis_id))} == {"cat", "kitten"}
    assert client.get("/v1/videos/p3/summary", headers=auth(keys["product"])).json()["tags"] == ["cat", "kitten"]
    rating = client.post(
        "/v1/videos/p3/summary-ratings", json={"rating": 2, "comment": "vague"}, headers=auth(keys["product"])
    )
    assert rating.status_code == 202
    events = [decode(FeedbackEvent, m.value) for m in session.exec(select(Outbox).order_by(Outbox.id))]
    assert [(e.kind, e.actor) for e in events] == [("tag_correction", "moderator-1"), ("summary_rating", "product-1")]
    assert events[0].payload["add"] == ["kitten"] and events[1].payload["rating"] == 2
    assert (
        client.post("/v1/videos/p3/summary-ratings", json={"rating": 6}, headers=auth(keys["product"])).status_code
        == 422
    )


def test_trends_read_the_stream_tables(client: TestClient, session: Session, keys) -> None:
    from datetime import timedelta

    from stores.db import CreatorFlagRate, TagTrend

    now = utcnow().replace(minute=0, second=0, microsecond=0)
    for start, label, n in [(now - timedelta(hours=1), "old", 50), (now, "cat", 7), (now, "dog", 9), (now, "car", 1)]:
        session.add(TagTrend(window="hour", window_start=start, label=label, count=n, updated_at=now))
    session.add(CreatorFlagRate(creator_id="a", analyzed=10, flagged=5, rate=0.5, updated_at=now))
    session.add(CreatorFlagRate(creator_id="b", analyzed=2, flagged=2, rate=1.0, updated_at=now))
    session.commit()
    h = auth(keys["recommender"])
    tags = client.get("/v1/trends/tags", params={"limit": 2}, headers=h).json()
    assert [(t["label"], t["count"]) for t in tags["tags"]] == [("dog", 9), ("cat", 7)]
    rates = client.get("/v1/trends/creators", params={"min_analyzed": 5}, headers=h).json()
    assert [r["creator_id"] for r in rates] == ["a"]


# ---- synchronous clip summaries ------------------------------------------------------------------------


@pytest.fixture
def redirector() -> Iterator[str]:
    """A local HTTP server that redirects to what the path names (the attacker's hop)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            targets = {"/meta": "http://169.254.169.254/latest/meta-data/", "/file": "file:///etc/passwd"}
            self.send_response(302)
            self.send_header("Location", targets.get(self.path, "http://10.0.0.1/"))
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_redirects_to_forbidden_targets_are_refused(api_settings, redirector: str, tmp_path) -> None:
    # Loopback is allowed here (the redirector runs on it); link-local and file:// never are.
    settings = api_settings.model_copy(update={"allow_private_addresses": True, "data_dir": tmp_path / "priv"})
    app = create_app(settings)
    with TestClient(app) as c:
        with Session(app.state.services.engine) as s:
            key = create_key(s, ["product"])[1]
        meta = c.post("/v1/summaries/by-uri", json={"uri": redirector + "/meta"}, headers=auth(key))
        assert meta.status_code == 422 and meta.json()["type"] == "urn:keye:problem:unsafe-uri"
        assert "169.254.169.254" in meta.json()["detail"]
        to_file = c.post("/v1/summaries/by-uri", json={"uri": redirector + "/file"}, headers=auth(key))
        assert to_file.status_code == 422 and "unsupported scheme" in to_file.json()["detail"]
    app.state.services.engine.dispose()


def test_clip_limits_are_checked_before_the_model(client: TestClient, keys, sample_clips, app) -> None:
    h = {**auth(keys["product"]), "Content-Type": "video/mp4"}
    app.state.services.max_clip_seconds = 1.0
    long_clip = client.post("/v1/summaries", content=sample_clips[1].read_bytes(), headers=h)
    assert long_clip.status_code == 422 and "at most 1s" in long_clip.json()["detail"]
    assert app.state.services.analyzer is None  # refused before any model work
    junk = client.post("/v1/summaries", content=b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100, headers=h)
    assert junk.status_code == 415 and junk.json()["type"] == "urn:keye:problem:unsupported-media"


@pytest.mark.slow
def test_clip_summary_runs_the_workers_analysis(client: TestClient, keys, sample_clips) -> None:
    clip = next(p for p in sample_clips if p.name == "carphone_distorted.mp4")
    resp = client.post(
        "/v1/summaries", content=clip.read_bytes(), headers={**auth(keys["product"]), "Content-Type": "video/mp4"}
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model_version"] == "keye-tiny" and body["video_id"].startswith("clip-")
    assert isinstance(body["short"], str) and body["short"].strip()
