"""Authentication and roles.

A route declares its roles with `Depends(Roles("moderator", ...))`. The guard reads the key from
`Authorization: Bearer <key>` or `X-API-Key`; the review page's guard (api.review_session.Page)
reads its session cookie instead. Missing or bad key: 401; a key without any of the route's roles:
403. The route table test finds every guard by type, so a route without one fails it.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api import keys
from api.deps import services
from api.problems import Forbidden, Unauthorized
from api.tables import ApiKey

_bearer = HTTPBearer(auto_error=False, description="an API key: `Authorization: Bearer keye_...`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key: `X-API-Key: keye_...`")


@dataclass(frozen=True)
class Principal:
    key_id: str
    name: str
    roles: frozenset[str]


class Roles:
    """Dependency: the caller's key must hold one of `roles`."""

    page = False  # True for the review page's cookie guard

    def __init__(self, *roles: str) -> None:
        unknown = [r for r in roles if r not in keys.ROLES]
        if unknown or not roles:
            raise ValueError(f"unknown roles {unknown}")
        self.roles = frozenset(roles)

    async def __call__(
        self,
        request: Request,
        bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
        header: str | None = Depends(_header),
    ) -> Principal:
        # async, with its own session only when the key is not cached: FastAPI runs a sync guard (and
        # the per-request session it would depend on) in its threadpool, a thread hand-off per request
        plaintext = header or (bearer.credentials if bearer else None)
        if not plaintext:
            raise Unauthorized(
                "send an API key in `Authorization: Bearer <key>` or `X-API-Key`",
                headers={"WWW-Authenticate": "Bearer"},
            )
        row = keys.verify_cached(plaintext) or await run_in_threadpool(_verify, request, plaintext)
        if row is None:
            raise Unauthorized("the API key is unknown, malformed or revoked", headers={"WWW-Authenticate": "Bearer"})
        return self.admit(request, row)

    def admit(self, request: Request, row: ApiKey) -> Principal:
        """The principal of a live key, or 403 when it lacks the roles."""
        if not self.roles & set(row.roles):
            raise Forbidden(f"this route needs one of the roles {sorted(self.roles)}; the key has {sorted(row.roles)}")
        principal = Principal(row.key_id, row.name, frozenset(row.roles))
        request.state.principal = principal
        return principal


def _verify(request: Request, plaintext: str) -> ApiKey | None:
    with Session(services(request).engine) as session:
        return keys.verify(session, plaintext)


def document(router) -> None:  # noqa: ANN001 - fastapi.APIRouter
    """Write each guarded route's roles into its OpenAPI operation (description and `x-roles`) and
    its 401/403/422 problem responses, from the guard itself, so the documentation cannot drift from
    the check."""
    from fastapi.routing import APIRoute

    for route in router.routes:
        if not isinstance(route, APIRoute):
            continue
        stack, guards = [route.dependant], []
        while stack:
            d = stack.pop()
            if isinstance(d.call, Roles):
                guards.append(d.call)
            stack.extend(d.dependencies)
        # Every route may answer a validation problem; guarded ones also 401 and 403.
        from api.problems import responses as problem_responses

        wanted = [422] + ([401, 403] if guards else [])
        route.responses = {**problem_responses(*wanted), **route.responses}
        if not guards:
            continue
        roles = sorted(guards[0].roles)
        how = " (review-page session cookie)" if guards[0].page else ""
        line = f"Roles: {', '.join(roles)}{how}."
        route.description = f"{line} {route.description or ''}".strip()
        route.openapi_extra = {**(route.openapi_extra or {}), "x-roles": roles}
