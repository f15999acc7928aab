"""API keys: `keye_<key_id>_<secret>`, stored as sha256(secret), each carrying roles.

`create_key(session, roles)` is what the `keye api` bootstrap calls to print a first admin key once.

`verify` runs on every request; it keeps the live keys it read for CACHE_TTL_S, so a busy client
costs one SQL lookup every few seconds rather than one per request. The secret is still checked
against the stored digest on every request, only live keys are kept (an unknown or wrong key is
looked up every time), and `revoke` drops its key at once; a revocation made by another process
(another API worker on the same database) takes effect there within CACHE_TTL_S.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Iterable

from sqlmodel import Session, col, select

from api.problems import Invalid
from api.tables import ApiKey
from service.schemas import utcnow

ROLES = ("ingest", "product", "recommender", "moderator", "admin")
PREFIX = "keye_"
CACHE_TTL_S = 2.0
_CACHE_MAX = 4096  # live keys kept; the cache starts over when full (a bound, not a policy)


class _LiveKeys:
    """key_id -> (read at, a detached copy of its live row, for reading only), read within CACHE_TTL_S."""

    def __init__(self) -> None:
        self._rows: dict[str, tuple[float, ApiKey]] = {}
        self._lock = threading.Lock()
        self.drops = 0  # revocations seen: a row read before one is not cached after it

    def mark(self) -> tuple[float, int]:
        """Taken before reading a row: when, and how many revocations had been seen."""
        with self._lock:
            return time.monotonic(), self.drops

    def get(self, key_id: str) -> ApiKey | None:
        with self._lock:
            hit = self._rows.get(key_id)
        if hit is None or time.monotonic() - hit[0] >= CACHE_TTL_S:
            return None
        return hit[1]

    def put(self, row: ApiKey, mark: tuple[float, int]) -> None:
        # A copy: the session's own instance expires with it, and callers must not see later edits.
        copy = ApiKey(
            key_id=row.key_id,
            secret_sha256=row.secret_sha256,
            name=row.name,
            roles=list(row.roles),
            created_at=row.created_at,
            revoked_at=row.revoked_at,
            last_used_at=row.last_used_at,
        )
        with self._lock:
            if self.drops != mark[1]:  # a revocation since the read: it may be this key's
                return
            if len(self._rows) >= _CACHE_MAX:
                self._rows.clear()
            self._rows[row.key_id] = (mark[0], copy)

    def drop(self, key_id: str) -> None:
        with self._lock:
            self.drops += 1
            self._rows.pop(key_id, None)


_live = _LiveKeys()


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


def verify_cached(plaintext: str) -> ApiKey | None:
    """The live key matching `plaintext` if it was read within CACHE_TTL_S, else None: then `verify`
    decides (this never reads SQL, so an async caller can try it without a thread)."""
    parts = parse(plaintext)
    if parts is None:
        return None
    row = _live.get(parts[0])
    return row if row is not None and _secret_matches(row, parts[1]) else None


def verify(session: Session, plaintext: str) -> ApiKey | None:
    """The live key matching `plaintext`, or None (unknown, wrong secret or revoked)."""
    parts = parse(plaintext)
    if parts is None:
        return None
    row = _live.get(parts[0])
    if row is None:
        mark = _live.mark()  # before the read, so the entry's age covers everything the row might miss
        row = session.get(ApiKey, parts[0])
        if row is None or row.revoked_at is not None:
            return None
        _live.put(row, mark)
    return row if _secret_matches(row, parts[1]) else None


def _secret_matches(row: ApiKey, secret: str) -> bool:
    return hmac.compare_digest(row.secret_sha256, _digest(secret))


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
    _live.drop(key_id)  # after the commit: a read that began before it cannot cache the key live again
    return row


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.exec(select(ApiKey).order_by(col(ApiKey.created_at))))


def bootstrap_admin(settings, name: str = "admin") -> str:  # noqa: ANN001 - service.settings.Settings
    """Migrate the stores and create an admin key; returns its plaintext for the CLI to print once."""
    from api.storage import open_engine

    engine = open_engine(settings)
    try:
        with Session(engine) as session:
            return create_key(session, ["admin"], name)[1]
    finally:
        engine.dispose()
