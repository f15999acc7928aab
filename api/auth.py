"""Authentication and roles.

A route declares its roles with `Depends(Roles("moderator", ...))`. The guard reads the key from
`Authorization: Bearer <key>` or `X-API-Key`; the review page instead carries a signed cookie naming
the key (checked again on every request, so revoking a key ends its page sessions). Missing or bad
key: 401; a key without any of the route's roles: 403. The route table test finds every guard by
type, so a route without one fails it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from api import keys
from api.deps import db
from api.problems import Forbidden, Unauthorized

COOKIE = "keye_review"
COOKIE_TTL_S = 12 * 3600

_bearer = HTTPBearer(auto_error=False, description="an API key: `Authorization: Bearer keye_...`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key: `X-API-Key: keye_...`")


@dataclass(frozen=True)
class Principal:
    key_id: str
    name: str
    roles: frozenset[str]


class LoginRequired(Unauthorized):
    """A review page without a valid session: answered by a redirect to the login form."""


class Roles:
    """Dependency: the caller's key must hold one of `roles`."""

    def __init__(self, *roles: str, page: bool = False) -> None:
        unknown = [r for r in roles if r not in keys.ROLES]
        if unknown or not roles:
            raise ValueError(f"unknown roles {unknown}")
        self.roles = frozenset(roles)
        self.page = page

    def __call__(self, request: Request, session: Session = Depends(db),
                 bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
                 header: str | None = Depends(_header)) -> Principal:
        if self.page:
            row = _from_cookie(request, session)
            if row is None:
                raise LoginRequired("sign in with a moderator key")
        else:
            plaintext = header or (bearer.credentials if bearer else None)
            if not plaintext:
                raise Unauthorized("send an API key in `Authorization: Bearer <key>` or `X-API-Key`",
                                   headers={"WWW-Authenticate": "Bearer"})
            row = keys.verify(session, plaintext)
            if row is None:
                raise Unauthorized("the API key is unknown, malformed or revoked",
                                   headers={"WWW-Authenticate": "Bearer"})
        if not self.roles & set(row.roles):
            raise Forbidden(f"this route needs one of the roles {sorted(self.roles)}; the key has {sorted(row.roles)}")
        principal = Principal(row.key_id, row.name, frozenset(row.roles))
        request.state.principal = principal
        return principal


# ---- signed cookie for the review page --------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_session(secret: bytes, key_id: str, now: float | None = None) -> str:
    body = _b64(json.dumps({"k": key_id, "exp": int((now or time.time()) + COOKIE_TTL_S)}).encode())
    mac = _b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())
    return f"{body}.{mac}"


def read_session(secret: bytes, value: str) -> str | None:
    """The key id in a cookie value, or None if forged, malformed or expired."""
    body, _, mac = value.partition(".")
    expected = _b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())
    if not mac or not hmac.compare_digest(mac, expected):
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("exp", 0) < time.time() or not isinstance(data.get("k"), str):
        return None
    return data["k"]


def _from_cookie(request: Request, session: Session):  # noqa: ANN202
    value = request.cookies.get(COOKIE)
    if not value:
        return None
    key_id = read_session(request.app.state.services.secret, value)
    return keys.get_live(session, key_id) if key_id else None


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
