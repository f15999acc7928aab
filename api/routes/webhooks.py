"""Webhooks a product client registers for "analyzed" and "flagged" events (role `product`); each
key sees and manages only its own."""

from __future__ import annotations

import uuid
from typing import Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlmodel import Session, col, select

from api import media
from api.auth import Principal, Roles
from api.deps import Services, db, services
from api.problems import NotFound, UnsafeURI, responses
from api.tables import Webhook, WebhookDelivery
from api.types import UtcDatetime
from api.webhooks import new_secret
from service.schemas import utcnow

PRODUCT = Roles("product")
router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
HookId = Path(min_length=1, max_length=36)


class WebhookIn(BaseModel):
    url: str = Field(min_length=1, max_length=2048, description="http(s) URL; private addresses are refused")
    events: list[Literal["analyzed", "flagged"]] = Field(min_length=1, max_length=2)


class WebhookView(BaseModel):
    webhook_id: str
    url: str
    events: list[str]
    active: bool
    created_at: UtcDatetime


class NewWebhook(WebhookView):
    secret: str = Field(
        description="the signing secret, `whsec_<base64>` as Standard Webhooks writes it, shown this once only"
    )


class DeliveryView(BaseModel):
    id: int
    event_id: str
    event: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: UtcDatetime
    created_at: UtcDatetime
    delivered_at: UtcDatetime | None


def _own(session: Session, webhook_id: str, who: Principal) -> Webhook:
    hook = session.get(Webhook, webhook_id)
    if hook is None or hook.owner_key_id != who.key_id:
        raise NotFound(f"no webhook {webhook_id!r} for this key")
    return hook


def _view(h: Webhook) -> WebhookView:
    return WebhookView(
        webhook_id=h.webhook_id, url=h.url, events=list(h.events), active=h.active, created_at=h.created_at
    )


@router.post(
    "",
    status_code=201,
    response_model=NewWebhook,
    responses=responses(401, 403, 422),
    summary="Register a webhook",
    description="Deliveries carry a Standard Webhooks signature "
    "(https://www.standardwebhooks.com): headers `webhook-id`, `webhook-timestamp` and `webhook-signature: "
    "v1,<base64 HMAC-SHA256(key, id + '.' + timestamp + '.' + body)>`, the key being the base64 after "
    "the secret's `whsec_`; any Standard Webhooks verifier checks them. Failed deliveries are retried with "
    "exponential backoff.",
)
def register(
    body: WebhookIn,
    session: Session = Depends(db),
    svc: Services = Depends(services),
    who: Principal = Depends(PRODUCT),
) -> JSONResponse:
    if not body.url.lower().startswith(("http://", "https://")):
        raise UnsafeURI("a webhook URL must be http:// or https://")
    media.check_uri(body.url, svc.settings)
    hook = Webhook(
        webhook_id=str(uuid.uuid4()),
        url=body.url,
        events=list(dict.fromkeys(body.events)),
        secret=new_secret(),
        owner_key_id=who.key_id,
        created_at=utcnow(),
    )
    session.add(hook)
    session.commit()
    session.refresh(hook)
    out = NewWebhook(**_view(hook).model_dump(), secret=hook.secret)
    return JSONResponse(out.model_dump(mode="json"), status_code=201)


@router.get("", response_model=list[WebhookView], responses=responses(401, 403), summary="This key's webhooks")
def list_hooks(session: Session = Depends(db), who: Principal = Depends(PRODUCT)) -> list[WebhookView]:
    return [
        _view(h)
        for h in session.exec(
            select(Webhook).where(Webhook.owner_key_id == who.key_id).order_by(col(Webhook.created_at))
        )
    ]


@router.delete("/{webhook_id}", status_code=204, responses=responses(401, 403, 404), summary="Stop a webhook")
def delete_hook(
    webhook_id: str = HookId, session: Session = Depends(db), who: Principal = Depends(PRODUCT)
) -> Response:
    hook = _own(session, webhook_id, who)
    hook.active = False
    session.add(hook)
    session.commit()
    return Response(status_code=204)


@router.get(
    "/{webhook_id}/deliveries",
    response_model=list[DeliveryView],
    responses=responses(401, 403, 404),
    summary="The delivery log, newest first",
)
def deliveries(
    webhook_id: str = HookId,
    status: Literal["pending", "delivered", "failed"] | None = None,
    limit: int = Query(50, ge=1, le=500),
    session: Session = Depends(db),
    who: Principal = Depends(PRODUCT),
) -> list[DeliveryView]:
    _own(session, webhook_id, who)
    q = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
    if status:
        q = q.where(WebhookDelivery.status == status)
    rows = session.exec(q.order_by(col(WebhookDelivery.id).desc()).limit(limit))
    return [DeliveryView(**r.model_dump(exclude={"webhook_id", "body"})) for r in rows]
