"""The FastAPI application: `create_app(settings)` for tests and `serve(settings, host, port)` for
`keye api`."""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from api import auth, observability, problems
from api.deps import Services
from api.storage import open_engine
from keye.settings import Settings

DESCRIPTION = """Keye video intelligence: ingest videos, read analyses and summaries, search similar
videos, review moderation cases.

Authenticate with an API key (`Authorization: Bearer keye_...` or `X-API-Key`). Each route lists the
roles that may call it: a missing or invalid key answers 401, a key without the role 403. Every
error is an RFC 9457 problem (`application/problem+json`) whose `type` is stable
(`urn:keye:problem:<kind>`) and whose `request_id` matches the `X-Request-ID` response header."""


def create_app(settings: Settings, *, publish: bool = False, **overrides: Any) -> FastAPI:
    """The API over the stores named by `settings`.

    publish: run the outbox relay to Kafka and the webhook dispatcher in this process (`serve` turns
    them on).
    overrides: fields of api.deps.Services (vectors, embedder, analyze_clip, secret, limits).
    """
    engine = open_engine(settings)
    secret = os.environ.get("KEYE_API_SECRET")
    if secret and "secret" not in overrides:
        overrides["secret"] = secret.encode()
    svc = Services(settings=settings, engine=engine, **overrides)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # noqa: ANN202
        if publish:
            from api.outbox import Relay

            from api.webhooks import Dispatcher

            svc.relay = Relay(engine, settings.kafka_bootstrap)
            svc.relay.start()
            dispatcher = Dispatcher(engine, settings)
            dispatcher.start()
        try:
            yield
        finally:
            if svc.relay is not None:
                svc.relay.stop()
                svc.relay = None
                dispatcher.stop()

    app = FastAPI(title="Keye video intelligence API", version="1", description=DESCRIPTION, lifespan=lifespan)
    app.state.services = svc
    app.state.metrics = observability.install(app)
    problems.install(app)
    from api.routes import admin, health, ingest, moderation, review, search, summaries, trends, videos, webhooks

    for module in (health, ingest, videos, summaries, search, moderation, trends, webhooks, admin, review):
        auth.document(module.router)
        app.include_router(module.router)
    review.install(app)
    return app


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000) -> None:
    import uvicorn

    uvicorn.run(create_app(settings, publish=True), host=host, port=port, proxy_headers=False,
                log_level="info")


def route_table(app: FastAPI) -> list[tuple[str, str, Any]]:
    """(method, path, route) of every route, through included routers (newer FastAPI nests them)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before lazy router inclusion: app.routes is already flat
        contexts = [(r.path, getattr(r, "methods", None) or set(), r) for r in app.routes]
    else:
        contexts = [(c.path, c.methods or set(), c.original_route) for c in iter_route_contexts(app.routes)]
    return [(m, path, route) for path, methods, route in contexts for m in sorted(methods) if m != "HEAD"]
