"""Similar videos for recommender systems (role `recommender`)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlmodel import Session

from api import search
from api.auth import Principal, Roles
from api.deps import Services, db, services
from api.problems import responses

REC = Roles("recommender")
router = APIRouter(prefix="/v1/search", tags=["search"])


@router.post(
    "",
    response_model=search.SearchResult,
    responses=responses(401, 403, 404, 409, 422, 503),
    summary="Nearest videos to a video, a text or a vector",
    description="Scores are cosine similarities, highest first; `model_version` says whose vectors were searched.",
)
def similar(
    body: search.SearchQuery,
    session: Session = Depends(db),
    svc: Services = Depends(services),
    _: Principal = Depends(REC),
) -> search.SearchResult:
    return search.search(svc, session, body)


@router.post(
    "/batch",
    response_model=search.BatchResult,
    responses=responses(401, 403, 422, 503),
    summary="Several searches in one request",
    description="Each item holds its result or its own problem.",
)
def similar_batch(
    body: search.BatchQuery,
    request: Request,
    session: Session = Depends(db),
    svc: Services = Depends(services),
    _: Principal = Depends(REC),
) -> search.BatchResult:
    return search.batch(svc, session, body, getattr(request.state, "request_id", None))
