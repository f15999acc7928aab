"""Review-page sessions: sign-in exchanges a moderator key for a random token in an HttpOnly,
SameSite=Strict cookie; the server keeps sha256(token), the key and the session's CSRF token.

Server-side rather than a signed cookie (ours, itsdangerous or Starlette's SessionMiddleware):
sign-out must end the session, and a signature cannot be taken back without a server record; with
the record the cookie needs no signature, so there is no secret to share between API processes and
sessions survive a restart. Starlette's middleware would also fix `Secure` at start-up, where we
set it per request from the (proxy-reported) scheme.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from fastapi import Depends, Request, Response
from sqlmodel import Session, col

from api import keys
from api.auth import Principal, Roles
from api.deps import db
from api.problems import Forbidden, Unauthorized
from api.tables import ReviewSession
from service.schemas import utcnow
from stores.db import table_of

COOKIE = "keye_review"
TTL_S = 12 * 3600
CSRF_FIELD = "csrf_token"  # the hidden field of every form
CSRF_HEADER = "X-CSRF-Token"  # for fetch calls
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class LoginRequired(Unauthorized):
    """A review page without a valid session: answered by a redirect to the login form."""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)  # SQLite hands back naive UTC


def start(session: Session, key_id: str) -> tuple[str, ReviewSession]:
    """A new session of `key_id`: (the cookie value, its row). Expired rows are purged here."""
    now = utcnow()
    session.execute(sa.delete(table_of(ReviewSession)).where(col(ReviewSession.expires_at) <= now))
    token = secrets.token_urlsafe(32)
    row = ReviewSession(
        token_sha256=_digest(token),
        key_id=key_id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        expires_at=now + timedelta(seconds=TTL_S),
    )
    session.add(row)
    session.commit()
    session.refresh(row)
    return token, row


def find(session: Session, token: str | None) -> ReviewSession | None:
    """The live session a cookie value names, or None (unknown, ended or expired)."""
    if not token:
        return None
    row = session.get(ReviewSession, _digest(token))
    return row if row is not None and _aware(row.expires_at) > utcnow() else None


def end(session: Session, token: str) -> None:
    session.execute(sa.delete(table_of(ReviewSession)).where(col(ReviewSession.token_sha256) == _digest(token)))
    session.commit()


def set_cookie(response: Response, request: Request, token: str) -> None:
    # Secure whenever the request came over https (behind a trusted proxy: X-Forwarded-Proto).
    response.set_cookie(
        COOKIE,
        token,
        max_age=TTL_S,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/review",
    )


def clear_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/review", httponly=True, samesite="strict")


async def sent_csrf(request: Request) -> str | None:
    """The CSRF token a state-changing request carries, in the header or the form field."""
    if request.method not in UNSAFE:
        return None
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        value = (await request.form()).get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


def check_csrf(row: ReviewSession, sent: str | None) -> None:
    if not sent or not hmac.compare_digest(sent.encode("utf-8", "surrogateescape"), row.csrf_token.encode()):
        raise Forbidden(
            "this form is stale or was not sent by the review page: reload the page and try again",
            slug="csrf",
            title="Missing or wrong CSRF token",
        )


class Page(Roles):
    """The review pages' guard: a live session of a live key holding the roles and, on a
    state-changing request, the session's CSRF token. Revoking the key ends its sessions."""

    page = True

    def __call__(  # type: ignore[override]  # reads the cookie, not the key headers
        self, request: Request, session: Session = Depends(db), sent: str | None = Depends(sent_csrf)
    ) -> Principal:
        row = find(session, request.cookies.get(COOKIE))
        key = keys.get_live(session, row.key_id) if row else None
        if row is None or key is None:
            raise LoginRequired("sign in with a moderator key")
        if request.method in UNSAFE:
            check_csrf(row, sent)
        request.state.review_session = row
        return self.admit(request, key)
