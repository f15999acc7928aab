"""The server engine: a Qdrant server (KEYE_QDRANT_URL) through qdrant-client; any number of processes
write to it. Payload indexes are created with the collection."""

from __future__ import annotations

from typing import Any

import numpy as np

from stores.vector_types import VECTOR, Hit, VectorStoreError


class ServerEngine:
    def __init__(self, url: str | None, collection: str, *, api_key: str | None = None, client: Any = None) -> None:
        """`client`: an open QdrantClient to use instead of one for `url` (tests drive this engine
        through qdrant-client's local mode, which speaks the same client API)."""
        from qdrant_client import QdrantClient

        self.client = client or QdrantClient(url=url, api_key=api_key, timeout=30)
        self.collection = collection
        self.index_after: int | None = None  # the server indexes by itself

    def exists(self) -> bool:
        return self.client.collection_exists(self.collection)

    def create(self, dim: int, indexes: dict[str, str]) -> None:
        from qdrant_client import models

        self.client.create_collection(
            self.collection, vectors_config={VECTOR: models.VectorParams(size=dim, distance=models.Distance.COSINE)}
        )
        for name, kind in indexes.items():
            self.client.create_payload_index(self.collection, name, field_schema=models.PayloadSchemaType(kind))

    def dim(self) -> int:  # read each time: a server's collection may be recreated by others
        vectors = self.client.get_collection(self.collection).config.params.vectors
        if not isinstance(vectors, dict):  # this store's collections name their vector
            raise VectorStoreError(f"collection {self.collection} has no named vector {VECTOR!r}")
        return vectors[VECTOR].size

    def upsert(self, ids: list[str], vectors: np.ndarray, payloads: list[dict[str, Any]]) -> None:
        from qdrant_client import models

        self.client.upsert(
            self.collection,
            wait=True,
            points=models.Batch(ids=list(ids), vectors={VECTOR: vectors.tolist()}, payloads=payloads),
        )

    def set_payload(self, ids: list[str], payload: dict[str, Any]) -> None:
        self.client.set_payload(self.collection, payload=payload, points=list(ids), wait=True)

    def delete(self, ids: list[str]) -> None:
        self.client.delete(self.collection, points_selector=list(ids), wait=True)

    def query(self, vector: np.ndarray, flt: Any, limit: int, offset: int, score_threshold: float | None) -> list[Hit]:
        from qdrant_client.http.exceptions import UnexpectedResponse

        try:
            points = self.client.query_points(
                self.collection,
                query=vector.tolist(),
                using=VECTOR,
                query_filter=flt,
                limit=limit,
                offset=offset,
                score_threshold=score_threshold,
                with_payload=True,
            ).points
        except UnexpectedResponse as e:
            raise VectorStoreError(str(e)) from None
        return [Hit(str(p.id), float(p.score), p.payload or {}) for p in points]

    def retrieve(self, ids: list[str]) -> list[Hit]:
        return [Hit(str(p.id), 0.0, p.payload or {}) for p in self.client.retrieve(self.collection, ids=ids)]

    def vector(self, point_id: str) -> np.ndarray | None:
        points = self.client.retrieve(self.collection, ids=[point_id], with_vectors=[VECTOR])
        if not points or not isinstance(points[0].vector, dict) or VECTOR not in points[0].vector:
            return None
        return np.asarray(points[0].vector[VECTOR], dtype=np.float32)

    def count(self, flt: Any) -> int:
        return self.client.count(self.collection, count_filter=flt, exact=True).count

    def maintain(self, force: bool = False) -> None:
        """The server indexes and flushes by itself."""

    def ping(self) -> None:
        self.client.get_collections()

    def close(self) -> None:
        self.client.close()
