"""RFC 9457 problem details: one error shape for every route, with a stable `type` per kind of error.

Routes raise `Problem` (or a subclass); the handlers here turn it, FastAPI's validation errors and
Starlette's HTTP errors into `application/problem+json` carrying the request id, so a client can
branch on `type` and an operator can find the request in the logs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:keye:problem:"


class ProblemBody(BaseModel):
    """The JSON body of every error response (RFC 9457)."""

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    request_id: str | None = None
    errors: list[dict[str, Any]] | None = None


class Problem(Exception):
    """An error a client can act on. `slug` names its stable type: urn:keye:problem:<slug>."""

    status = 400
    slug = "bad-request"
    title = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        slug: str | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status or self.status
        self.slug = slug or self.slug
        self.title = title or self.title
        self.headers = headers or {}


class Unauthorized(Problem):
    status, slug, title = 401, "unauthorized", "Missing or invalid API key"


class Forbidden(Problem):
    status, slug, title = 403, "forbidden", "The API key lacks the role this route needs"


class NotFound(Problem):
    status, slug, title = 404, "not-found", "Not found"


class Conflict(Problem):
    status, slug, title = 409, "conflict", "Conflict with the current state"


class AlreadyDecided(Conflict):
    slug, title = "already-decided", "The case was already decided"


class Invalid(Problem):
    status, slug, title = 422, "invalid-request", "The request is not valid"


class IdempotencyKeyReused(Invalid):
    slug, title = "idempotency-key-reused", "The Idempotency-Key was already used for another request"


class UnsafeURI(Problem):
    status, slug, title = 422, "unsafe-uri", "The URI is refused by the fetch policy"


class TooLarge(Problem):
    status, slug, title = 413, "payload-too-large", "The upload is larger than the limit"


class UnsupportedMedia(Problem):
    status, slug, title = 415, "unsupported-media", "The upload is not a supported video"


class Unavailable(Problem):
    status, slug, title = 503, "unavailable", "A store or the model is not available"


def problem_response(
    request: Request,
    status: int,
    slug: str,
    title: str,
    detail: str | None,
    errors: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = ProblemBody(
        type=TYPE_PREFIX + slug,
        title=title,
        status=status,
        detail=detail,
        instance=request.url.path,
        request_id=getattr(request.state, "request_id", None),
        errors=errors,
    )
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, media_type=MEDIA_TYPE, headers=headers)


_HTTP_SLUGS = {
    401: ("unauthorized", "Missing or invalid API key"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    413: ("payload-too-large", "Too large"),
    415: ("unsupported-media", "Unsupported media type"),
    422: ("invalid-request", "The request is not valid"),
}


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(request, exc.status, exc.slug, exc.title, exc.detail, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()[:20]
        ]
        first = "; ".join(f"{'.'.join(err['loc'])}: {err['msg']}" for err in errors[:3])
        return problem_response(request, 422, "invalid-request", "The request is not valid", first, errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug, title = _HTTP_SLUGS.get(exc.status_code, (f"http-{exc.status_code}", "HTTP error"))
        detail = str(exc.detail)
        if exc.status_code == 413:  # FastAPI's body limit: say which one
            limit = request.app.state.services.settings.api_max_json_bytes
            detail = f"the request body is larger than {limit} bytes (KEYE_API_MAX_JSON_BYTES)"
        return problem_response(request, exc.status_code, slug, title, detail, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(
            request,
            500,
            "internal",
            "Internal error",
            "an unexpected error occurred; quote the request id when reporting it",
        )


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the problem statuses a route can answer."""
    names = {
        400: "Bad request",
        401: "Missing or invalid API key",
        403: "The key lacks the role",
        404: "Not found",
        409: "Conflict",
        413: "Too large",
        415: "Unsupported media",
        422: "Invalid request",
        503: "A store or the model is unavailable",
    }
    return {
        s: {
            "description": names.get(s, "Error"),
            "model": ProblemBody,
            "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemBody"}}},
        }
        for s in statuses
    }
