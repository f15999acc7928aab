"""Liveness, readiness and metrics: public, for orchestrators and scrapers."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]


@router.get("/healthz", response_model=Health, summary="The process is alive", description="Public.")
def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="The stores answer",
    description="Public. 200 when SQL (migrated) and the vector store answer, else 503 with each check.",
    responses={503: {"model": Readiness, "description": "a store is down"}},
)
def readyz(request: Request) -> JSONResponse:
    svc = request.app.state.services
    checks: dict[str, str] = {}
    try:
        with svc.engine.connect() as conn:
            conn.execute(sa.text("SELECT count(*) FROM api_keys"))
        checks["sql"] = "ok"
    except Exception as e:  # noqa: BLE001 - any failure is reported as the check's result
        checks["sql"] = f"down: {type(e).__name__}: {str(e)[:200]}"
    try:
        store = svc.vector_store()
        store.ping()
        checks["vectors"] = "ok"
    except Exception as e:  # noqa: BLE001 - any failure is reported as the check's result
        checks["vectors"] = f"down: {getattr(e, 'detail', None) or e}"[:300]
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse(
        Readiness(status="ok" if ok else "unavailable", checks=checks).model_dump(), status_code=200 if ok else 503
    )


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics",
    description="Public.",
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
def metrics(request: Request) -> Response:
    return request.app.state.metrics.render()
