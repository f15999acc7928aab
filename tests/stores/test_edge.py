"""The embedded vector store (Qdrant Edge): answers like qdrant-client's local search on the same
points, finds the true neighbours once its HNSW index is built, and loses no acknowledged point
when its process is killed mid-writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from stores import edge
from stores.vectors import VECTOR, VectorStore, VectorStoreError

DIM = 8
TAGS = ["cat", "dog", "car", "food", "music"]
LANGS = ["en", "fr", "de"]
ROOT = Path(__file__).resolve().parents[2]


def pid(i: int) -> str:
    return f"00000000-0000-0000-0000-{i:012d}"


def corpus(n: int, rng: np.random.Generator) -> tuple[list[str], np.ndarray, list[dict]]:
    return (
        [pid(i) for i in range(n)],
        rng.standard_normal((n, DIM)),
        [
            {
                "video_id": f"v{i}",
                "tags": [TAGS[i % 5], TAGS[(i // 5) % 5]],
                "language": LANGS[i % 3],
                "max_severity": i % 4,
                "duration_s": float(i % 60),
                "created_at": f"2026-01-01T{i % 24:02d}:00:00+00:00",
            }
            for i in range(n)
        ],
    )


FILTERS = [
    None,
    models.Filter(must=[models.FieldCondition(key="tags", match=models.MatchAny(any=["cat", "dog"]))]),
    models.Filter(
        must=[models.FieldCondition(key="language", match=models.MatchValue(value="en"))],
        must_not=[models.FieldCondition(key="video_id", match=models.MatchValue(value="v3"))],
    ),
    models.Filter(
        must=[
            models.FieldCondition(key="max_severity", range=models.Range(lte=1)),
            models.FieldCondition(key="duration_s", range=models.Range(gt=10.0, lt=50.0)),
        ]
    ),
    models.Filter(
        should=[
            models.FieldCondition(key="tags", match=models.MatchValue(value="car")),
            models.FieldCondition(key="created_at", range=models.DatetimeRange(gte="2026-01-01T20:00:00Z")),
        ]
    ),
]


def test_answers_match_qdrant_client_local_search(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    ids, vectors, payloads = corpus(60, rng)
    store = VectorStore(path=tmp_path / "edge")
    ref = QdrantClient(path=str(tmp_path / "local"))  # the reference: another engine on the same points
    ref.create_collection(
        "videos", vectors_config={VECTOR: models.VectorParams(size=DIM, distance=models.Distance.COSINE)}
    )
    try:
        store.upsert_points(ids, vectors, payloads)
        ref.upsert(
            "videos",
            points=[
                models.PointStruct(id=i, vector={VECTOR: v.tolist()}, payload=p)
                for i, v, p in zip(ids, vectors, payloads)
            ],
        )
        store.set_payload(ids[:5], {"language": "de"})
        ref.set_payload("videos", payload={"language": "de"}, points=ids[:5])
        store.delete(ids[50:])
        ref.delete("videos", points_selector=ids[50:])
        for flt in FILTERS:
            for limit, offset in ((10, 0), (5, 3)):
                q = rng.standard_normal(DIM)
                mine = store.query(q, query_filter=flt, limit=limit, offset=offset)
                theirs = ref.query_points(
                    "videos",
                    query=q.tolist(),
                    using=VECTOR,
                    query_filter=flt,
                    limit=limit,
                    offset=offset,
                    with_payload=True,
                ).points
                assert [h.id for h in mine] == [str(p.id) for p in theirs]
                np.testing.assert_allclose([h.score for h in mine], [p.score for p in theirs], atol=1e-5)
                assert [h.payload for h in mine] == [p.payload for p in theirs]
        assert (
            store.count() == 50
            and store.count({"language": "de"})
            == ref.count(
                "videos",
                count_filter=models.Filter(
                    must=[models.FieldCondition(key="language", match=models.MatchValue(value="de"))]
                ),
            ).count
        )
    finally:
        store.close()
        ref.close()


def test_the_hnsw_index_finds_the_true_neighbours(tmp_path: Path) -> None:
    """Enough points that the writes build the graph (every INDEX_AFTER), then recall against exact."""
    rng = np.random.default_rng(2)
    n = edge.INDEX_AFTER * 2
    ids, vectors, payloads = corpus(n, rng)
    store = VectorStore(path=tmp_path / "q")
    try:
        for start in range(0, n, 500):
            store.upsert_points(ids[start : start + 500], vectors[start : start + 500], payloads[start : start + 500])
        store.maintain(force=True)
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        cats = np.array([bool({"cat", "dog"} & set(p["tags"])) for p in payloads])
        found = []
        for flt, mask in ((None, np.ones(n, bool)), (FILTERS[1], cats)):
            for _ in range(20):
                q = rng.standard_normal(DIM)
                exact = {ids[i] for i in np.argsort(-(unit @ q) + np.where(mask, 0, 10))[:10]}
                found.append(len({h.id for h in store.query(q, query_filter=flt, limit=10)} & exact) / 10)
        assert np.mean(found) >= 0.95
    finally:
        store.close()
    info_store = VectorStore(path=tmp_path / "q")
    assert info_store.count() == n
    info_store.close()


def test_bad_queries_and_writes_are_typed_errors(tmp_path: Path) -> None:
    store = VectorStore(path=tmp_path / "q")
    store.upsert_points([pid(1)], np.ones((1, DIM)), [{"video_id": "a"}])
    with pytest.raises(VectorStoreError, match="3-dim query for 8-dim"):
        store.query([1.0, 2.0, 3.0])
    with pytest.raises(VectorStoreError, match="NaN"):
        store.query([float("nan")] * DIM)
    with pytest.raises(VectorStoreError, match="do not describe the same points"):
        store.upsert_points([pid(2), pid(3)], np.ones((1, DIM)), [{}, {}])
    with pytest.raises(VectorStoreError, match="does not support"):
        store.query(
            np.ones(DIM),
            query_filter=models.Filter(must=[models.FieldCondition(key="tags", match=models.MatchText(text="cat"))]),
        )
    assert store.vector("not a point id") is None and store.vector(pid(9)) is None
    store.close()


def test_a_second_process_cannot_open_a_held_shard(tmp_path: Path) -> None:
    store = VectorStore(path=tmp_path / "q")
    store.upsert_points([pid(1)], np.ones((1, DIM)), [{"video_id": "a"}])
    other = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys; from stores.vectors import VectorStore; VectorStore(path={str(tmp_path / 'q')!r}).count()",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert other.returncode != 0 and "cannot be opened" in other.stderr
    store.close()


WRITER = """
import sys, numpy as np
from stores.vectors import VectorStore
store = VectorStore(path=sys.argv[1])
rng = np.random.default_rng(0)
for b in range(10_000):
    ids = [f"00000000-0000-0000-0000-{b * 10 + j:012d}" for j in range(10)]
    store.upsert_points(ids, rng.standard_normal((10, 8)), [{"video_id": f"v{b}", "batch": b}] * 10)
    print(b, flush=True)  # acknowledged: upsert_points returned
"""


def test_every_acknowledged_point_survives_sigkill(tmp_path: Path) -> None:
    """A writer killed mid-writes: the reopened shard (its write-ahead log replayed) holds every
    batch whose upsert returned before the kill, and no partial batch."""
    folder = tmp_path / "q"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(folder)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    acked = -1
    deadline = time.monotonic() + 120
    while acked < 300 and time.monotonic() < deadline:  # past INDEX_AFTER, so an index build has run too
        acked = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    rest = proc.stdout.read().split()  # acknowledgements already in the pipe when it died
    proc.wait()
    acked = int(rest[-1]) if rest else acked
    assert acked >= 300
    store = VectorStore(path=folder)
    try:
        n = store.count()
        assert n >= (acked + 1) * 10 and n % 10 == 0
        assert all(store.vector(pid(i)) is not None for i in range(0, (acked + 1) * 10, 7))
        batches = {h.payload["batch"] for h in store.retrieve([pid(i) for i in range(n)])}
        assert batches == set(range(n // 10))
    finally:
        store.close()
