"""Pipeline test helpers: a fresh PostgreSQL database and uuid-prefixed topics per test, real
worker/streams processes, and readers for topics, committed offsets and stores. The `pipeline` and
`vector_sink` fixtures are registered for every test folder by tests/conftest.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from service.settings import Settings

REPO = Path(__file__).resolve().parents[2]
ANALYZER = "tests.support.analyzer:TestKeyeAnalyzer"  # keye-tiny + test hooks, see that module


class Process(subprocess.Popen[bytes]):
    """A pipeline process whose output goes to `keye_log`, which the tests read back."""

    keye_log: Path


@dataclass
class Pipeline:
    settings: Settings
    env: dict[str, str]
    tmp: Path
    procs: list[Process] = field(default_factory=list)

    def spawn(self, name: str, args: list[str], extra_env: dict[str, str] | None = None) -> Process:
        log = open(self.tmp / f"{name}.log", "ab")
        proc = Process(
            [sys.executable, *args],
            cwd=REPO,
            env={**self.env, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        proc.keye_log = self.tmp / f"{name}.log"
        self.procs.append(proc)
        return proc

    def worker(
        self, name: str = "worker", *, batch_size: int = 4, delay_s: float = 0.0, extra: list[str] | None = None
    ) -> Process:
        return self.spawn(
            name,
            [
                "-m",
                "workers",
                "--group",
                f"{self.settings.topic_work}-workers",
                "--batch-size",
                str(batch_size),
                "--analyzer",
                ANALYZER,
                "--session-timeout-ms",
                "6000",
                *(extra or []),
            ],
            {"KEYE_TEST_ANALYZE_DELAY_S": str(delay_s)},
        )

    def streams(self) -> Process:
        return self.spawn(
            "streams", ["-m", "streams", "--app-id", f"{self.settings.topic_ingest}-streams", "--loglevel", "warning"]
        )

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.keye_log.name}\n" + p.keye_log.read_text(errors="replace")[-4000:] for p in self.procs
        )

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def make_pipeline(bootstrap: str, database_url: str, tmp_path: Path, clips_dir: Path) -> Pipeline:
    """Settings and subprocess environment with uuid-prefixed topics (created with 3 partitions)."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    topics = {
        k: f"{prefix}.{v}"
        for k, v in (
            ("ingest", "videos.ingest"),
            ("work", "videos.work"),
            ("analyzed", "videos.analyzed"),
            ("flags", "moderation.flags"),
            ("feedback", "feedback.events"),
            ("dlq", "videos.dlq"),
        )
    }
    roots = [str(clips_dir), str(tmp_path / "media")]
    (tmp_path / "media").mkdir(exist_ok=True)
    settings = Settings(
        kafka_bootstrap=bootstrap,
        database_url=database_url,
        data_dir=tmp_path / "data",
        file_roots=[Path(r) for r in roots],
        **{f"topic_{k}": v for k, v in topics.items()},
    )
    env = {
        **os.environ,
        "KEYE_KAFKA_BOOTSTRAP": bootstrap,
        "KEYE_DATABASE_URL": database_url,
        "KEYE_DATA_DIR": str(tmp_path / "data"),
        "KEYE_FILE_ROOTS": json.dumps(roots),
        "PYTHONPATH": str(REPO),  # the product and tests.support (the test analyzer, the test streams entry)
        "OMP_NUM_THREADS": "1",
        **{f"KEYE_TOPIC_{k.upper()}": v for k, v in topics.items()},
    }
    from service.kafka import ensure_topics

    ensure_topics(settings, partitions=3)
    return Pipeline(settings, env, tmp_path)


@pytest.fixture
def pipeline(kafka_bootstrap: str, pg_database: str, tmp_path: Path, sample_clips: list[Path]) -> Iterator[Pipeline]:
    p = make_pipeline(kafka_bootstrap, pg_database, tmp_path, sample_clips[0].parent)
    try:
        yield p
    finally:
        p.stop_all()


class VectorSinkThread:
    """The single owner of the test's local Qdrant folder, consuming `videos.analyzed`."""

    def __init__(self, settings: Settings) -> None:
        from stores.vectors import VectorStore

        self.store = VectorStore.from_settings(settings)
        self.stop = threading.Event()
        self.error: BaseException | None = None

        def run() -> None:
            from stores.vector_sink import run_vector_sink

            try:
                run_vector_sink(settings, self.stop, group_id=f"{settings.topic_analyzed}-vectors", store=self.store)
            except BaseException as e:  # noqa: BLE001 - surfaced by the test
                self.error = e

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        self.store.close()


@pytest.fixture
def vector_sink(pipeline: Pipeline) -> Iterator[VectorSinkThread]:
    sink = VectorSinkThread(pipeline.settings)
    yield sink
    sink.close()


def read_topic(settings: Settings, topic: str, *, idle_s: float = 3.0) -> list[tuple[str, dict]]:
    """Every message on a topic (key, JSON value), read until it stays quiet for idle_s."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=int(idle_s * 1000),
    )
    out = [((m.key or b"").decode(), json.loads(m.value)) for m in consumer]
    consumer.close()
    return out


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str, pipeline: Pipeline | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        for p in pipeline.procs if pipeline else []:
            if p.poll() not in (None, 0, -9) and p.poll() != -signal.SIGKILL:
                pytest.fail(f"a process exited with {p.poll()} while waiting for {what}\n{pipeline.logs()}")
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout_s}s waiting for {what}\n{pipeline.logs() if pipeline else ''}")


def committed(bootstrap: str, group: str, topic: str) -> int:
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return sum(c.committed(TopicPartition(topic, p)) or 0 for p in c.partitions_for_topic(topic) or [])
    finally:
        c.close()


def video_states(settings: Settings) -> dict[str, tuple[str, str | None]]:
    import sqlalchemy as sa

    engine = sa.create_engine(settings.database_url)
    try:
        with engine.connect() as c:
            if not sa.inspect(c).has_table("videos"):
                return {}
            return {r[0]: (r[1], r[2]) for r in c.execute(sa.text("SELECT video_id, status, error FROM videos"))}
    finally:
        engine.dispose()


def analysis_counts(settings: Settings) -> dict[str, int]:
    import sqlalchemy as sa

    engine = sa.create_engine(settings.database_url)
    try:
        with engine.connect() as c:
            if not sa.inspect(c).has_table("analyses"):
                return {}
            return {r[0]: r[1] for r in c.execute(sa.text("SELECT video_id, count(*) FROM analyses GROUP BY video_id"))}
    finally:
        engine.dispose()


def submit_work(settings: Settings, clips: list[Path], copies: int = 1, prefix: str = "vid") -> list[str]:
    """Accepted submissions straight onto the work topic (the streams gate is not under test here)."""
    from service.kafka import producer, send
    from service.schemas import WorkItem, utcnow

    prod = producer(settings)
    ids = []
    for n in range(copies):
        for i, clip in enumerate(clips):
            vid = f"{prefix}-{n}-{i}"
            send(
                prod,
                settings.topic_work,
                WorkItem(video_id=vid, uri=clip.as_uri(), submitted_at=utcnow(), accepted_at=utcnow()),
            )
            ids.append(vid)
    prod.flush()
    prod.close()
    return ids


class TcpProxy:
    """A real TCP forwarder in front of a server; `stop()` cuts every connection and refuses new
    ones (the server looks down to its clients), `start()` brings the same port back."""

    def __init__(self, target: tuple[str, int]) -> None:
        import socket

        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._conns: list = []
        self._listener = None
        self._lock = threading.Lock()

    def start(self) -> None:
        import socket

        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener) -> None:
        import socket

        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def stop(self) -> None:
        import socket

        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass
