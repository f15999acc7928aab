"""The broker of `keye stack` works with every Kafka client the project uses.

This is what pins the Kafka release: kafka-python (workers), aiokafka (under faust-streaming)
and faust-streaming itself must join groups, rebalance, commit and produce idempotently.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest

from tests.support.paths import REPO

pytestmark = pytest.mark.kafka


def _topic(prefix: str) -> str:
    return f"test.{prefix}.{uuid.uuid4().hex[:10]}"


def _create(bootstrap: str, name: str, partitions: int) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        admin.close()


def test_topic_creation_with_partitions(kafka_bootstrap: str) -> None:
    from kafka import KafkaAdminClient

    name = _topic("partitions")
    _create(kafka_bootstrap, name, 6)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        described = admin.describe_topics([name])
    finally:
        admin.close()
    assert len(described[0]["partitions"]) == 6


def test_kafka_python_idempotent_producer_group_commit_and_rebalance(kafka_bootstrap: str) -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    topic, group = _topic("kp"), f"g-{uuid.uuid4().hex[:8]}"
    _create(kafka_bootstrap, topic, 4)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all")
    for i in range(40):
        producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode())
    producer.flush()
    producer.close()

    def consumer() -> KafkaConsumer:
        return KafkaConsumer(
            topic,
            bootstrap_servers=kafka_bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=10000,
            heartbeat_interval_ms=1000,
        )

    first = consumer()
    seen: list[bytes] = []
    deadline = time.monotonic() + 60
    while len(seen) < 40 and time.monotonic() < deadline:
        for records in first.poll(timeout_ms=500).values():
            seen.extend(r.value for r in records)
    assert sorted(seen) == sorted(f"v{i}".encode() for i in range(40))
    assert len(first.assignment()) == 4
    first.commit()

    # A second member joins: the group rebalances and the partitions are split between them.
    # Each member polls in its own thread, as separate worker processes would; alternating polls
    # from one thread can leave a member parked in JoinGroup while the other is not polled.
    lock = threading.Lock()
    assignments: dict[str, set] = {}
    reread: list[bytes] = []
    stop = threading.Event()

    def member(name: str, c: KafkaConsumer) -> None:
        try:
            while not stop.is_set():
                for records in c.poll(timeout_ms=200).values():
                    with lock:
                        reread.extend(r.value for r in records)
                with lock:
                    assignments[name] = set(c.assignment())
        finally:
            c.close(autocommit=False)

    def balanced() -> bool:
        with lock:
            a, b = assignments.get("first", set()), assignments.get("second", set())
        return bool(a) and bool(b) and a.isdisjoint(b) and len(a | b) == 4

    committed = sum(first.committed(TopicPartition(topic, p)) or 0 for p in range(4))
    assert committed == 40
    threads = [
        threading.Thread(target=member, args=("first", first), daemon=True),
        threading.Thread(target=member, args=("second", consumer()), daemon=True),
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not balanced():
        time.sleep(0.2)
    ok = balanced()
    time.sleep(1.0)  # a moment more of polling: committed offsets must mean nothing is re-read
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert ok, f"group never split the 4 partitions between two members: {assignments}"
    # Committed offsets survived the rebalance: nothing is re-read.
    assert reread == []


def test_aiokafka_idempotent_producer_group_and_commit(kafka_bootstrap: str) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.structs import TopicPartition

    topic, group = _topic("aio"), f"g-{uuid.uuid4().hex[:8]}"
    _create(kafka_bootstrap, topic, 2)

    async def run() -> tuple[list[bytes], int]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
        await producer.start()
        try:
            for i in range(10):
                await producer.send_and_wait(topic, f"m{i}".encode(), key=str(i).encode())
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka_bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        got: list[bytes] = []
        try:
            async with asyncio.timeout(60):
                while len(got) < 10:
                    batch = await consumer.getmany(timeout_ms=500)
                    for records in batch.values():
                        got.extend(r.value for r in records)
            await consumer.commit()
            total = 0
            for p in range(2):
                total += await consumer.committed(TopicPartition(topic, p)) or 0
        finally:
            await consumer.stop()
        return got, total

    got, committed = asyncio.run(run())
    assert sorted(got) == sorted(f"m{i}".encode() for i in range(10))
    assert committed == 10


def test_faust_streaming_agent_with_changelog_table(kafka_bootstrap: str, tmp_path) -> None:
    import os
    import subprocess
    import sys

    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

    prefix = f"faust{uuid.uuid4().hex[:8]}"
    for suffix in ("in", "out"):
        _create(kafka_bootstrap, f"{prefix}.{suffix}", 1)
    app = REPO / "tests" / "support" / "faust_echo_app.py"
    env = {**os.environ, "ECHO_PREFIX": prefix, "ECHO_BOOTSTRAP": kafka_bootstrap}
    log = open(tmp_path / "faust.log", "wb")
    worker = subprocess.Popen(
        [sys.executable, str(app), "worker", "-l", "warn"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path
    )
    try:
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
        for value, key in [("a", "x"), ("b", "y"), ("c", "x")]:
            producer.send(f"{prefix}.in", key=f'"{key}"'.encode(), value=f'"{value}"'.encode())
        producer.flush()
        producer.close()
        consumer = KafkaConsumer(
            f"{prefix}.out", bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest", group_id=f"{prefix}-check"
        )
        got: list[str] = []
        deadline = time.monotonic() + 120
        while len(got) < 3 and time.monotonic() < deadline:
            assert worker.poll() is None, (tmp_path / "faust.log").read_text(errors="replace")[-3000:]
            for records in consumer.poll(timeout_ms=500).values():
                got.extend(r.value.decode().strip('"') for r in records)
        consumer.close()
        assert got == ["a:1", "b:1", "c:2"], (tmp_path / "faust.log").read_text(errors="replace")[-3000:]
        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        try:
            assert f"{prefix}-app-{prefix}-counts-changelog" in admin.list_topics()
        finally:
            admin.close()
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()
