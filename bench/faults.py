"""The pipeline under faults: how fast a SIGKILLed worker is back, and videos/min while every process
kind is killed, the broker restarts and PostgreSQL goes away.

restart phase: two `python -m workers` processes (static group members: each has its own
KEYE_WORKER_INSTANCE_ID) on a backlog in `videos.work` (3 partitions), production session timeout
(30 s). `--restarts` times, at a seeded random moment: SIGKILL one worker, start its replacement at
once (same instance id), and measure from the committed offsets of the group (read every 0.1 s):
  restart->commit  replacement start -> first committed offset advance on a partition the killed worker owned
  survivor stall   longest gap between the surviving worker's commits from the kill to that moment,
                   as a ratio to its median gap before the kill (1.0: it did not notice)
The analysis is the pipeline tests' keye-tiny analyzer with a per-video sleep (`--delay`), a
stand-in for inference on an accelerator that leaves the CPUs free.

faults phase (`--fault-videos` > 0): the fault-injection harness of the test suite
(tests/support/faults.py) with private Kafka and PostgreSQL, the streams app, two workers and
the vector sink: first without faults (the baseline), then with every process kind SIGKILLed at
seeded random moments of `--fault-window-s`, one broker restart, one PostgreSQL outage and a worker
kill every ~30 s; prints videos/min of both and their ratio, each worker's restart -> first commit,
and what the stores say (one row and one point per good video, every bad input failed and
dead-lettered; a good video lost is traced to where it was last seen).

Needs the stack's Kafka and PostgreSQL (the restart phase; a throwaway database is created) and
Java + PostgreSQL binaries (the faults phase).
    .venv/bin/python bench/faults.py [--restarts 4] [--delay 1.0] [--batch-size 4] [--fault-videos 0]
        [--fault-window-s 240] [--seed 13]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the product and tests.support, before bench/ (the script's folder)

from pipeline import admin_url, clips, create_database, drop_database  # noqa: E402 - bench/pipeline.py

from service.settings import Settings  # noqa: E402 - after the sys.path line
from tests.support.pipeline import ANALYZER, make_pipeline, submit_work  # noqa: E402 - after the sys.path line


class CommitWatch:
    """Every committed-offset advance of a group, as (monotonic time, partition, offset)."""

    def __init__(self, settings: Settings, group: str) -> None:
        from kafka import KafkaAdminClient

        self.admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        self.group, self.events, self.stop = group, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        last: dict[int, int] = {}
        while not self.stop.wait(0.1):
            try:
                offsets = self.admin.list_group_offsets({self.group: None})[self.group]
            except Exception:  # noqa: BLE001 - the coordinator moves during rebalances; read again
                continue
            now = time.monotonic()
            for tp, om in offsets.items():
                if om.offset > last.get(tp.partition, -1):
                    if tp.partition in last:
                        self.events.append((now, tp.partition, om.offset))
                    last[tp.partition] = om.offset

    def first_after(self, t: float, partitions: set[int]) -> float | None:
        return next((e[0] for e in self.events if e[0] > t and e[1] in partitions), None)

    def gaps(self, partitions: set[int], start: float, end: float) -> list[float]:
        times = [start] + [e[0] for e in self.events if start < e[0] <= end and e[1] in partitions] + [end]
        return [b - a for a, b in zip(times, times[1:])]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.admin.close()


def assigned(log: Path) -> set[int]:
    found = re.findall(r"partitions assigned: \[(.*)\]", log.read_text(errors="replace"))
    return {int(p) for p in re.findall(r", (\d+)\)", found[-1])} if found else set()


def restart_phase(args, db_url: str, tmp: Path) -> list[dict]:
    tmp.mkdir(parents=True, exist_ok=True)
    p = make_pipeline(Settings().kafka_bootstrap, db_url, tmp, clips()[0].parent)
    group = f"{p.settings.topic_work}-workers"
    rng = random.Random(args.seed)
    incarnation = {"a": 0, "b": 0}

    def start(name: str):
        incarnation[name] += 1
        return p.spawn(
            f"worker-{name}-{incarnation[name]}",
            [
                "-m",
                "workers",
                "--group",
                group,
                "--batch-size",
                str(args.batch_size),
                "--analyzer",
                ANALYZER,
                "--session-timeout-ms",
                str(args.session_timeout_ms),
            ],
            {"KEYE_TEST_ANALYZE_DELAY_S": str(args.delay), "KEYE_WORKER_INSTANCE_ID": f"bench-worker-{name}"},
        )

    submit_work(p.settings, [c for c in clips() if c.name != "bigbuckbunny.mp4"], copies=args.backlog // 5 + 1)
    watch = CommitWatch(p.settings, group)
    procs = {"a": start("a"), "b": start("b")}
    results = []
    try:
        deadline = time.monotonic() + 300
        while len(watch.events) < 4 or not all(assigned(procs[n].keye_log) for n in procs):
            if time.monotonic() > deadline:
                sys.exit("the workers did not start committing within 300 s:\n" + p.logs())
            time.sleep(0.2)
        for r in range(args.restarts):
            time.sleep(rng.uniform(args.min_gap, args.max_gap))
            victim, survivor = ("a", "b") if r % 2 == 0 else ("b", "a")
            owned, others = assigned(procs[victim].keye_log), assigned(procs[survivor].keye_log)
            t_kill = time.monotonic()
            procs[victim].send_signal(signal.SIGKILL)
            procs[victim].wait()
            t_spawn = time.monotonic()
            procs[victim] = start(victim)
            while (t_first := watch.first_after(t_spawn, owned)) is None:
                if time.monotonic() - t_spawn > 300:
                    sys.exit(f"no commit on partitions {owned} within 300 s of the restart:\n" + p.logs())
                time.sleep(0.1)
            before = watch.gaps(others, max(0.0, t_kill - 30), t_kill)[1:-1] or [float("nan")]
            stall = max(watch.gaps(others, t_kill, t_first))
            results.append(
                {
                    "restart_to_commit_s": t_first - t_spawn,
                    "kill_to_commit_s": t_first - t_kill,
                    "survivor_stall_s": stall,
                    "survivor_ratio": stall / statistics.median(before),
                }
            )
            print(
                f"  restart {r + 1}: worker {victim} (partitions {sorted(owned)}): restart->commit "
                f"{t_first - t_spawn:.1f} s, survivor's longest gap {stall:.1f} s "
                f"({results[-1]['survivor_ratio']:.1f}x its median before)",
                flush=True,
            )
    finally:
        watch.close()
        p.stop_all()
    return results


def faults_phase(args, tmp: Path) -> None:
    from tests.support.faults import FaultRun, private_stack

    good = [c for c in clips() if c.name != "bigbuckbunny.mp4"]
    with private_stack(tmp / "stack", Settings()) as stack:
        runs = {}
        for name, faults in (("baseline", False), ("faults", True)):
            # The window is when the faults fall: one of each kind, then a worker kill every ~30 s.
            run = FaultRun(
                stack,
                tmp / name,
                good,
                seed=args.seed,
                good=args.fault_videos,
                faults=faults,
                fault_window_s=args.fault_window_s,
                extra_worker_kills=int(args.fault_window_s // 30),
                delay_s=args.delay,
                waves=1,
            )
            runs[name] = run.run(timeout_s=args.fault_timeout_s)
            print(f"  {name}: {runs[name].summary()}", flush=True)
    base, hit = runs["baseline"], runs["faults"]
    print(
        f"videos/min: {base.videos_per_min:.1f} without faults, {hit.videos_per_min:.1f} under faults "
        f"({hit.videos_per_min / base.videos_per_min:.2f}x); restart->first commit of workers under faults: "
        f"median {statistics.median(hit.worker_restart_to_commit_s or [float('nan')]):.1f} s"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--restarts", type=int, default=4)
    ap.add_argument("--backlog", type=int, default=2000, help="videos in videos.work (enough for every partition)")
    ap.add_argument("--delay", type=float, default=1.0, help="seconds of simulated inference per video")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--session-timeout-ms", type=int, default=30000)
    ap.add_argument("--min-gap", type=float, default=20.0, help="seconds between faults, at least")
    ap.add_argument("--max-gap", type=float, default=40.0)
    ap.add_argument(
        "--fault-videos",
        type=int,
        default=0,
        help="good videos of the faults phase, all queued at the start (0: skip it)",
    )
    ap.add_argument("--fault-window-s", type=float, default=240, help="seconds over which the faults fall")
    ap.add_argument("--fault-timeout-s", type=float, default=1800)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument(
        "--database-url",
        default=os.environ.get("KEYE_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/keye"),
    )
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="keye-faults-"))
    print(
        f"{os.cpu_count()} CPUs, batch {args.batch_size}, {args.delay} s per video, session timeout "
        f"{args.session_timeout_ms} ms, faults every {args.min_gap:.0f}-{args.max_gap:.0f} s, seed {args.seed}"
    )
    if args.restarts:
        name = create_database(args.database_url)
        try:
            res = restart_phase(args, admin_url(args.database_url, name), tmp / "restart")
        finally:
            drop_database(args.database_url, name)
        print(
            f"worker restart -> first commit: median {statistics.median(r['restart_to_commit_s'] for r in res):.1f} s"
            f" (max {max(r['restart_to_commit_s'] for r in res):.1f} s) over {len(res)} SIGKILLs; survivor's "
            f"longest gap: median {statistics.median(r['survivor_ratio'] for r in res):.1f}x its median gap"
        )
    if args.fault_videos:
        faults_phase(args, tmp / "faults")


if __name__ == "__main__":
    main()
