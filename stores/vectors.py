"""The vector store: collection `videos`, named vector `keye` (cosine), one point per (video, model version).

Point ids are `uuid5(POINT_NAMESPACE, "video_id:model_version")` (the analysis id), so a redelivered
analysis overwrites its own point instead of adding one.

One interface, two engines, one write path (every write goes through a method here):
- a Qdrant server (KEYE_QDRANT_URL), through qdrant-client: any number of workers write to it;
- the embedded default: Qdrant's own engine in-process (Qdrant Edge, `stores.edge`), one shard
  folder per collection under KEYE_QDRANT_PATH: HNSW over int8 vectors in memory, the float32
  originals on disk for rescoring, payload indexes, and a write-ahead log, so every upsert that
  returned survives a killed process. A shard folder is locked by one process: the vector sink
  (`workers.vector_sink`, in the API's process) or `keye analyze`. Workers never open it.

Filters are qdrant-client `models.Filter`s for both engines (the embedded one translates them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stores.vector_types import VECTOR, Hit, VectorStoreError

__all__ = ["COLLECTION", "PAYLOAD_INDEXES", "VECTOR", "Hit", "VectorStore", "VectorStoreError", "payload_of"]

if TYPE_CHECKING:
    from service.schemas import AnalysisRecord
    from service.settings import Settings

COLLECTION = "videos"

# payload field -> index type; every filterable field of the spec is indexed.
PAYLOAD_INDEXES = {
    "video_id": "keyword",
    "tags": "keyword",
    "language": "keyword",
    "creator_id": "keyword",
    "moderation_status": "keyword",
    "model_version": "keyword",
    "max_severity": "integer",
    "duration_s": "float",
    "created_at": "datetime",
}


class VectorStore:
    def __init__(
        self,
        *,
        url: str | None = None,
        path: Path | str | None = None,
        collection: str = COLLECTION,
        api_key: str | None = None,
    ) -> None:
        if (url is None) == (path is None):
            raise ValueError("give exactly one of url (a Qdrant server) or path (a local folder)")
        self.collection = collection
        self.local = url is None
        if url is not None:
            from stores.qdrant_server import ServerEngine

            self._engine: Any = ServerEngine(url, collection, api_key=api_key)
        else:
            assert path is not None  # exactly one of url and path: checked above
            from stores.edge import EdgeEngine

            self._engine = EdgeEngine(Path(path) / collection)

    @classmethod
    def with_client(cls, client: Any, collection: str = COLLECTION) -> VectorStore:
        """The server engine on an open QdrantClient (tests: qdrant-client's local mode speaks the
        server's client API)."""
        from stores.qdrant_server import ServerEngine

        store = cls.__new__(cls)
        store.collection, store.local = collection, False
        store._engine = ServerEngine(None, collection, client=client)
        return store

    @classmethod
    def from_settings(cls, settings: Settings, collection: str = COLLECTION) -> VectorStore:
        if settings.qdrant_url:
            return cls(url=settings.qdrant_url, collection=collection)
        return cls(path=settings.resolved_qdrant_path, collection=collection)

    def exists(self) -> bool:
        return self._engine.exists()

    def ensure_collection(self, dim: int) -> None:
        if dim <= 0:
            raise VectorStoreError(f"embedding dimension must be positive, got {dim}")
        if self.exists():
            have = self.dim()
            if have != dim:
                raise VectorStoreError(
                    f"collection {self.collection!r} holds {have}-dim vectors, got {dim}; "
                    "a model with another embedding size needs its own collection"
                )
            return
        self._engine.create(dim, PAYLOAD_INDEXES)

    def dim(self) -> int:
        return self._engine.dim()

    def upsert(self, records: list[AnalysisRecord]) -> None:
        """Write each record's point (its embedding must be present); idempotent by point id."""
        if not records:
            return
        embeddings: list[list[float]] = []
        for r in records:
            if not r.embedding:
                raise VectorStoreError(f"analysis {r.analysis_id} of video {r.video_id} has no embedding")
            embeddings.append(r.embedding)
        dim = len(embeddings[0])
        for r, embedding in zip(records, embeddings):
            if len(embedding) != dim:
                raise VectorStoreError(
                    f"analysis {r.analysis_id} of video {r.video_id} has a {len(embedding)}-dim "
                    f"embedding; this batch holds {dim}-dim embeddings"
                )
        self.upsert_points(
            [r.analysis_id for r in records],
            np.asarray(embeddings),
            [payload_of(r) for r in records],
        )

    def upsert_points(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> None:
        """Write points from an (n, dim) array; the collection is created on first use. Durable when
        it returns (the server acknowledges with wait=True; the embedded engine logged it)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(ids) or len(ids) != len(payloads):
            raise VectorStoreError(
                f"{len(ids)} ids, {len(payloads)} payloads and vectors of shape "
                f"{vectors.shape} do not describe the same points"
            )
        if not len(ids):
            return
        if not np.isfinite(vectors).all():
            raise VectorStoreError(f"analysis {ids[0]}: the batch holds NaN or infinite vector values")
        self.ensure_collection(vectors.shape[1])
        dim = self.dim()
        if vectors.shape[1] != dim:
            raise VectorStoreError(
                f"analysis {ids[0]} has a {vectors.shape[1]}-dim embedding; "
                f"collection {self.collection!r} holds {dim}-dim vectors"
            )
        self._engine.upsert([_point_id(i) for i in ids], vectors, list(payloads))

    def set_payload(self, ids: Sequence[str], payload: dict[str, Any]) -> None:
        """Set these payload fields on the points (others are kept); missing points are skipped."""
        if ids and self.exists():
            self._engine.set_payload([_point_id(i) for i in ids], payload)

    def delete(self, ids: Sequence[str]) -> None:
        if ids and self.exists():
            self._engine.delete([_point_id(i) for i in ids])

    def query(
        self,
        vector: Sequence[float] | np.ndarray,
        *,
        query_filter: Any = None,
        limit: int = 10,
        offset: int = 0,
        score_threshold: float | None = None,
    ) -> list[Hit]:
        """Nearest points, highest cosine first; `query_filter` is a qdrant-client `models.Filter`."""
        q = np.asarray(vector, dtype=np.float32).reshape(-1)
        if not np.isfinite(q).all():
            raise VectorStoreError("the query vector holds NaN or infinite values")
        if not self.exists() or limit <= 0:
            return []
        if q.shape[0] != self.dim():
            raise VectorStoreError(f"a {q.shape[0]}-dim query for {self.dim()}-dim vectors")
        return self._engine.query(q, query_filter, limit, offset, score_threshold)

    def retrieve(self, ids: Sequence[str]) -> list[Hit]:
        """The stored points among `ids` (payloads, score 0), in no particular order."""
        if not ids or not self.exists():
            return []
        try:
            keys = [_point_id(i) for i in ids]
        except ValueError:
            return []
        return self._engine.retrieve(keys)

    def vector(self, point_id: str) -> np.ndarray | None:
        """A stored point's vector (unit length: cosine vectors are stored normalised), None when
        there is no such point."""
        if not self.exists():
            return None
        try:
            key = _point_id(point_id)
        except ValueError:  # not a point id at all
            return None
        return self._engine.vector(key)

    def search(self, vector: list[float], *, limit: int = 10, where: dict[str, Any] | None = None) -> list[Hit]:
        return self.query(vector, query_filter=_where(where), limit=limit)

    def count(self, where: dict[str, Any] | None = None) -> int:
        if not self.exists():
            return 0
        return self._engine.count(_where(where))

    def maintain(self, force: bool = False) -> None:
        """Index newly written points and flush, when due (embedded engine; `force`: now)."""
        self._engine.maintain(force)

    @contextlib.contextmanager
    def bulk_load(self) -> Iterator[None]:
        """Write many points, then index them once on exit, instead of every few thousand points."""
        self._engine.index_after, saved = None, self._engine.index_after
        try:
            yield
        finally:
            self._engine.index_after = saved
            self.maintain(force=True)

    def ping(self) -> None:
        """Raise when the store cannot answer (the server is unreachable)."""
        self._engine.ping()

    def warm(self) -> None:
        """Open the store now rather than on the first request."""
        self.exists()

    def close(self) -> None:
        self._engine.close()


def _where(where: dict[str, Any] | None) -> Any:
    """Equality conditions (a list value: any of them) as a qdrant-client Filter."""
    if not where:
        return None
    from qdrant_client import models

    return models.Filter(
        must=[
            models.FieldCondition(
                key=k, match=models.MatchAny(any=v) if isinstance(v, list) else models.MatchValue(value=v)
            )
            for k, v in where.items()
        ]
    )


def _point_id(point_id: Any) -> str:
    """A point id in the canonical UUID text both engines report (ValueError if it is none)."""
    import uuid

    return str(uuid.UUID(str(point_id)))


def payload_of(r: AnalysisRecord) -> dict[str, Any]:
    return {
        "video_id": r.video_id,
        "analysis_id": r.analysis_id,
        "model_version": r.model_version,
        "tags": [t.label for t in r.tags],
        "language": r.language,
        "creator_id": r.creator_id,
        "duration_s": r.duration_s,
        "moderation_status": r.moderation.status,
        "max_severity": r.moderation.max_severity,
        "created_at": r.created_at.isoformat(),
    }
