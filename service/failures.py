"""How the worker treats a failure: permanent (DLQ now), limited (retry a few times, then DLQ),
or store (a store we write to is down: retry with backoff forever, never commit past it)."""

from __future__ import annotations

from enum import StrEnum


class Failure(StrEnum):
    PERMANENT = "permanent"
    LIMITED = "limited"
    STORE = "store"


class PermanentError(Exception):
    """Bad input that no retry can fix."""


class StoreUnavailableError(Exception):
    """A durable store (SQL, Qdrant, Kafka) did not accept a write."""


def _names(exc: BaseException) -> set[str]:
    return {f"{c.__module__}.{c.__name__}" for c in type(exc).__mro__}


def classify(exc: BaseException) -> Failure:
    from service.fetch import FetchError
    from service.schemas import SchemaError

    if isinstance(exc, (PermanentError, SchemaError)):
        return Failure.PERMANENT
    if isinstance(exc, FetchError):
        return Failure.PERMANENT if exc.permanent else Failure.LIMITED
    if isinstance(exc, StoreUnavailableError):
        return Failure.STORE
    names = _names(exc)
    if "service.kafka.KafkaUnavailableError" in names:
        return Failure.STORE
    if "keye_model.processor.errors.MediaError" in names or "keye_model.processor.errors.ProcessorInputError" in names:
        return Failure.PERMANENT
    if any(
        n.startswith(
            ("sqlalchemy.exc.", "psycopg.", "sqlite3.", "kafka.errors.", "qdrant_client.", "httpx.", "httpcore.")
        )
        for n in names
    ) or isinstance(exc, (ConnectionError, TimeoutError)):
        return Failure.STORE
    if isinstance(exc, (MemoryError, RuntimeError)):
        return Failure.LIMITED  # e.g. out of device memory: may pass on retry or another worker
    return Failure.LIMITED
