"""Waiting at start for a store that is down: a worker or sink started before PostgreSQL or Kafka
logs what it waits for and retries with backoff, instead of exiting with a traceback."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa

from service.failures import Failure, classify
from service.retry import RetryPolicy, Stopped
from service.settings import Settings

log = logging.getLogger("keye.wait")
T = TypeVar("T")

# A store that is back is used within seconds.
STORE_OUTAGE = RetryPolicy(base_s=0.5, cap_s=5.0, retry_on=lambda e: classify(e) is Failure.STORE)


def database_label(settings: Settings) -> str:
    return "the database at " + sa.engine.make_url(settings.resolved_database_url).render_as_string(hide_password=True)


def kafka_label(settings: Settings) -> str:
    return f"Kafka at {settings.kafka_bootstrap}"


def until_available(action: Callable[[], T], what: str, stop: threading.Event | None = None) -> T:
    """`action()`, retried with exponential backoff while it fails because a store is down (see
    `service.failures.classify`); any other error propagates. Raises `Stopped` when `stop` is set."""
    stop = stop or threading.Event()
    retries = 0

    def waiting(e: BaseException, failures: int, delay: float) -> None:
        nonlocal retries
        retries = failures
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        log.warning(
            "%s is unavailable (%s: %s); waiting, retry %d in %.1fs", what, type(e).__name__, reason, failures, delay
        )

    result = STORE_OUTAGE.call(action, on_retry=waiting, sleep=stop.wait)
    if retries:
        log.info("%s is available again after %d retries; proceeding", what, retries)
    return result


__all__ = ["STORE_OUTAGE", "Stopped", "database_label", "kafka_label", "until_available"]
