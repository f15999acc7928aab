"""The local-mode search mirror answers exactly like qdrant-client's own local search.

Every case runs on a real local Qdrant folder: random points and payloads, random writes (new
points, overwrites of the same id, deletes by id and by filter, payload edits, a reopen of the
folder), then random filtered queries, each answered by the mirror and by Qdrant on the same
collection. Vectors come from a seeded generator (continuous, so exact score ties do not occur).
"""

from __future__ import annotations

import contextlib
import threading
import time
import tempfile
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qdrant_client import models

from stores.vector_mirror import Query
from stores.vectors import VECTOR, VectorStore, VectorStoreError

DIM = 8
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
TAGS = ["cat", "dog", "car", "food", "music"]
LANGS = ["en", "fr", "de"]
STATUSES = ["clear", "flagged", "needs_review"]
VERSIONS = ["m1", "m2"]

VOCAB = {"tags": TAGS, "language": LANGS, "creator_id": ["c0", "c1"], "moderation_status": STATUSES,
         "model_version": VERSIONS, "video_id": ["v0", "v1", "v2", "v3"]}

payloads = st.fixed_dictionaries(
    {"video_id": st.sampled_from(VOCAB["video_id"]),
     "tags": st.lists(st.sampled_from(TAGS), max_size=3, unique=True),
     "language": st.one_of(st.none(), st.sampled_from(LANGS)),
     "moderation_status": st.sampled_from(STATUSES),
     "max_severity": st.integers(0, 3),
     "model_version": st.sampled_from(VERSIONS)},
    optional={  # sometimes absent: conditions on a missing field never match
        "creator_id": st.sampled_from(VOCAB["creator_id"]),
        "duration_s": st.one_of(st.floats(0, 60, allow_nan=False), st.integers(0, 60)),
        "created_at": st.integers(0, 200).map(lambda h: (T0 + timedelta(hours=h)).isoformat()),
    })

field_conditions = st.one_of(
    st.sampled_from(sorted(VOCAB)).flatmap(lambda k: st.builds(
        lambda v: models.FieldCondition(key=k, match=models.MatchAny(any=v)),
        st.lists(st.sampled_from(VOCAB[k] + ["zz"]), min_size=1, max_size=3))),
    st.sampled_from(sorted(VOCAB)).flatmap(lambda k: st.builds(
        lambda v: models.FieldCondition(key=k, match=models.MatchValue(value=v)), st.sampled_from(VOCAB[k]))),
    st.builds(lambda lo, hi: models.FieldCondition(key="max_severity", range=models.Range(gte=lo, lte=hi)),
              st.none() | st.integers(0, 3), st.none() | st.integers(0, 3)),
    st.builds(lambda lo, hi: models.FieldCondition(key="duration_s", range=models.Range(gt=lo, lt=hi)),
              st.none() | st.floats(0, 60), st.none() | st.floats(0, 60)),
    st.builds(lambda lo, hi: models.FieldCondition(key="created_at", range=models.DatetimeRange(
        gte=None if lo is None else T0 + timedelta(hours=lo), lte=None if hi is None else T0 + timedelta(hours=hi))),
              st.none() | st.integers(0, 200), st.none() | st.integers(0, 200)),
)
F = models.Filter
filters = st.one_of(  # one to three conditions, so that most filters keep some of the corpus
    st.none(),
    st.builds(lambda c: F(must=[c]), field_conditions),
    st.builds(lambda c: F(must_not=[c]), field_conditions),
    st.builds(lambda c, d: F(must=[c], must_not=[d]), field_conditions, field_conditions),
    st.builds(lambda c, d: F(must=[c, d]), field_conditions, field_conditions),
    st.builds(lambda c, d, e: F(should=[c, d], must=[F(must_not=[e])]), field_conditions, field_conditions,
              field_conditions),
)
queries = st.fixed_dictionaries({
    "filter": filters, "limit": st.integers(1, 12), "offset": st.integers(0, 6),
    "threshold": st.none() | st.integers(-5, 8).map(lambda t: t / 10 + 0.01) | st.floats(-0.6, 0.9)})
writes = st.one_of(
    st.tuples(st.just("upsert"), st.integers(1, 12), st.lists(payloads, min_size=1, max_size=12)),
    st.tuples(st.just("overwrite"), st.integers(0, 40), payloads),
    st.tuples(st.just("delete"), st.lists(st.integers(0, 40), min_size=1, max_size=4)),
    st.tuples(st.just("delete_by_filter"), st.sampled_from(STATUSES)),
    st.tuples(st.just("set_status"), st.lists(st.integers(0, 40), min_size=1, max_size=4), st.sampled_from(STATUSES)),
    st.tuples(st.just("reopen")),
)


class Corpus:
    """A local store and the ids written to it, driven by random writes."""

    def __init__(self, path: str, rng: np.random.Generator) -> None:
        self.path, self.rng = path, rng
        self.store = VectorStore(path=path)
        self.ids: list[str] = []

    def point_id(self, i: int) -> str:
        return f"00000000-0000-0000-0000-{i:012d}"

    def apply(self, op: tuple) -> None:
        kind, store = op[0], self.store
        if kind == "upsert":
            _, start, pls = op
            ids = [self.point_id(start * 3 + j) for j in range(len(pls))]
            store.upsert_points(ids, self.rng.standard_normal((len(ids), DIM)), pls)
            self.ids += ids
        elif kind == "overwrite" and self.ids:
            store.upsert_points([self.ids[op[1] % len(self.ids)]], self.rng.standard_normal((1, DIM)), [op[2]])
        elif kind == "delete" and self.ids:
            store.client.delete(store.collection, points_selector=[self.ids[i % len(self.ids)] for i in op[1]])
        elif kind == "delete_by_filter" and store.exists():
            store.client.delete(store.collection, points_selector=models.FilterSelector(filter=models.Filter(must=[
                models.FieldCondition(key="moderation_status", match=models.MatchValue(value=op[1]))])))
        elif kind == "set_status" and self.ids:
            with contextlib.suppress(KeyError):  # a deleted id fails the call after the others are written
                store.client.set_payload(store.collection, payload={"moderation_status": op[2]},
                                         points=[self.ids[i % len(self.ids)] for i in op[1]])
        elif kind == "reopen":
            store.close()
            self.store = VectorStore(path=self.path)
            self.store.warm()


def assert_same_ranking(mine: list, theirs: list) -> None:
    assert len(mine) == len(theirs)
    for a, b in zip(mine, theirs):
        assert a.score == pytest.approx(b.score, abs=1e-5)
        assert a.payload == b.payload
    # same order, except where two scores tie to rounding (then either order is right)
    assert [a.id for a in mine] == [b.id for b in theirs] or all(
        a.id == b.id or abs(a.score - b.score) < 1e-6 for a, b in zip(mine, theirs))


def qdrant_answer(store: VectorStore, q: np.ndarray, spec: dict) -> list:
    return store.client.raw.query_points(store.collection, query=q.tolist(), using=VECTOR,
                                         query_filter=spec["filter"], limit=spec["limit"], offset=spec["offset"],
                                         score_threshold=spec["threshold"], with_payload=True).points


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), base=st.lists(payloads, min_size=20, max_size=40),
       steps=st.lists(st.one_of(writes, queries, queries), min_size=1, max_size=14))
def test_mirror_matches_qdrant_local_search(seed, base, steps) -> None:
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Corpus(tmp, rng)
        try:
            check_steps(corpus, base, steps, rng)
        finally:
            corpus.store.close()


def check_steps(corpus: Corpus, base: list, steps: list, rng: np.random.Generator) -> None:
    """Writes and queries interleaved, the mirror live from the start: it must follow each write."""
    corpus.apply(("upsert", 0, base))
    corpus.store.warm()
    for step in steps:
        if isinstance(step, tuple):
            corpus.apply(step)
            continue
        store, spec = corpus.store, step
        q = rng.standard_normal(DIM)
        rows = store.mirror.search(q, spec["filter"], limit=spec["limit"], offset=spec["offset"],
                                   score_threshold=spec["threshold"])
        assert rows is not None, "every filter the API builds is answered by the mirror"
        theirs = qdrant_answer(store, q, spec)
        mine = store.query(q, query_filter=spec["filter"], limit=spec["limit"], offset=spec["offset"],
                           score_threshold=spec["threshold"])
        assert_same_ranking(mine, theirs)
        assert [(r[0], r[2]) for r in rows] == [(p.id, p.payload) for p in mine]
    assert len(corpus.store.mirror) == corpus.store.count()


def test_filters_the_columns_cannot_answer_fall_back_to_qdrant(tmp_path) -> None:
    store = VectorStore(path=tmp_path / "q")
    rng = np.random.default_rng(0)
    store.upsert_points([f"00000000-0000-0000-0000-00000000000{i}" for i in range(4)], rng.standard_normal((4, DIM)),
                        [{"video_id": "a", "duration_s": [1.0, 9.0]}, {"video_id": "b", "duration_s": 3.0},
                         {"video_id": "c", "language": "en"}, {"video_id": "d"}])
    q = rng.standard_normal(DIM)
    odd = models.Filter(must=[models.FieldCondition(key="duration_s", range=models.Range(gte=5))])
    unindexed = models.Filter(must=[models.IsEmptyCondition(is_empty=models.PayloadField(key="language"))])
    for flt in (odd, unindexed):
        assert store.mirror.search(q, flt) is None
        spec = {"filter": flt, "limit": 10, "offset": 0, "threshold": None}
        assert_same_ranking(store.query(q, query_filter=flt), qdrant_answer(store, q, spec))
    assert [p.payload["video_id"] for p in store.query(q, query_filter=odd)] == ["a"]  # a list value in range
    store.close()


def test_bad_queries_and_writes_are_typed_errors(tmp_path) -> None:
    store = VectorStore(path=tmp_path / "q")
    store.upsert_points(["00000000-0000-0000-0000-000000000001"], np.ones((1, DIM)), [{"video_id": "a"}])
    with pytest.raises(VectorStoreError, match="3-dim query for 8-dim"):
        store.query([1.0, 2.0, 3.0])
    with pytest.raises(VectorStoreError, match="NaN"):
        store.query([float("nan")] * DIM)
    with pytest.raises(VectorStoreError, match="do not describe the same points"):
        store.upsert_points(["x", "y"], np.ones((1, DIM)), [{}, {}])
    store.close()


def test_reopened_folder_loads_the_same_points_as_float32(tmp_path) -> None:
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((50, DIM))
    ids = [f"00000000-0000-0000-0000-{i:012d}" for i in range(50)]
    store = VectorStore(path=tmp_path / "q")
    store.upsert_points(ids, vectors, [{"video_id": f"v{i}", "tags": [TAGS[i % 5]]} for i in range(50)])
    store.close()
    store = VectorStore(path=tmp_path / "q")
    # qdrant-client's own reload of the numpy-written points holds float32, not Python floats
    assert store.client.raw._client.collections["videos"].vectors[VECTOR].dtype == np.float32
    mirror = store.mirror
    assert len(mirror) == 50
    for i in (0, 17, 49):
        unit = vectors[i] / np.linalg.norm(vectors[i])
        np.testing.assert_allclose(store.vector(ids[i]), unit, atol=1e-6)
    assert store.vector("00000000-0000-0000-0000-999999999999") is None
    store.close()


def test_concurrent_queries_answered_together_match_one_at_a_time(tmp_path) -> None:
    rng = np.random.default_rng(9)
    store = VectorStore(path=tmp_path / "q")
    store.upsert_points([f"00000000-0000-0000-0000-{i:012d}" for i in range(300)], rng.standard_normal((300, DIM)),
                        [{"video_id": f"v{i}", "language": LANGS[i % 3], "tags": [TAGS[i % 5]]} for i in range(300)])
    few = models.Filter(must=[models.FieldCondition(key="tags", match=models.MatchValue(value="cat"))])
    odd = models.Filter(must=[models.IsEmptyCondition(is_empty=models.PayloadField(key="language"))])
    specs = [(rng.standard_normal(DIM), flt, limit) for flt in (None, few, odd) for limit in (1, 7)]
    specs.append((np.ones(DIM - 1), None, 3))  # a bad query fails alone, not the others
    alone = [store.mirror.search(q, flt, limit=limit) if len(q) == DIM else None for q, flt, limit in specs]

    # Many threads at once: the store answers the queue of waiting queries in one batch.
    results: dict[int, object] = {}

    def ask(k: int) -> None:
        q, flt, limit = specs[k % len(specs)]
        try:
            results[k] = [(p.id, p.score) for p in store.query(q, query_filter=flt, limit=limit)]
        except VectorStoreError as e:
            results[k] = e

    mirror, batches = store.mirror, []
    real = mirror.search_many
    mirror.search_many = lambda queries: batches.append(len(queries)) or real(queries)
    threads = [threading.Thread(target=ask, args=(k,)) for k in range(len(specs) * 3)]
    with store._lock:  # held while every thread queues its query behind it
        for t in threads:
            t.start()
        while len(store._queue) < len(threads):
            time.sleep(0.01)
    for t in threads:
        t.join()
    assert batches == [len(threads)]  # the first thread to get the lock answered everyone
    mirror.search_many = real
    for k, got in results.items():
        q, flt, limit = specs[k % len(specs)]
        if len(q) != DIM:
            assert isinstance(got, VectorStoreError) and "7-dim query" in str(got)
            continue
        expected = alone[k % len(specs)]
        if expected is None:  # answered by Qdrant
            expected = [(p.id, p.score) for p in qdrant_answer(store, q, {"filter": flt, "limit": limit, "offset": 0,
                                                                          "threshold": None})]
        else:
            expected = [(i, s) for i, s, _ in expected]
        assert [i for i, _ in got] == [i for i, _ in expected]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in expected], atol=1e-9)
    batched = store.mirror.search_many([Query(q, flt, limit) for q, flt, limit in specs])
    assert isinstance(batched[-1], ValueError)
    assert batched[:-1] == alone[:-1]
    store.close()
