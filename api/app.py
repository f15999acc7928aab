"""The FastAPI application: `create_app(settings)` for tests and `serve(settings, host, port)` for
`keye api`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from api import auth, boundary, observability, problems
from api.deps import Services
from api.storage import open_engine
from service.settings import Settings

DESCRIPTION = """Keye video intelligence: ingest videos, read analyses and summaries, search similar
videos, review moderation cases.

Authenticate with an API key (`Authorization: Bearer keye_...` or `X-API-Key`). Each route lists the
roles that may call it: a missing or invalid key answers 401, a key without the role 403. Every
error is an RFC 9457 problem (`application/problem+json`) whose `type` is stable
(`urn:keye:problem:<kind>`) and whose `request_id` matches the `X-Request-ID` response header."""


def create_app(settings: Settings, *, publish: bool = False, **overrides: Any) -> FastAPI:
    """The API over the stores named by `settings`.

    publish: run the background work of a serving process (`serve` turns it on): the outbox relay to
    Kafka, the webhook dispatcher and, with an embedded Qdrant folder, the vector sink (local mode
    locks the folder to one process, and search lives here).
    overrides: fields of api.deps.Services (vectors, embedder, analyzer, limits).
    """
    engine = open_engine(settings)
    svc = Services(settings=settings, engine=engine, **{**_from_settings(settings), **overrides})

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        observability.redact_access_log()  # after the server configured its loggers
        stops = _start_background(svc) if publish else []
        try:
            yield
        finally:
            for stop in stops:
                stop()
            svc.relay = None

    app = FastAPI(
        title="Keye video intelligence API",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        max_body_size=settings.api_max_json_bytes,
    )
    app.state.services = svc
    app.add_middleware(boundary.RefuseNul)  # added first: it runs inside the request-id middleware
    app.state.metrics = observability.install(app)
    problems.install(app)
    from api.routes import admin, health, ingest, moderation, review, search, summaries, trends, videos, webhooks

    for module in (health, ingest, videos, summaries, search, moderation, trends, webhooks, admin, review):
        auth.document(module.router)
        app.include_router(module.router)
    review.install(app)
    return app


def _from_settings(settings: Settings) -> dict[str, Any]:
    """API options from KEYE_API_* settings."""
    return {
        "max_upload_bytes": settings.api_max_upload_bytes,
        "max_clip_seconds": settings.api_max_clip_seconds,
        "claim_ttl_s": settings.api_claim_ttl_s,
    }


def _start_background(svc: Services) -> list:
    import threading

    from api.outbox import Relay
    from api.webhooks import Dispatcher

    svc.relay = Relay(svc.engine, svc.settings.kafka_bootstrap)
    svc.relay.start()
    dispatcher = Dispatcher(svc.engine, svc.settings)
    dispatcher.start()
    stops = [svc.relay.stop, dispatcher.stop]
    if not svc.settings.qdrant_url:
        from stores.vector_sink import run_vector_sink

        done = threading.Event()
        sink = threading.Thread(
            target=run_vector_sink,
            args=(svc.settings, done),
            kwargs={"store": svc.vector_store()},
            name="keye-vector-sink",
            daemon=True,
        )
        sink.start()

        def stop_sink() -> None:
            done.set()
            sink.join(timeout=10)

        stops.append(stop_sink)
    return stops


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000) -> None:
    import uvicorn

    uvicorn.Server(server_config(create_app(settings, publish=True), settings, host, port)).run()


def server_config(app: FastAPI, settings: Settings, host: str, port: int, **kw: Any) -> Any:
    """uvicorn's configuration: X-Forwarded-Proto/For are believed only from the proxies named by
    KEYE_API_FORWARDED_ALLOW_IPS (default loopback), so an https proxy makes cookies Secure."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        proxy_headers=True,
        forwarded_allow_ips=settings.api_forwarded_allow_ips,
        **{"log_level": "info", **kw},
    )


def route_table(app: FastAPI) -> list[tuple[str, str, Any]]:
    """(method, path, route) of every route, through included routers (newer FastAPI nests them)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before lazy router inclusion: app.routes is already flat
        contexts = [(r.path, getattr(r, "methods", None) or set(), r) for r in app.routes]  # type: ignore[attr-defined]  # an old FastAPI's routes (Route, Mount, WebSocketRoute) all have a path; BaseRoute does not declare it
    else:
        contexts = [(c.path, c.methods or set(), c.original_route) for c in iter_route_contexts(app.routes)]
    return [(m, path, route) for path, methods, route in contexts for m in sorted(methods) if m != "HEAD"]
