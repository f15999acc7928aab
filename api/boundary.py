"""What a request must pass before any route sees it.

NUL bytes: PostgreSQL text cannot hold one (psycopg raises DataError), and no field of ours has a
use for one, so they are refused with one 422 on every store, wherever they come in: the decoded
path and query string of every request, and the bodies routes parse (JSON and forms), scanned as
they stream in. In those bodies a NUL is written raw, as the JSON escape \\u0000 (unless its
backslash is itself escaped) or as the form escape %00. Raw uploads (video bodies) are not scanned.

Body size: FastAPI's own limit (`max_body_size`, set from KEYE_API_MAX_JSON_BYTES in api.app)
refuses a larger body with 413 as it streams, before reading it all; routes that stream their body
to disk declare `max_body_size=STREAMED_BODY` and bound it themselves (KEYE_API_MAX_UPLOAD_BYTES).
"""

from __future__ import annotations

import re
import sys
from urllib.parse import unquote_to_bytes

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import Invalid, problem_response

STREAMED_BODY = sys.maxsize
REFUSED = "text may not contain a NUL byte (\\x00)"

_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_FORM_NUL = re.compile(rb"%00")


class NulScanner:
    """Finds a NUL in a body fed chunk by chunk, also when its escape straddles two chunks."""

    def __init__(self, escape: re.Pattern[bytes] | None, backslashes: bool, needle: bytes = b"") -> None:
        self.escape = escape
        # bytes every match of `escape` contains: found by a plain scan, they rule out most bodies
        # before the regex, whose lookbehind is tried at every offset (~10 ms on a 4096-float body)
        self.needle = needle
        self.backslashes = backslashes  # JSON: whether an escape counts depends on the backslashes before it
        self.tail = b""

    def feed(self, chunk: bytes) -> bool:
        if b"\x00" in chunk:
            return True
        if self.escape is None:
            return False
        data = self.tail + chunk
        if self.needle in data and self.escape.search(data):
            return True
        keep = 5 if self.backslashes else 2  # an escape minus its last byte
        head, self.tail = data[:-keep], data[-keep:]
        if self.backslashes:  # only the parity of the backslash run before the tail matters
            self.tail = b"\\" * ((len(head) - len(head.rstrip(b"\\"))) % 2) + self.tail
        return False


def scanner_for(content_type: str | None) -> NulScanner | None:
    """The scanner of a body routes parse, by its media type; None for bodies they stream (uploads)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == "application/json" or (media.startswith("application/") and media.endswith("+json")):
        return NulScanner(_JSON_NUL, backslashes=True, needle=b"\\u0000")
    if media == "application/x-www-form-urlencoded":
        return NulScanner(_FORM_NUL, backslashes=False, needle=b"%00")
    if media == "multipart/form-data":
        return NulScanner(None, backslashes=False)
    return None


class RefuseNul:
    """ASGI middleware; install it inside the request-id middleware so its problems carry the id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        where = (
            "path"
            if "\x00" in scope["path"]
            else ("query string" if b"\x00" in unquote_to_bytes(scope.get("query_string", b"")) else None)
        )
        if where:
            response = problem_response(
                Request(scope), Invalid.status, Invalid.slug, Invalid.title, f"the {where} holds a NUL byte: {REFUSED}"
            )
            await response(scope, receive, send)
            return
        scanner = scanner_for(Headers(scope=scope).get("content-type"))
        if scanner is None:
            await self.app(scope, receive, send)
            return

        async def scanned() -> Message:
            message = await receive()
            if message["type"] == "http.request" and scanner.feed(message.get("body", b"")):
                # Raised inside the route's body read, so the app's problem handlers answer it.
                raise HTTPException(Invalid.status, f"the request body holds a NUL byte: {REFUSED}")
            return message

        await self.app(scope, scanned, send)
