"""What an operator sees: `keye worker` and `keye vector-sink` log each video, commit and fault, and a
worker started while its database is down waits for it (a clear line, no traceback) and then works."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from service.kafka import producer, send
from tests.support.pipeline import Pipeline, TcpProxy, analysis_counts, submit_work, wait_for
from tests.support.stores import record

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


def _text(proc) -> str:
    return proc.keye_log.read_text(errors="replace")


def test_keye_worker_waits_for_the_database_then_logs_each_video_and_commit(
    pipeline: Pipeline, sample_clips: list[Path]
) -> None:
    s = pipeline.settings
    url = sa.engine.make_url(s.database_url)
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))  # not started: a closed port
    pipeline.env["KEYE_DATABASE_URL"] = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    worker = pipeline.spawn(
        "keye-worker", ["-m", "cli.main", "worker", "--group", f"{s.topic_work}-operators", "--batch-size", "1"]
    )
    try:
        wait_for(lambda: "waiting, retry 2" in _text(worker), 60, "the worker to wait for the database", pipeline)
        assert worker.poll() is None, _text(worker)
        assert f"127.0.0.1:{proxy.port}" in _text(worker)
        proxy.start()
        wait_for(
            lambda: "proceeding" in _text(worker) and "consuming" in _text(worker),
            120,
            "the worker to start once the database answers",
            pipeline,
        )
        [video] = submit_work(s, [c for c in sample_clips if c.name != "bigbuckbunny.mp4"][:1])
        wait_for(
            lambda: analysis_counts(s) == {video: 1} and "committed" in _text(worker),
            180,
            "the video analyzed and committed",
            pipeline,
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        proxy.stop()
    log = _text(worker)
    # Waiting and working raise nothing. (kafka-python 3.0 may log a socket traceback from its
    # heartbeat thread while the consumer closes; that is after the stop and not ours.)
    assert "Traceback" not in log.split("worker stopping")[0], log
    assert re.search(rf"video {video} analyzed", log), log
    assert re.search(rf"committed {re.escape(s.topic_work)}\[\d\]@1", log), log
    assert "closed" in log


def test_keye_vector_sink_logs_each_point_and_commit(pipeline: Pipeline) -> None:
    from stores.vectors import VectorStore

    s = pipeline.settings
    sink = pipeline.spawn("keye-vector-sink", ["-m", "cli.main", "vector-sink"])
    try:
        wait_for(lambda: "vector sink consuming" in _text(sink), 60, "the sink to start", pipeline)
        prod = producer(s)
        rec = record("op-video")
        send(prod, s.topic_analyzed, rec)
        prod.flush()
        prod.close()
        wait_for(lambda: "committed" in _text(sink), 60, "the sink to write and commit", pipeline)
    finally:
        sink.send_signal(signal.SIGTERM)
        sink.wait(timeout=30)
    time.sleep(0.5)  # the folder lock is released with the process
    log = _text(sink)
    assert f"video op-video: point {rec.analysis_id} upserted" in log, log
    assert re.search(rf"committed {re.escape(s.topic_analyzed)}\[\d\]@1", log), log
    store = VectorStore.from_settings(s)
    try:
        assert store.count() == 1
    finally:
        store.close()
