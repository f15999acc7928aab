"""The Kafka worker: a consumer group on `videos.work` (kafka-python).

One batch at a time:
1. poll up to `batch_size` records, then PAUSE every assigned partition;
2. run the batch on a helper thread while the polling thread keeps calling `poll()` (paused, so
   it returns nothing) — the group sees a live member however long inference takes, no rebalance;
3. per video: fetch, analyze, write SQL (and Qdrant when a server is configured), produce
   `videos.analyzed` (+ `moderation.flags` when flagged) and flush; a permanent failure produces a
   DLQ record and marks the video failed;
4. the polling thread commits each video's offset as soon as its writes are durable (a crash
   redoes the video in flight, not the batch); at the end of the batch it resumes.

Static membership: with an instance id (`--instance-id`, KEYE_WORKER_INSTANCE_ID; derived from the
host and the device on CUDA) the worker is a static group member: a restart within the session
timeout gets its partitions back with no rebalance, so the other workers never stop.

Failures: permanent ones (bad URI, undecodable file, schema) go to the DLQ at once; other
analysis failures are retried `max_attempts` times with backoff, then go to the DLQ; a store
that is down (SQL, Qdrant, Kafka) stops the batch at that video: everything before it is
committed, the partition is rewound to it, and the worker backs off and tries again, forever.

SIGTERM/SIGINT: no new batch is taken; the current video finishes, the rest of the batch is
abandoned uncommitted (it is redelivered to whoever owns the partition next), the consumer
leaves the group and the producer flushes.

Scale-out: run one worker process per GPU (KEYE_DEVICE=cuda:N) with the same group id; Kafka
spreads the partitions of `videos.work` over them, so the partition count (default 6) caps the
number of busy workers. `batch_size` bounds the work a rebalance can redeliver.
"""

from __future__ import annotations

import logging
import re
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from analysis.serving import Analyzer
from analysis.stages import VideoProcessor, timed
from service import kafka as kk
from service import metrics
from service.failures import Failure, StoreUnavailableError, classify
from service.retry import RetryPolicy
from service.schemas import (
    AnalysisRecord,
    DeadLetter,
    FlagMessage,
    SchemaError,
    Submission,
    WorkItem,
    dead_letter_id,
    decode,
    video_id_hint,
)
from service.settings import Settings
from service.waiting import Stopped, database_label, kafka_label, until_available
from stores.db import engine_from, migrate
from stores.vectors import VectorStore

log = logging.getLogger("keye.worker")


@dataclass
class WorkerConfig:
    group_id: str = "keye-workers"
    batch_size: int = 4
    max_attempts: int = 3  # for analysis failures that are not known to be permanent
    backoff_s: float = 0.5
    backoff_max_s: float = 5.0  # a store that is back is used within seconds
    poll_interval_ms: int = 200
    session_timeout_ms: int = 30000
    instance_id: str | None = None  # static group membership (see `instance_id_for`)
    write_vectors: bool | None = None  # None: only when a Qdrant server is configured
    metrics_port: int | None = None


@dataclass
class BatchResult:
    done: dict[tuple[str, int], int] = field(default_factory=dict)  # (topic, partition) -> last done offset
    store_error: str | None = None


def instance_id_for(settings: Settings, configured: str | None = None) -> str | None:
    """The worker's static group instance id: the configured one, else `<host>-<device>` on CUDA
    (one worker per GPU is the deployment rule, so host and device name it). On CPU several workers
    may share a host and a device, so they stay dynamic members unless given an id."""
    if configured:
        return configured
    if not settings.device.startswith("cuda"):
        return None
    return re.sub(r"[^A-Za-z0-9._-]", "-", f"{socket.gethostname()}-{settings.device}")[:249]


class _Abandoned(Exception):
    """The worker is stopping in the middle of a retry."""


class Worker:
    def __init__(self, settings: Settings, analyzer: Analyzer, config: WorkerConfig | None = None) -> None:
        self.settings, self.analyzer, self.config = settings, analyzer, config or WorkerConfig()
        if self.config.batch_size < 1 or self.config.max_attempts < 1:
            raise ValueError("batch_size and max_attempts must be at least 1")
        c = self.config
        self._analysis_retry = RetryPolicy(c.backoff_s, c.backoff_max_s, attempts=c.max_attempts)
        self._store_retry = RetryPolicy(c.backoff_s, c.backoff_max_s)  # forever: nothing is committed past it
        self.stopping = threading.Event()
        self._in_flight = False
        self._block_rounds = 0
        self._durable: dict[tuple[str, int], int] = {}  # offsets whose writes are durable, not yet committed
        self._durable_lock = threading.Lock()
        # Analyses done but not yet stored: computed ahead by a batched call, or kept when a store was
        # down, so that the retry stores them without running the model again.
        self._unstored: dict[str, AnalysisRecord] = {}

    def stop(self, *_: object) -> None:
        if not self.stopping.is_set():
            log.info("worker stopping: no new batches; the current one ends after its current video")
        self.stopping.set()

    # ---- setup ---------------------------------------------------------------------------------

    def _open(self) -> None:
        from kafka import ConsumerRebalanceListener, KafkaConsumer

        s, c = self.settings, self.config
        engine = engine_from(s)
        until_available(lambda: migrate(engine), database_label(s), self.stopping)
        until_available(lambda: kk.ensure_topics(s), kafka_label(s), self.stopping)
        write_vectors = c.write_vectors if c.write_vectors is not None else bool(s.qdrant_url)
        vectors = VectorStore.from_settings(s) if write_vectors else None
        self.processor = VideoProcessor(s, self.analyzer, engine, vectors)
        self.producer = until_available(lambda: kk.producer(s), kafka_label(s), self.stopping)
        worker = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):  # kafka-python's callback
                log.info("partitions revoked: %s", sorted((tp.topic, tp.partition) for tp in revoked))

            def on_partitions_assigned(self, assigned):
                log.info("partitions assigned: %s", sorted((tp.topic, tp.partition) for tp in assigned))
                if worker._in_flight and assigned:
                    worker.consumer.pause(*assigned)  # no new records while a batch runs

        self.consumer = KafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap,
            group_id=c.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=c.batch_size,
            session_timeout_ms=c.session_timeout_ms,
            heartbeat_interval_ms=max(1000, c.session_timeout_ms // 10),
            max_poll_interval_ms=300000,
            client_id=f"keye-worker-{c.group_id}",
            group_instance_id=c.instance_id,
        )
        self.consumer.subscribe([s.topic_work], listener=Listener())

    def _close(self) -> None:
        try:
            self.consumer.close(autocommit=False)
        finally:
            self.producer.flush(timeout=30)
            self.producer.close(timeout=10)
            if self.processor.vectors is not None:
                self.processor.vectors.close()
            if self.processor.engine is not None:  # always given here (__init__); typed optional by VideoProcessor
                self.processor.engine.dispose()

    # ---- main loop ---------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._open()
        except Stopped:
            log.info("worker %s stopped while waiting for its stores", self.config.group_id)
            return
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keye-batch")
        last_lag = 0.0
        log.info(
            "worker %s consuming %s (batch %d, %s)",
            self.config.group_id,
            self.settings.topic_work,
            self.config.batch_size,
            f"static member {self.config.instance_id}" if self.config.instance_id else "dynamic member",
        )
        try:
            while not self.stopping.is_set():
                polled = self._poll(500)
                if time.monotonic() - last_lag > 10:
                    self._update_lag()
                    last_lag = time.monotonic()
                records = sorted((r for rs in polled.values() for r in rs), key=lambda r: (r.partition, r.offset))
                if not records:
                    continue
                metrics.CONSUMED.inc(len(records))
                self._in_flight = True
                self.consumer.pause(*self.consumer.assignment())
                future = executor.submit(self._process_batch, records)
                while not future.done():
                    stray = self._poll(self.config.poll_interval_ms)
                    self._rewind(stray)  # only possible right after a rebalance; never lose them
                    self._commit_durable()
                result = future.result()
                self._in_flight = False
                self._finish(records, result)
        finally:
            executor.shutdown(wait=True)
            self._close()
            log.info("worker %s closed", self.config.group_id)

    def _poll(self, timeout_ms: int) -> dict:
        """poll(), surviving a broker that is down (kafka-python raises then); the client reconnects."""
        try:
            return self.consumer.poll(timeout_ms=timeout_ms)
        except Exception as e:  # noqa: BLE001 - KafkaConnectionError, NoBrokersAvailable, timeouts
            log.warning("Kafka poll failed (%s: %s); retrying", type(e).__name__, e)
            self.stopping.wait(min(1.0, timeout_ms / 1000))
            return {}

    def _rewind(self, polled: dict) -> None:
        from kafka import TopicPartition

        for tp, rs in polled.items():
            if rs:
                self.consumer.seek(TopicPartition(tp.topic, tp.partition), min(r.offset for r in rs))

    def _durable_done(self, r) -> None:
        """Called by the batch thread once a record's writes are durable: commit it soon."""
        with self._durable_lock:
            self._durable[(r.topic, r.partition)] = r.offset

    def _commit_durable(self) -> None:
        """Commit the offsets of the durable videos (polling thread: the consumer is not thread-safe)."""
        from kafka import TopicPartition
        from kafka.structs import OffsetAndMetadata

        with self._durable_lock:
            done, self._durable = self._durable, {}
        if not done:
            return
        assigned = self.consumer.assignment()
        offsets = {TopicPartition(t, p): OffsetAndMetadata(o + 1, "", -1) for (t, p), o in done.items()}
        offsets = {tp: om for tp, om in offsets.items() if tp in assigned}
        if not offsets:
            return
        try:
            self.consumer.commit(offsets)
        except Exception as e:  # noqa: BLE001 - a rebalance took the partition: the next owner redoes it
            log.warning(
                "commit failed (%s: %s); those videos will be redelivered and their writes are idempotent",
                type(e).__name__,
                e,
            )
            return
        log.info(
            "committed %s", ", ".join(f"{tp.topic}[{tp.partition}]@{om.offset}" for tp, om in sorted(offsets.items()))
        )

    def _finish(self, records: list, result: BatchResult) -> None:
        from kafka import TopicPartition

        self._commit_durable()
        # Every partition of the batch resumes at its first unfinished record (blocked or abandoned),
        # else after its last done one: a rebalance during the batch reset the position to the
        # committed offset of its start, and the done videos must not be redone.
        assigned = self.consumer.assignment()
        resume: dict[tuple[str, int], int] = {}
        for r in records:
            key = (r.topic, r.partition)
            if r.offset > result.done.get(key, -1):
                resume[key] = min(resume.get(key, r.offset), r.offset)
        for key, o in result.done.items():
            resume.setdefault(key, o + 1)
        for (t, p), o in resume.items():
            tp = TopicPartition(t, p)
            if tp in assigned:
                self.consumer.seek(tp, o)
        if result.store_error:
            self._block_rounds += 1
            delay = self._store_retry.delay(self._block_rounds)
            log.warning(
                "store unavailable (%s); retrying in %.1fs without committing past it", result.store_error, delay
            )
            metrics.RETRIED.labels("store").inc()
            self._idle(delay)
        else:
            self._block_rounds = 0
        assigned = self.consumer.assignment()
        if assigned:
            self.consumer.resume(*assigned)

    def _idle(self, seconds: float) -> None:
        """Wait while staying in the group (partitions stay paused)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.stopping.is_set():
            self._rewind(self._poll(self.config.poll_interval_ms))

    def _update_lag(self) -> None:
        try:
            assigned = list(self.consumer.assignment())
            if not assigned:
                return
            ends = self.consumer.end_offsets(assigned)
            for tp in assigned:
                metrics.LAG.labels(tp.topic, str(tp.partition)).set(max(0, ends[tp] - self.consumer.position(tp)))
        except Exception as e:  # noqa: BLE001 - lag is best effort
            log.debug("lag update failed: %s", e)

    # ---- one batch (helper thread) ----------------------------------------------------------------

    def _process_batch(self, records: list) -> BatchResult:
        result = BatchResult()
        self._analyze_ahead(records)
        for r in records:
            if self.stopping.is_set():
                break  # abandoned: the rest stays uncommitted
            try:
                self._process_one(r)
            except StoreUnavailableError as e:
                result.store_error = str(e)  # no further video in this batch; rewound in _finish
                break
            except _Abandoned:
                break
            result.done[(r.topic, r.partition)] = r.offset
            self._durable_done(r)
        return result

    def _analyze_ahead(self, records: list) -> None:
        """With a batching analyzer, analyze the batch's videos in one call up front; each result
        waits in `_unstored` for its record's turn (persist, produce, commit stay per video, in order)."""
        if not hasattr(self.analyzer, "analyze_many") or self.stopping.is_set():
            return
        works: list[Submission] = []
        for r in records:
            try:
                w = decode(WorkItem, r.value)
            except SchemaError:
                continue
            if w.video_id not in self._unstored:
                works.append(w)
        self._unstored.update(self.processor.analyze_many(works))
        while len(self._unstored) > 4 * self.config.batch_size:  # bound what a rebalance can strand here
            self._unstored.pop(next(iter(self._unstored)))

    def _process_one(self, r) -> None:
        try:
            work = decode(WorkItem, r.value)
        except SchemaError as e:
            self._dead_letter(
                r,
                e,
                attempts=1,
                stage="worker.decode",
                video_id=video_id_hint(r.value) or (r.key.decode("utf-8", "replace") if r.key else None),
            )
            return
        attempt = 0
        record = self._unstored.pop(work.video_id, None)
        while record is None:
            attempt += 1
            try:
                record = self.processor.analyze(work)
            except Exception as e:  # noqa: BLE001 - every failure is classified below
                kind = classify(e)
                if kind is Failure.STORE:
                    raise StoreUnavailableError(str(e)) from e
                if kind is not Failure.PERMANENT and self.stopping.is_set():
                    raise _Abandoned() from e  # let the next owner retry it
                if kind is Failure.PERMANENT or self._analysis_retry.exhausted(attempt):
                    self._dead_letter(
                        r, e, attempts=attempt, stage="worker.analyze", video_id=work.video_id, uri=work.uri
                    )
                    return
                metrics.RETRIED.labels(kind.value).inc()
                delay = self._analysis_retry.delay(attempt)
                log.warning(
                    "video %s attempt %d failed (%s: %s); retrying in %.1fs",
                    work.video_id,
                    attempt,
                    type(e).__name__,
                    e,
                    delay,
                )
                self.stopping.wait(delay)
        try:
            self.processor.persist(record, work)
            self._publish(record)
            self._flush()
        except StoreUnavailableError:
            if len(self._unstored) < 4 * self.config.batch_size:
                self._unstored[work.video_id] = record
            raise
        except Exception as e:  # noqa: BLE001 - a store refused this record itself (e.g. wrong vector size)
            self._dead_letter(r, e, attempts=attempt or 1, stage="worker.persist", video_id=work.video_id, uri=work.uri)
            return
        metrics.ANALYZED.inc()

    def _flush(self) -> None:
        try:
            with timed("produce"):
                self.producer.flush(timeout=60)
        except Exception as e:  # noqa: BLE001 - the broker is unreachable: this video is not done
            raise StoreUnavailableError(f"flushing produced messages: {e}") from e

    def _publish(self, record: AnalysisRecord) -> None:
        try:
            kk.send(self.producer, self.settings.topic_analyzed, record)
            if record.moderation.status != "clear" and record.moderation.categories:
                kk.send(self.producer, self.settings.topic_flags, FlagMessage.from_record(record))
        except Exception as e:  # noqa: BLE001 - the producer buffer is full or the broker is gone
            raise StoreUnavailableError(f"producing analysis of {record.video_id}: {e}") from e

    def _dead_letter(
        self,
        r,  # a kafka-python ConsumerRecord
        error: BaseException,
        *,
        attempts: int,
        stage: str,
        video_id: str | None,
        uri: str = "",
    ) -> None:
        """The dead letter is durable before the video is marked failed (which also discards an
        upload): a crash in between redelivers the message, which fails again the same way and
        sends a copy with the same `dlq_id`."""
        letter = DeadLetter.of(
            r.value, error, stage=stage, attempts=attempts, dlq_id=dead_letter_id(stage, r.topic, r.partition, r.offset)
        )
        try:
            kk.send_dead_letter(self.producer, self.settings.topic_dlq, letter, video_id)
        except Exception as e:  # noqa: BLE001 - the producer buffer is full or the broker is gone
            raise StoreUnavailableError(f"producing dead letter: {e}") from e
        self._flush()
        if video_id:
            self.processor.mark_failed(video_id, f"{letter.error_type}: {letter.error}", uri)
        metrics.DLQ.labels(stage).inc()
        metrics.FAILED.labels(letter.error_type).inc()
        log.warning("video %s -> DLQ (%s: %s)", video_id, letter.error_type, letter.error)


def run_worker(settings: Settings, analyzer: Analyzer | None = None, config: WorkerConfig | None = None) -> None:
    """`keye worker`: consume `videos.work` until SIGTERM/SIGINT."""
    from analysis.serving import load_analyzer

    config = config or WorkerConfig()
    if config.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(config.metrics_port)
    worker = Worker(settings, analyzer or load_analyzer(settings), config)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, worker.stop)
        signal.signal(signal.SIGINT, worker.stop)
    worker.run()


__all__ = ["Worker", "WorkerConfig", "instance_id_for", "run_worker"]
