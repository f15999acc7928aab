"""Synchronous summary of a short clip (role `product`), on the workers' own analysis path
(`analysis.serving`), so a clip summarized here reads like one summarized by the pipeline."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api import media
from api.auth import Principal, Roles
from api.boundary import STREAMED_BODY
from api.deps import Services, services
from api.problems import Invalid, TooLarge, Unavailable, UnsafeURI, UnsupportedMedia, responses
from api.routes.videos import SummaryView, summary_of
from service.schemas import Submission, utcnow

PRODUCT = Roles("product")
router = APIRouter(prefix="/v1/summaries", tags=["summaries"])


class ClipByUri(BaseModel):
    uri: str = Field(min_length=1, max_length=4096)


def clip_duration(path: Path) -> float:
    import av

    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise UnsupportedMedia("the file has no video stream")
            s = c.streams.video[0]
            if s.duration is not None and s.time_base is not None:
                return float(s.duration * s.time_base)
            if c.duration is not None:
                return c.duration / 1_000_000
    except av.FFmpegError as e:
        raise UnsupportedMedia(f"the file cannot be decoded as video: {e}") from None
    raise UnsupportedMedia("the clip's duration cannot be read")


def summarize(svc: Services, path: Path) -> SummaryView:
    seconds = clip_duration(path)
    if seconds > svc.max_clip_seconds:
        raise Invalid(
            f"the clip lasts {seconds:.1f}s; synchronous summaries take at most {svc.max_clip_seconds:.0f}s "
            "(submit longer videos to /v1/videos)"
        )
    analyzer = svc.clip_analyzer()
    video_id = f"clip-{uuid.uuid4().hex[:12]}"
    sub = Submission(video_id=video_id, uri=path.resolve().as_uri(), submitted_at=utcnow(), tasks=["summary"])
    from keye_model.processor.errors import MediaError, ProcessorInputError

    try:
        record = analyzer.analyze(path, sub)
    except (MediaError, ProcessorInputError) as e:
        raise UnsupportedMedia(f"the clip cannot be analyzed: {e}") from None
    return summary_of(video_id, record.analysis_id, record.model_version, record.model_dump(mode="json"))


@router.post(
    "",
    response_model=SummaryView,
    responses=responses(401, 403, 413, 415, 422, 503),
    max_body_size=STREAMED_BODY,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in media.MEDIA_TYPES},
        }
    },
    summary="Summarize an uploaded short clip now",
    description="The body is the clip (raw bytes), bounded in size and duration.",
)
async def summarize_upload(
    request: Request, svc: Services = Depends(services), _: Principal = Depends(PRODUCT)
) -> SummaryView:
    media.check_content_type(request.headers.get("content-type"))
    folder = Path(tempfile.mkdtemp(prefix="keye-clip-"))
    try:
        path = await media.save_stream(
            request.stream(), folder, min(svc.max_upload_bytes, 256 << 20), request.headers.get("content-length")
        )
        return await run_in_threadpool(summarize, svc, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@router.post(
    "/by-uri",
    response_model=SummaryView,
    responses=responses(401, 403, 413, 415, 422, 503),
    summary="Summarize a short clip fetched from a URI now",
    description="Fetched under the same policy as the workers: allowed file roots, "
    "no private/loopback/link-local targets, redirects re-checked at every hop.",
)
def summarize_uri(body: ClipByUri, svc: Services = Depends(services), _: Principal = Depends(PRODUCT)) -> SummaryView:
    from service.fetch import FetchError, FetchTooLargeError, UnsafeURIError, fetched

    media.check_uri(body.uri, svc.settings)
    try:
        with fetched(body.uri, svc.settings) as path:
            return summarize(svc, path)
    except UnsafeURIError as e:
        raise UnsafeURI(str(e)) from None
    except FetchTooLargeError as e:
        raise TooLarge(str(e)) from None
    except FetchError as e:
        if e.permanent:
            raise Invalid(f"the clip cannot be fetched: {e}") from None
        raise Unavailable(f"the clip cannot be fetched now: {e}") from None
