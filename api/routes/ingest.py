"""Submitting videos (role `ingest`): by URI or by upload; 202 with the video id, published to
`videos.ingest` through the outbox. Idempotent by video_id: a known id is answered with its current
status and not published again."""

from __future__ import annotations

import json
from typing import Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from api import media, outbox
from api.auth import Principal, Roles
from api.boundary import STREAMED_BODY
from api.deps import Services, db, services
from api.problems import Invalid, responses
from api.types import CreatorId, Label, LanguageTag, UtcDatetime
from service.schemas import Submission, VideoId, utcnow
from service.uploads import discard
from stores.db import Video, table_of

INGEST = Roles("ingest")
router = APIRouter(prefix="/v1/videos", tags=["ingest"])
Task = Literal["tags", "summary", "moderation", "embedding", "products"]


class SubmitRequest(BaseModel):
    uri: str = Field(min_length=1, max_length=4096, description="file:// under the allowed roots, or http(s)://")
    video_id: VideoId | None = Field(default=None, description="default: derived from the URI")
    title: str | None = Field(default=None, max_length=1000)
    description: str | None = Field(default=None, max_length=10000)
    hashtags: list[Label] = Field(default_factory=list, max_length=100)
    creator_id: CreatorId | None = None
    language: LanguageTag | None = None
    tasks: list[Task] = Field(default_factory=list)


class Accepted(BaseModel):
    video_id: str
    status: str
    duplicate: bool
    submitted_at: UtcDatetime | None = None


def _insert_new(session: Session, s: Submission) -> bool:
    """Insert the video row unless its id is known; True when this call created it."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = (
        insert(table_of(Video))
        .values(
            video_id=s.video_id,
            uri=s.uri,
            title=s.title,
            description=s.description,
            hashtags=list(s.hashtags),
            creator_id=s.creator_id,
            language=s.language,
            status="queued",
            submitted_at=s.submitted_at,
            updated_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["video_id"])
    )
    # RETURNING, not rowcount: psycopg reports -1 for INSERT ... ON CONFLICT.
    return session.execute(stmt.returning(table_of(Video).c.video_id)).first() is not None


def accept(svc: Services, session: Session, fields: dict) -> JSONResponse:
    try:
        s = Submission(submitted_at=utcnow(), **fields)
    except ValidationError as e:
        raise Invalid("; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors()[:3])) from None
    created = _insert_new(session, s)
    if created:
        outbox.enqueue(session, svc.settings.topic_ingest, s.video_id, s)
    session.commit()
    if created:
        svc.published()
    row = session.get(Video, s.video_id)
    assert row is not None, "inserted (or found) and committed above"
    return _accepted(row, duplicate=not created)


def _accepted(row: Video, duplicate: bool) -> JSONResponse:
    body = Accepted(video_id=row.video_id, status=row.status, duplicate=duplicate, submitted_at=row.submitted_at)
    return JSONResponse(
        body.model_dump(mode="json"), status_code=202, headers={"Location": f"/v1/videos/{row.video_id}"}
    )


@router.post(
    "",
    status_code=202,
    response_model=Accepted,
    responses=responses(401, 403, 422),
    summary="Submit a video by URI",
    description="The URI passes the fetch policy "
    "(allowed file roots; no private, loopback or link-local hosts unless configured) before acceptance.",
)
def submit(
    body: SubmitRequest,
    session: Session = Depends(db),
    svc: Services = Depends(services),
    _: Principal = Depends(INGEST),
) -> JSONResponse:
    from service.kafka import video_id_for

    media.check_uri(body.uri, svc.settings)
    fields = body.model_dump()
    fields["video_id"] = body.video_id or video_id_for(body.uri)
    return accept(svc, session, fields)


@router.put(
    "/{video_id}/content",
    status_code=202,
    response_model=Accepted,
    max_body_size=STREAMED_BODY,
    responses=responses(401, 403, 413, 415, 422, 507),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in media.MEDIA_TYPES},
        }
    },
    summary="Upload a video file (raw body)",
    description="The body is the file itself, streamed to storage under the size "
    "limit and the storage quota (507 when used up); a video id that is already "
    "known is not stored again.",
)
async def upload(
    request: Request,
    video_id: str = Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$"),
    title: str | None = Query(None, max_length=1000),
    creator_id: str | None = Query(None, max_length=128),
    language: str | None = Query(None, max_length=35),
    hashtags: list[Label] = Query([], max_length=100),
    svc: Services = Depends(services),
    _: Principal = Depends(INGEST),
) -> JSONResponse:
    from starlette.concurrency import run_in_threadpool

    def known() -> JSONResponse | None:
        with Session(svc.engine) as s:
            row = s.get(Video, video_id)
            return _accepted(row, duplicate=True) if row is not None else None

    if (answer := await run_in_threadpool(known)) is not None:
        return answer  # idempotent: the body of a known video is not stored again
    media.check_content_type(request.headers.get("content-type"))
    quota = await run_in_threadpool(media.quota_left, svc.settings)
    path = await media.save_stream(
        request.stream(), svc.upload_dir / video_id, svc.max_upload_bytes, request.headers.get("content-length"), quota
    )
    fields = dict(
        video_id=video_id, uri=path.as_uri(), title=title, creator_id=creator_id, language=language, hashtags=hashtags
    )

    def commit() -> JSONResponse:
        try:
            with Session(svc.engine) as s:
                answer = accept(svc, s, fields)
        except BaseException:  # nothing refers to the file: do not let it hold quota
            discard(path.as_uri(), svc.settings)
            raise
        if json.loads(bytes(answer.body))["duplicate"]:  # a concurrent upload of the same id won the race
            discard(path.as_uri(), svc.settings)
        return answer

    return await run_in_threadpool(commit)
