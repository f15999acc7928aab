"""The `Idempotency-Key` request header: a retry carrying the key of a request that succeeded gets
that request's response again instead of doing the work twice.

A key belongs to the API key that sent it. The stored response is written in the transaction of the
work it answers, so there is never work without its record nor a record without its work. The same
key with another method, path or body is refused (422): it names a different request.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from fastapi import Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlmodel import Column, Field, Session, SQLModel, col

from api.problems import IdempotencyKeyReused
from service.schemas import utcnow
from stores.db import table_of

RETAIN = timedelta(hours=24)  # a key is honoured at least this long

HeaderParam = Header(
    None,
    alias="Idempotency-Key",
    min_length=1,
    max_length=255,
    pattern=r"^[\x21-\x7e]+$",
    description="retries with the same key and body get the first response back "
    f"(kept at least {RETAIN.total_seconds() / 3600:.0f} h)",
)


class IdempotentRequest(SQLModel, table=True):
    __tablename__ = "api_idempotency"
    key_id: str = Field(primary_key=True, max_length=32)
    idempotency_key: str = Field(primary_key=True, max_length=255)
    fingerprint: str = Field(max_length=64)  # sha256 of method, path and body
    status: int
    body: str
    created_at: datetime = Field(sa_column=Column(sa.DateTime(timezone=True), nullable=False, index=True))


@dataclass(frozen=True)
class Key:
    key_id: str
    value: str
    fingerprint: str

    @classmethod
    def of(cls, key_id: str, value: str, method: str, path: str, body: BaseModel) -> Key:
        canonical = json.dumps([method, path, body.model_dump(mode="json")], sort_keys=True, separators=(",", ":"))
        return cls(key_id, value, hashlib.sha256(canonical.encode()).hexdigest())


def replay(session: Session, key: Key) -> JSONResponse | None:
    """The stored response of this key's request, or None when none succeeded yet."""
    row = session.get(IdempotentRequest, (key.key_id, key.value))
    if row is None:
        return None
    if row.fingerprint != key.fingerprint:
        raise IdempotencyKeyReused(
            f"Idempotency-Key {key.value!r} was used for a different request; send a new key for a new request"
        )
    return JSONResponse(json.loads(row.body), status_code=row.status, headers={"Idempotent-Replayed": "true"})


def remember(session: Session, key: Key, status: int, body: BaseModel) -> None:
    """Add the response to the session's transaction (and drop records past their retention)."""
    now = utcnow()
    session.execute(sa.delete(table_of(IdempotentRequest)).where(col(IdempotentRequest.created_at) < now - RETAIN))
    session.add(
        IdempotentRequest(
            key_id=key.key_id,
            idempotency_key=key.value,
            fingerprint=key.fingerprint,
            status=status,
            body=body.model_dump_json(),
            created_at=now,
        )
    )
