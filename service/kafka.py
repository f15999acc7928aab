"""Kafka helpers (kafka-python): topic creation, a durable producer, and `ingest`.

Keys are video ids, values are `service.schemas` JSON. The producer is idempotent with acks=all, so a
retried send never duplicates a message in the log; `send` + `flush` before any offset commit is
what makes the pipeline at-least-once.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from service.schemas import (
    AnalysisRecord,
    DeadLetter,
    FeedbackEvent,
    FlagMessage,
    Submission,
    TaskName,
    encode,
    key_of,
    utcnow,
)
from service.settings import Settings

log = logging.getLogger(__name__)

Keyed = Submission | AnalysisRecord | FlagMessage | FeedbackEvent  # the messages that name their video

DEFAULT_PARTITIONS = 6


class KafkaUnavailableError(RuntimeError):
    """The broker did not answer in time."""


def all_topics(settings: Settings) -> list[str]:
    return [
        settings.topic_ingest,
        settings.topic_work,
        settings.topic_analyzed,
        settings.topic_flags,
        settings.topic_feedback,
        settings.topic_dlq,
    ]


def ensure_topics(
    settings: Settings, topics: Iterable[str] | None = None, partitions: int = DEFAULT_PARTITIONS
) -> None:
    """Create the pipeline's topics that are missing (idempotent; partitions bound worker parallelism)."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    wanted = list(topics or all_topics(settings))
    try:
        admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=15000)
    except Exception as e:  # noqa: BLE001 - kafka-python raises several types for "no broker"
        raise KafkaUnavailableError(f"Kafka at {settings.kafka_bootstrap} does not answer: {e}") from e
    try:
        missing = [t for t in wanted if t not in set(admin.list_topics())]
        if missing:
            try:
                admin.create_topics([NewTopic(t, num_partitions=partitions, replication_factor=1) for t in missing])
            except TopicAlreadyExistsError:
                pass  # another process created them first
    finally:
        admin.close()


def partition_count(settings: Settings, topic: str) -> int:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=15000)
    try:
        described = admin.describe_topics([topic])
    finally:
        admin.close()
    if not described or not described[0].get("partitions"):
        raise KafkaUnavailableError(f"topic {topic!r} does not exist on {settings.kafka_bootstrap}")
    return len(described[0]["partitions"])


def producer(settings: Settings, **overrides: Any):
    from kafka import KafkaProducer

    config = dict(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        retries=2**31 - 1,
        max_in_flight_requests_per_connection=5,
        delivery_timeout_ms=120000,
        max_request_size=4 << 20,
    )
    config.update(overrides)
    try:
        return KafkaProducer(**config)
    except Exception as e:  # noqa: BLE001 - NoBrokersAvailable and friends
        raise KafkaUnavailableError(f"Kafka at {settings.kafka_bootstrap} does not answer: {e}") from e


def send(prod, topic: str, message: Keyed, video_id: str | None = None):
    """Queue one message keyed by its video_id; the caller flushes before committing offsets."""
    vid = video_id or message.video_id
    return prod.send(topic, key=key_of(vid), value=encode(message))


def send_dead_letter(prod, topic: str, letter: DeadLetter, video_id: str | None):
    """Queue a dead letter; its `dlq_id` also goes in a header, so consumers can drop the copies a
    redelivery makes without parsing the value."""
    headers = [("dlq_id", letter.dlq_id.encode())] if letter.dlq_id else None
    return prod.send(topic, key=key_of(video_id or "unknown"), value=encode(letter), headers=headers)


def to_uri(path_or_uri: str) -> str:
    """A local path becomes an absolute file:// URI; URIs pass through."""
    if "://" in path_or_uri:
        return path_or_uri
    return Path(path_or_uri).resolve().as_uri()


def video_id_for(uri: str) -> str:
    """Deterministic id of a URI, so submitting the same URI twice is a duplicate."""
    return "v-" + hashlib.sha256(uri.encode("utf-8")).hexdigest()[:24]


def ingest(
    uris: Iterable[str],
    settings: Settings | None = None,
    *,
    video_ids: Iterable[str] | None = None,
    creator_id: str | None = None,
    language: str | None = None,
    title: str | None = None,
    hashtags: Iterable[str] = (),
    tasks: Iterable[TaskName] = (),
    submitted_at: datetime | None = None,
    prod=None,
) -> list[Submission]:
    """Publish one submission per URI (or local path) to the ingest topic; returns what was sent.

    Each submission is validated before sending (a bad URI raises SchemaError here, not downstream).
    """
    from pydantic import ValidationError

    from service.schemas import SchemaError
    from service.settings import get_settings

    settings = settings or get_settings()

    uris = [to_uri(u) for u in uris]
    ids = list(video_ids) if video_ids is not None else [video_id_for(u) for u in uris]
    if len(ids) != len(uris):
        raise ValueError(f"{len(uris)} URIs but {len(ids)} video ids")
    subs = []
    for vid, uri in zip(ids, uris):
        try:
            subs.append(
                Submission(
                    video_id=vid,
                    uri=uri,
                    creator_id=creator_id,
                    language=language,
                    title=title,
                    hashtags=list(hashtags),
                    tasks=list(tasks),
                    submitted_at=submitted_at or utcnow(),
                )
            )
        except ValidationError as e:
            raise SchemaError(f"submission for {uri!r}: {e.errors()[0]['msg']}") from None
    own = prod is None
    prod = prod or producer(settings)
    try:
        try:
            for s in subs:
                send(prod, settings.topic_ingest, s)
            prod.flush(timeout=60)
        except Exception as e:  # noqa: BLE001 - KafkaTimeoutError: not acknowledged in time
            raise KafkaUnavailableError(
                f"Kafka at {settings.kafka_bootstrap} did not accept the submissions: {e}"
            ) from e
    finally:
        if own:
            prod.close(timeout=10)
    log.info("ingested %d submission(s) to %s", len(subs), settings.topic_ingest)
    return subs
