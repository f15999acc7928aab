"""The Qdrant store: collection `videos`, named vector `keye` (cosine), one point per (video, model version).

Point ids are `uuid5(POINT_NAMESPACE, "video_id:model_version")` (the analysis id), so a redelivered
analysis overwrites its own point instead of adding one.

Two deployments, one client API:
- a Qdrant server (KEYE_QDRANT_URL): any number of workers write to it directly;
- the embedded default, qdrant-client's local mode (a folder under KEYE_DATA_DIR). Local mode locks
  its folder to ONE process and ignores payload indexes (filters still work, by scan). So exactly one
  process owns it: the vector sink (`workers.vector_sink`) that consumes `videos.analyzed` and runs
  beside search (the API), or `keye analyze` in-process. Workers never open it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from keye.schemas import AnalysisRecord
from keye.settings import Settings

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


class VectorStore:
    def __init__(self, *, url: str | None = None, path: Path | str | None = None, collection: str = COLLECTION,
                 api_key: str | None = None) -> None:
        from qdrant_client import QdrantClient

        if (url is None) == (path is None):
            raise ValueError("give exactly one of url (a Qdrant server) or path (a local folder)")
        self.collection = collection
        self.local = url is None
        if path is not None:
            Path(path).mkdir(parents=True, exist_ok=True)
        self.client = QdrantClient(url=url, api_key=api_key, timeout=30) if url else QdrantClient(path=str(path))

    @classmethod
    def from_settings(cls, settings: Settings, collection: str = COLLECTION) -> VectorStore:
        if settings.qdrant_url:
            return cls(url=settings.qdrant_url, collection=collection)
        return cls(path=settings.resolved_qdrant_path, collection=collection)

    def ensure_collection(self, dim: int) -> None:
        from qdrant_client import models

        if dim <= 0:
            raise VectorStoreError(f"embedding dimension must be positive, got {dim}")
        if self.client.collection_exists(self.collection):
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
        params = self.client.get_collection(self.collection).config.params.vectors
        return params[VECTOR].size

    def upsert(self, records: list[AnalysisRecord]) -> None:
        """Write each record's point (its embedding must be present); idempotent by point id."""
        from qdrant_client import models

        if not records:
            return
        for r in records:
            if not r.embedding:
                raise VectorStoreError(f"analysis {r.analysis_id} of video {r.video_id} has no embedding")
        self.ensure_collection(len(records[0].embedding))
        dim = self.dim()
        for r in records:
            if len(r.embedding) != dim:
                raise VectorStoreError(f"analysis {r.analysis_id} of video {r.video_id} has a {len(r.embedding)}-dim "
                                       f"embedding; collection {self.collection!r} holds {dim}-dim vectors")
        points = [models.PointStruct(id=r.analysis_id, vector={VECTOR: list(r.embedding)}, payload=payload_of(r))
                  for r in records]
        self.client.upsert(self.collection, points=points, wait=True)

    def search(self, vector: list[float], *, limit: int = 10, where: dict[str, Any] | None = None) -> list[Any]:
        from qdrant_client import models

        conditions = [models.FieldCondition(key=k, match=models.MatchAny(any=v) if isinstance(v, list)
                                            else models.MatchValue(value=v)) for k, v in (where or {}).items()]
        flt = models.Filter(must=conditions) if conditions else None
        return self.client.query_points(self.collection, query=vector, using=VECTOR, query_filter=flt,
                                        limit=limit, with_payload=True).points

    def count(self, where: dict[str, Any] | None = None) -> int:
        from qdrant_client import models

        if not self.client.collection_exists(self.collection):
            return 0
        conditions = [models.FieldCondition(key=k, match=models.MatchValue(value=v)) for k, v in (where or {}).items()]
        return self.client.count(self.collection, count_filter=models.Filter(must=conditions) if conditions else None,
                                 exact=True).count

    def close(self) -> None:
        self.client.close()


def payload_of(r: AnalysisRecord) -> dict[str, Any]:
    return {
        "video_id": r.video_id, "analysis_id": r.analysis_id, "model_version": r.model_version,
        "tags": [t.label for t in r.tags], "language": r.language, "creator_id": r.creator_id,
        "duration_s": r.duration_s, "moderation_status": r.moderation.status,
        "max_severity": r.moderation.max_severity, "created_at": r.created_at.isoformat(),
    }
