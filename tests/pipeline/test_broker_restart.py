"""The broker goes away mid-batch and comes back: nothing is lost, nothing is stored twice.

This test runs its own single-node Kafka (the stack's launcher, on free loopback ports, data in a
temporary folder), because restarting the shared development broker would disturb other tests.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.settings import Settings
from tests.support.faults import private_settings
from tests.support.pipeline import Pipeline, analysis_counts, make_pipeline, read_topic, submit_work, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def private_kafka(kafka_bootstrap: str, stack_settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    from devstack import kafka

    if shutil.which("java") is None:
        pytest.fail("java is needed to run a private Kafka broker (it runs the stack's broker too)")
    s = private_settings(tmp_path / "stack", stack_settings)
    kafka.up(s)
    try:
        yield s
    finally:
        kafka.down(s)


def test_broker_restart_mid_batch(
    private_kafka: Settings, pg_database: str, tmp_path: Path, sample_clips: list[Path]
) -> None:
    from devstack import kafka

    pipeline: Pipeline = make_pipeline(private_kafka.kafka_bootstrap, pg_database, tmp_path, sample_clips[0].parent)
    try:
        s = pipeline.settings
        clips = [c for c in sample_clips if c.name != "bigbuckbunny.mp4"]
        ids = submit_work(s, clips, copies=2)
        worker = pipeline.worker("worker", batch_size=2, delay_s=0.7)
        wait_for(lambda: len(analysis_counts(s)) >= 1, 120, "the first analysis", pipeline)
        kafka.down(private_kafka)  # graceful stop; its log stays on disk
        time.sleep(8)  # long enough for the worker to finish its batch and poll a dead broker
        assert worker.poll() is None, pipeline.logs()
        kafka.up(private_kafka)
        wait_for(lambda: len(analysis_counts(s)) == len(ids), 180, "every video after the broker came back", pipeline)
        assert analysis_counts(s) == {v: 1 for v in ids}
        assert set(k for k, _ in read_topic(s, s.topic_analyzed, idle_s=2.0)) == set(ids)
        assert read_topic(s, s.topic_dlq, idle_s=1.0) == []
        assert worker.poll() is None
    finally:
        pipeline.stop_all()
