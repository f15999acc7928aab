"""Product reads: a video's status, its full analysis and its summary (roles `product`, and
`ingest` for the status of what it submitted); feedback on tags and summaries."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlmodel import Session, col, select

from api import outbox
from api.auth import Principal, Roles
from api.deps import Services, db, services
from api.problems import NotFound, responses
from api.search import active_version
from api.types import UtcDatetime
from service.schemas import FeedbackEvent, FeedbackKind, utcnow
from stores.db import Analysis, Tag, Video

router = APIRouter(prefix="/v1/videos", tags=["videos"])
STATUS = Roles("product", "ingest")
PRODUCT = Roles("product")
FEEDBACK = Roles("product", "moderator")
VideoPath = Path(min_length=1, max_length=128)
Version = Query(None, min_length=1, max_length=128, description="default: the active model version, else the newest")


class AnalysisRef(BaseModel):
    analysis_id: str
    model_version: str
    moderation_status: str
    created_at: UtcDatetime


class VideoStatus(BaseModel):
    video_id: str
    status: str
    error: str | None
    title: str | None
    creator_id: str | None
    language: str | None
    hashtags: list[str]
    submitted_at: UtcDatetime | None
    updated_at: UtcDatetime
    analyses: list[AnalysisRef]


class KeyMoment(BaseModel):
    start_s: float
    end_s: float | None
    label: str


class SummaryView(BaseModel):
    video_id: str
    analysis_id: str
    model_version: str
    short: str
    long: str
    title: str
    tags: list[str]
    key_moments: list[KeyMoment]


class TagCorrection(BaseModel):
    analysis_id: str | None = Field(default=None, max_length=36, description="default: the current analysis")
    add: list[str] = Field(default_factory=list, max_length=50)
    remove: list[str] = Field(default_factory=list, max_length=50)
    note: str | None = Field(default=None, max_length=4000)


class SummaryRating(BaseModel):
    analysis_id: str | None = Field(default=None, max_length=36)
    rating: int = Field(ge=1, le=5)
    comment: str | None = Field(default=None, max_length=4000)


class FeedbackAccepted(BaseModel):
    event_id: str
    video_id: str
    analysis_id: str


def _video(session: Session, video_id: str) -> Video:
    row = session.get(Video, video_id)
    if row is None:
        raise NotFound(f"no video {video_id!r}")
    return row


def current_analysis(
    session: Session, svc: Services, video_id: str, version: str | None, analysis_id: str | None = None
) -> Analysis:
    _video(session, video_id)
    q = select(Analysis).where(Analysis.video_id == video_id)
    if analysis_id:
        q = q.where(Analysis.analysis_id == analysis_id)
    elif version:
        q = q.where(Analysis.model_version == version)
    rows = list(session.exec(q.order_by(col(Analysis.created_at).desc())))
    if not rows:
        raise NotFound(f"video {video_id!r} has no analysis" + (f" by {version!r}" if version else "") + " yet")
    if not (analysis_id or version):
        active = active_version(session, svc)
        rows.sort(key=lambda a: a.model_version != active)  # stable: newest of the active version first
    return rows[0]


@router.get(
    "/{video_id}",
    response_model=VideoStatus,
    responses=responses(401, 403, 404, 422),
    summary="A video's status and its analyses",
    description=None,
)
def get_video(video_id: str = VideoPath, session: Session = Depends(db), _: Principal = Depends(STATUS)) -> VideoStatus:
    v = _video(session, video_id)
    rows = session.exec(select(Analysis).where(Analysis.video_id == video_id).order_by(col(Analysis.created_at).desc()))
    return VideoStatus(
        video_id=v.video_id,
        status=v.status,
        error=v.error,
        title=v.title,
        creator_id=v.creator_id,
        language=v.language,
        hashtags=list(v.hashtags or []),
        submitted_at=v.submitted_at,
        updated_at=v.updated_at,
        analyses=[
            AnalysisRef(
                analysis_id=a.analysis_id,
                model_version=a.model_version,
                moderation_status=a.moderation_status,
                created_at=a.created_at,
            )
            for a in rows
        ],
    )


@router.get(
    "/{video_id}/analysis",
    response_model=dict[str, Any],
    responses=responses(401, 403, 404, 422),
    summary="The full analysis record",
    description="The record of the service spec (tags, summary, moderation, timings), without the vector.",
)
def get_analysis(
    video_id: str = VideoPath,
    model_version: str | None = Version,
    session: Session = Depends(db),
    svc: Services = Depends(services),
    _: Principal = Depends(PRODUCT),
) -> dict[str, Any]:
    a = current_analysis(session, svc, video_id, model_version)
    return {**(a.record or {}), "moderation_status": a.moderation_status}


def summary_of(video_id: str, analysis_id: str, model_version: str, record: dict[str, Any]) -> SummaryView:
    s = record.get("summary") or {}
    tags = record.get("tags") or []
    moments = [
        KeyMoment(start_s=m["start_s"], end_s=m.get("end_s"), label=m.get("label") or m.get("reason") or "")
        for m in record.get("key_moments") or []
    ]
    if not moments:  # tags anchored in time (one per shot range) are the moments the model pointed at
        moments = [
            KeyMoment(start_s=t["start_s"], end_s=t.get("end_s"), label=t["label"])
            for t in tags
            if t.get("start_s") is not None
        ]
    return SummaryView(
        video_id=video_id,
        analysis_id=analysis_id,
        model_version=model_version,
        short=s.get("short", ""),
        long=s.get("long", ""),
        title=s.get("title", ""),
        tags=list(dict.fromkeys(t["label"] for t in tags)),
        key_moments=sorted(moments, key=lambda m: m.start_s),
    )


@router.get(
    "/{video_id}/summary",
    response_model=SummaryView,
    responses=responses(401, 403, 404, 422),
    summary="Short and long summary, title, tags, key moments",
    description=None,
)
def get_summary(
    video_id: str = VideoPath,
    model_version: str | None = Version,
    session: Session = Depends(db),
    svc: Services = Depends(services),
    _: Principal = Depends(PRODUCT),
) -> SummaryView:
    a = current_analysis(session, svc, video_id, model_version)
    return summary_of(video_id, a.analysis_id, a.model_version, a.record or {})


def _feedback(
    svc: Services, session: Session, a: Analysis, kind: FeedbackKind, who: Principal, payload: dict
) -> JSONResponse:
    event = FeedbackEvent(
        event_id=str(uuid.uuid4()),
        video_id=a.video_id,
        kind=kind,
        actor=who.name,
        at=utcnow(),
        payload={"analysis_id": a.analysis_id, "model_version": a.model_version, **payload},
    )
    outbox.enqueue(session, svc.settings.topic_feedback, a.video_id, event)
    session.commit()
    svc.published()
    body = FeedbackAccepted(event_id=event.event_id, video_id=a.video_id, analysis_id=a.analysis_id)
    return JSONResponse(body.model_dump(), status_code=202)


@router.post(
    "/{video_id}/tag-corrections",
    status_code=202,
    response_model=FeedbackAccepted,
    responses=responses(401, 403, 404, 422),
    summary="Correct a video's tags",
    description="Applied to the stored tags and published to `feedback.events`.",
)
def correct_tags(
    body: TagCorrection,
    video_id: str = VideoPath,
    session: Session = Depends(db),
    svc: Services = Depends(services),
    who: Principal = Depends(FEEDBACK),
) -> JSONResponse:
    a = current_analysis(session, svc, video_id, None, body.analysis_id)
    add = [t.strip().lower()[:200] for t in body.add if t.strip()]
    remove = {t.strip().lower() for t in body.remove}
    for tag in session.exec(select(Tag).where(Tag.analysis_id == a.analysis_id)):
        if tag.label.lower() in remove:
            session.delete(tag)
    known = {t.label for t in session.exec(select(Tag).where(Tag.analysis_id == a.analysis_id))}
    for label in add:
        if label not in known:
            session.add(Tag(analysis_id=a.analysis_id, label=label, video_id=video_id, score=1.0))
            known.add(label)
    record = dict(a.record or {})
    kept = [t for t in record.get("tags") or [] if t.get("label", "").lower() not in remove]
    labels = {t["label"] for t in kept}
    record["tags"] = kept + [{"label": label, "score": 1.0} for label in add if label not in labels]
    a.record = record
    session.add(a)
    return _feedback(svc, session, a, "tag_correction", who, {"add": add, "remove": sorted(remove), "note": body.note})


@router.post(
    "/{video_id}/summary-ratings",
    status_code=202,
    response_model=FeedbackAccepted,
    responses=responses(401, 403, 404, 422),
    summary="Rate a video's summary",
    description="Published to `feedback.events` as a training signal.",
)
def rate_summary(
    body: SummaryRating,
    video_id: str = VideoPath,
    session: Session = Depends(db),
    svc: Services = Depends(services),
    who: Principal = Depends(FEEDBACK),
) -> JSONResponse:
    a = current_analysis(session, svc, video_id, None, body.analysis_id)
    return _feedback(
        svc,
        session,
        a,
        "summary_rating",
        who,
        {"rating": body.rating, "comment": body.comment, "summary": (a.record or {}).get("summary")},
    )
