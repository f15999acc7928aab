"""Benchmark of the embedded vector store (`stores.vectors.VectorStore(path=...)`, Qdrant Edge): build
time, reopen time, memory, search p50/p99 and requests/s, recall@10 against exact search, plain and
with a payload filter (tags any of [cat, dog] and language en, about 15% of the points, as in
bench/api.py).

Vectors are clustered and unit length: a 64-d latent mixture of 1000 clusters lifted to `dim` by a
fixed random orthonormal map, plus isotropic noise (real embeddings have a low intrinsic
dimension; i.i.d. Gaussian vectors have no meaningful nearest neighbours). Queries are fresh draws
from the same distribution. Points are generated chunk by chunk from per-chunk seeds, and the exact
top 10 of every query is kept while they are written, so 1M x 4096 (16 GB) never sits in memory.

The build is the bulk path (points written, then indexed at once); `--incremental` also times
indexing that many more points the way the vector sink does (indexed after every INDEX_AFTER).
Search is measured in a fresh process that opens the store (reopen time, then memory: anonymous
and file-backed resident memory), one query at a time (latency), then from `--threads` threads
(requests/s).

    python bench/vectors.py --n 100000                              # 100k x 4096 under /tmp
    python bench/vectors.py --n 300000 --folder /var/tmp/keye-vectors
    python bench/vectors.py --n 2000 --dim 256 --seconds 1           # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._points import bench_filter  # noqa: E402 - after the sys.path line
from bench._points import payload as _payload  # noqa: E402 - after the sys.path line

LATENT, CLUSTERS, CHUNK, K = 64, 1000, 1000, 10
NAMESPACE = uuid.UUID("5b0c3e9a-8a57-4d47-9a51-0c1f2f4c9b11")


def point_id(i: int) -> str:
    return str(uuid.uuid5(NAMESPACE, f"bench-{i:07d}"))


def payload(i: int, now: datetime) -> dict:
    return _payload(i, now, digits=7)


def filtered(idx: np.ndarray) -> np.ndarray:
    """Which of these points FILTERS accepts (payload() decides tags and language by index)."""
    return ((idx % 8 < 2) | ((idx // 8) % 8 < 2)) & (idx % 3 == 0)


class Clustered:
    """Deterministic clustered unit vectors: chunk c of rows is the same on every run with one seed."""

    def __init__(self, dim: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.dim, self.seed = dim, seed
        self.lift = np.linalg.qr(rng.standard_normal((dim, LATENT)))[0].astype(np.float32).T  # (LATENT, dim)
        self.centres = rng.standard_normal((CLUSTERS, LATENT)).astype(np.float32)

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        z = self.centres[rng.integers(0, CLUSTERS, n)] + 0.35 * rng.standard_normal((n, LATENT), dtype=np.float32)
        x = z @ self.lift + (0.3 * np.sqrt(LATENT / self.dim)) * rng.standard_normal((n, self.dim), dtype=np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def chunk(self, start: int, n: int) -> np.ndarray:
        return self.draw(n, np.random.default_rng((self.seed, start)))

    def queries(self, n: int) -> np.ndarray:
        return self.draw(n, np.random.default_rng((self.seed, 2**40)))


class TopK:
    """The exact top K of every query over the rows seen so far (scores kept in float64)."""

    def __init__(self, q: int) -> None:
        self.scores = np.full((q, K), -np.inf)
        self.rows = np.full((q, K), -1, dtype=np.int64)

    def add(self, scores: np.ndarray, rows: np.ndarray) -> None:
        s = np.concatenate([self.scores, scores], axis=1)
        r = np.concatenate([self.rows, np.broadcast_to(rows, scores.shape)], axis=1)
        top = np.argsort(-s, axis=1, kind="stable")[:, :K]
        self.scores, self.rows = np.take_along_axis(s, top, 1), np.take_along_axis(r, top, 1)


def build(folder: Path, n: int, gen: Clustered, queries: np.ndarray, incremental: int) -> dict:
    from stores.vectors import VectorStore

    now = datetime.now(UTC)
    plain, flt = TopK(len(queries)), TopK(len(queries))
    q64 = queries.astype(np.float64)
    store = VectorStore(path=folder)
    write_s = exact_s = 0.0
    t0 = time.perf_counter()
    with store.bulk_load():
        for start in range(0, n, CHUNK):
            rows = np.arange(start, min(n, start + CHUNK))
            x = gen.chunk(start, len(rows))
            t = time.perf_counter()
            store.upsert_points([point_id(i) for i in rows], x, [payload(int(i), now) for i in rows])
            write_s += time.perf_counter() - t
            t = time.perf_counter()
            s = q64 @ x.astype(np.float64).T
            plain.add(s, rows)
            keep = filtered(rows)
            flt.add(s[:, keep], rows[keep])
            exact_s += time.perf_counter() - t
            if start % (CHUNK * 50) == 0:
                print(f"  {start + len(rows)} points written ({write_s:.0f}s)", flush=True)
        t = time.perf_counter()
    index_s = time.perf_counter() - t  # bulk_load's exit indexes and flushes
    out = {
        "write_s": write_s,
        "index_s": index_s,
        "build_s": write_s + index_s,
        "exact_topk_s": exact_s,
        "wall_s": time.perf_counter() - t0,
    }
    if incremental:  # the truth covers these points too
        spent = 0.0
        for start in range(n, n + incremental, CHUNK):
            rows = np.arange(start, min(n + incremental, start + CHUNK))
            x = gen.chunk(start, len(rows))
            t = time.perf_counter()
            store.upsert_points([point_id(i) for i in rows], x, [payload(int(i), now) for i in rows])
            spent += time.perf_counter() - t
            s = q64 @ x.astype(np.float64).T
            plain.add(s, rows)
            flt.add(s[:, filtered(rows)], rows[filtered(rows)])
        t = time.perf_counter()
        store.maintain(force=True)
        out["incremental"] = {"points": incremental, "s": spent + time.perf_counter() - t}
    store.close()
    out["disk_gb"] = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e9
    np.save(folder.parent / "truth_plain.npy", plain.rows)
    np.save(folder.parent / "truth_filtered.npy", flt.rows)
    return out


# ---- the measuring child: opens the store, then times searches --------------------------------------


def rss() -> dict:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024 / 1024  # GiB
    return fields


def measure(args: argparse.Namespace) -> dict:
    from stores.vectors import VectorStore

    folder = Path(args.folder)
    gen = Clustered(args.dim, args.seed)
    queries = gen.queries(args.queries)
    truth = {"plain": np.load(folder / "truth_plain.npy"), "filtered": np.load(folder / "truth_filtered.npy")}
    ids = {}  # point id -> row, for the rows in the truth
    for rows in truth.values():
        ids.update({point_id(int(i)): int(i) for i in rows.ravel() if i >= 0})
    before = rss()
    t = time.perf_counter()
    store = VectorStore(path=folder / "store")
    store.warm()
    out: dict = {"reopen_s": time.perf_counter() - t, "rss_before_gib": before}
    t = time.perf_counter()
    store.query(queries[0], limit=K)
    out["first_query_ms"] = (time.perf_counter() - t) * 1000
    flt = bench_filter()
    for name, f in (("plain", None), ("filtered", flt)):
        found = []
        for qi, q in enumerate(queries):
            hits = store.query(q, query_filter=f, limit=K)
            want = {int(r) for r in truth[name][qi] if r >= 0}
            found.append(len({ids.get(h.id, -1) for h in hits} & want) / max(1, len(want)))
        lat, end, i = [], time.perf_counter() + args.seconds, 0
        while time.perf_counter() < end:
            t = time.perf_counter()
            store.query(queries[i % len(queries)], query_filter=f, limit=K)
            lat.append(time.perf_counter() - t)
            i += 1
        done, stop = [0], time.perf_counter() + args.seconds

        def worker(w: int, f=f, stop=stop, done=done) -> None:
            j = w
            while time.perf_counter() < stop:
                store.query(queries[j % len(queries)], query_filter=f, limit=K)
                j += args.threads
                done[0] += 1  # one int increment under the GIL: a close enough count

        t = time.perf_counter()
        threads = [threading.Thread(target=worker, args=(w,)) for w in range(args.threads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        out[name] = {
            "recall_at_10": float(np.mean(found)),
            "p50_ms": _pct(lat, 50),
            "p99_ms": _pct(lat, 99),
            "sequential_rps": len(lat) / args.seconds,
            f"rps_{args.threads}_threads": done[0] / (time.perf_counter() - t),
        }
    out["rss_gib"] = rss()
    store.close()
    return out


def _pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000 if len(values) > 1 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--queries", type=int, default=200, help="queries with an exact top 10 (recall)")
    ap.add_argument("--seconds", type=float, default=10.0, help="measured seconds per latency and throughput run")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--incremental", type=int, default=0, help="then add and index this many points as the sink does")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--folder", help="where to build (kept); default a temporary folder under /tmp, removed after")
    ap.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # the child
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args)))
        return
    tmp = None
    if args.folder is None:
        tmp = tempfile.mkdtemp(prefix="keye-bench-vectors-", dir="/tmp")
        args.folder = tmp
    folder = Path(args.folder)
    try:
        gen = Clustered(args.dim, args.seed)
        print(f"== {args.n} x {args.dim} into {folder}", flush=True)
        built = build(folder / "store", args.n, gen, gen.queries(args.queries), args.incremental)
        print(
            f"built: written {built['write_s']:.1f}s + indexed {built['index_s']:.1f}s = {built['build_s']:.1f}s, "
            f"{built['disk_gb']:.2f} GB on disk"
            + (
                f"; +{built['incremental']['points']} points indexed incrementally in {built['incremental']['s']:.1f}s"
                if "incremental" in built
                else ""
            ),
            flush=True,
        )
        child = subprocess.run(
            [
                sys.executable,
                __file__,
                "--measure",
                "--folder",
                str(folder),
                "--dim",
                str(args.dim),
                "--queries",
                str(args.queries),
                "--seconds",
                str(args.seconds),
                "--threads",
                str(args.threads),
                "--seed",
                str(args.seed),
            ],
            capture_output=True,
            text=True,
            env=os.environ,
        )
        if child.returncode:
            raise SystemExit(child.stderr)
        res = json.loads(child.stdout.strip().splitlines()[-1])
        print(
            f"reopen {res['reopen_s']:.2f}s, first query {res['first_query_ms']:.1f} ms; resident "
            f"{res['rss_gib']['VmRSS']:.2f} GiB (anonymous {res['rss_gib']['RssAnon']:.2f}, "
            f"file-backed {res['rss_gib']['RssFile']:.2f})"
        )
        for name in ("plain", "filtered"):
            r = res[name]
            print(
                f"{name:<9} recall@10 {r['recall_at_10']:.4f}  p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  "
                f"{r['sequential_rps']:.0f} req/s sequential, {r[f'rps_{args.threads}_threads']:.0f} req/s "
                f"from {args.threads} threads"
            )
        print(json.dumps({"n": args.n, "dim": args.dim, "build": built, "search": res}))
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
