"""Fault injection for the whole pipeline: a private Kafka and PostgreSQL (the stack's own launchers,
on free loopback ports, so the shared servers are never touched), the streams app, two workers and
the vector sink as OS processes under a small supervisor (a process that exits is started again, as
a container runtime would), and a seeded schedule of faults: every process kind SIGKILLed, the
broker restarted, PostgreSQL stopped for a while. Used by tests/pipeline/test_faults.py
(bounded) and bench/faults.py (longer, with figures)."""

from __future__ import annotations

import random
import re
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from service.settings import Settings
from tests.support.pipeline import ANALYZER, Pipeline, Process, make_pipeline, read_topic

KINDS = ("worker-a", "worker-b", "streams", "sink")
BAD = ("undecodable", "missing", "outside-roots")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def private_settings(root: Path, stack_settings: Settings) -> Settings:
    """Stack settings for servers of our own under `root`, on free ports; the Kafka classpath the
    shared stack resolved is reused (no Maven run)."""
    s = Settings(
        stack_dir=root,
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        kafka_controller_port=free_port(),
        postgres_port=free_port(),
        kafka_version=stack_settings.kafka_version,
    )
    cached = stack_settings.stack_dir.resolve() / "kafka" / f"classpath-{s.kafka_version}.txt"
    if cached.exists():
        (root / "kafka").mkdir(parents=True, exist_ok=True)
        shutil.copy(cached, root / "kafka" / cached.name)
    return s


@dataclass
class PrivateStack:
    settings: Settings

    @property
    def bootstrap(self) -> str:
        return self.settings.kafka_bootstrap

    @property
    def database_url(self) -> str:
        from devstack import postgres

        return postgres.url(self.settings)

    def restart_broker(self) -> None:
        from devstack import kafka

        kafka.down(self.settings)
        time.sleep(2)
        kafka.up(self.settings)

    def postgres_down(self) -> None:
        from devstack import postgres

        postgres.down(self.settings)

    def postgres_up(self) -> None:
        from devstack import postgres

        postgres.up(self.settings)


@contextmanager
def private_stack(root: Path, stack_settings: Settings, *, postgres_too: bool = True) -> Iterator[PrivateStack]:
    """A private Kafka (and PostgreSQL), stopped and deleted afterwards. PostgreSQL runs as the
    `postgres` user when we are root, so its folder lives in a world-traversable temporary folder."""
    from devstack import kafka, postgres

    if shutil.which("java") is None:
        raise RuntimeError("java is needed to run a private Kafka broker (it runs the stack's broker too)")
    folder = Path(tempfile.mkdtemp(prefix="keye-private-stack-"))
    folder.chmod(0o755)
    s = private_settings(folder, stack_settings)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    try:
        kafka.up(s)
        if postgres_too:
            postgres.up(s)
        yield PrivateStack(s)
    finally:
        if postgres_too:
            postgres.down(s)
        kafka.down(s)
        for log in (folder / "logs").glob("*.log"):
            shutil.copy(log, root / f"private-{log.name}")  # kept beside the test's own logs
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class FaultResult:
    good: list[str]
    bad: list[str]
    elapsed_s: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    points: dict[str, int] = field(default_factory=dict)
    states: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    dead_lettered: set[str] = field(default_factory=set)
    faults: list[str] = field(default_factory=list)
    timeline: list[str] = field(default_factory=list)  # "HH:MM:SS what": ingest waves and faults
    unexpected_exits: list[str] = field(default_factory=list)
    worker_restart_to_commit_s: list[float] = field(default_factory=list)
    settled: bool = False
    trace: dict[str, str] = field(default_factory=dict)  # a lost good video -> where it was last seen
    gate_losses: list[str] = field(default_factory=list)  # on videos.ingest, committed by the gate, never forwarded

    @property
    def videos_per_min(self) -> float:
        return len(self.good) / self.elapsed_s * 60 if self.elapsed_s else 0.0

    def problems(self) -> list[str]:
        out = [
            f"{v}: {self.counts.get(v, 0)} rows, {self.points.get(v, 0)} points {self.trace.get(v, '')}".strip()
            for v in self.good
            if self.counts.get(v) != 1 or self.points.get(v) != 1
        ]
        out += [
            f"{v}: state {self.states.get(v)}, in DLQ: {v in self.dead_lettered}"
            for v in self.bad
            if self.states.get(v, ("",))[0] != "failed" or v not in self.dead_lettered
        ]
        out += (
            [f"rows for unknown videos: {sorted(set(self.counts) - set(self.good))}"]
            if set(self.counts) - set(self.good)
            else []
        )
        return out

    def summary(self) -> str:
        rtc = self.worker_restart_to_commit_s
        return (
            f"{len(self.good)} good + {len(self.bad)} bad in {self.elapsed_s:.0f} s "
            f"({self.videos_per_min:.1f} videos/min), timeline {self.timeline}, "
            f"{len(self.unexpected_exits)} unexpected exits, worker restart->first commit "
            f"{', '.join(f'{t:.1f}' for t in rtc) or '-'} s, problems: {self.problems() or 'none'}"
        )


class FaultRun:
    """One run: ingest `good` videos in `waves` spread over the fault window (1: all at the start,
    a backlog) and the bad inputs through the gate, apply the seeded faults (none when `faults` is
    False), wait until the stores settle, read them."""

    def __init__(
        self,
        stack: PrivateStack,
        tmp: Path,
        clips: list[Path],
        *,
        seed: int,
        good: int,
        faults: bool,
        fault_window_s: float = 60.0,
        extra_worker_kills: int = 2,
        delay_s: float = 0.5,
        waves: int = 3,
    ) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.stack, self.rng, self.faults, self.delay_s = stack, random.Random(seed), faults, delay_s
        self.p: Pipeline = make_pipeline(stack.bootstrap, stack.database_url, tmp, clips[0].parent)
        self.clips = clips
        self.prefix = prefix = self.p.settings.topic_work.split(".")[0]
        self.good = [f"{prefix}-good-{i}" for i in range(good)]
        self.bad = [f"{prefix}-bad-{b}" for b in BAD] + [f"{prefix}-bad-schema"]
        self.window_s, self.waves = fault_window_s, waves
        self.extra_worker_kills = extra_worker_kills
        self.procs: dict[str, Process] = {}
        self.incarnation: dict[str, int] = {}
        self.killed: set[str] = set()
        self.respawned_at: dict[str, float] = {}  # worker log name -> wall time of its start after a kill
        self.crashed_at: dict[str, float] = {}
        self.result = FaultResult(self.good, self.bad)

    # ---- processes -------------------------------------------------------------------------------

    def _args(self, kind: str) -> tuple[list[str], dict[str, str]]:
        s = self.p.settings
        if kind.startswith("worker"):
            return (
                [
                    "-m",
                    "workers",
                    "--group",
                    f"{s.topic_work}-workers",
                    "--batch-size",
                    "2",
                    "--analyzer",
                    ANALYZER,
                    "--session-timeout-ms",
                    "10000",
                    "--instance-id",
                    f"{s.topic_work}-{kind}",
                ],
                {"KEYE_TEST_ANALYZE_DELAY_S": str(self.delay_s)},
            )
        if kind == "streams":
            return ["-m", "streams", "--app-id", f"{s.topic_ingest}-streams", "--loglevel", "warning"], {}
        return ["-m", "cli.main", "vector-sink"], {}

    def _start(self, kind: str) -> None:
        n = self.incarnation[kind] = self.incarnation.get(kind, 0) + 1
        args, env = self._args(kind)
        self.procs[kind] = self.p.spawn(f"{kind}-{n}", args, env)

    def _supervise(self) -> None:
        """Start again what exited: at once what we killed; 3 s later what exited by itself (recorded)."""
        now = time.monotonic()
        for kind, proc in list(self.procs.items()):
            rc = proc.poll()
            if rc is None:
                continue
            if kind in self.killed:
                self.killed.discard(kind)
            elif kind not in self.crashed_at:
                tail = proc.keye_log.read_text(errors="replace")[-1500:]
                self.result.unexpected_exits.append(f"{kind} exited with {rc}:\n{tail}")
                self.crashed_at[kind] = now
                continue
            elif now - self.crashed_at[kind] < 3.0:
                continue
            else:
                del self.crashed_at[kind]
            self._start(kind)
            if kind.startswith("worker"):
                self.respawned_at[self.procs[kind].keye_log.name] = time.time()

    def _kill(self, kind: str) -> None:
        self.killed.add(kind)
        self.procs[kind].send_signal(signal.SIGKILL)
        self.procs[kind].wait()
        self._supervise()

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self._supervise()
            time.sleep(min(0.5, max(0.0, end - time.monotonic())))

    # ---- inputs ------------------------------------------------------------------------------------

    def _ingest(self, ids: list[str]) -> None:
        from service.kafka import ingest

        ingest(
            [self.clips[int(v.rsplit("-", 1)[1]) % len(self.clips)].as_uri() for v in ids],
            self.p.settings,
            video_ids=ids,
            creator_id="creator-faults",
        )

    def _ingest_bad(self) -> None:
        import json

        from service.kafka import ingest, producer

        s, media = self.p.settings, self.p.tmp / "media"
        (media / "broken.mp4").write_bytes(b"not a video")
        uris = {
            "undecodable": (media / "broken.mp4").as_uri(),
            "missing": (media / "missing.mp4").as_uri(),
            "outside-roots": Path("/etc/hostname").as_uri(),
        }
        ingest(list(uris.values()), s, video_ids=[v for v in self.bad if not v.endswith("schema")])
        prod = producer(s)
        vid = self.bad[-1]
        prod.send(
            s.topic_ingest,
            key=vid.encode(),
            value=json.dumps({"video_id": vid, "uri": "ftp://x/y", "submitted_at": "2026-01-01T00:00:00Z"}).encode(),
        )
        prod.flush()
        prod.close()

    # ---- the run -------------------------------------------------------------------------------------

    def schedule(self) -> list[tuple[float, str]]:
        """(seconds after the first ingest, fault): each process kind once, the broker, PostgreSQL,
        and a few more worker kills, at seeded random moments of the window."""
        if not self.faults:
            return []
        kinds = [*KINDS, "broker", "postgres", *self.rng.choices(["worker-a", "worker-b"], k=self.extra_worker_kills)]
        self.rng.shuffle(kinds)
        times = sorted(self.rng.uniform(3, self.window_s) for _ in kinds)
        return list(zip(times, kinds))

    def run(self, timeout_s: float = 240.0) -> FaultResult:
        try:
            for kind in KINDS:
                self._start(kind)
            self._wait_ready()
            waves = [self.good[i :: self.waves] for i in range(self.waves)]
            plan = [
                *((i * self.window_s / self.waves, f"ingest-{i}") for i in range(self.waves)),
                (self.window_s / 2, "ingest-bad"),
                *self.schedule(),
            ]
            t0 = time.monotonic()
            for at, what in sorted(plan):
                self._sleep(at - (time.monotonic() - t0))
                self._apply(what, waves)
            self._settle(t0, timeout_s)
            self.result.elapsed_s = self._last_row_at() - t0
        finally:
            self._stop()
        self._read_stores()
        self._restart_to_commit()
        return self.result

    def _apply(self, what: str, waves: list[list[str]]) -> None:
        self.result.timeline.append(f"{time.strftime('%H:%M:%S')} {what}")
        if what.startswith("ingest-bad"):
            self._ingest_bad()
            return
        if what.startswith("ingest"):
            self._ingest(waves[int(what.split("-")[1])])
            return
        self.result.faults.append(what)
        if what == "broker":
            self.stack.restart_broker()
        elif what == "postgres":
            self.stack.postgres_down()
            self._sleep(self.rng.uniform(5, 10))
            self.stack.postgres_up()
        else:
            self._kill(what)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 180
        while not all(
            "consuming" in self.procs[k].keye_log.read_text(errors="replace") for k in ("worker-a", "worker-b", "sink")
        ):
            if time.monotonic() > deadline:
                raise TimeoutError("the workers and the sink did not start within 180 s\n" + self.p.logs())
            self._sleep(0.5)

    def _settle(self, t0: float, timeout_s: float) -> None:
        while time.monotonic() - t0 < timeout_s:
            states = self._states()
            if (
                all(states.get(v, ("",))[0] == "analyzed" for v in self.good)
                and all(states.get(v, ("",))[0] == "failed" for v in self.bad)
                and self._sink_caught_up()
            ):
                self.result.settled = True
                return
            self._sleep(1.0)

    def _engine(self) -> sa.Engine:
        return sa.create_engine(self.p.settings.database_url, connect_args={"connect_timeout": 3})

    def _states(self) -> dict[str, tuple[str, str | None]]:
        engine = self._engine()
        try:
            with engine.connect() as c:
                if not sa.inspect(c).has_table("videos"):
                    return {}
                return {r[0]: (r[1], r[2]) for r in c.execute(sa.text("SELECT video_id, status, error FROM videos"))}
        except sa.exc.OperationalError:
            return {}  # PostgreSQL is away or starting
        finally:
            engine.dispose()

    def _last_row_at(self) -> float:
        """monotonic time of the newest analysis row (the clock of videos/min)."""
        engine = self._engine()
        try:
            with engine.connect() as c:
                newest = c.execute(
                    sa.text("SELECT max(created_at) FROM analyses WHERE video_id LIKE :p"), {"p": f"{self.prefix}-%"}
                ).scalar_one()
        finally:
            engine.dispose()
        if newest is None:
            return time.monotonic()
        newest = newest if isinstance(newest, datetime) else datetime.fromisoformat(str(newest))
        newest = newest if newest.tzinfo else newest.replace(tzinfo=UTC)
        return time.monotonic() - max(0.0, time.time() - newest.timestamp())

    def _sink_caught_up(self) -> bool:
        from kafka import KafkaConsumer, TopicPartition

        s = self.p.settings
        try:
            c = KafkaConsumer(
                bootstrap_servers=s.kafka_bootstrap,
                group_id="keye-vector-sink",
                enable_auto_commit=False,
                request_timeout_ms=5000,
            )
        except Exception:  # noqa: BLE001 - the broker is restarting
            return False
        try:
            parts = [TopicPartition(s.topic_analyzed, p) for p in c.partitions_for_topic(s.topic_analyzed) or []]
            ends = c.end_offsets(parts)
            return bool(parts) and all((c.committed(tp) or 0) >= ends[tp] for tp in parts)
        except Exception:  # noqa: BLE001 - the broker is restarting: not caught up yet
            return False
        finally:
            c.close()

    def _stop(self) -> None:
        self.p.stop_all()

    def _read_stores(self) -> None:
        from stores.vectors import VectorStore

        s = self.p.settings
        engine = self._engine()
        try:
            with engine.connect() as c:
                self.result.counts = {
                    r[0]: r[1]
                    for r in c.execute(
                        sa.text(  # this run's videos only
                            "SELECT video_id, count(*) FROM analyses WHERE video_id LIKE :p GROUP BY video_id"
                        ),
                        {"p": f"{self.prefix}-%"},
                    )
                }
        finally:
            engine.dispose()
        self.result.states = self._states()
        store = VectorStore.from_settings(s)
        try:
            self.result.points = {v: store.count({"video_id": v}) for v in self.good} if store.exists() else {}
        finally:
            store.close()
        self.result.dead_lettered = {k for k, _ in read_topic(s, s.topic_dlq, idle_s=2.0)}
        self._trace_lost()

    def _trace_lost(self) -> None:
        """For each good video without its row: its place on videos.ingest, the gate's committed
        offset there, and whether it reached videos.work (the evidence of a loss in the gate)."""
        from kafka import KafkaConsumer, TopicPartition

        lost = {v for v in self.good if self.result.counts.get(v) != 1}
        if not lost:
            return
        s = self.p.settings
        where: dict[str, tuple[int, int]] = {}
        reader = KafkaConsumer(
            s.topic_ingest,
            bootstrap_servers=s.kafka_bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
            consumer_timeout_ms=2000,
        )
        for m in reader:
            key = (m.key or b"").decode()
            if key in lost:
                where.setdefault(key, (m.partition, m.offset))
        reader.close()
        forwarded = {k for k, _ in read_topic(s, s.topic_work, idle_s=2.0)}
        gate = KafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap, group_id=f"{s.topic_ingest}-streams", enable_auto_commit=False
        )
        try:
            for v in sorted(lost):
                if v not in where:
                    self.result.trace[v] = "(never on videos.ingest)"
                    continue
                part, offset = where[v]
                committed = gate.committed(TopicPartition(s.topic_ingest, part))
                if committed is not None and committed > offset and v not in forwarded:
                    self.result.gate_losses.append(v)
                self.result.trace[v] = (
                    f"(videos.ingest[{part}]@{offset}, gate committed {committed}, "
                    f"on videos.work: {v in forwarded}, in DLQ: {v in self.result.dead_lettered})"
                )
        finally:
            gate.close()

    def _restart_to_commit(self) -> None:
        """Seconds from each worker restart after a kill to that process's first committed offset."""
        for name, started in self.respawned_at.items():
            log = (self.p.tmp / name).read_text(errors="replace")
            m = re.search(r"^(\S+ \S+) INFO keye.worker: committed", log, re.M)
            if m:
                at = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                self.result.worker_restart_to_commit_s.append(at - started)


__all__ = ["FaultResult", "FaultRun", "PrivateStack", "free_port", "private_settings", "private_stack"]
