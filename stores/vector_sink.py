"""The vector sink: the single owner of the embedded vector store (a Qdrant Edge shard folder).

An embedded shard is locked by one process, so workers do not write it. This consumer reads
`videos.analyzed` and upserts one point per analysis; run it in the process that serves search
(the API) or alone. With a Qdrant server (KEYE_QDRANT_URL) workers write directly and this sink is
optional (running it too is harmless: point ids are deterministic).

Offsets are committed only after the points are written (an upsert that returned is in the
shard's write-ahead log); a failing write is retried with backoff, never skipped.
"""

from __future__ import annotations

import logging
import threading
import uuid

from service import kafka as kk
from service import metrics
from service.retry import RetryPolicy
from service.schemas import POINT_NAMESPACE, AnalysisRecord, DeadLetter, SchemaError, dead_letter_id, decode
from service.settings import Settings
from service.waiting import Stopped, kafka_label, until_available
from stores.vectors import VectorStore, VectorStoreError

log = logging.getLogger("keye.vectors")
WRITE_RETRY = RetryPolicy(base_s=0.5, cap_s=5.0)  # a failed batch is re-read and retried, never skipped


def run_vector_sink(
    settings: Settings,
    stop: threading.Event | None = None,
    *,
    group_id: str = "keye-vector-sink",
    batch_size: int = 64,
    store: VectorStore | None = None,
) -> None:
    from kafka import KafkaConsumer

    stop = stop or threading.Event()
    try:
        until_available(
            lambda: kk.ensure_topics(settings, [settings.topic_analyzed, settings.topic_dlq]),
            kafka_label(settings),
            stop,
        )
        producer = until_available(lambda: kk.producer(settings), kafka_label(settings), stop)
    except Stopped:
        return
    own_store = store is None
    store = store or VectorStore.from_settings(settings)
    consumer = KafkaConsumer(
        settings.topic_analyzed,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=batch_size,
    )
    log.info(
        "vector sink consuming %s into %s",
        settings.topic_analyzed,
        settings.qdrant_url or settings.resolved_qdrant_path,
    )
    failures = 0
    try:
        while not stop.is_set():
            try:
                polled = consumer.poll(timeout_ms=500)
            except Exception as e:  # noqa: BLE001 - the broker is down; the client reconnects
                log.warning("Kafka poll failed (%s: %s); retrying", type(e).__name__, e)
                stop.wait(1.0)
                continue
            records = [r for rs in polled.values() for r in rs]
            if not records:
                continue
            try:
                latest = _decode_or_dead_letter(records, producer, settings)
                _upsert_or_dead_letter(store, list(latest.values()), producer, settings)
                producer.flush(timeout=60)
            except Exception as e:  # noqa: BLE001 - retried: the batch is re-read from the last commit
                failures += 1
                delay = WRITE_RETRY.delay(failures)
                log.warning("vector write failed (%s); retrying in %.1fs", e, delay)
                for tp, rs in polled.items():
                    consumer.seek(tp, min(r.offset for r in rs))
                stop.wait(delay)
                continue
            if failures:
                log.info("vector writes succeed again after %d failures", failures)
            failures = 0
            metrics.VECTORS.inc(len(latest))
            for rec in latest.values():
                log.info("video %s: point %s upserted", rec.video_id, rec.analysis_id)
            try:
                consumer.commit()
            except Exception as e:  # noqa: BLE001 - redelivered later; upserts are idempotent
                log.warning("commit failed (%s); these records will be redelivered", e)
                continue
            log.info(
                "committed %s",
                ", ".join(
                    f"{tp.topic}[{tp.partition}]@{max(r.offset for r in rs) + 1}"
                    for tp, rs in sorted(polled.items())
                    if rs
                ),
            )
    finally:
        consumer.close(autocommit=False)
        producer.close(timeout=10)
        if own_store:
            store.close()


def _decode_or_dead_letter(records: list, producer, settings: Settings) -> dict[str, AnalysisRecord]:
    """The batch's analyses with an embedding, latest per analysis id; an undecodable one goes to the DLQ."""
    latest: dict[str, AnalysisRecord] = {}
    for r in records:
        try:
            rec = decode(AnalysisRecord, r.value)
        except SchemaError as e:
            video_id = (r.key or b"unknown").decode("utf-8", "replace")
            log.warning("video %s: undecodable analysis -> DLQ (%s)", video_id, e)
            letter = DeadLetter.of(
                r.value,
                e,
                stage="vectors.decode",
                dlq_id=dead_letter_id("vectors.decode", r.topic, r.partition, r.offset),
            )
            kk.send_dead_letter(producer, settings.topic_dlq, letter, video_id)
            metrics.DLQ.labels("vectors.decode").inc()
            continue
        if not rec.embedding:
            log.warning("analysis %s of video %s has no embedding; no point written", rec.analysis_id, rec.video_id)
            continue
        latest[rec.analysis_id] = rec
    return latest


def _upsert_or_dead_letter(store: VectorStore, records: list[AnalysisRecord], producer, settings: Settings) -> None:
    """Upsert a batch; a record the store refuses (e.g. another vector size) goes to the DLQ alone."""
    try:
        store.upsert(records)
        return
    except VectorStoreError:
        pass
    for rec in records:
        try:
            store.upsert([rec])
        except VectorStoreError as e:
            log.warning("video %s: vector refused (%s) -> DLQ", rec.video_id, e)
            # one refusal per analysis: its id keys the copies a redelivered batch makes
            letter = DeadLetter.of(
                rec.model_dump(mode="json", exclude={"embedding"}),
                e,
                stage="vectors.upsert",
                dlq_id=str(uuid.uuid5(POINT_NAMESPACE, f"dlq:vectors.upsert:{rec.analysis_id}")),
            )
            kk.send_dead_letter(producer, settings.topic_dlq, letter, rec.video_id)
            metrics.DLQ.labels("vectors.upsert").inc()
