"""Benchmark of the API under load: requests/s, p50 and p99 of search and of the video status route,
at 10k and 100k stored videos with 4096-d vectors, embedded default (SQLite) versus PostgreSQL.

For each size the vectors are written once into a local-mode Qdrant folder (batched upserts, timed),
shared by both SQL backends: vectors stay in local Qdrant, only KEYE_DATABASE_URL changes. The API
runs in its own process (uvicorn, one worker); the load comes from this process over loopback, C
connections for a fixed time per scenario. The server times its phases (SQL statements, the
vector search, the point lookup, the text embedding; the rest is HTTP, auth and (de)serialisation)
and reports them per request.

Baseline measured in the same run: the same store's search in-process (no HTTP), so the ratio is
what HTTP, auth, SQL and serialisation add.

Text queries: the random-weight keye-tiny model embeds the text (256-d); a fixed random projection
lifts it to the stored width, so the search costs what a 4096-d query costs.

    python bench/api.py                   # 10k and 100k x 4096, SQLite and PostgreSQL (~12 min)
    python bench/api.py --quick           # 2k and 10k, shorter runs
    python bench/api.py --sizes 5000 --backends sqlite --seconds 3
"""

from __future__ import annotations

import argparse
import gc
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._points import FILTERS, VERSION, bench_filter, payload  # noqa: E402  (after the sys.path line)

SERVER = """
import collections, sys, threading, time
from pathlib import Path
sys.path.insert(0, {root!r})
import numpy as np, uvicorn
from sqlalchemy import event
import api.search
from api.app import create_app
from api.embedder import KeyeTextEmbedder
from service.settings import Settings
from stores.vectors import VectorStore

settings = Settings(data_dir=Path({data!r}), qdrant_path=Path({qdrant!r}), database_url={db!r}, model="keye-tiny")
phases, lock = collections.defaultdict(float), threading.Lock()

def add(name, dt):
    with lock:
        phases[name] += dt

def timed(name, fn):
    def wrapper(*a, **kw):
        t = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            add(name, time.perf_counter() - t)
    return wrapper

class Lifted:  # keye-tiny's text embedding, lifted to the stored width by a fixed projection
    def __init__(self, inner, dim):
        self.inner, self.version = inner, inner.version
        self.proj = np.random.default_rng(7).standard_normal((dim, 256)).astype(np.float32)
    def embed_text(self, text, model=None):
        return (self.proj @ np.asarray(self.inner.embed_text(text, model), dtype=np.float32)).tolist()

embedder = Lifted(KeyeTextEmbedder(settings), {dim})
embedder.embed_text = timed("text_embed", embedder.embed_text)
VectorStore.query = timed("vector_search", VectorStore.query)
VectorStore.vector = timed("vector_lookup", VectorStore.vector)
app = create_app(settings, embedder=embedder)

def before(conn, cursor, statement, params, context, many):
    context._bench_t = time.perf_counter()

def after(conn, cursor, statement, params, context, many):
    add("sql", time.perf_counter() - context._bench_t)

event.listen(app.state.services.engine, "before_cursor_execute", before)
event.listen(app.state.services.engine, "after_cursor_execute", after)

@app.middleware("http")
async def total(request, call_next):
    t = time.perf_counter()
    response = await call_next(request)
    if not request.url.path.startswith("/__bench"):
        add("request", time.perf_counter() - t)
        add("requests", 1)
    return response

def report(reset: bool = False):
    with lock:
        out = dict(phases)
        if reset:
            phases.clear()
    return out

app.add_api_route("/__bench/phases", report, methods=["GET"])
uvicorn.run(app, host="127.0.0.1", port={port}, log_level="warning", access_log=False)
"""


def build_vectors(folder: Path, n: int, dim: int, seed: int) -> float:
    """n points in a local Qdrant folder by batched upserts; returns the seconds it took."""
    from service.schemas import analysis_id_for
    from stores.vectors import VectorStore

    rng, now = np.random.default_rng(seed), datetime.now(UTC)
    t = time.perf_counter()
    store = VectorStore(path=folder)
    with store.bulk_load():  # the HNSW index is built once, after the last point
        for start in range(0, n, 1000):
            idx = range(start, min(n, start + 1000))
            store.upsert_points(
                [analysis_id_for(f"bench-{i:06d}", VERSION) for i in idx],
                rng.standard_normal((len(idx), dim), dtype=np.float32),
                [payload(i, now) for i in idx],
            )
    store.close()
    return time.perf_counter() - t


def build_sql(url: str, n: int) -> tuple[str, float]:
    """n analysed videos (video, analysis and tag rows, as the workers write them) in bulk; returns an
    all-roles API key and the seconds it took."""
    from sqlmodel import Session

    from api.keys import ROLES, create_key
    from api.storage import open_engine
    from service.schemas import analysis_id_for
    from service.settings import Settings
    from stores.db import Analysis, Tag, Video, upsert

    now = datetime.now(UTC)
    t = time.perf_counter()
    engine = open_engine(Settings(database_url=url))
    with Session(engine) as session:
        key = create_key(session, ROLES, name="bench")[1]
        for start in range(0, n, 1000):
            idx = range(start, min(n, start + 1000))
            pl = [payload(i, now) for i in idx]
            upsert(
                session,
                Video,
                [
                    dict(
                        video_id=p["video_id"],
                        uri=f"file:///videos/{p['video_id']}.mp4",
                        hashtags=[],
                        creator_id=p["creator_id"],
                        language=p["language"],
                        status="analyzed",
                        submitted_at=now,
                        updated_at=now,
                    )
                    for p in pl
                ],
                ["video_id"],
            )
            upsert(
                session,
                Analysis,
                [
                    dict(
                        analysis_id=analysis_id_for(p["video_id"], VERSION),
                        video_id=p["video_id"],
                        model_version=VERSION,
                        prompt_version="p",
                        moderation_status="clear",
                        max_severity=0,
                        summary_short=f"video {p['video_id']}",
                        duration_s=p["duration_s"],
                        record={"video_id": p["video_id"]},
                        created_at=datetime.fromisoformat(p["created_at"]),
                    )
                    for p in pl
                ],
                ["analysis_id"],
            )
            upsert(
                session,
                Tag,
                [
                    dict(
                        analysis_id=analysis_id_for(p["video_id"], VERSION),
                        label=label,
                        video_id=p["video_id"],
                        score=0.9,
                    )
                    for p in pl
                    for label in set(p["tags"])
                ],
                ["analysis_id", "label"],
            )
            session.commit()
    engine.dispose()
    return key, time.perf_counter() - t


def in_process(folder: Path, queries: np.ndarray, seconds: float) -> dict:
    """Open times and per-query latency of the embedded store's search without HTTP."""
    from stores.vectors import VectorStore

    t = time.perf_counter()
    store = VectorStore(path=folder)
    opened = time.perf_counter() - t
    t = time.perf_counter()
    store.warm()
    warm_s = time.perf_counter() - t
    flt = bench_filter()
    out = {"store_open_s": opened, "store_warm_s": warm_s}
    for name, f in (("plain", None), ("filtered", flt)):
        lat, end, i = [], time.perf_counter() + seconds, 0
        while time.perf_counter() < end:
            t = time.perf_counter()
            store.query(queries[i % len(queries)], query_filter=f, limit=10)
            lat.append(time.perf_counter() - t)
            i += 1
        out[f"store_{name}_ms"] = statistics.median(lat) * 1000
    store.close()
    del store
    gc.collect()
    return out


def load(url: str, key: str, make_request, seconds: float, connections: int) -> tuple[list[float], int, float]:
    import httpx

    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    end = time.perf_counter() + seconds

    def worker(w: int) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as c:
            i = w
            while time.perf_counter() < end:
                method, path, body = make_request(i)
                t = time.perf_counter()
                resp = c.request(method, path, json=body)
                dt = time.perf_counter() - t
                with lock:
                    lat.append(dt)
                    errors[0] += resp.status_code != 200
                i += connections

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, errors[0], time.perf_counter() - start


def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] * 1000 if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000


def scenarios(n: int, queries: list[list[float]]) -> dict:
    def vid(i: int) -> str:
        return f"bench-{(i * 7919) % n:06d}"

    texts = ["a cat plays the piano", "street food at night", "a car race in the rain", "dogs on the beach"]
    return {
        "status": lambda i: ("GET", f"/v1/videos/{vid(i)}", None),
        "search_vector": lambda i: ("POST", "/v1/search", {"vector": queries[i % len(queries)], "limit": 10}),
        "search_vector_filtered": lambda i: (
            "POST",
            "/v1/search",
            {"vector": queries[i % len(queries)], "limit": 10, "filters": FILTERS},
        ),
        "search_video": lambda i: ("POST", "/v1/search", {"video_id": vid(i), "limit": 10}),
        "search_video_filtered": lambda i: (
            "POST",
            "/v1/search",
            {"video_id": vid(i), "limit": 10, "filters": FILTERS},
        ),
        "search_text": lambda i: ("POST", "/v1/search", {"text": texts[i % 4], "limit": 10}),
        "search_text_filtered": lambda i: (
            "POST",
            "/v1/search",
            {"text": texts[i % 4], "limit": 10, "filters": FILTERS},
        ),
    }


def serve_and_load(
    data: Path,
    folder: Path,
    db_url: str,
    key: str,
    n: int,
    dim: int,
    queries: list[list[float]],
    args: argparse.Namespace,
) -> tuple[float, dict]:
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SERVER.format(root=str(ROOT), data=str(data), qdrant=str(folder), db=db_url, port=port, dim=dim),
        ]
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 600
        t = time.perf_counter()
        while True:  # readyz opens the vector store: the embedded store's open
            try:
                if httpx.get(url + "/readyz", timeout=600).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline or server.poll() is not None:
                raise SystemExit("the API server did not start")
            time.sleep(0.2)
        ready = time.perf_counter() - t
        results = {}
        for name, make in scenarios(n, queries).items():
            load(url, key, make, args.warmup, args.connections)
            httpx.get(url + "/__bench/phases?reset=true")
            lat, errors, wall = load(url, key, make, args.seconds, args.connections)
            ph = httpx.get(url + "/__bench/phases?reset=true").json()
            count = max(ph.pop("requests", 0), 1)
            results[name] = {
                "requests": len(lat),
                "errors": errors,
                "rps": len(lat) / wall,
                "p50_ms": pct(lat, 50),
                "p99_ms": pct(lat, 99),
                "server_ms": {k: v / count * 1000 for k, v in ph.items()},
            }
        return ready, results
    finally:
        server.terminate()
        server.wait(timeout=60)


def postgres_database() -> tuple[str, callable]:
    """A fresh database on the dev stack's PostgreSQL, and a function that drops it."""
    import uuid
    from urllib.parse import urlsplit, urlunsplit

    import sqlalchemy as sa

    from devstack import postgres
    from service.settings import Settings

    server = postgres.url(Settings())
    name = f"keye_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return urlunsplit(urlsplit(server)._replace(path=f"/{name}")), drop


def phases_line(ms: dict) -> str:
    """Mean ms per request by phase."""
    ms = dict(ms)
    total = ms.pop("request", 0.0)
    rest = total - sum(ms.values())
    parts = [f"{k} {v:.2f}" for k, v in sorted(ms.items(), key=lambda kv: -kv[1]) if v >= 0.005]
    line = f"server {total:.2f} ms = " + " + ".join(parts + [f"http/auth/json {rest:.2f}"])
    return line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,100000", help="stored videos, comma-separated")
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--seconds", type=float, default=5.0, help="measured seconds per scenario")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="2k and 10k videos, 2 s per scenario")
    ap.add_argument(
        "--tmp",
        default="/dev/shm" if Path("/dev/shm").is_dir() else None,
        help="where the stores are built (default tmpfs: local Qdrant commits every point, and "
        "fsync on a shared disk would make the 100k build take half an hour)",
    )
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.seconds = "2000,10000", 2.0
    sizes = [int(s) for s in args.sizes.split(",")]
    backends = args.backends.split(",")
    rng = np.random.default_rng(args.seed + 1)
    queries = rng.standard_normal((64, args.dim), dtype=np.float32)
    report: dict = {"dim": args.dim, "connections": args.connections, "seconds": args.seconds, "sizes": {}}

    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="keye-bench-api-", dir=args.tmp) as tmp:
            folder = Path(tmp) / "qdrant"
            built = build_vectors(folder, n, args.dim, args.seed)
            mb = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6
            print(
                f"\n== {n} videos x {args.dim}: embedded store built by batched upserts in {built:.1f}s "
                f"({built / n * 1000:.2f} ms/point, {mb:.0f} MB on disk)",
                flush=True,
            )
            base = in_process(folder, queries, min(args.seconds, 3.0))
            print(
                f"in-process: reopen {base['store_open_s']:.1f}s, warm {base['store_warm_s']:.1f}s; "
                f"query p50 {base['store_plain_ms']:.2f} ms (filtered {base['store_filtered_ms']:.2f})",
                flush=True,
            )
            entry = {"build_vectors_s": built, "disk_mb": mb, "in_process": base, "backends": {}}
            for backend in backends:
                drop = None
                if backend == "postgres":
                    db_url, drop = postgres_database()
                else:
                    db_url = f"sqlite:///{Path(tmp) / 'keye.sqlite'}"
                try:
                    key, sql_s = build_sql(db_url, n)
                    ready, results = serve_and_load(
                        Path(tmp) / backend, folder, db_url, key, n, args.dim, queries.tolist(), args
                    )
                finally:
                    if drop:
                        drop()
                entry["backends"][backend] = {"build_sql_s": sql_s, "ready_s": ready, "results": results}
                print(
                    f"-- {backend}: SQL rows written in {sql_s:.1f}s; server ready (store open) "
                    f"in {ready:.1f}s; {args.connections} connections, {args.seconds:g}s per scenario",
                    flush=True,
                )
                print(
                    f"{'scenario':<24}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'err':>5}{'p50/direct':>11}  where the time goes"
                )
                for name, r in results.items():
                    direct = base["store_filtered_ms" if "filtered" in name else "store_plain_ms"]
                    ratio = f"{r['p50_ms'] / direct:.1f}x" if name.startswith("search") else "-"
                    print(
                        f"{name:<24}{r['rps']:>8.1f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['errors']:>5}{ratio:>11}  "
                        f"{phases_line(r['server_ms'])}",
                        flush=True,
                    )
            if len(backends) == 2:
                a, b = (entry["backends"][k]["results"] for k in backends)
                print(
                    f"-- {backends[1]} / {backends[0]} req/s: "
                    + ", ".join(f"{name} {b[name]['rps'] / a[name]['rps']:.2f}x" for name in a),
                    flush=True,
                )
            report["sizes"][n] = entry
    print(json.dumps(report))


if __name__ == "__main__":
    main()
