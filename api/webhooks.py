"""Webhooks: clients register a URL for "analyzed" and "flagged" events; each event becomes one
delivery row per subscribed webhook (the delivery log), POSTed with a Standard Webhooks signature
(https://www.standardwebhooks.com), and retried with exponential backoff (`RETRY`) until it
succeeds or runs out.

Signature headers: `webhook-id` (the event id, the same on every retry: a receiver dedups on it),
`webhook-timestamp` (unix seconds of this try) and `webhook-signature: v1,<base64
HMAC-SHA256(key, f"{id}.{timestamp}.{body}")>`, where the key is the base64 after the `whsec_` of
the webhook's secret. A receiver verifies with any Standard Webhooks library, e.g.
`standardwebhooks.Webhook(secret).verify(body, headers)`, which also rejects stale timestamps
(replays).

Migration from the scheme before (`X-Keye-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret,
f"{t}.{body}")>` with `X-Keye-Timestamp`): those two headers are no longer sent; verify the three
headers above instead. Secrets issued since are `whsec_<base64 of 32 random bytes>`; a secret issued
before has no prefix and keeps working: its UTF-8 bytes are the key, so a receiver passes
`secret.encode()` (raw bytes) to its verifier, or registers the webhook again for a `whsec_` one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from api.tables import Webhook, WebhookDelivery
from service.retry import RetryPolicy
from service.schemas import AnalysisRecord, FlagMessage, decode, utcnow
from service.settings import Settings
from stores.db import table_of

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

EVENTS = ("analyzed", "flagged")
MAX_ATTEMPTS = 8
RETRY = RetryPolicy(base_s=5.0, cap_s=3600.0, attempts=MAX_ATTEMPTS)  # 5 s, 10 s, 20 s, ... an hour at most
TIMEOUT_S = 10.0
SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signing_key(secret: str) -> bytes:
    """The HMAC key of a webhook secret: the base64 after `whsec_`, or the UTF-8 bytes of a secret
    issued before the switch to Standard Webhooks (no prefix)."""
    if secret.startswith(SECRET_PREFIX):
        return base64.b64decode(secret[len(SECRET_PREFIX) :])
    return secret.encode()


def signature_headers(secret: str, msg_id: str, timestamp: int, body: str) -> dict[str, str]:
    mac = hmac.new(signing_key(secret), f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }


def _insert_ignore(session: Session, rows: list[dict]) -> None:
    if not rows:
        return
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    session.execute(
        insert(table_of(WebhookDelivery)).values(rows).on_conflict_do_nothing(index_elements=["webhook_id", "event_id"])
    )


def enqueue_event(session: Session, event: str, event_id: str, data: dict[str, Any]) -> int:
    """One pending delivery per active webhook subscribed to `event`; a repeated event_id (Kafka
    redelivery) adds nothing. Returns the number of subscribed webhooks."""
    hooks = [h for h in session.exec(select(Webhook).where(Webhook.active == True)) if event in h.events]  # noqa: E712 - SQL's `active = true`, not a truth test
    now = utcnow()
    body = json.dumps(
        {"id": event_id, "type": event, "created_at": now.isoformat(), "data": data},
        separators=(",", ":"),
        sort_keys=True,
    )
    _insert_ignore(
        session,
        [
            dict(
                webhook_id=h.webhook_id,
                event_id=event_id,
                event=event,
                body=body,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
            for h in hooks
        ],
    )
    return len(hooks)


def fanout_message(session: Session, settings: Settings, topic: str, value: bytes | str) -> int:
    """Turn one `videos.analyzed` or `moderation.flags` message into deliveries."""
    if topic == settings.topic_analyzed:
        r = decode(AnalysisRecord, value)
        data = r.model_dump(mode="json", exclude={"embedding"})
        return enqueue_event(session, "analyzed", f"analyzed:{r.analysis_id}", data)
    if topic == settings.topic_flags:
        f = decode(FlagMessage, value)
        return enqueue_event(session, "flagged", f"flagged:{f.analysis_id}", f.model_dump(mode="json"))
    raise ValueError(f"no webhook event comes from topic {topic!r}")


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _post(client: httpx.Client, url: str, body: str, headers: dict[str, str], settings: Settings) -> httpx.Response:
    """POST to the checked address of the URL's host (as service.fetch does: no DNS rebinding)."""
    import httpx

    from service.fetch import resolve_checked

    parts = urlsplit(url)
    https = parts.scheme.lower() == "https"
    ip = resolve_checked(
        parts.hostname or "",
        parts.port or (443 if https else 80),
        settings.allow_private_addresses,
        settings.allow_loopback_addresses,
    )
    pinned = httpx.URL(url).copy_with(host=ip)
    return client.post(
        pinned,
        content=body.encode(),
        headers={**headers, "Host": parts.netloc},
        extensions={"sni_hostname": parts.hostname} if https else {},
    )


def deliver_due(engine: sa.Engine, settings: Settings, now: datetime | None = None, limit: int = 50) -> int:
    """Try every pending delivery that is due; returns how many were attempted."""
    import httpx

    now = now or utcnow()
    with Session(engine) as session:
        due = list(
            session.exec(
                select(WebhookDelivery)
                .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
                .order_by(col(WebhookDelivery.next_attempt_at), col(WebhookDelivery.id))
                .limit(limit)
            )
        )
        if not due:
            return 0
        hooks = {
            h.webhook_id: h
            for h in session.exec(select(Webhook).where(col(Webhook.webhook_id).in_({d.webhook_id for d in due})))
        }
        with httpx.Client(follow_redirects=False, trust_env=False, timeout=TIMEOUT_S) as client:
            for d in due:
                hook = hooks.get(d.webhook_id)
                if hook is None or not hook.active:
                    d.status, d.last_error = "failed", "the webhook was deleted"
                    session.add(d)
                    continue
                headers = {
                    "Content-Type": "application/json",
                    "User-Agent": "keye-webhooks/1",
                    "X-Keye-Event": d.event,
                    "X-Keye-Delivery": str(d.id),
                    "X-Keye-Event-Id": d.event_id,
                    **signature_headers(hook.secret, d.event_id, int(time.time()), d.body),
                }
                d.attempts += 1
                try:
                    resp = _post(client, hook.url, d.body, headers, settings)
                    d.last_status_code, d.last_error = resp.status_code, None
                    ok = 200 <= resp.status_code < 300
                    if not ok:
                        d.last_error = f"HTTP {resp.status_code}"
                except Exception as e:  # noqa: BLE001 - refused address, timeout, connection error
                    ok, d.last_error = False, f"{type(e).__name__}: {e}"[:1000]
                if ok:
                    d.status, d.delivered_at = "delivered", now
                elif RETRY.exhausted(d.attempts):
                    d.status = "failed"
                    log.warning(
                        "webhook %s: delivery %d of %s failed for good after %d tries (%s)",
                        hook.webhook_id,
                        d.id,
                        d.event_id,
                        d.attempts,
                        d.last_error,
                    )
                else:
                    delay = RETRY.delay(d.attempts)
                    d.next_attempt_at = _aware(now) + timedelta(seconds=delay)
                    log.warning(
                        "webhook %s: delivery %d of %s failed (%s); retry %d in %.0fs",
                        hook.webhook_id,
                        d.id,
                        d.event_id,
                        d.last_error,
                        d.attempts,
                        delay,
                    )
                session.add(d)
        session.commit()
        return len(due)


class Dispatcher:
    """Background threads of the API process: Kafka events -> deliveries, and due deliveries -> POSTs."""

    def __init__(self, engine: sa.Engine, settings: Settings, interval_s: float = 1.0) -> None:
        self.engine, self.settings, self.interval_s = engine, settings, interval_s
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._consume, name="keye-webhook-events", daemon=True),
            threading.Thread(target=self._deliver, name="keye-webhook-delivery", daemon=True),
        ]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)

    def _deliver(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                while deliver_due(self.engine, self.settings) and not self._stop.is_set():
                    pass
            except Exception as e:  # noqa: BLE001 - SQL away: try again next tick
                log.warning("webhook delivery: %s", e)

    def _consume(self) -> None:
        consumer = None
        while not self._stop.is_set():
            try:
                if consumer is None:
                    from kafka import KafkaConsumer

                    consumer = KafkaConsumer(
                        self.settings.topic_analyzed,
                        self.settings.topic_flags,
                        bootstrap_servers=self.settings.kafka_bootstrap,
                        group_id="keye-api-webhooks",
                        enable_auto_commit=False,
                        auto_offset_reset="earliest",
                    )
                polled = consumer.poll(timeout_ms=1000, max_records=200)
                if not polled:
                    continue
                with Session(self.engine) as session:
                    for records in polled.values():
                        for r in records:
                            try:
                                fanout_message(session, self.settings, r.topic, r.value)
                            except ValueError as e:  # a malformed message: the streams' DLQ owns it
                                log.warning("webhook fan-out skipped a message: %s", e)
                    session.commit()
                consumer.commit()  # only after the deliveries are durable
            except Exception as e:  # noqa: BLE001 - Kafka or SQL away: reconnect slowly
                log.warning("webhook events: %s", e)
                if consumer is not None:
                    consumer.close()
                    consumer = None
                self._stop.wait(5.0)
        if consumer is not None:
            consumer.close()
