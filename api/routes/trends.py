"""Aggregates the streams app writes: trending tags per window and per-creator flag rates
(roles `product`, `recommender`, `moderator`)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from sqlmodel import Session, col, select

from api.auth import Principal, Roles
from api.deps import db
from api.problems import responses
from api.types import UtcDatetime
from stores.db import CreatorFlagRate, TagTrend

READERS = Roles("product", "recommender", "moderator")
router = APIRouter(prefix="/v1/trends", tags=["trends"])


class TrendingTag(BaseModel):
    label: str
    count: int


class TrendingTags(BaseModel):
    window: str
    window_start: UtcDatetime | None
    tags: list[TrendingTag]


class CreatorRate(BaseModel):
    creator_id: str
    analyzed: int
    flagged: int
    rate: float
    updated_at: UtcDatetime


@router.get(
    "/tags",
    response_model=TrendingTags,
    responses=responses(401, 403, 422),
    summary="Trending tags of one window",
    description="Default: the latest window the streams app wrote.",
)
def trending_tags(
    window: Literal["hour", "day"] = "hour",
    window_start: datetime | None = None,
    limit: int = Query(20, ge=1, le=500),
    session: Session = Depends(db),
    _: Principal = Depends(READERS),
) -> TrendingTags:
    if window_start is None:
        window_start = session.exec(
            select(TagTrend.window_start).where(TagTrend.window == window).order_by(col(TagTrend.window_start).desc())
        ).first()
    if window_start is None:
        return TrendingTags(window=window, window_start=None, tags=[])
    rows = session.exec(
        select(TagTrend)
        .where(TagTrend.window == window, TagTrend.window_start == window_start)
        .order_by(col(TagTrend.count).desc(), TagTrend.label)
        .limit(limit)
    )
    return TrendingTags(
        window=window, window_start=window_start, tags=[TrendingTag(label=r.label, count=r.count) for r in rows]
    )


@router.get(
    "/creators",
    response_model=list[CreatorRate],
    responses=responses(401, 403, 422),
    summary="Per-creator flag rates, highest first",
    description=None,
)
def creator_flag_rates(
    min_analyzed: int = Query(1, ge=0, le=10**9),
    limit: int = Query(50, ge=1, le=1000),
    session: Session = Depends(db),
    _: Principal = Depends(READERS),
) -> list[CreatorRate]:
    rows = session.exec(
        select(CreatorFlagRate)
        .where(CreatorFlagRate.analyzed >= min_analyzed)
        .order_by(col(CreatorFlagRate.rate).desc(), col(CreatorFlagRate.flagged).desc(), CreatorFlagRate.creator_id)
        .limit(limit)
    )
    return [CreatorRate(**r.model_dump()) for r in rows]
