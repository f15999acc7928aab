"""Similar videos for recommender systems (role `recommender`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import pydantic_core
from fastapi import APIRouter, Depends, Request, Response
from fastapi.routing import APIRoute
from sqlmodel import Session

from api import search
from api.auth import Principal, Roles
from api.deps import services
from api.problems import responses

REC = Roles("recommender")


class _JsonRequest(Request):
    """A request whose JSON body pydantic-core's parser reads: a 4096-float query vector parses ~6x
    faster than with the stdlib's json.loads (Starlette's), a few ms per search. A body it refuses is
    handed to json.loads, so malformed JSON fails with the same JSONDecodeError (FastAPI's 422) and the
    texts only the stdlib accepts (a UTF-8 BOM, lone surrogate escapes) parse as they did."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = pydantic_core.from_json(body)
            except ValueError:
                self._json = json.loads(body)
        return self._json


class _JsonRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            return await handler(_JsonRequest(request.scope, request.receive))

        return route


router = APIRouter(prefix="/v1/search", tags=["search"], route_class=_JsonRoute)


@router.post(
    "",
    response_model=search.SearchResult,
    responses=responses(401, 403, 404, 409, 422, 503),
    summary="Nearest videos to a video, a text or a vector",
    description="Scores are cosine similarities, highest first; `model_version` says whose vectors were searched.",
)
def similar(body: search.SearchQuery, request: Request, _: Principal = Depends(REC)) -> search.SearchResult:
    # The services and session are taken here rather than as dependencies: FastAPI runs each sync
    # dependency in its threadpool, and those hand-offs cost more than the search on a busy host.
    svc = services(request)
    with Session(svc.engine) as session:
        return search.search(svc, session, body)


@router.post(
    "/batch",
    response_model=search.BatchResult,
    responses=responses(401, 403, 422, 503),
    summary="Several searches in one request",
    description="Each item holds its result or its own problem.",
)
def similar_batch(body: search.BatchQuery, request: Request, _: Principal = Depends(REC)) -> search.BatchResult:
    svc = services(request)  # as in `similar`
    with Session(svc.engine) as session:
        return search.batch(svc, session, body, getattr(request.state, "request_id", None))
