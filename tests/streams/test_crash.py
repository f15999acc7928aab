"""The streams gate loses no submission when it is SIGKILLed in the middle of a backlog (issue 13).

Before streams/offsets.py, a restarted faust app committed offsets its gate never saw (one run:
partition 0 committed to its end, 36 submissions never forwarded) or stalled with records waiting.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from service.kafka import ingest
from tests.support.pipeline import Pipeline, committed, read_topic, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

N, KILLS = 150, 3


def test_no_submission_is_lost_when_the_gate_is_killed_mid_backlog(
    pipeline: Pipeline, sample_clips: list[Path]
) -> None:
    s = pipeline.settings
    group = f"{s.topic_ingest}-streams"

    def streams(name: str, delay_s: str) -> object:
        return pipeline.spawn(
            name,
            ["-m", "tests.support.streams_app", "--app-id", group, "--loglevel", "info"],
            {"KEYE_TEST_GATE_DELAY_S": delay_s},
        )

    ids = [f"c-{i:04d}" for i in range(N)]
    ingest([sample_clips[0].as_uri()] * N, s, video_ids=ids)
    for k in range(KILLS):
        # a slow gate (0.1 s a submission): each process is killed with most of the backlog waiting
        proc = streams(f"streams{k}", "0.1")
        wait_for(
            lambda proc=proc: proc.keye_log.read_text().count(" accepted") >= N // (KILLS + 1),
            120,
            f"streams process {k} to accept submissions",
            pipeline,
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    streams("streams-last", "0")
    wait_for(
        lambda: committed(s.kafka_bootstrap, group, s.topic_ingest) == N,
        120,
        "the gate to commit every submission",
        pipeline,
    )
    forwarded = {k for k, _ in read_topic(s, s.topic_work, idle_s=1.0)}
    assert sorted(set(ids) - forwarded) == []
    assert read_topic(s, s.topic_dlq, idle_s=0.5) == []
