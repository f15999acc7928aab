"""Publishing to Kafka through an outbox table.

A route adds its message in the same SQL transaction as the change that caused it (`enqueue`); the
relay publishes pending rows in order and marks them sent once Kafka acknowledged them. Kafka being
away delays messages instead of failing requests, and a crash between commit and publish loses
nothing (at-least-once, as every consumer already expects).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

import sqlalchemy as sa
from pydantic import BaseModel
from sqlmodel import Session, col, select

from api.tables import Outbox
from service.retry import RetryPolicy
from service.schemas import encode, utcnow
from stores.db import table_of

if TYPE_CHECKING:
    from kafka import KafkaProducer

log = logging.getLogger(__name__)


def enqueue(session: Session, topic: str, key: str, message: BaseModel) -> None:
    session.add(Outbox(topic=topic, key=key, value=encode(message).decode("utf-8"), created_at=utcnow()))


def pending(session: Session, limit: int = 500) -> list[Outbox]:
    return list(session.exec(select(Outbox).where(col(Outbox.sent_at).is_(None)).order_by(col(Outbox.id)).limit(limit)))


def relay_once(engine: sa.Engine, producer: KafkaProducer, limit: int = 500) -> int:
    """Publish up to `limit` pending messages; returns how many were sent."""
    with Session(engine) as session:
        rows = pending(session, limit)
        if not rows:
            return 0
        futures = [producer.send(r.topic, key=r.key.encode(), value=r.value.encode()) for r in rows]
        producer.flush(timeout=30)
        sent = []
        for row, fut in zip(rows, futures):
            try:
                fut.get(timeout=0)
                sent.append(row.id)
            except Exception as e:  # noqa: BLE001 - keep the row pending, note why
                row.attempts += 1
                row.last_error = f"{type(e).__name__}: {e}"[:1000]
                session.add(row)
        if sent:
            session.execute(sa.update(table_of(Outbox)).where(col(Outbox.id).in_(sent)).values(sent_at=utcnow()))
        session.commit()
        return len(sent)


class Relay:
    """A background thread draining the outbox into Kafka; `wake()` after a commit sends at once."""

    def __init__(self, engine: sa.Engine, bootstrap: str, interval_s: float = 1.0) -> None:
        self.engine, self.bootstrap, self.interval_s = engine, bootstrap, interval_s
        # Kafka or SQL away: the first retry waits two ticks, then twice as long each time, up to 30 s.
        self.retry = RetryPolicy(base_s=min(2 * interval_s, 30.0), cap_s=30.0)
        self._event = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="keye-api-outbox", daemon=True)
        self._producer = None

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._event.set()

    def stop(self) -> None:
        self._stop.set()
        self._event.set()
        self._thread.join(timeout=10)
        if self._producer is not None:
            self._producer.close(timeout=5)

    def _run(self) -> None:
        wait, failures = self.interval_s, 0
        while not self._stop.is_set():
            self._event.wait(wait)
            self._event.clear()
            try:
                if self._producer is None:
                    from kafka import KafkaProducer

                    self._producer = KafkaProducer(
                        bootstrap_servers=self.bootstrap, acks="all", linger_ms=5, retries=5, request_timeout_ms=15000
                    )
                while relay_once(self.engine, self._producer):
                    pass
                wait, failures = self.interval_s, 0
            except Exception as e:  # noqa: BLE001 - Kafka or SQL away: retry later, slower
                failures += 1
                wait = self.retry.delay(failures)
                log.warning("outbox relay: %s; retrying in %.1fs", e, wait)
