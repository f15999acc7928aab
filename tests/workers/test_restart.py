"""A SIGKILLed worker loses at most the video in flight (offsets are committed per video, not per
batch), and restarted with its instance id it takes its own partitions back at once, with no
rebalance of the other worker (static group membership)."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from tests.support.pipeline import ANALYZER, Pipeline, analysis_counts, submit_work, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


def _assignments(proc) -> list[set[int]]:
    text = proc.keye_log.read_text(errors="replace")
    return [{int(p) for p in re.findall(r", (\d+)\)", m)} for m in re.findall(r"partitions assigned: \[(.*)\]", text)]


def _analyzed(proc) -> int:
    return proc.keye_log.read_text(errors="replace").count(" analyzed (analysis ")


def test_sigkilled_static_member_redoes_one_video_and_the_other_worker_never_stops(
    pipeline: Pipeline, sample_clips: list[Path]
) -> None:
    from kafka import KafkaConsumer, TopicPartition

    s = pipeline.settings
    ids = submit_work(s, [c for c in sample_clips if c.name != "bigbuckbunny.mp4"], copies=5)

    def start(name: str, n: int):
        return pipeline.spawn(
            f"worker-{name}-{n}",
            [
                "-m",
                "workers",
                "--group",
                f"{s.topic_work}-workers",
                "--batch-size",
                "4",
                "--analyzer",
                ANALYZER,
                "--session-timeout-ms",
                "45000",
                "--instance-id",
                f"{s.topic_work}-{name}",
            ],
            {"KEYE_TEST_ANALYZE_DELAY_S": "1.0"},
        )

    workers = {"a": start("a", 1), "b": start("b", 1)}
    wait_for(lambda: any(_analyzed(w) >= 7 for w in workers.values()), 180, "a worker seven videos in", pipeline)
    victim = next(n for n, w in workers.items() if _analyzed(w) >= 7)
    survivor = "b" if victim == "a" else "a"
    owned = _assignments(workers[victim])[-1]
    workers[victim].send_signal(signal.SIGKILL)
    workers[victim].wait(timeout=10)

    # Offsets were committed video by video: at most the one being committed at the kill is redone.
    partition_of = {}
    reader = KafkaConsumer(
        s.topic_work,
        bootstrap_servers=s.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=2000,
    )
    for m in reader:
        partition_of[m.key.decode()] = m.partition
    reader.close()
    group = KafkaConsumer(
        bootstrap_servers=s.kafka_bootstrap, group_id=f"{s.topic_work}-workers", enable_auto_commit=False
    )
    committed = sum(group.committed(TopicPartition(s.topic_work, p)) or 0 for p in owned)
    group.close()
    stored = sum(1 for v in analysis_counts(s) if partition_of[v] in owned)
    assert committed >= stored - 1, (committed, stored)

    survivor_assignments = len(_assignments(workers[survivor]))
    workers[victim] = start(victim, 2)
    wait_for(
        lambda: _assignments(workers[victim]) and _assignments(workers[victim])[-1] == owned,
        60,
        "the restarted worker to get its partitions back",
        pipeline,
    )
    wait_for(lambda: len(analysis_counts(s)) == len(ids), 180, "every video", pipeline)
    assert analysis_counts(s) == {v: 1 for v in ids}
    # The survivor was never revoked or reassigned: it did not stop for the restart.
    assert len(_assignments(workers[survivor])) == survivor_assignments, pipeline.logs()
