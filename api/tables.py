"""Tables only the API writes: API keys (hashed), case claims, review-page sessions, webhooks and
their delivery log, and the outbox of messages waiting to be published to Kafka.

They live on the shared SQLModel metadata; their schema is the alembic branch "api"
(stores/migrations/versions/api_0*.py), so the runner must upgrade to "heads".
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import JSON, Column, Field, SQLModel


def _ts(nullable: bool = False, **kw: Any) -> Any:
    return Field(sa_column=Column(sa.DateTime(timezone=True), nullable=nullable, **kw))


class ApiKey(SQLModel, table=True):
    """A key is `keye_<key_id>_<secret>`; only sha256(secret) is stored (the secret is 256 random
    bits, so a fast hash is enough: there is nothing to brute-force)."""

    __tablename__ = "api_keys"
    key_id: str = Field(primary_key=True, max_length=32)
    secret_sha256: str = Field(max_length=64)
    name: str = Field(max_length=128)
    roles: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _ts()
    revoked_at: datetime | None = _ts(nullable=True)
    last_used_at: datetime | None = _ts(nullable=True)


class CaseClaim(SQLModel, table=True):
    """One moderator holds a case until the claim expires or the decision releases it; the primary
    key makes two simultaneous claims impossible."""

    __tablename__ = "case_claims"
    analysis_id: str = Field(primary_key=True, max_length=36)
    key_id: str = Field(max_length=32)
    moderator: str = Field(max_length=128)
    claimed_at: datetime = _ts()
    expires_at: datetime = _ts()


class ReviewSession(SQLModel, table=True):
    """A review-page sign-in; the cookie holds the token, only its sha256 is stored. Sign-out deletes
    the row, so a copied cookie stops working at once."""

    __tablename__ = "review_sessions"
    token_sha256: str = Field(primary_key=True, max_length=64)
    key_id: str = Field(index=True, max_length=32)
    csrf_token: str = Field(max_length=64)  # the synchronizer token its forms and fetch calls carry
    created_at: datetime = _ts()
    expires_at: datetime = _ts(index=True)


class Webhook(SQLModel, table=True):
    __tablename__ = "webhooks"
    webhook_id: str = Field(primary_key=True, max_length=36)
    url: str = Field(max_length=2048)
    events: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    secret: str = Field(max_length=128)  # HMAC key; kept in clear because we must sign with it
    owner_key_id: str = Field(index=True, max_length=32)
    active: bool = True
    created_at: datetime = _ts()


class WebhookDelivery(SQLModel, table=True):
    """One event for one webhook; the row is the delivery log and the retry queue."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (sa.UniqueConstraint("webhook_id", "event_id", name="uq_webhook_event"),)
    id: int | None = Field(default=None, primary_key=True)
    webhook_id: str = Field(index=True, max_length=36)
    event_id: str = Field(max_length=128)
    event: str = Field(max_length=32)
    body: str
    status: str = Field(default="pending", index=True, max_length=16)  # pending | delivered | failed
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = None
    next_attempt_at: datetime = _ts()
    created_at: datetime = _ts()
    delivered_at: datetime | None = _ts(nullable=True)


class Outbox(SQLModel, table=True):
    """Messages committed with the change that caused them, published to Kafka afterwards: a
    request never half-succeeds when Kafka is briefly away."""

    __tablename__ = "api_outbox"
    id: int | None = Field(default=None, primary_key=True)
    topic: str = Field(max_length=256)
    key: str = Field(max_length=256)
    value: str
    created_at: datetime = _ts()
    sent_at: datetime | None = _ts(nullable=True, index=True)
    attempts: int = 0
    last_error: str | None = None
