"""The streams gate remembers accepted videos across a restart (its table is rebuilt from the changelog)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from service.kafka import ingest
from tests.support.pipeline import Pipeline, committed, read_topic, video_states, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


def test_duplicates_are_dropped_across_a_streams_restart(pipeline: Pipeline, sample_clips: list[Path]) -> None:
    s = pipeline.settings
    first = pipeline.streams()
    ingest([sample_clips[0].as_uri()], s, video_ids=["vid-a"])

    def work_keys() -> list[str]:
        return [k for k, _ in read_topic(s, s.topic_work, idle_s=1.0)]

    wait_for(lambda: work_keys() == ["vid-a"], 90, "vid-a accepted", pipeline)
    assert video_states(s)["vid-a"][0] == "queued"
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=60) == 0, pipeline.logs()

    pipeline.streams()  # a new process: the table is recovered from its changelog topic
    ingest([sample_clips[0].as_uri(), sample_clips[1].as_uri()], s, video_ids=["vid-a", "vid-b"])
    wait_for(lambda: "vid-b" in work_keys(), 120, "vid-b accepted after the restart", pipeline)
    # wait until the gate has consumed (and committed) all three submissions, then count
    wait_for(
        lambda: committed(s.kafka_bootstrap, f"{s.topic_ingest}-streams", s.topic_ingest) == 3,
        60,
        "the gate to commit every submission",
        pipeline,
    )
    assert sorted(work_keys()) == ["vid-a", "vid-b"]


def rows(engine, table: str, columns: str) -> list[tuple]:
    """The table's rows, none while the streams app has not created it yet."""
    import sqlalchemy as sa

    with engine.connect() as c:
        if not sa.inspect(c).has_table(table):
            return []
        return list(c.execute(sa.text(f"SELECT {columns} FROM {table}")).tuples())


def publish_decisions(s, ids: list[str]) -> None:
    """Moderator confirmations of vid-a, one feedback event per id."""
    from service.kafka import producer, send
    from service.schemas import FeedbackEvent, utcnow

    prod = producer(s)
    for i in ids:
        send(
            prod,
            s.topic_feedback,
            FeedbackEvent(
                event_id=i,
                video_id="vid-a",
                kind="moderation_decision",
                actor="mod",
                payload={"decision": "confirm"},
                at=utcnow(),
            ),
        )
    prod.flush()
    prod.close()


def test_feedback_waits_out_a_database_outage(pipeline: Pipeline) -> None:
    import sqlalchemy as sa

    from tests.support.pipeline import TcpProxy

    s = pipeline.settings
    url = sa.engine.make_url(s.database_url)
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    proxy.start()
    pipeline.env["KEYE_DATABASE_URL"] = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    engine = sa.create_engine(s.database_url)

    def stored() -> list[str]:
        return sorted(e for (e,) in rows(engine, "feedback_events", "event_id"))

    try:
        pipeline.streams()
        publish_decisions(s, ["e1"])
        wait_for(lambda: stored() == ["e1"], 90, "the first event stored", pipeline)
        proxy.stop()  # the database disappears for the streams app
        publish_decisions(s, ["e2", "e3", "e2"])
        time.sleep(4)
        assert stored() == ["e1"]
        proxy.start()
        wait_for(lambda: stored() == ["e1", "e2", "e3"], 90, "the events after the database came back", pipeline)
    finally:
        proxy.stop()
        engine.dispose()
    assert read_topic(s, s.topic_dlq, idle_s=1.0) == []
    assert "database unavailable" in pipeline.procs[0].keye_log.read_text()


@pytest.mark.redis
def test_enough_new_feedback_queues_one_training_run(pipeline: Pipeline, redis_url: str) -> None:
    import json
    from urllib.parse import urlsplit, urlunsplit

    import redis
    import sqlalchemy as sa

    from stores.training_queue import QUEUE, TASK

    s = pipeline.settings
    broker = urlunsplit(urlsplit(redis_url)._replace(path="/9"))  # a Redis database of its own
    client = redis.Redis.from_url(broker)
    client.delete(QUEUE)
    pipeline.env.update(KEYE_TRAIN_TRIGGER_EXAMPLES="3", KEYE_REDIS_URL=broker)
    engine = sa.create_engine(s.database_url)

    def runs() -> list[tuple[str, str]]:
        return rows(engine, "training_runs", "run_id, status")

    try:
        pipeline.streams()
        publish_decisions(s, ["t1", "t2"])
        time.sleep(5)
        assert runs() == []  # 2 examples < 3
        publish_decisions(s, ["t3", "t4", "t5"])
        wait_for(lambda: len(runs()) == 1, 90, "a training run queued", pipeline)
        time.sleep(3)  # later events find the run pending: still one
        ((run_id, status),) = runs()
        assert status == "queued"
        messages = [json.loads(m) for m in client.lrange(QUEUE, 0, -1)]
        assert [(m["headers"]["task"], m["headers"]["argsrepr"]) for m in messages] == [(TASK, repr([run_id]))]
    finally:
        client.delete(QUEUE)
        engine.dispose()


def test_a_dlq_record_carries_the_dedup_id_of_its_source_message(pipeline: Pipeline) -> None:
    """Every copy of one failure (a redelivered bad submission fails again) has the same dlq_id, in the
    value and the `dlq_id` header: a function of the stage and the source message's position."""
    import json

    from kafka import KafkaConsumer

    from service.kafka import producer
    from service.schemas import dead_letter_id

    s = pipeline.settings
    prod = producer(s)
    meta = prod.send(s.topic_ingest, key=b"vid-bad", value=b'{"video_id": "vid-bad", "uri": "ftp://x"}').get(30)
    prod.close()
    pipeline.streams()
    wait_for(lambda: read_topic(s, s.topic_dlq, idle_s=1.0) != [], 90, "the DLQ record", pipeline)
    consumer = KafkaConsumer(
        s.topic_dlq,
        bootstrap_servers=s.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        consumer_timeout_ms=2000,
    )
    (record,) = list(consumer)
    consumer.close()
    expected = dead_letter_id("streams.gate", s.topic_ingest, meta.partition, meta.offset)
    assert json.loads(record.value)["dlq_id"] == expected
    assert dict(record.headers)["dlq_id"] == expected.encode()
    assert record.key == b"vid-bad"
