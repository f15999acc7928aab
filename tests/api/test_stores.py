"""The API on PostgreSQL (migrations to every head, keys, ingest idempotency, claims under
contention, decisions) and its outbox relay publishing to the real Kafka broker."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session

from api.app import create_app
from api.auth import Principal
from api.cases import claim
from api.keys import ROLES, create_key
from api.problems import Conflict
from service.schemas import FeedbackEvent, Submission, decode
from stores.db import write_analysis
from tests.support.api import auth, make_record


@pytest.fixture
def pg_app(api_settings, pg_database: str):
    app = create_app(api_settings.model_copy(update={"database_url": pg_database}))
    yield app
    app.state.services.engine.dispose()


def _script_heads() -> set[str]:
    from pathlib import Path

    from alembic.config import Config
    from alembic.script import ScriptDirectory

    import stores.db

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(stores.db.__file__).with_name("migrations")))
    return set(ScriptDirectory.from_config(cfg).get_heads())


@pytest.mark.postgres
def test_postgres_moderation_flow_and_contended_claims(pg_app, sample_clips) -> None:
    engine = pg_app.state.services.engine
    with engine.connect() as conn:
        heads = set(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())
    assert heads == _script_heads()
    with Session(engine) as s:
        keys = {r: create_key(s, [r], name=f"{r}-1")[1] for r in ROLES}
        r = make_record("pg-1", severity=3, categories=("violence",))
        write_analysis(
            s, r, Submission(video_id="pg-1", uri=sample_clips[0].resolve().as_uri(), submitted_at=r.created_at)
        )
        s.commit()
        mods = [
            Principal(row.key_id, row.name, frozenset(row.roles))
            for row in (create_key(s, ["moderator"], name=f"m{i}")[0] for i in range(6))
        ]

    # Six moderators claim the same case at once: exactly one holds it.
    results: list[str] = []
    barrier = threading.Barrier(len(mods))

    def grab(who: Principal) -> None:
        with Session(engine) as s:
            barrier.wait()
            try:
                claim(s, r.analysis_id, who, 600)
                results.append(who.name)
            except Conflict:
                results.append("conflict")

    threads = [threading.Thread(target=grab, args=(m,)) for m in mods]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [x for x in results if x != "conflict"]
    assert len(results) == 6 and len(winners) == 1

    with TestClient(pg_app) as client:
        h = auth(keys["moderator"])
        url = f"/v1/moderation/cases/{r.analysis_id}"
        assert client.post(url + "/claim", headers=h).status_code == 409
        q = client.get("/v1/moderation/queue", headers=h).json()
        assert q["items"][0]["claim"]["moderator"] == winners[0]
        ingest = auth(keys["ingest"])
        body = {"uri": sample_clips[1].resolve().as_uri(), "video_id": "pg-2"}
        assert client.post("/v1/videos", json=body, headers=ingest).json()["duplicate"] is False
        assert client.post("/v1/videos", json=body, headers=ingest).json()["duplicate"] is True
        status = client.get("/v1/videos/pg-1", headers=auth(keys["product"])).json()
        assert status["analyses"][0]["created_at"].endswith(("Z", "+00:00"))


@pytest.mark.kafka
def test_outbox_relay_publishes_submissions_and_decisions_to_kafka(
    api_settings, kafka_bootstrap: str, sample_clips
) -> None:
    from kafka import KafkaConsumer

    prefix = f"test.api.{uuid.uuid4().hex[:8]}"
    settings = api_settings.model_copy(
        update={
            "kafka_bootstrap": kafka_bootstrap,
            "topic_feedback": f"{prefix}.feedback",
            "topic_ingest": f"{prefix}.ingest",
            "topic_analyzed": f"{prefix}.analyzed",
            "topic_flags": f"{prefix}.flags",
            "topic_dlq": f"{prefix}.dlq",
        }
    )
    app = create_app(settings, publish=True)
    engine = app.state.services.engine
    with Session(engine) as s:
        mod = create_key(s, ["moderator"], name="kafka-mod")[1]
        ingest = create_key(s, ["ingest"], name="kafka-ingest")[1]
        r = make_record("k-1", severity=2, categories=("hate",))
        write_analysis(
            s, r, Submission(video_id="k-1", uri=sample_clips[0].resolve().as_uri(), submitted_at=r.created_at)
        )
        s.commit()
    consumer = KafkaConsumer(
        settings.topic_feedback,
        settings.topic_ingest,
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=1000,
        group_id=None,
    )
    with TestClient(app) as client:
        url = f"/v1/moderation/cases/{r.analysis_id}"
        client.post(url + "/claim", headers=auth(mod))
        out = client.post(url + "/decision", json={"decision": "confirm", "note": "n"}, headers=auth(mod)).json()
        body = {"uri": sample_clips[1].resolve().as_uri(), "video_id": "k-2"}
        for _ in range(2):  # the second submission is a duplicate and is not published again
            assert client.post("/v1/videos", json=body, headers=auth(ingest)).status_code == 202
        got, deadline = [], time.time() + 60
        while len(got) < 2 and time.time() < deadline:
            got += list(consumer)
        time.sleep(2)
        got += list(consumer)
    consumer.close()
    app.state.services.engine.dispose()
    by_topic = {t: [m for m in got if m.topic == t] for t in (settings.topic_feedback, settings.topic_ingest)}
    (feedback,) = by_topic[settings.topic_feedback]
    event = decode(FeedbackEvent, feedback.value)
    assert feedback.key == b"k-1" and event.event_id == out["event_id"] and event.payload["decision"] == "confirm"
    (submitted,) = by_topic[settings.topic_ingest]
    assert submitted.key == b"k-2" and decode(Submission, submitted.value).uri == body["uri"]
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM api_outbox WHERE sent_at IS NULL")).scalar() == 0


@pytest.mark.kafka
def test_serving_process_indexes_analyses_and_calls_webhooks(api_settings, kafka_bootstrap: str, tmp_path) -> None:
    """`videos.analyzed` on the real broker reaches the in-process vector sink (search finds the
    video) and the webhook dispatcher (the receiver gets a signed POST)."""
    import http.server

    from service import kafka as kk

    got: list[tuple[dict, bytes]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append((dict(self.headers), self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    prefix = f"test.api.{uuid.uuid4().hex[:8]}"
    settings = api_settings.model_copy(
        update={
            "kafka_bootstrap": kafka_bootstrap,
            "allow_private_addresses": True,
            "data_dir": tmp_path / "serve",
            "topic_analyzed": f"{prefix}.analyzed",
            "topic_flags": f"{prefix}.flags",
            "topic_feedback": f"{prefix}.feedback",
            "topic_dlq": f"{prefix}.dlq",
        }
    )
    kk.ensure_topics(settings, [settings.topic_analyzed, settings.topic_flags, settings.topic_dlq], partitions=1)
    app = create_app(settings, publish=True)
    with Session(app.state.services.engine) as s:
        product = create_key(s, ["product"])[1]
        rec = create_key(s, ["recommender"])[1]
    record = make_record("e2e-1", embedding=[0.3, 0.9, 0.1, 0.4])
    try:
        with TestClient(app) as client:
            hook = client.post(
                "/v1/webhooks",
                json={"url": f"http://127.0.0.1:{receiver.server_address[1]}/h", "events": ["analyzed"]},
                headers=auth(product),
            )
            assert hook.status_code == 201, hook.text
            producer = kk.producer(settings)
            kk.send(producer, settings.topic_analyzed, record)
            producer.flush(timeout=30)
            producer.close()
            hits, deadline = [], time.time() + 90
            while (not hits or not got) and time.time() < deadline:
                time.sleep(0.5)
                res = client.post("/v1/search", json={"vector": [0.3, 0.9, 0.1, 0.4]}, headers=auth(rec))
                hits = res.json().get("hits", []) if res.status_code == 200 else []
            assert [h["video_id"] for h in hits] == ["e2e-1"] and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
            assert got, "the webhook receiver got nothing"
            headers, body = got[0]
            assert headers["X-Keye-Event"] == "analyzed" and b'"video_id":"e2e-1"' in body
    finally:
        receiver.shutdown()
        app.state.services.engine.dispose()
