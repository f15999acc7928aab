"""api.keys caches live keys for a few seconds (one SQL read per key, not per request): the secret is
still checked every time, a revocation here ends the key at once, one made behind the cache's back
(another API process) within CACHE_TTL_S, and a read racing a revocation is never cached live."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session

from api import keys as api_keys
from api.tables import ApiKey
from service.schemas import utcnow
from tests.support.api import auth

SEARCH = {"queries": [{"vector": [1.0]}]}


def test_a_revoked_key_is_refused_on_the_next_request(client: TestClient, keys: dict[str, str]) -> None:
    created = client.post("/v1/admin/keys", json={"name": "rec", "roles": ["recommender"]}, headers=auth(keys["admin"]))
    key = created.json()["key"]
    for _ in range(3):  # the key is cached live now
        assert client.post("/v1/search/batch", json=SEARCH, headers=auth(key)).status_code == 200
    client.delete(f"/v1/admin/keys/{created.json()['key_id']}", headers=auth(keys["admin"]))
    assert client.post("/v1/search/batch", json=SEARCH, headers=auth(key)).status_code == 401


def test_a_cached_key_still_needs_its_secret(session: Session) -> None:
    row, plaintext = api_keys.create_key(session, ["recommender"], name="rec")
    assert api_keys.verify(session, plaintext) is not None
    wrong = f"{api_keys.PREFIX}{row.key_id}_{'x' * 43}"
    assert api_keys.verify(session, wrong) is None
    assert api_keys.verify(session, plaintext[:-1]) is None
    again = api_keys.verify(session, plaintext)
    assert again is not None and again.key_id == row.key_id


def test_a_revocation_by_another_process_takes_effect_within_the_ttl(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_keys, "CACHE_TTL_S", 0.5)
    row, plaintext = api_keys.create_key(session, ["recommender"], name="rec")
    assert api_keys.verify(session, plaintext) is not None
    # What another process's revoke leaves: the row revoked in SQL, this process's cache untouched.
    with Session(session.get_bind()) as other:
        other.execute(sa.update(ApiKey).where(ApiKey.key_id == row.key_id).values(revoked_at=utcnow()))
        other.commit()
    session.expire_all()
    deadline = time.monotonic() + api_keys.CACHE_TTL_S + 0.2
    while api_keys.verify(session, plaintext) is not None:
        assert time.monotonic() < deadline, "the revoked key outlived the cache's TTL"
        time.sleep(0.05)


def test_a_read_that_races_a_revocation_is_not_cached(session: Session) -> None:
    row, plaintext = api_keys.create_key(session, ["recommender"], name="rec")
    mark = api_keys._live.mark()  # a request starts reading the key ...
    live = session.get(ApiKey, row.key_id)
    assert live is not None and live.revoked_at is None
    api_keys.revoke(session, row.key_id)  # ... the key is revoked before it stores what it read
    api_keys._live.put(live, mark)
    assert api_keys._live.get(row.key_id) is None
    assert api_keys.verify(session, plaintext) is None
