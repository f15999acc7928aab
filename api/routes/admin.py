"""Administration (role `admin`): API keys and model versions."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlmodel import Session, col, select

from api import keys
from api.auth import Principal, Roles
from api.deps import Services, db, services
from api.problems import NotFound, responses
from api.search import active_version
from api.tables import ApiKey
from api.types import UtcDatetime
from stores.db import ModelVersion

ADMIN = Roles("admin")
router = APIRouter(prefix="/v1/admin", tags=["admin"])


class KeyRequest(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    roles: list[str] = Field(min_length=1, max_length=5, description=f"any of {', '.join(keys.ROLES)}")


class KeyView(BaseModel):
    key_id: str
    name: str
    roles: list[str]
    created_at: UtcDatetime
    revoked_at: UtcDatetime | None


class NewKey(KeyView):
    key: str = Field(description="the key itself, shown this once only")


class ModelView(BaseModel):
    version: str
    status: str
    base_version: str | None
    metrics: dict = Field(description="the training run's figures and the promotion gate's verdict (`promotion`)")
    created_at: UtcDatetime
    promoted_at: UtcDatetime | None
    report: dict | None = Field(
        default=None,
        description="the newest `keye eval` report of this version "
        "(keys documented in evaluation/report.py), null when never evaluated",
    )


class Models(BaseModel):
    active: str
    versions: list[ModelView]


def _view(row: ApiKey) -> KeyView:
    return KeyView(
        key_id=row.key_id, name=row.name, roles=list(row.roles), created_at=row.created_at, revoked_at=row.revoked_at
    )


@router.post(
    "/keys",
    status_code=201,
    response_model=NewKey,
    responses=responses(401, 403, 422),
    summary="Create an API key",
    description="The key is returned once; only its hash is stored.",
)
def create_key(body: KeyRequest, session: Session = Depends(db), _: Principal = Depends(ADMIN)) -> JSONResponse:
    row, plaintext = keys.create_key(session, body.roles, body.name)
    return JSONResponse(NewKey(**_view(row).model_dump(), key=plaintext).model_dump(mode="json"), status_code=201)


@router.get(
    "/keys",
    response_model=list[KeyView],
    responses=responses(401, 403),
    summary="List API keys (never their secrets)",
    description=None,
)
def list_keys(session: Session = Depends(db), _: Principal = Depends(ADMIN)) -> list[KeyView]:
    return [_view(r) for r in keys.list_keys(session)]


@router.delete(
    "/keys/{key_id}",
    response_model=KeyView,
    responses=responses(401, 403, 404, 422),
    summary="Revoke an API key",
    description="Takes effect on the next request.",
)
def revoke_key(
    key_id: str = Path(min_length=1, max_length=32), session: Session = Depends(db), _: Principal = Depends(ADMIN)
) -> KeyView:
    row = keys.revoke(session, key_id)
    if row is None:
        raise NotFound(f"no API key {key_id!r}")
    return _view(row)


@router.get(
    "/models",
    response_model=Models,
    responses=responses(401, 403),
    summary="Model versions and which one is active",
    description=None,
)
def list_models(
    session: Session = Depends(db), svc: Services = Depends(services), _: Principal = Depends(ADMIN)
) -> Models:
    from evaluation.store import latest

    rows = session.exec(select(ModelVersion).order_by(col(ModelVersion.created_at)))
    views = []
    for r in rows:
        report = latest(session, r.version)
        views.append(ModelView(**r.model_dump(exclude={"path"}), report=report.report if report else None))
    return Models(active=active_version(session, svc), versions=views)
