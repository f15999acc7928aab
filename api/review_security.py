"""The review page's defences against other origins, beside its session and CSRF token
(api.review_session): every state-changing request must come from the page's own origin, and every
response forbids framing, sniffing, caching and scripts other than its own.

SameSite=Strict alone is not enough: another port of the same host is the same *site*, so a form
there sends the cookie. The Origin check (Referer when a browser omits Origin) is per *origin*.
"""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from fastapi import Request
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import Forbidden

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def is_review_path(path: str) -> bool:
    return path == "/review" or path.startswith("/review/")


def _origin(url: str) -> tuple[str, str, int | None] | None:
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:  # a malformed port
        return None


def same_origin(request: Request) -> None:
    """Dependency of every review route: a state-changing request whose Origin (or, without one,
    Referer) is not this server's own origin is refused with 403."""
    if request.method in SAFE_METHODS:
        return
    sent = request.headers.get("origin") or request.headers.get("referer")
    own = _origin(f"{request.url.scheme}://{request.url.netloc}")
    if sent is None or sent == "null" or _origin(sent) != own:
        raise Forbidden(
            f"a {request.method} to the review page must come from the page itself; "
            f"it came from {sent or 'an unnamed origin'}",
            slug="cross-origin",
            title="Refused: not sent by the review page",
        )


def csp_nonce(request: Request) -> str:
    return request.scope.get("state", {}).get("csp_nonce", "")


class PageHeaders:
    """ASGI middleware: security headers on every /review response, and a fresh nonce per request
    (in the request state) that the page's one inline script and style carry."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_review_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(16)
        scope.setdefault("state", {})["csp_nonce"] = nonce
        csp = (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; img-src 'self'; "
            "media-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
        )

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = csp
                headers["X-Frame-Options"] = "DENY"
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "same-origin"
                headers["Cross-Origin-Resource-Policy"] = "same-origin"
                headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)
