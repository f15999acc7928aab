"""Waiting at start for a store that is down: a worker or sink started before PostgreSQL or Kafka
logs what it waits for and retries with backoff, instead of exiting with a traceback."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa

from keye.settings import Settings
from workers.errors import Failure, classify

log = logging.getLogger("keye.wait")
T = TypeVar("T")


class Stopped(Exception):
    """Asked to stop while waiting."""


def database_label(settings: Settings) -> str:
    return "the database at " + sa.engine.make_url(settings.resolved_database_url).render_as_string(hide_password=True)


def kafka_label(settings: Settings) -> str:
    return f"Kafka at {settings.kafka_bootstrap}"


def until_available(action: Callable[[], T], what: str, stop: threading.Event | None = None, *,
                    backoff_s: float = 0.5, backoff_max_s: float = 5.0) -> T:
    """`action()`, retried with exponential backoff while it fails because a store is down (see
    `workers.errors.classify`); any other error propagates. Raises `Stopped` when `stop` is set."""
    stop = stop or threading.Event()
    attempt = 0
    while True:
        try:
            result = action()
        except Exception as e:  # noqa: BLE001 - only store outages are waited for
            if classify(e) is not Failure.STORE:
                raise
            attempt += 1
            delay = min(backoff_s * 2 ** (attempt - 1), backoff_max_s)
            reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
            log.warning("%s is unavailable (%s: %s); waiting, retry %d in %.1fs", what, type(e).__name__, reason,
                        attempt, delay)
            if stop.wait(delay):
                raise Stopped() from e
            continue
        if attempt:
            log.info("%s is available again after %d retries; proceeding", what, attempt)
        return result


__all__ = ["Stopped", "database_label", "kafka_label", "until_available"]
