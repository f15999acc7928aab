"""`keye reconcile`: find the submissions that reached neither `videos.work` nor the DLQ.

Every `videos.ingest` message with a usable video_id must end on `videos.work` (accepted, or a
duplicate of an accepted one) or on `videos.dlq`. The topics are read up to their end offsets at
the start of the run, so the answer is exact for what was there then; a submission still waiting
in the gate shows as unreached until the gate has passed it. `repair` publishes the unreached
submissions to `videos.ingest` again (the gate validates and deduplicates them as usual).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime

from service.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Unreached:
    video_id: str
    partition: int
    offset: int
    value: bytes


def _read(
    settings: Settings, topic: str, since: datetime | None = None
) -> list[tuple[int, int, bytes | None, bytes | None]]:
    """(partition, offset, key, value) of every message up to the end offsets taken now; from `since` when given."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        if not tps:
            return []
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        starts = consumer.beginning_offsets(tps)
        if since is not None:
            found = consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in tps})
            starts = {tp: found[tp].offset if found.get(tp) else ends[tp] for tp in tps}
        for tp in tps:
            consumer.seek(tp, starts[tp])
        out = []
        pending = {tp for tp in tps if starts[tp] < ends[tp]}
        while pending:
            for tp, records in consumer.poll(timeout_ms=1000).items():
                for r in records:
                    if r.offset < ends[tp]:
                        out.append((r.partition, r.offset, r.key, r.value))
                if consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        return out
    finally:
        consumer.close()


def _dlq_video_id(key: bytes | None, value: bytes | None) -> str | None:
    """The video a DLQ record is about: its original's video_id, else its key."""
    try:
        original = json.loads(value or b"null").get("original")
    except (ValueError, AttributeError):
        original = None
    if isinstance(original, dict) and isinstance(original.get("video_id"), str):
        return original["video_id"]
    return key.decode("utf-8", "replace") if key else None


def unreached(settings: Settings, since: datetime | None = None) -> list[Unreached]:
    """The ingest messages (since `since`, else all) whose video_id is on neither videos.work nor the DLQ."""
    from service.schemas import video_id_hint

    ingest = _read(settings, settings.topic_ingest, since)
    work = {(k or b"").decode("utf-8", "replace") for _, _, k, _ in _read(settings, settings.topic_work)}
    dlq = {_dlq_video_id(k, v) for _, _, k, v in _read(settings, settings.topic_dlq)}
    missing = []
    for partition, offset, _, value in ingest:
        vid = video_id_hint(value)
        if vid is not None and vid not in work and vid not in dlq:
            missing.append(Unreached(vid, partition, offset, value or b""))
    log.info(
        "reconcile: %d ingest message(s), %d on %s, %d on %s, %d unreached",
        len(ingest),
        len(work),
        settings.topic_work,
        len(dlq),
        settings.topic_dlq,
        len(missing),
    )
    return missing


def repair(settings: Settings, missing: list[Unreached]) -> int:
    """Publish the unreached submissions to the ingest topic again, unchanged; returns how many."""
    from service.kafka import producer
    from service.schemas import key_of

    once = list({m.video_id: m for m in reversed(missing)}.values())  # a video submitted twice: once
    if not once:
        return 0
    prod = producer(settings)
    try:
        for m in once:
            prod.send(settings.topic_ingest, key=key_of(m.video_id), value=m.value)
        prod.flush(timeout=60)
    finally:
        prod.close(timeout=10)
    log.info("reconcile: re-published %d submission(s) to %s", len(once), settings.topic_ingest)
    return len(once)
