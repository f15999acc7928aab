"""End to end on real Kafka, PostgreSQL and a local Qdrant: ingest -> streams -> worker -> stores.

The analysis is the product's KeyeAnalyzer on the random-weight keye-tiny model, through the test
subclass in tests/support/analyzer.py (which flags submissions tagged "flagme").
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from service.kafka import ingest, producer
from service.schemas import FeedbackEvent, encode, utcnow
from tests.support.pipeline import Pipeline, VectorSinkThread, analysis_counts, read_topic, video_states, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"metric {name} not exported")


def test_ingest_to_stores_with_bad_inputs_duplicates_and_feedback(
    pipeline: Pipeline, vector_sink: VectorSinkThread, sample_clips: list[Path]
) -> None:
    s = pipeline.settings
    media = pipeline.tmp / "media"
    (media / "broken.mp4").write_bytes(b"this is not a video at all")
    clips = [c for c in sample_clips if c.name != "bigbuckbunny.mp4"][:3]
    good = {f"good-{i}": c.as_uri() for i, c in enumerate(clips)}
    bad = {
        "bad-undecodable": (media / "broken.mp4").as_uri(),
        "bad-missing": (media / "missing.mp4").as_uri(),
        "bad-outside-roots": Path("/etc/hostname").as_uri(),
        "bad-loopback": "http://127.0.0.1:9/clip.mp4",
    }
    pipeline.streams()
    metrics_port = free_port()
    pipeline.worker(batch_size=2, extra=["--metrics-port", str(metrics_port)])
    prod = producer(s)
    try:
        ids = list(good) + list(bad)
        ingest(
            [*good.values(), *bad.values()],
            s,
            video_ids=ids,
            creator_id="creator-1",
            hashtags=["Cats", "flagme"],
            prod=prod,
        )
        ingest([good["good-0"]], s, video_ids=["good-0"], prod=prod)  # a duplicate submission
        # A message that is not a valid submission at all, but names its video.
        prod.send(
            s.topic_ingest,
            key=b"bad-schema",
            value=json.dumps(
                {"video_id": "bad-schema", "uri": "ftp://x/y", "submitted_at": "2026-01-01T00:00:00Z"}
            ).encode(),
        )
        prod.send(s.topic_ingest, key=b"garbage", value=b"{not json")
        events = [
            FeedbackEvent(
                event_id=f"ev-{i}",
                video_id="good-0",
                kind="summary_rating",
                actor="mod-1",
                payload={"rating": 4},
                at=utcnow(),
            )
            for i in range(2)
        ]
        for e in [*events, events[0]]:  # ev-0 delivered twice
            prod.send(s.topic_feedback, key=b"good-0", value=encode(e))
        invalid = FeedbackEvent(
            event_id="ev-bad",
            video_id="good-0",
            kind="summary_rating",
            actor="mod-1",
            payload={"rating": 9},
            at=utcnow(),
        )
        prod.send(s.topic_feedback, key=b"good-0", value=encode(invalid))
        prod.flush()
    finally:
        prod.close()

    def settled() -> bool:
        states = video_states(s)
        return (
            all(states.get(v, ("",))[0] == "analyzed" for v in good)
            and all(states.get(v, ("",))[0] == "failed" for v in [*bad, "bad-schema"])
            and vector_sink.store.count() >= len(good)
        )

    wait_for(settled, 150, "every video analyzed or failed", pipeline)
    assert vector_sink.error is None

    # Exactly one analysis row and one point per good video.
    counts = analysis_counts(s)
    assert counts == {v: 1 for v in good}
    assert vector_sink.store.count() == len(good)
    for v in good:
        assert vector_sink.store.count({"video_id": v}) == 1
    # Each bad one is failed with its reason and is in the DLQ with that reason.
    states = video_states(s)
    dlq = read_topic(s, s.topic_dlq)
    by_video = {k: v for k, v in dlq}
    expected_types = {
        "bad-undecodable": "UnsupportedMedia",
        "bad-missing": "UnsafeURIError",  # answered as forbidden
        "bad-outside-roots": "UnsafeURIError",
        "bad-loopback": "UnsafeURIError",
        "bad-schema": "SchemaError",
    }
    for vid, error_type in expected_types.items():
        assert by_video[vid]["error_type"] == error_type, by_video[vid]
        assert by_video[vid]["error"] and states[vid][1].startswith(error_type)
    assert by_video["garbage"]["stage"] == "streams.gate"
    # Worker and gate dead letters alike carry a dedup id, one per failure.
    assert all(v.get("dlq_id") for _, v in dlq), dlq
    assert len({v["dlq_id"] for _, v in dlq}) == len({k for k, _ in dlq})
    # The duplicate never reached the workers. (A rebalance may still redeliver work: that is
    # at-least-once, and the stores above prove it is stored once.)
    work_keys = [k for k, _ in read_topic(s, s.topic_work, idle_s=1.0)]
    assert sorted(work_keys) == sorted([*good, *bad])
    analyzed = read_topic(s, s.topic_analyzed, idle_s=1.0)
    assert {k for k, _ in analyzed} == set(good)
    assert all(v["model_version"] == "keye-tiny" and len(v["embedding"]) == v["embedding_dim"] > 0 for _, v in analyzed)
    # The worker's metrics say the same.
    import httpx

    scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
    redelivered = len(analyzed) - len(good)
    assert metric(scraped, "keye_worker_analyzed_total") == len(analyzed)
    assert (
        len(good) + len(bad)
        <= metric(scraped, "keye_worker_consumed_total")
        <= len(good) + len(bad) + redelivered + len(bad)
    )
    assert len(bad) <= metric(scraped, 'keye_dlq_total{stage="worker.analyze"}') <= 2 * len(bad)
    assert metric(scraped, 'keye_stage_seconds_count{stage="analyze"}') >= len(good) + 1  # + the undecodable one
    # Flags were produced for the flagged analyses (the test analyzer flags the hashtag "flagme").
    flags = read_topic(s, s.topic_flags, idle_s=1.0)
    assert sorted(k for k, _ in flags) == sorted(good)

    engine = sa.create_engine(s.database_url)
    try:

        def stream_tables_ready() -> bool:
            with engine.connect() as c:
                fb = c.execute(sa.text("SELECT count(*) FROM feedback_events")).scalar_one()
                creator = c.execute(sa.text("SELECT analyzed, flagged FROM creator_flag_rates")).all()
                return fb == 2 and creator == [(len(good), len(good))]

        wait_for(stream_tables_ready, 60, "feedback and aggregates in SQL", pipeline)
        with engine.connect() as c:
            assert sorted(c.execute(sa.text("SELECT event_id FROM feedback_events")).scalars()) == ["ev-0", "ev-1"]
            trends = c.execute(
                sa.text('SELECT "window", label, sum(count) FROM tag_trends GROUP BY 1, 2 ORDER BY 1, 2')
            ).all()
        n = len(good)
        assert [tuple(t) for t in trends] == [
            ("day", "cats", n),
            ("day", "flagme", n),
            ("hour", "cats", n),
            ("hour", "flagme", n),
        ]
        assert "ev-bad" in json.dumps([v for _, v in dlq])
    finally:
        engine.dispose()
