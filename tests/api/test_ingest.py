"""Ingest: by URI and by streamed upload, idempotent by video_id, refusing oversized, non-video and
unsafe (SSRF) submissions with clear problems."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from api.tables import Outbox
from service.schemas import Submission, decode
from stores.db import Video
from tests.support.api import auth


def _outbox(session: Session, topic: str = "videos.ingest") -> list[Outbox]:
    session.expire_all()
    return list(session.exec(select(Outbox).where(Outbox.topic == topic)))


def test_submit_by_uri_is_accepted_once(client: TestClient, session: Session, keys, sample_clips) -> None:
    h = auth(keys["ingest"])
    uri = sample_clips[1].resolve().as_uri()
    body = {
        "uri": uri,
        "video_id": "vid-1",
        "title": "Bikes",
        "hashtags": ["#bike"],
        "creator_id": "c9",
        "language": "en",
    }
    first = client.post("/v1/videos", json=body, headers=h)
    assert first.status_code == 202, first.text
    assert first.json()["video_id"] == "vid-1" and first.json()["duplicate"] is False
    assert first.headers["location"] == "/v1/videos/vid-1"
    again = client.post("/v1/videos", json=body, headers=h)
    assert again.status_code == 202 and again.json()["duplicate"] is True
    (msg,) = _outbox(session)
    sub = decode(Submission, msg.value)
    assert (msg.key, sub.video_id, sub.uri, sub.creator_id, sub.hashtags) == ("vid-1", "vid-1", uri, "c9", ["#bike"])
    assert session.get(Video, "vid-1").status == "queued"
    status = client.get("/v1/videos/vid-1", headers=auth(keys["product"])).json()
    assert status["status"] == "queued" and status["analyses"] == []

    derived = client.post("/v1/videos", json={"uri": sample_clips[2].resolve().as_uri()}, headers=h).json()
    assert derived["video_id"].startswith("v-")


@pytest.mark.parametrize(
    "uri, words",
    [
        ("http://127.0.0.1:8080/v.mp4", "loopback"),
        ("http://10.1.2.3/v.mp4", "private"),
        ("http://192.168.0.10/v.mp4", "private"),
        ("http://[::1]/v.mp4", "::1"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://0.0.0.0/v.mp4", "unspecified"),
        ("http://localhost/v.mp4", "loopback"),
        ("https://user:pw@example.com/v.mp4", "credentials"),
        ("file:///etc/passwd", "outside the allowed file roots"),
        ("gopher://example.com/x", "scheme"),
    ],
)
def test_unsafe_uris_are_refused(client: TestClient, session: Session, keys, uri: str, words: str) -> None:
    resp = client.post("/v1/videos", json={"uri": uri, "video_id": "bad-1"}, headers=auth(keys["ingest"]))
    assert resp.status_code == 422, resp.text
    problem = resp.json()
    assert problem["type"] in ("urn:keye:problem:unsafe-uri", "urn:keye:problem:invalid-request")
    assert words in problem["detail"]
    assert _outbox(session) == [] and session.get(Video, "bad-1") is None


def test_symlink_out_of_the_roots_is_refused(client: TestClient, keys, api_settings) -> None:
    media = api_settings.file_roots[1]
    media.mkdir(parents=True, exist_ok=True)
    (media / "escape.mp4").symlink_to("/etc/hostname")
    resp = client.post("/v1/videos", json={"uri": (media / "escape.mp4").as_uri()}, headers=auth(keys["ingest"]))
    assert resp.status_code == 422 and resp.json()["type"] == "urn:keye:problem:unsafe-uri"


def test_upload_streams_to_storage_and_publishes(client: TestClient, session: Session, keys, sample_clips, app) -> None:
    data = sample_clips[1].read_bytes()
    h = {**auth(keys["ingest"]), "Content-Type": "video/mp4"}
    resp = client.put("/v1/videos/up-1/content", params={"title": "t", "hashtags": ["a", "b"]}, content=data, headers=h)
    assert resp.status_code == 202, resp.text
    (msg,) = _outbox(session)
    sub = decode(Submission, msg.value)
    stored = Path(sub.uri.removeprefix("file://"))
    assert stored.is_file() and stored.read_bytes() == data and stored.suffix == ".mp4"
    assert stored.is_relative_to(app.state.services.upload_dir) and sub.hashtags == ["a", "b"]
    dup = client.put("/v1/videos/up-1/content", content=b"whatever", headers=h)
    assert dup.status_code == 202 and dup.json()["duplicate"] is True
    assert len(list(stored.parent.iterdir())) == 1


def test_upload_limits_and_media_checks(client: TestClient, session: Session, keys, sample_clips, app) -> None:
    limit = app.state.services.max_upload_bytes
    h = {**auth(keys["ingest"]), "Content-Type": "video/mp4"}
    mp4 = sample_clips[1].read_bytes()

    def chunks():  # no Content-Length: the limit must hold while streaming
        for _ in range(limit // len(mp4) + 2):
            yield mp4

    streamed = client.put("/v1/videos/big-1/content", content=chunks(), headers=h)
    assert streamed.status_code == 413 and streamed.json()["type"] == "urn:keye:problem:payload-too-large"
    declared = client.put("/v1/videos/big-2/content", content=b"x" * (limit + 1), headers=h)
    assert declared.status_code == 413 and str(limit) in declared.json()["detail"]
    text = client.put("/v1/videos/txt-1/content", content=b"hello, I am not a video at all" * 10, headers=h)
    assert text.status_code == 415 and text.json()["type"] == "urn:keye:problem:unsupported-media"
    wrong_type = client.put("/v1/videos/txt-2/content", content=mp4, headers={**h, "Content-Type": "text/plain"})
    assert wrong_type.status_code == 415 and "text/plain" in wrong_type.json()["detail"]
    assert _outbox(session) == []
    uploads = app.state.services.upload_dir
    leftovers = [p for p in uploads.rglob("*") if p.is_file()] if uploads.exists() else []
    assert leftovers == []
