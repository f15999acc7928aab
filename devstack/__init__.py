"""The development and test stack: Kafka, PostgreSQL and Redis as real servers on loopback.

`keye stack up|down|status`. Idempotent: `up` leaves running services alone, `down` stops what
runs. Data and logs live under KEYE_STACK_DIR (default `.stack/`, logs in `.stack/logs/`).
Qdrant needs no server here: the embedded default is qdrant-client's local mode.
"""

from __future__ import annotations

from devstack import kafka, postgres, redis
from devstack.process import StackError
from service.settings import Settings

SERVICES = {"kafka": kafka, "postgres": postgres, "redis": redis}

__all__ = ["SERVICES", "StackError", "up", "down", "status", "env"]


def up(s: Settings, only: list[str] | None = None) -> None:
    for name in only or list(SERVICES):
        SERVICES[name].up(s)


def down(s: Settings, only: list[str] | None = None) -> dict[str, str]:
    """What became of each service: "stopped", "was not running" or "failed to stop: <why>"."""
    out = {}
    # Stop in reverse order of dependence; none depends on another today, but Kafka is slowest.
    for name in reversed(only or list(SERVICES)):
        try:
            out[name] = "stopped" if SERVICES[name].down(s) else "was not running"
        except StackError as e:
            out[name] = f"failed to stop: {e}"
    return out


def status(s: Settings) -> dict[str, str]:
    return {name: svc.status(s) for name, svc in SERVICES.items()}


def env(s: Settings) -> dict[str, str]:
    """The variables that point the product and the tests at this stack."""
    return {
        "KEYE_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
        "KEYE_TEST_POSTGRES_URL": postgres.url(s),
        "KEYE_REDIS_URL": redis.url(s),
    }
