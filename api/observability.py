"""Request ids and Prometheus metrics, as one middleware; API keys kept out of the access log.

The request id comes from `X-Request-ID` when the caller sends a sane one (so a trace spans
services), else a new uuid4; it is echoed in the response and in every problem body. Metrics are
labelled by the route template, never the raw path, so ids cannot explode the label space.

A key sent in the query string is refused (keys are read from headers only), but the server's
access log writes the query string as it came: values that are keys, or sit under a parameter named
like a credential, are logged as REDACTED.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from urllib.parse import unquote

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()  # per app: tests build many apps in one process
        self.requests = Counter(
            "keye_api_requests_total", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "keye_api_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )

    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def install(app: FastAPI) -> Metrics:
    metrics = Metrics()

    @app.middleware("http")
    async def _observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        given = request.headers.get("x-request-id", "")
        request.state.request_id = given if _ID.match(given) else uuid.uuid4().hex
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        metrics.requests.labels(request.method, template, str(response.status_code)).inc()
        metrics.latency.labels(request.method, template).observe(time.perf_counter() - start)
        response.headers["X-Request-ID"] = request.state.request_id
        return response

    return metrics


_QUERY_PAIR = re.compile(r"([?&])([^=&#\s]*)=([^&#\s]*)")
_CREDENTIAL_NAMES = re.compile(
    r"(x[_-]?)?(api[_-]?)?key|token|access[_-]?token|secret|password|authorization|auth", re.IGNORECASE
)


def redact(text: str) -> str:
    """`text` with the query values that are (or are named like) credentials replaced."""

    def pair(m: re.Match[str]) -> str:
        name, value = unquote(m.group(2)), unquote(m.group(3))
        if _CREDENTIAL_NAMES.fullmatch(name) or "keye_" in value:
            return f"{m.group(1)}{m.group(2)}=REDACTED"
        return m.group(0)

    return _QUERY_PAIR.sub(pair, text) if "=" in text else text


class RedactCredentials(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def redact_access_log() -> None:
    """Filter uvicorn's access log (its arguments hold the path with the query string)."""
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactCredentials) for f in logger.filters):
        logger.addFilter(RedactCredentials())
