"""Benchmark of the API under load: requests/s, p50 and p99 of search and of the video status route,
at 10k and 100k stored videos with 4096-d vectors, embedded default (SQLite) versus PostgreSQL, and
recall@10 of vector search through the API against exact search, plain and filtered.

For each size the vectors are written once into an embedded store (batched upserts, timed): the
clustered unit vectors of bench/vectors.py, whose exact top 10 of every query (plain, and with the
filter of bench/_points.py) is kept while they are written. `--store DIR` keeps that folder (and the
exact answers) under DIR and reuses it on later runs; the 100k x 4096 build takes minutes. Both SQL
backends share it: only KEYE_DATABASE_URL changes. The API runs in its own process (uvicorn, one
worker); the load comes from this process over loopback, C connections for a fixed time per
scenario, request bodies encoded beforehand. The server times its phases (SQL statements, the
vector search, the point lookup, the text embedding; the rest is HTTP, auth and (de)serialisation)
and reports them per request, with its CPU time per request (all threads, the engine's own
included): unlike latency, that does not depend on what else the machine runs.

Baseline measured in the same run: the same store's search in-process (no HTTP), so the ratio is
what HTTP, auth, SQL and serialisation add.

Text queries: the random-weight keye-tiny model embeds the text (256-d); a fixed random projection
lifts it to the stored width, so the search costs what a 4096-d query costs.

    python bench/api.py                   # 10k and 100k x 4096, SQLite and PostgreSQL (~12 min)
    python bench/api.py --quick           # 2k and 10k, shorter runs
    python bench/api.py --sizes 5000 --backends sqlite --seconds 3
    nice -n 10 python bench/api.py --sizes 100000 --backends sqlite --store /work/bench-data/api-100k \
        --scenarios search_vector,search_vector_filtered
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
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
from bench.vectors import CHUNK, Clustered, TopK, filtered  # noqa: E402  (the same points and exact top 10)

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

class Total:  # plain ASGI: timing the requests adds no middleware round trip of its own
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"].startswith("/__bench"):
            return await self.app(scope, receive, send)
        t = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            add("request", time.perf_counter() - t)
            add("requests", 1)

app.add_middleware(Total)

def report(reset: bool = False):
    with lock:
        out = dict(phases)
        if reset:
            phases.clear()
    return out

app.add_api_route("/__bench/phases", report, methods=["GET"])
uvicorn.run(app, host="127.0.0.1", port={port}, log_level="warning", access_log=False)
"""


def build_vectors(folder: Path, n: int, gen: Clustered, queries: np.ndarray) -> dict:
    """n clustered points in an embedded store at folder/qdrant by batched upserts, the HNSW index
    built once after the last one; the exact top 10 of every query (plain and filtered, as rows)
    beside it, kept while the points are written, and meta.json last, so a folder with it is whole."""
    from service.schemas import analysis_id_for
    from stores.vectors import VectorStore

    now = datetime.now(UTC)
    plain, flt = TopK(len(queries)), TopK(len(queries))
    q64 = queries.astype(np.float64)
    write_s = 0.0
    store = VectorStore(path=folder / "qdrant")
    t0 = time.perf_counter()
    with store.bulk_load():
        for start in range(0, n, CHUNK):
            rows = np.arange(start, min(n, start + CHUNK))
            x = gen.chunk(start, len(rows))
            t = time.perf_counter()
            store.upsert_points(
                [analysis_id_for(f"bench-{i:06d}", VERSION) for i in rows], x, [payload(int(i), now) for i in rows]
            )
            write_s += time.perf_counter() - t
            s = q64 @ x.astype(np.float64).T
            plain.add(s, rows)
            keep = filtered(rows)
            flt.add(s[:, keep], rows[keep])
        t = time.perf_counter()
    index_s = time.perf_counter() - t  # bulk_load's exit indexes and flushes
    store.close()
    np.save(folder / "truth_plain.npy", plain.rows)
    np.save(folder / "truth_filtered.npy", flt.rows)
    meta = {
        "n": n,
        "dim": gen.dim,
        "seed": gen.seed,
        "queries": len(queries),
        "build_s": write_s + index_s,
        "index_s": index_s,
        "wall_s": time.perf_counter() - t0,
        "disk_mb": sum(f.stat().st_size for f in (folder / "qdrant").rglob("*") if f.is_file()) / 1e6,
    }
    (folder / "meta.json").write_text(json.dumps(meta))
    return meta


def vectors_at(folder: Path, n: int, gen: Clustered, queries: np.ndarray) -> tuple[dict, bool]:
    """The store of n points in `folder`: reused when a finished build of the same points and queries
    is there, else (re)built; returns its meta.json and whether it was reused."""
    meta_file = folder / "meta.json"
    if meta_file.exists():
        meta = json.loads(meta_file.read_text())
        if (meta["n"], meta["dim"], meta["seed"], meta["queries"]) == (n, gen.dim, gen.seed, len(queries)):
            return meta, True
    if folder.exists():  # an unfinished or different build
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return build_vectors(folder, n, gen, queries), False


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


def load(url: str, key: str, requests: list, seconds: float, connections: int) -> tuple[list[float], int, float]:
    """C connections, each a thread with its own keep-alive client, cycling through `requests`
    ((method, path, JSON body bytes or None), encoded beforehand: encoding 4096 floats per request
    would make the client, not the server, the bottleneck)."""
    import httpx

    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    end = time.perf_counter() + seconds
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def worker(w: int) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=120) as c:
            i = w
            while time.perf_counter() < end:
                method, path, body = requests[i % len(requests)]
                t = time.perf_counter()
                resp = c.request(method, path, content=body)
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


def api_recall(url: str, key: str, queries: list[list[float]], truth: dict[str, np.ndarray]) -> dict[str, float]:
    """recall@10 of vector search through the API against the exact top 10, plain and filtered."""
    import httpx

    out = {}
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as c:
        for name, filters in (("plain", None), ("filtered", FILTERS)):
            found = []
            for qi, q in enumerate(queries):
                body: dict = {"vector": q, "limit": 10, **({"filters": filters} if filters else {})}
                resp = c.post("/v1/search", json=body)
                resp.raise_for_status()
                got = {int(h["video_id"].removeprefix("bench-")) for h in resp.json()["hits"]}
                want = {int(r) for r in truth[name][qi] if r >= 0}
                found.append(len(got & want) / max(1, len(want)))
            out[name] = float(np.mean(found))
    return out


def cpu_s(pid: int) -> float:
    """CPU seconds (user and system, all threads) a process has used: what a request costs the
    server whatever else the machine runs, unlike its latency."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] * 1000 if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000


def scenarios(n: int, queries: list[list[float]]) -> dict[str, list]:
    """Each scenario's requests, (method, path, JSON body bytes or None), cycled by the load."""

    def vid(i: int) -> str:
        return f"bench-{(i * 7919) % n:06d}"

    def body(obj: dict) -> bytes:
        return json.dumps(obj).encode()

    texts = ["a cat plays the piano", "street food at night", "a car race in the rain", "dogs on the beach"]
    vectors = range(len(queries))
    videos = range(1024)
    return {
        "status": [("GET", f"/v1/videos/{vid(i)}", None) for i in videos],
        "search_vector": [("POST", "/v1/search", body({"vector": queries[i], "limit": 10})) for i in vectors],
        "search_vector_filtered": [
            ("POST", "/v1/search", body({"vector": queries[i], "limit": 10, "filters": FILTERS})) for i in vectors
        ],
        "search_video": [("POST", "/v1/search", body({"video_id": vid(i), "limit": 10})) for i in videos],
        "search_video_filtered": [
            ("POST", "/v1/search", body({"video_id": vid(i), "limit": 10, "filters": FILTERS})) for i in videos
        ],
        "search_text": [("POST", "/v1/search", body({"text": texts[i % 4], "limit": 10})) for i in range(4)],
        "search_text_filtered": [
            ("POST", "/v1/search", body({"text": texts[i % 4], "limit": 10, "filters": FILTERS})) for i in range(4)
        ],
    }


def serve_and_load(
    data: Path,
    folder: Path,
    db_url: str,
    key: str,
    n: int,
    dim: int,
    queries: list[list[float]],
    truth: dict[str, np.ndarray],
    args: argparse.Namespace,
) -> tuple[float, dict[str, float], dict]:
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
        recall = api_recall(url, key, queries, truth)
        results = {}
        for name, requests in scenarios(n, queries).items():
            if name not in args.wanted:
                continue
            load(url, key, requests, args.warmup, args.connections)
            httpx.get(url + "/__bench/phases?reset=true")
            cpu = cpu_s(server.pid), time.process_time()
            lat, errors, wall = load(url, key, requests, args.seconds, args.connections)
            cpu = cpu_s(server.pid) - cpu[0], time.process_time() - cpu[1]
            ph = httpx.get(url + "/__bench/phases?reset=true").json()
            count = max(ph.pop("requests", 0), 1)
            results[name] = {
                "requests": len(lat),
                "errors": errors,
                "rps": len(lat) / wall,
                "p50_ms": pct(lat, 50),
                "p99_ms": pct(lat, 99),
                "server_cpu_ms": cpu[0] / max(len(lat), 1) * 1000,
                "client_cpu_ms": cpu[1] / max(len(lat), 1) * 1000,
                "server_ms": {k: v / count * 1000 for k, v in ph.items()},
            }
        return ready, recall, results
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
    ap.add_argument("--scenarios", help="only these scenarios, comma-separated (default all)")
    ap.add_argument("--queries", type=int, default=200, help="query vectors with an exact top 10 (recall)")
    ap.add_argument(
        "--store",
        type=Path,
        help="build each size's vectors (and exact top 10) into STORE/<n>x<dim>-seed<seed> and reuse them on "
        "later runs; default: a temporary folder under --tmp, removed after",
    )
    args = ap.parse_args()
    args.wanted = args.scenarios.split(",") if args.scenarios else list(scenarios(1, []))
    if args.quick:
        args.sizes, args.seconds = "2000,10000", 2.0
    sizes = [int(s) for s in args.sizes.split(",")]
    backends = args.backends.split(",")
    gen = Clustered(args.dim, args.seed)
    queries = gen.queries(args.queries)
    wanted = args.wanted
    report: dict = {"dim": args.dim, "connections": args.connections, "seconds": args.seconds, "sizes": {}}

    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="keye-bench-api-", dir=args.tmp) as tmp:
            vectors = args.store / f"{n}x{args.dim}-seed{args.seed}" if args.store else Path(tmp) / "vectors"
            meta, reused = vectors_at(vectors, n, gen, queries)
            folder = vectors / "qdrant"
            built, mb = meta["build_s"], meta["disk_mb"]
            how = f"reused from {vectors} (built" if reused else "built"
            print(
                f"\n== {n} videos x {args.dim}: embedded store {how} by batched upserts in {built:.1f}s "
                f"({built / n * 1000:.2f} ms/point, {mb:.0f} MB on disk{')' if reused else ''}",
                flush=True,
            )
            truth = {name: np.load(vectors / f"truth_{name}.npy") for name in ("plain", "filtered")}
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
                    # only the status route reads the video rows; searches read keys and the model registry
                    key, sql_s = build_sql(db_url, n if "status" in wanted else 0)
                    ready, recall, results = serve_and_load(
                        Path(tmp) / backend, folder, db_url, key, n, args.dim, queries.tolist(), truth, args
                    )
                finally:
                    if drop:
                        drop()
                entry["backends"][backend] = {
                    "build_sql_s": sql_s,
                    "ready_s": ready,
                    "recall_at_10": recall,
                    "results": results,
                }
                print(
                    f"-- {backend}: SQL rows written in {sql_s:.1f}s; server ready (store open) "
                    f"in {ready:.1f}s; {args.connections} connections, {args.seconds:g}s per scenario",
                    flush=True,
                )
                print(
                    f"recall@10 through the API over {len(queries)} queries: plain {recall['plain']:.4f}, "
                    f"filtered {recall['filtered']:.4f}",
                    flush=True,
                )
                print(
                    f"{'scenario':<24}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'err':>5}{'p50/direct':>11}"
                    f"{'cpu ms':>8}  where the time goes (cpu ms: the server's CPU per request)"
                )
                for name, r in results.items():
                    direct = base["store_filtered_ms" if "filtered" in name else "store_plain_ms"]
                    ratio = f"{r['p50_ms'] / direct:.1f}x" if name.startswith("search") else "-"
                    print(
                        f"{name:<24}{r['rps']:>8.1f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['errors']:>5}{ratio:>11}"
                        f"{r['server_cpu_ms']:>8.2f}  {phases_line(r['server_ms'])}",
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
