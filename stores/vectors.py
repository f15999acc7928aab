"""The Qdrant store: collection `videos`, named vector `keye` (cosine), one point per (video, model version).

Point ids are `uuid5(POINT_NAMESPACE, "video_id:model_version")` (the analysis id), so a redelivered
analysis overwrites its own point instead of adding one.

Two deployments, one client API:
- a Qdrant server (KEYE_QDRANT_URL): any number of workers write to it directly;
- the embedded default, qdrant-client's local mode (a folder under KEYE_DATA_DIR). Local mode locks
  its folder to ONE process and ignores payload indexes (filters still work, by scan). So exactly one
  process owns it: the vector sink (`stores.vector_sink`) that consumes `videos.analyzed` and runs
  beside search (the API), or `keye analyze` in-process. Workers never open it.

Local mode is the durable store but too slow to search at scale (~0.5 s a query at 10k x 4096), so
the owning process also keeps an exact in-memory mirror (`stores.vector_mirror`), loaded on first use
and updated by every write made through `VectorStore.client` (a thin proxy in local mode). Local
points are written with float32 numpy vectors, which qdrant-client pickles as one buffer: 4x
smaller than a list of floats, and a reopen loads a float32 matrix instead of millions of floats.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from service.schemas import AnalysisRecord
from service.settings import Settings
from stores.vector_mirror import Query, VectorMirror

log = logging.getLogger(__name__)

COLLECTION = "videos"
VECTOR = "keye"

# payload field -> index type; every filterable field of the spec is indexed.
PAYLOAD_INDEXES = {
    "video_id": "keyword", "tags": "keyword", "language": "keyword", "creator_id": "keyword",
    "moderation_status": "keyword", "model_version": "keyword", "max_severity": "integer",
    "duration_s": "float", "created_at": "datetime",
}


class VectorStoreError(RuntimeError):
    """The vector store refused a request (bad dimension, unreachable server)."""


# Writes that change points (their ids are read from the call) and writes that change the collection.
_POINT_WRITES = {"upsert", "upload_points", "update_vectors", "delete", "set_payload", "overwrite_payload",
                 "delete_payload", "clear_payload", "delete_vectors", "upload_collection", "batch_update_points"}
_COLLECTION_WRITES = {"create_collection", "recreate_collection", "delete_collection", "update_collection"}
_LOAD_PAGE = 4096


class VectorStore:
    def __init__(self, *, url: str | None = None, path: Path | str | None = None, collection: str = COLLECTION,
                 api_key: str | None = None, mirror: bool = True) -> None:
        """`mirror=False` (local mode) skips the search mirror: for processes that only write."""
        from qdrant_client import QdrantClient

        if (url is None) == (path is None):
            raise ValueError("give exactly one of url (a Qdrant server) or path (a local folder)")
        self.collection = collection
        self.local = url is None
        if path is not None:
            Path(path).mkdir(parents=True, exist_ok=True)
        raw = QdrantClient(url=url, api_key=api_key, timeout=30) if url else QdrantClient(path=str(path))
        self._mirrored = self.local and mirror
        self._lock = threading.RLock()
        self._mirror: VectorMirror | None = None
        self._stale = True  # the mirror must be (re)loaded from Qdrant before it answers
        self._dim: int | None = None
        self._queue: list[_Queued] = []
        self._queue_lock = threading.Lock()
        self.client = _MirroredClient(raw, self) if self._mirrored else raw

    @classmethod
    def from_settings(cls, settings: Settings, collection: str = COLLECTION) -> VectorStore:
        if settings.qdrant_url:
            return cls(url=settings.qdrant_url, collection=collection)
        return cls(path=settings.resolved_qdrant_path, collection=collection)

    def exists(self) -> bool:
        return self.client.collection_exists(self.collection)

    def ensure_collection(self, dim: int) -> None:
        from qdrant_client import models

        if dim <= 0:
            raise VectorStoreError(f"embedding dimension must be positive, got {dim}")
        if self.exists():
            have = self.dim()
            if have != dim:
                raise VectorStoreError(f"collection {self.collection!r} holds {have}-dim vectors, got {dim}; "
                                       "a model with another embedding size needs its own collection")
            return
        self.client.create_collection(self.collection, vectors_config={
            VECTOR: models.VectorParams(size=dim, distance=models.Distance.COSINE)})
        if not self.local:  # local mode ignores payload indexes (and warns): filters scan instead
            for field, kind in PAYLOAD_INDEXES.items():
                self.client.create_payload_index(self.collection, field, field_schema=models.PayloadSchemaType(kind))

    def dim(self) -> int:
        if self._dim is None or not self.local:  # a server's collection may be recreated by others
            params = self.client.get_collection(self.collection).config.params.vectors
            self._dim = params[VECTOR].size
        return self._dim

    def upsert(self, records: list[AnalysisRecord]) -> None:
        """Write each record's point (its embedding must be present); idempotent by point id."""
        if not records:
            return
        for r in records:
            if not r.embedding:
                raise VectorStoreError(f"analysis {r.analysis_id} of video {r.video_id} has no embedding")
        dim = len(records[0].embedding)
        for r in records:
            if len(r.embedding) != dim:
                raise VectorStoreError(f"analysis {r.analysis_id} of video {r.video_id} has a {len(r.embedding)}-dim "
                                       f"embedding; this batch holds {dim}-dim embeddings")
        self.upsert_points([r.analysis_id for r in records], np.asarray([r.embedding for r in records]),
                           [payload_of(r) for r in records])

    def upsert_points(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> None:
        """Write points from an (n, dim) array; the collection is created on first use."""
        from qdrant_client import models

        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(ids) or len(ids) != len(payloads):
            raise VectorStoreError(f"{len(ids)} ids, {len(payloads)} payloads and vectors of shape "
                                   f"{vectors.shape} do not describe the same points")
        if not len(ids):
            return
        self.ensure_collection(vectors.shape[1])
        dim = self.dim()
        if vectors.shape[1] != dim:
            raise VectorStoreError(f"analysis {ids[0]} has a {vectors.shape[1]}-dim embedding; "
                                   f"collection {self.collection!r} holds {dim}-dim vectors")
        if self.local:  # kept as numpy (see the module note); the local client validates the dimension
            points = [models.PointStruct.model_construct(id=i, vector={VECTOR: v}, payload=p)
                      for i, v, p in zip(ids, vectors, payloads)]
        else:
            points = [models.PointStruct(id=i, vector={VECTOR: v.tolist()}, payload=p)
                      for i, v, p in zip(ids, vectors, payloads)]
        self.client.upsert(self.collection, points=points, wait=True)

    def query(self, vector: Sequence[float] | np.ndarray, *, query_filter: Any = None, limit: int = 10,
              offset: int = 0, score_threshold: float | None = None) -> list[Any]:
        """Nearest points (qdrant `ScoredPoint`s with payloads), highest cosine first: from the mirror
        in local mode when it can answer the filter, else from Qdrant."""
        from qdrant_client import models

        if self._mirrored:
            rows = self._mirror_query(Query(vector, query_filter, limit, offset, score_threshold))
            if rows is not None:
                return [models.ScoredPoint.model_construct(id=i, version=0, score=s, payload=_copy(p))
                        for i, s, p in rows]
        return self.client.query_points(self.collection, query=np.asarray(vector, dtype=np.float64).tolist(),
                                        using=VECTOR, query_filter=query_filter, limit=limit, offset=offset,
                                        score_threshold=score_threshold, with_payload=True).points

    def _mirror_query(self, q: Query) -> list | None:
        """Queries that arrive while another holds the lock queue up; whoever takes the lock next
        answers all of them, so a burst of searches costs one lock hand-off, not one each."""
        item = _Queued(q)
        with self._queue_lock:
            self._queue.append(item)
        with self._lock:
            if not item.done:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                try:
                    mirror = self._current_mirror()
                    answers = [[]] * len(batch) if mirror is None else mirror.search_many([b.query for b in batch])
                except Exception as e:  # noqa: BLE001 - every caller in the batch gets the error
                    answers = [e] * len(batch)
                for b, answer in zip(batch, answers):
                    b.answer, b.done = answer, True
        if isinstance(item.answer, ValueError):
            raise VectorStoreError(str(item.answer)) from None
        if isinstance(item.answer, Exception):
            raise item.answer
        return item.answer

    def vector(self, point_id: str) -> np.ndarray | None:
        """A stored point's vector (unit length in local mode), None when there is no such point."""
        if self._mirrored:
            with self._lock:
                mirror = self._current_mirror()
                try:
                    key = _point_key(point_id)
                except ValueError:  # not a point id at all
                    return None
                return None if mirror is None else mirror.vector(key)
        points = self.client.retrieve(self.collection, ids=[point_id], with_vectors=[VECTOR])
        if not points or not isinstance(points[0].vector, dict) or VECTOR not in points[0].vector:
            return None
        return np.asarray(points[0].vector[VECTOR], dtype=np.float32)

    def search(self, vector: list[float], *, limit: int = 10, where: dict[str, Any] | None = None) -> list[Any]:
        from qdrant_client import models

        conditions = [models.FieldCondition(key=k, match=models.MatchAny(any=v) if isinstance(v, list)
                                            else models.MatchValue(value=v)) for k, v in (where or {}).items()]
        return self.query(vector, query_filter=models.Filter(must=conditions) if conditions else None, limit=limit)

    def count(self, where: dict[str, Any] | None = None) -> int:
        from qdrant_client import models

        if not self.client.collection_exists(self.collection):
            return 0
        conditions = [models.FieldCondition(key=k, match=models.MatchValue(value=v)) for k, v in (where or {}).items()]
        return self.client.count(self.collection, count_filter=models.Filter(must=conditions) if conditions else None,
                                 exact=True).count

    @property
    def mirror(self) -> VectorMirror | None:
        """The loaded search mirror (local mode; None without one or without a collection)."""
        if not self._mirrored:
            return None
        with self._lock:
            return self._current_mirror()

    def warm(self) -> None:
        """Load the search mirror now (local mode) rather than on the first query."""
        self.mirror  # noqa: B018 - loads it

    def close(self) -> None:
        self.client.close()

    # ---- the mirror -----------------------------------------------------------------------------

    def _current_mirror(self) -> VectorMirror | None:
        """The loaded mirror (None without a collection); call with the lock held."""
        if self._stale:
            self._mirror = self._load_mirror()
            self._stale = False
        return self._mirror

    def _load_mirror(self) -> VectorMirror | None:
        raw = self.client.raw
        if not raw.collection_exists(self.collection):
            return None
        n = raw.count(self.collection, exact=True).count
        mirror = VectorMirror(self.dim(), PAYLOAD_INDEXES, capacity=max(1024, n))
        offset = None
        while True:
            points, offset = raw.scroll(self.collection, limit=_LOAD_PAGE, offset=offset, with_payload=True,
                                        with_vectors=[VECTOR])
            for p in points:
                mirror.put(p.id, _named(p.vector), p.payload)
            if offset is None:
                return mirror

    def _written(self, name: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a write on the local client, then bring the mirror up to date with it (also when the
        write fails part way: local mode applies what it can before raising)."""
        arguments = inspect.signature(method).bind(*args, **kwargs).arguments
        with self._lock:
            try:
                return method(*args, **kwargs)
            finally:
                if arguments.get("collection_name") == self.collection:
                    self._follow(name, arguments)

    def _follow(self, name: str, arguments: dict[str, Any]) -> None:
        if name in _COLLECTION_WRITES:
            self._stale, self._dim = True, None
        elif not self._stale:  # a stale mirror is reloaded whole on the next query anyway
            ids = _written_ids(arguments)
            if ids is None:
                self._stale = True
            else:
                self._refresh(ids)

    def _refresh(self, ids: list[Any]) -> None:
        raw, mirror = self.client.raw, self._mirror
        if mirror is None:
            self._stale = True
            return
        for start in range(0, len(ids), _LOAD_PAGE):
            chunk = [_point_key(i) for i in ids[start:start + _LOAD_PAGE]]
            found = {p.id: p for p in raw.retrieve(self.collection, ids=chunk, with_payload=True,
                                                   with_vectors=[VECTOR])}
            for key in chunk:
                p = found.get(key)
                if p is None:
                    mirror.remove(key)
                else:
                    mirror.put(key, _named(p.vector), p.payload)


class _Queued:
    def __init__(self, query: Query) -> None:
        self.query, self.answer, self.done = query, None, False


class _MirroredClient:
    """A local QdrantClient whose writes to the store's collection also update the store's mirror.
    Reads pass straight through; `raw` is the client itself."""

    def __init__(self, raw: Any, store: VectorStore) -> None:
        self.raw = raw
        self._store = store

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.raw, name)
        if name in _POINT_WRITES or name in _COLLECTION_WRITES:
            return functools.partial(self._store._written, name, attr)
        return attr


def _written_ids(arguments: dict[str, Any]) -> list[Any] | None:
    """Point ids a write names explicitly; None when it selects by filter or writes unnamed points."""
    from qdrant_client import models

    for key in ("points", "points_selector"):
        sel = arguments.get(key)
        if isinstance(sel, models.PointIdsList):
            return list(sel.points)
        if isinstance(sel, models.Batch):
            return list(sel.ids)
        if isinstance(sel, (list, tuple)):
            if all(isinstance(p, (models.PointStruct, models.PointVectors)) for p in sel):
                return [p.id for p in sel]
            if all(isinstance(p, (str, int, uuid.UUID)) for p in sel):
                return list(sel)
    return None


def _point_key(point_id: Any) -> Any:
    """A point id as Qdrant reports it: ints as they are, UUIDs in canonical string form."""
    if isinstance(point_id, int):
        return point_id
    return str(uuid.UUID(str(point_id)))


def _named(vector: Any) -> Any:
    return vector.get(VECTOR) if isinstance(vector, dict) else None


def _copy(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, list) else v for k, v in payload.items()}


def payload_of(r: AnalysisRecord) -> dict[str, Any]:
    return {
        "video_id": r.video_id, "analysis_id": r.analysis_id, "model_version": r.model_version,
        "tags": [t.label for t in r.tags], "language": r.language, "creator_id": r.creator_id,
        "duration_s": r.duration_s, "moderation_status": r.moderation.status,
        "max_severity": r.moderation.max_severity, "created_at": r.created_at.isoformat(),
    }
