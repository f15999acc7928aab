"""PostgreSQL and Redis of `keye stack` answer, and the SQL layer's driver works against them."""

from __future__ import annotations

import uuid

import pytest


@pytest.mark.postgres
def test_postgres_transactions_and_isolation(postgres_url: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_url)
    table = f"smoke_{uuid.uuid4().hex[:8]}"
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE TABLE {table} (id int PRIMARY KEY, v text)"))
            conn.execute(sa.text(f"INSERT INTO {table} VALUES (1, 'a')"))
        # A unique key turns a duplicate write into an error, the basis of idempotent sinks.
        with pytest.raises(sa.exc.IntegrityError):
            with engine.begin() as conn:
                conn.execute(sa.text(f"INSERT INTO {table} VALUES (1, 'b')"))
        with engine.begin() as conn:
            conn.execute(sa.text(f"INSERT INTO {table} VALUES (1, 'c') ON CONFLICT (id) DO NOTHING"))
            assert conn.execute(sa.text(f"SELECT v FROM {table}")).scalars().all() == ["a"]
            version = conn.execute(sa.text("SHOW server_version")).scalar_one()
        assert int(version.split(".")[0]) >= 13
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()


@pytest.mark.redis
def test_redis_roundtrip_and_expiry(redis_url: str) -> None:
    import redis

    r = redis.Redis.from_url(redis_url)
    key = f"smoke:{uuid.uuid4().hex}"
    assert r.set(key, "1", nx=True, ex=30)
    assert not r.set(key, "2", nx=True, ex=30)  # set-if-absent: a dedup primitive
    assert r.get(key) == b"1"
    assert 0 < r.ttl(key) <= 30
    r.delete(key)
