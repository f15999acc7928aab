"""Benchmark of the API under load: requests/s, p50 and p99 of video status and similarity search.

The API runs in its own process (uvicorn, one worker) over a SQLite file and an embedded Qdrant
folder holding N stored vectors (default 10,000 of width 4096); the load comes from this process
over loopback with C concurrent connections for a fixed time per scenario. Baseline: the same
searches done directly on the vector store in-process, so the ratio is the cost of the HTTP
service around the search.

    python bench/api.py                                  # 10k x 4096, 8 connections, 10 s each
    python bench/api.py --vectors 2000 --dim 256 --seconds 5
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SERVER = """
import sys, uvicorn
from pathlib import Path
sys.path.insert(0, {root!r})
from keye.settings import Settings
from api.app import create_app
settings = Settings(data_dir=Path({data!r}), model="keye-tiny")
uvicorn.run(create_app(settings), host="127.0.0.1", port={port}, log_level="warning", access_log=False)
"""


def prepare(data: Path, n: int, dim: int, seed: int) -> tuple[str, list[list[float]]]:
    """Store n analysed videos (SQL rows + vectors); returns an all-roles key and some query vectors."""
    import numpy as np
    from qdrant_client import models
    from sqlmodel import Session

    from api.keys import ROLES, create_key
    from api.storage import open_engine
    from keye.db import write_analysis
    from keye.schemas import AnalysisRecord, Moderation, Submission, Summary, TagScore, analysis_id_for
    from keye.settings import Settings
    from keye.vectors import VECTOR, VectorStore, payload_of

    settings = Settings(data_dir=data, model="keye-tiny")
    engine = open_engine(settings)
    rng = np.random.default_rng(seed)
    now = datetime.now(timezone.utc)
    store = VectorStore.from_settings(settings)
    store.ensure_collection(dim)
    tags = ["cat", "dog", "car", "food", "music", "sport", "travel", "game"]
    with Session(engine) as session:
        key = create_key(session, ROLES, name="bench")[1]
        for start in range(0, n, 500):
            batch = []
            vecs = rng.standard_normal((min(500, n - start), dim), dtype=np.float32)
            for i, vec in enumerate(vecs, start=start):
                vid = f"bench-{i:06d}"
                r = AnalysisRecord(
                    analysis_id=analysis_id_for(vid, "keye-tiny"), video_id=vid, model_version="keye-tiny",
                    prompt_version="p", duration_s=float(5 + i % 50), frames_used=8,
                    tags=[TagScore(label=tags[i % 8], score=0.9)], summary=Summary(short=f"video {i}"),
                    moderation=Moderation(), embedding_dim=dim, created_at=now - timedelta(minutes=i),
                    creator_id=f"c{i % 100}", language=["en", "fr", "de"][i % 3])
                write_analysis(session, r, Submission(video_id=vid, uri=f"file:///videos/{vid}.mp4",
                                                      submitted_at=r.created_at))
                batch.append(models.PointStruct(id=r.analysis_id, vector={VECTOR: vec.tolist()}, payload=payload_of(r)))
            session.commit()
            store.client.upsert(store.collection, points=batch, wait=True)
    queries = rng.standard_normal((64, dim), dtype=np.float32).tolist()
    store.close()
    engine.dispose()
    return key, queries


def direct_search(data: Path, queries: list[list[float]], seconds: float) -> list[float]:
    from keye.settings import Settings
    from keye.vectors import VectorStore

    store = VectorStore.from_settings(Settings(data_dir=data))
    lat, end, i = [], time.perf_counter() + seconds, 0
    while time.perf_counter() < end:
        t = time.perf_counter()
        store.search(queries[i % len(queries)], limit=10, where={"model_version": "keye-tiny"})
        lat.append(time.perf_counter() - t)
        i += 1
    store.close()
    return lat


def load(url: str, key: str, make_request, seconds: float, connections: int) -> tuple[list[float], int, float]:
    import httpx

    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    end = time.perf_counter() + seconds

    def worker(w: int) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
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


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] * 1000 if len(values) > 1 else values[0] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vectors", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="keye-bench-api-") as tmp:
        data = Path(tmp)
        t0 = time.perf_counter()
        key, queries = prepare(data, args.vectors, args.dim, args.seed)
        print(f"stored {args.vectors} videos with {args.dim}-dim vectors in {time.perf_counter() - t0:.1f}s")
        base = direct_search(data, queries, min(args.seconds, 5.0))

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen([sys.executable, "-c", SERVER.format(root=str(Path(__file__).resolve().parents[1]),
                                                                      data=str(data), port=port)])
        url = f"http://127.0.0.1:{port}"
        try:
            import httpx

            deadline = time.time() + 120
            while True:
                try:
                    if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.time() > deadline or server.poll() is not None:
                    raise SystemExit("the API server did not start")
                time.sleep(0.2)
            n = args.vectors
            scenarios = {
                "status": lambda i: ("GET", f"/v1/videos/bench-{(i * 7919) % n:06d}", None),
                "search_vector": lambda i: ("POST", "/v1/search", {"vector": queries[i % len(queries)], "limit": 10}),
                "search_filtered": lambda i: ("POST", "/v1/search", {"vector": queries[i % len(queries)], "limit": 10,
                                                                     "filters": {"tags": ["cat", "dog"], "language": ["en"]}}),
                "search_video": lambda i: ("POST", "/v1/search", {"video_id": f"bench-{(i * 104729) % n:06d}", "limit": 10}),
            }
            results = {}
            for name, make in scenarios.items():
                load(url, key, make, min(2.0, args.seconds), args.connections)  # warm-up
                lat, errors, wall = load(url, key, make, args.seconds, args.connections)
                results[name] = {"requests": len(lat), "errors": errors, "rps": len(lat) / wall,
                                 "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99)}
        finally:
            server.terminate()
            server.wait(timeout=30)

    base_p50 = pct(base, 50)
    print(f"baseline: direct VectorStore.search in-process, one at a time: p50 {base_p50:.2f} ms, "
          f"{len(base) / sum(base):.1f} searches/s")
    print(f"{'scenario':<16}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}{'p50 / direct':>14}")
    for name, r in results.items():
        ratio = f"{r['p50_ms'] / base_p50:.2f}x" if name.startswith("search") else "-"
        print(f"{name:<16}{r['rps']:>10.1f}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}{r['errors']:>8}{ratio:>14}")
    print(json.dumps({"vectors": args.vectors, "dim": args.dim, "connections": args.connections,
                      "baseline_p50_ms": base_p50, "results": results}))


if __name__ == "__main__":
    main()
