"""API keys: `keye_<key_id>_<secret>`, stored as sha256(secret), each carrying roles.

`create_key(session, roles)` is what the `keye api` bootstrap calls to print a first admin key once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable

from sqlmodel import Session, select

from api.problems import Invalid
from api.tables import ApiKey
from service.schemas import utcnow

ROLES = ("ingest", "product", "recommender", "moderator", "admin")
PREFIX = "keye_"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def check_roles(roles: Iterable[str]) -> list[str]:
    roles = list(dict.fromkeys(roles))
    unknown = [r for r in roles if r not in ROLES]
    if unknown or not roles:
        raise Invalid(f"roles must be a non-empty subset of {list(ROLES)}; got {roles}")
    return roles


def create_key(session: Session, roles: Iterable[str], name: str = "admin") -> tuple[ApiKey, str]:
    """A new key; the plaintext is returned once and never stored."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    row = ApiKey(
        key_id=key_id, secret_sha256=_digest(secret), name=name[:128], roles=check_roles(roles), created_at=utcnow()
    )
    session.add(row)
    session.commit()
    session.refresh(row)
    return row, f"{PREFIX}{key_id}_{secret}"


def parse(plaintext: str) -> tuple[str, str] | None:
    if not plaintext.startswith(PREFIX):
        return None
    key_id, sep, secret = plaintext[len(PREFIX) :].partition("_")
    if not sep or not key_id or not secret or len(key_id) > 32:
        return None
    return key_id, secret


def verify(session: Session, plaintext: str) -> ApiKey | None:
    """The live key matching `plaintext`, or None (unknown, wrong secret or revoked)."""
    parts = parse(plaintext)
    if parts is None:
        return None
    row = session.get(ApiKey, parts[0])
    if row is None or row.revoked_at is not None:
        return None
    return row if hmac.compare_digest(row.secret_sha256, _digest(parts[1])) else None


def get_live(session: Session, key_id: str) -> ApiKey | None:
    row = session.get(ApiKey, key_id)
    return row if row is not None and row.revoked_at is None else None


def revoke(session: Session, key_id: str) -> ApiKey | None:
    row = session.get(ApiKey, key_id)
    if row is None:
        return None
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.add(row)
        session.commit()
        session.refresh(row)
    return row


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.exec(select(ApiKey).order_by(ApiKey.created_at)))


def bootstrap_admin(settings, name: str = "admin") -> str:  # noqa: ANN001 - service.settings.Settings
    """Migrate the stores and create an admin key; returns its plaintext for the CLI to print once."""
    from api.storage import open_engine

    engine = open_engine(settings)
    try:
        with Session(engine) as session:
            return create_key(session, ["admin"], name)[1]
    finally:
        engine.dispose()
