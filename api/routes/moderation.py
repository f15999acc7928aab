"""Moderation: the review queue, cases, claims and decisions (role `moderator`)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlmodel import Session

from api import cases, idempotency
from api.auth import Principal, Roles
from api.deps import Services, db, services
from api.problems import Conflict, responses

MOD = Roles("moderator")
router = APIRouter(prefix="/v1/moderation", tags=["moderation"])
CaseId = Path(min_length=1, max_length=36, description="the analysis id of the case")


@router.get(
    "/queue",
    response_model=cases.Queue,
    responses=responses(401, 403, 422),
    summary="The review queue, most severe first",
    description=None,
)
def get_queue(
    state: cases.QueueState = "open",
    category: str | None = Query(None, max_length=64),
    min_age_s: float | None = Query(None, ge=0, le=1e9, description="only cases at least this old"),
    max_age_s: float | None = Query(None, ge=0, le=1e9, description="only cases at most this old"),
    min_severity: int = Query(0, ge=0, le=3),
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=1_000_000),
    session: Session = Depends(db),
    _: Principal = Depends(MOD),
) -> cases.Queue:
    return cases.queue(
        session,
        state=state,
        category=category,
        min_age_s=min_age_s,
        max_age_s=max_age_s,
        min_severity=min_severity,
        limit=limit,
        offset=offset,
    )


@router.get(
    "/cases/{analysis_id}",
    response_model=cases.Case,
    responses=responses(401, 403, 404, 422),
    summary="A case: record, evidence, reasoning, thumbnails",
    description=None,
)
def get_case(analysis_id: str = CaseId, session: Session = Depends(db), _: Principal = Depends(MOD)) -> cases.Case:
    return cases.get_case(session, analysis_id, "/v1/moderation/cases/{analysis_id}/thumbnails/{t}")


@router.post(
    "/cases/{analysis_id}/claim",
    response_model=cases.ClaimInfo,
    responses=responses(401, 403, 404, 409, 422),
    summary="Claim a case (renews one's own claim)",
    description=None,
)
def claim_case(
    analysis_id: str = CaseId,
    session: Session = Depends(db),
    svc: Services = Depends(services),
    who: Principal = Depends(MOD),
) -> cases.ClaimInfo:
    return cases.claim(session, analysis_id, who, svc.claim_ttl_s)


@router.delete(
    "/cases/{analysis_id}/claim",
    status_code=204,
    responses=responses(401, 403, 404, 409, 422),
    summary="Release one's claim",
    description=None,
)
def release_case(analysis_id: str = CaseId, session: Session = Depends(db), who: Principal = Depends(MOD)) -> Response:
    cases.release(session, analysis_id, who)
    return Response(status_code=204)


@router.post(
    "/cases/{analysis_id}/decision",
    response_model=cases.DecisionOut,
    responses=responses(401, 403, 404, 409, 422),
    summary="Confirm, clear or escalate a claimed case",
    description="Stored, published to `feedback.events`, and it sets the "
    "analysis's moderation status (confirm: flagged, clear: clear, escalate: needs_review). "
    "A decision uses the claim up: a second one on the same claim answers 409 "
    "`already-decided`, unless it repeats the first one's `Idempotency-Key`.",
)
def decide(
    request: Request,
    body: cases.DecisionIn,
    analysis_id: str = CaseId,
    idempotency_key: str | None = idempotency.HeaderParam,
    session: Session = Depends(db),
    svc: Services = Depends(services),
    who: Principal = Depends(MOD),
) -> cases.DecisionOut | JSONResponse:
    key = (
        idempotency.Key.of(who.key_id, idempotency_key, request.method, request.url.path, body)
        if idempotency_key
        else None
    )
    if key and (first := idempotency.replay(session, key)) is not None:
        return first
    try:
        out = cases.decide(svc, session, analysis_id, body, who, key)
    except Conflict:
        # A concurrent request with this key may have won the claim: its response is committed by now.
        if key and (first := idempotency.replay(session, key)) is not None:
            return first
        raise
    svc.published()
    return out


@router.post(
    "/cases/{analysis_id}/missed",
    response_model=cases.DecisionOut,
    responses=responses(401, 403, 404, 409, 422),
    summary="Report a violation the model missed",
    description="On a clear analysis or a decided case (no claim needed): the category becomes a "
    "confirmed flag at the given severity, the analysis is flagged, and a `moderation_decision` "
    "confirm of that category is published to `feedback.events`. 409 when the analysis "
    "already has a flag in that category, or is a case nobody has decided yet.",
)
def report_missed(
    body: cases.MissedIn,
    analysis_id: str = CaseId,
    session: Session = Depends(db),
    svc: Services = Depends(services),
    who: Principal = Depends(MOD),
) -> cases.DecisionOut:
    out = cases.report_missed(svc, session, analysis_id, body, who)
    svc.published()
    return out


@router.get(
    "/cases/{analysis_id}/thumbnails/{t}",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "a JPEG frame"},
        **responses(401, 403, 404, 422, 503),
    },
    summary="The frame at t seconds, as JPEG",
    description=None,
)
def get_thumbnail(
    analysis_id: str = CaseId,
    t: float = Path(ge=0, le=86400),
    session: Session = Depends(db),
    svc: Services = Depends(services),
    _: Principal = Depends(MOD),
) -> Response:
    return Response(
        cases.thumbnail(svc, session, analysis_id, t),
        media_type="image/jpeg",
        headers={"Cache-Control": "private, max-age=3600"},
    )
