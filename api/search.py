"""Similarity search over the vector store: by video, by text (embedded by the model into the video
space) or by raw vector, with payload filters, pagination and a score threshold.

Vectors are only comparable within one model version, so every query is pinned to one: the one it
names, else the active model version in SQL, else the configured model.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator
from sqlmodel import Session

from api.deps import Services
from api.problems import Conflict, Invalid, NotFound, Problem, ProblemBody
from api.types import CreatorId, Label, LanguageTag
from service.schemas import VideoId, analysis_id_for
from stores.db import ModelVersion, model_version_name, serving_model

MAX_DIM = 16384


class Filters(BaseModel):
    """Every given field must match (AND); list fields match any of their values (OR)."""

    tags: list[Label] | None = Field(default=None, max_length=50, description="any of these tags")
    language: list[LanguageTag] | None = Field(default=None, max_length=50)
    creator_id: list[CreatorId] | None = Field(default=None, max_length=100)
    moderation_status: list[Literal["clear", "flagged", "needs_review"]] | None = None
    max_severity: int | None = Field(default=None, ge=0, le=3, description="at most this severity")
    min_duration_s: float | None = Field(default=None, ge=0)
    max_duration_s: float | None = Field(default=None, ge=0)
    created_after: datetime | None = None
    created_before: datetime | None = None


class SearchQuery(BaseModel):
    """Exactly one of video_id, text or vector."""

    video_id: VideoId | None = None
    text: str | None = Field(default=None, min_length=1, max_length=2000)
    vector: list[float] | None = Field(default=None, min_length=1, max_length=MAX_DIM)
    filters: Filters = Field(default_factory=Filters)
    limit: int = Field(default=10, ge=1, le=100)
    offset: int = Field(default=0, ge=0, le=10_000)
    score_threshold: float | None = Field(default=None, ge=-1.0, le=1.0)
    model_version: str | None = Field(default=None, min_length=1, max_length=128)

    @model_validator(mode="after")
    def _one_query(self) -> SearchQuery:
        given = [k for k in ("video_id", "text", "vector") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of video_id, text or vector (got {given or 'none'})")
        return self


class Hit(BaseModel):
    video_id: str
    analysis_id: str
    score: float
    payload: dict[str, Any]


class SearchResult(BaseModel):
    model_version: str
    hits: list[Hit]
    limit: int
    offset: int


class BatchQuery(BaseModel):
    queries: list[SearchQuery] = Field(min_length=1, max_length=32)


class BatchItem(BaseModel):
    """Either the result or the problem of one query; one bad query does not fail the batch."""

    result: SearchResult | None = None
    error: ProblemBody | None = None


class BatchResult(BaseModel):
    results: list[BatchItem]


def active_version(session: Session, svc: Services) -> str:
    """The version the workers serve (and so write vectors for): the registry's active one, else KEYE_MODEL's."""
    return serving_model(session, svc.settings)[0]


def checkpoint_of(session: Session, svc: Services, version: str) -> tuple[str, str] | None:
    """(version, checkpoint) of a version: its registry row, or KEYE_MODEL's own; None if unknown."""
    row = session.get(ModelVersion, version)
    if row is not None:
        return row.version, row.path
    if version == model_version_name(svc.settings.model):
        return version, str(svc.settings.model)
    return None


def _filter(q: SearchQuery, version: str):  # noqa: ANN202 - qdrant models.Filter
    from qdrant_client import models

    f = q.filters
    must: list[Any] = [models.FieldCondition(key="model_version", match=models.MatchValue(value=version))]
    for key in ("tags", "language", "creator_id", "moderation_status"):
        values = getattr(f, key)
        if values:
            must.append(models.FieldCondition(key=key, match=models.MatchAny(any=list(values))))
    if f.max_severity is not None:
        must.append(models.FieldCondition(key="max_severity", range=models.Range(lte=f.max_severity)))
    if f.min_duration_s is not None or f.max_duration_s is not None:
        must.append(
            models.FieldCondition(key="duration_s", range=models.Range(gte=f.min_duration_s, lte=f.max_duration_s))
        )
    if f.created_after is not None or f.created_before is not None:
        must.append(
            models.FieldCondition(
                key="created_at", range=models.DatetimeRange(gte=f.created_after, lte=f.created_before)
            )
        )
    must_not: list[Any] = []
    if q.video_id is not None:  # a video is not its own neighbour
        must_not.append(models.FieldCondition(key="video_id", match=models.MatchValue(value=q.video_id)))
    return models.Filter(must=must, must_not=must_not or None)


def search(svc: Services, session: Session, q: SearchQuery) -> SearchResult:
    from stores.vectors import VectorStoreError

    version = q.model_version or active_version(session, svc)
    store = svc.vector_store()
    if not store.exists():
        return SearchResult(model_version=version, hits=[], limit=q.limit, offset=q.offset)
    dim = store.dim()
    if q.vector is not None:
        vector = q.vector
    elif q.text is not None:
        embedder = svc.text_embedder()
        vector = embedder.embed_text(q.text, model=checkpoint_of(session, svc, version))
        if embedder.version != version:
            raise Conflict(
                f"text queries are embedded by model {embedder.version!r}; its vectors cannot be "
                f"compared with those of {version!r}"
            )
    else:
        assert q.video_id is not None  # SearchQuery holds exactly one of video_id, text and vector
        vector = store.vector(analysis_id_for(q.video_id, version))
        if vector is None:
            raise NotFound(f"video {q.video_id!r} has no vector for model version {version!r}")
    if len(vector) != dim:
        raise Invalid(f"the vector has {len(vector)} dimensions; the collection holds {dim}-dimensional vectors")
    try:
        points = store.query(
            vector, query_filter=_filter(q, version), limit=q.limit, offset=q.offset, score_threshold=q.score_threshold
        )
    except VectorStoreError as e:
        raise Invalid(str(e)) from None
    hits = [
        Hit(
            video_id=p.payload.get("video_id", ""),
            analysis_id=str(p.id),
            score=float(p.score),
            payload=dict(p.payload or {}),
        )
        for p in points
    ]
    return SearchResult(model_version=version, hits=hits, limit=q.limit, offset=q.offset)


def batch(svc: Services, session: Session, body: BatchQuery, request_id: str | None) -> BatchResult:
    out = []
    for i, q in enumerate(body.queries):
        try:
            out.append(BatchItem(result=search(svc, session, q)))
        except Problem as e:
            out.append(
                BatchItem(
                    error=ProblemBody(
                        type=f"urn:keye:problem:{e.slug}",
                        title=e.title,
                        status=e.status,
                        detail=f"query {i}: {e.detail}",
                        request_id=request_id,
                    )
                )
            )
    return BatchResult(results=out)
