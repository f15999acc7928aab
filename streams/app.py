"""The faust-streaming app (`keye streams`): gate, aggregates, feedback.

- gate (`videos.ingest`): validate, drop duplicates by video_id (changelog-backed table
  `accepted`, co-partitioned with the ingest topic because both are keyed by video_id), record the
  video as queued in SQL, forward to `videos.work`; invalid messages go to `videos.dlq` and, when
  they name a video, mark it failed.
- aggregates (`videos.analyzed`): fan out one event per (hour, tag), (day, tag) and creator to an
  internal topic keyed by that aggregate, so each aggregate lives in exactly one partition; the
  counting agent keeps, per aggregate, the set of analysis ids counted (changelog-backed table
  `aggregates`), so redelivery never counts twice; absolute counts are upserted into SQL
  (`tag_trends`, `creator_flag_rates`) where the API reads them.
- feedback (`feedback.events`): validate (schema + kind rules), store once per event_id as a
  training example (SQL insert-or-ignore); KEYE_TRAIN_TRIGGER_EXAMPLES new ones queue a
  fine-tuning run (`_TrainingTrigger`).

Offsets are ours, not faust's (`streams/offsets.py`: faust can commit past records its agents never
saw): the source topics are not acknowledged to faust, and an event counts as done, for the
commit, only once its effects are durable. Every agent catches its failures: a database that is
down is waited for (retried with backoff, the partition does not advance), and any other failure
goes to the DLQ with the reason. Each forward is awaited until the broker acknowledged it, before
the table marks it done and before its offset can be committed: a crash in between forwards it
again (the sinks are idempotent), never drops it. Tables use the in-memory store and are rebuilt
from their changelog topics at start.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import faust
import sqlalchemy as sa
from sqlmodel import Session

from service.kafka import DEFAULT_PARTITIONS
from service.retry import RetryPolicy
from service.schemas import (
    AnalysisRecord,
    DeadLetter,
    FeedbackEvent,
    SchemaError,
    Submission,
    WorkItem,
    check_feedback,
    dead_letter_id,
    decode,
    encode,
    key_of,
    utcnow,
    video_id_hint,
)
from service.settings import Settings
from stores import db, training_queue
from streams import quiet
from streams.offsets import OffsetLedger

log = logging.getLogger("keye.streams")
P = ParamSpec("P")
T = TypeVar("T")

WINDOWS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
SESSION_TIMEOUT_S = 10.0
# A database that is down is waited for as long as it takes (the partition waits meanwhile).
DATABASE_OUTAGE = RetryPolicy(
    base_s=0.5, cap_s=30.0, retry_on=(sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DisconnectionError)
)


def window_start(at: datetime, window: str) -> datetime:
    at = at.astimezone(UTC)
    if window == "hour":
        return at.replace(minute=0, second=0, microsecond=0)
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


def create_app(
    settings: Settings,
    app_id: str = "keye-streams",
    *,
    partitions: int = DEFAULT_PARTITIONS,
    engine: sa.Engine | None = None,
    session_timeout_s: float = SESSION_TIMEOUT_S,
    instance_id: str | None = None,
) -> faust.App:
    brokers = [f"kafka://{h.strip()}" for h in settings.kafka_bootstrap.split(",")]
    # faust keeps per-app state in a folder; ours, not the working directory.
    datadir = Path(settings.data_dir) / "streams" / app_id
    datadir.mkdir(parents=True, exist_ok=True)
    # A killed member keeps its partitions until its session times out (faust's default: 60 s), so
    # a shorter session lets a restarted app start sooner; a static member (instance_id) takes its
    # partitions back at once.
    app = faust.App(
        app_id,
        broker=brokers,
        store="memory://",
        topic_partitions=partitions,
        web_enabled=False,
        datadir=str(datadir),
        producer_enable_idempotence=True,
        producer_acks=-1,
        topic_allow_declare=True,
        broker_session_timeout=session_timeout_s,
        consumer_group_instance_id=instance_id,
    )
    engine = engine or db.engine_from(settings)

    def raw_topic(name: str, **kw: Any) -> faust.TopicT:
        return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw", **kw)

    # acks=False: faust does not track these offsets; the ledger commits them (module docstring)
    ingest, work = raw_topic(settings.topic_ingest, acks=False), raw_topic(settings.topic_work)
    analyzed, feedback = raw_topic(settings.topic_analyzed, acks=False), raw_topic(settings.topic_feedback, acks=False)
    dlq = raw_topic(settings.topic_dlq)
    fanout = raw_topic(f"{app_id}-aggregate-events", internal=True, partitions=partitions, acks=False)
    ledger = OffsetLedger(
        app, settings.kafka_bootstrap, app_id, [t.get_topic_name() for t in (ingest, analyzed, feedback, fanout)]
    )

    @app.timer(1.0)
    async def commit_offsets() -> None:
        await ledger.commit()

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode types handlers as *args; this signal sends one set
    async def forget_revoked(sender: faust.App, revoked: set, **_: Any) -> None:
        ledger.reset(revoked)

    accepted = app.Table("accepted", default=str, partitions=partitions)
    aggregates = app.Table("aggregates", default=dict, partitions=partitions)

    async def sql(what: str, fn: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a write, `fn(session, *args, **kwargs)`, in a thread. A database that is down is retried
        with backoff for as long as it takes (the partition waits: nothing is acknowledged past it); other
        errors propagate. The arguments are bound here, not captured: a caller's loop variables cannot
        change under a retry."""

        def waiting(e: BaseException, failures: int, delay: float) -> None:
            log.warning("%s: database unavailable (%s); retry %d in %.1fs", what, e.__class__.__name__, failures, delay)

        def write() -> T:
            return _in_session(engine, fn, *args, **kwargs)

        return await DATABASE_OUTAGE.acall(lambda: asyncio.to_thread(write), on_retry=waiting)

    async def send(topic: faust.TopicT, key: str, value: bytes, headers: dict[str, bytes] | None = None) -> None:
        fut = await topic.send(key=key_of(key), value=value, headers=headers)
        await fut  # the broker has it before we move on (and before the ledger may commit the offset)

    async def dead_letter(event: faust.EventT, error: BaseException, stage: str, video_id: str | None) -> None:
        raw, m = event.value, event.message
        dlq_id = dead_letter_id(stage, m.topic, m.partition, m.offset)
        letter = DeadLetter.of(raw, error, stage=stage, dlq_id=dlq_id)
        log.warning("%s: video %s -> DLQ (%s: %s)", stage, video_id, letter.error_type, letter.error)
        await send(dlq, video_id or "unknown", encode(letter), {"dlq_id": dlq_id.encode()})
        if video_id and stage == "streams.gate":
            reason = f"{letter.error_type}: {letter.error}"
            try:
                await sql(f"mark {video_id} failed", db.mark_failed, video_id, reason)
            except sa.exc.SQLAlchemyError as e:
                log.error("could not mark video %s failed: %s", video_id, e)

    def key_text(event: faust.EventT) -> str | None:
        return event.key.decode("utf-8", "replace") if isinstance(event.key, bytes) else None

    @app.agent(ingest)
    async def gate(stream: faust.StreamT) -> None:
        async for event in stream.events():
            raw = event.value
            hint = video_id_hint(raw) or key_text(event)
            try:
                sub = decode(Submission, raw)
                if accepted[sub.video_id]:
                    log.info("gate: duplicate submission of video %s dropped", sub.video_id)
                else:
                    item = WorkItem(**sub.model_dump(), accepted_at=utcnow())
                    await sql(f"queue {sub.video_id}", db.record_submission, sub)
                    await send(work, sub.video_id, encode(item))
                    accepted[sub.video_id] = item.accepted_at.isoformat()
                    log.info("gate: video %s accepted", sub.video_id)
            except Exception as e:  # noqa: BLE001 - one bad message must not stop the partition
                await dead_letter(event, e, "streams.gate", hint)
            await ledger.mark_done(event)

    @app.agent(analyzed)
    async def fan_out(stream: faust.StreamT) -> None:
        async for event in stream.events():
            raw = event.value
            try:
                r = decode(AnalysisRecord, raw)
                mark = json.dumps({"analysis_id": r.analysis_id, "flagged": r.moderation.status != "clear"}).encode()
                for window in WINDOWS:
                    start = window_start(r.created_at, window).isoformat()
                    for label in sorted({t.label for t in r.tags}):
                        await send(fanout, f"tag|{window}|{start}|{label}", mark)
                if r.creator_id:
                    await send(fanout, f"creator|{r.creator_id}", mark)
            except Exception as e:  # noqa: BLE001 - one bad message must not stop the partition
                await dead_letter(event, e, "streams.aggregates", video_id_hint(raw) or key_text(event))
            await ledger.mark_done(event)

    @app.agent(fanout)
    async def count(stream: faust.StreamT) -> None:
        async for event in stream.events():
            key, raw = key_text(event) or "", event.value
            try:
                mark = json.loads(raw)
                seen = dict(aggregates[key])
                if mark["analysis_id"] not in seen:  # else redelivered: already counted
                    seen[mark["analysis_id"]] = bool(mark["flagged"])
                    await sql(f"aggregate {key}", _write_aggregate, key, seen)
                    aggregates[key] = seen
            except Exception as e:  # noqa: BLE001 - one bad message must not stop the partition
                await dead_letter(event, e, "streams.count", None)
            await ledger.mark_done(event)

    @app.agent(feedback)
    async def feedback_agent(stream: faust.StreamT) -> None:
        async for event in stream.events():
            raw = event.value
            try:
                fe = check_feedback(decode(FeedbackEvent, raw))
                new = await sql(f"feedback {fe.event_id}", db.write_feedback, fe)
                log.info(
                    "feedback %s (%s, video %s) %s",
                    fe.event_id,
                    fe.kind,
                    fe.video_id,
                    "stored" if new else "was already stored",
                )
                if new and settings.train_trigger_examples > 0:
                    trigger.poke()
            except Exception as e:  # noqa: BLE001 - one bad message must not stop the partition
                await dead_letter(event, e, "streams.feedback", video_id_hint(raw) or key_text(event))
            await ledger.mark_done(event)

    trigger = _TrainingTrigger(settings, engine)
    return app


class _TrainingTrigger:
    """Enough new feedback examples queue a fine-tuning run (one pending at a time).

    The check runs beside the feedback agent, never in its way: one check at a time, in a thread,
    and after a failure (broker down: the run row records why) none for a minute. Queueing needs
    no training code (stores.training_queue: the row, and the Celery message a training worker
    takes), so the streams process never loads torch."""

    RETRY_AFTER_S = 60.0

    def __init__(self, settings: Settings, engine: sa.Engine) -> None:
        self.settings, self.engine = settings, engine
        self.jobs = training_queue.celery_app(settings)  # connects on the first send, not here
        self.running: asyncio.Task | None = None
        self.again = False  # an event arrived during a check: check once more after it
        self.not_before = 0.0

    def poke(self) -> None:
        loop = asyncio.get_running_loop()
        if self.running is not None and not self.running.done():
            self.again = True
        elif loop.time() >= self.not_before:
            self.again = False
            self.running = loop.create_task(asyncio.to_thread(self._check))
            self.running.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        if task.cancelled() or task.exception() is not None:
            if not task.cancelled():
                log.error("could not queue a training run: %s", task.exception())
            self.not_before = asyncio.get_running_loop().time() + self.RETRY_AFTER_S
        elif self.again:
            self.poke()

    def _check(self) -> None:
        with Session(self.engine) as session:
            if not training_queue.due(session, self.settings.train_trigger_examples):
                return
        run, _ = training_queue.submit(self.engine, self.settings, self.jobs)
        log.info(
            "queued training run %s: %d or more new feedback examples", run.run_id, self.settings.train_trigger_examples
        )


def _in_session(engine: sa.Engine, fn: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
    with Session(engine) as session:
        out = fn(session, *args, **kwargs)
        session.commit()
        return out


def _write_aggregate(session: Session, key: str, seen: dict[str, bool]) -> None:
    kind, _, rest = key.partition("|")
    now = utcnow()
    if kind == "tag":
        window, start, label = rest.split("|", 2)
        db.upsert(
            session,
            db.TagTrend,
            [
                dict(
                    window=window,
                    window_start=datetime.fromisoformat(start),
                    label=label,
                    count=len(seen),
                    updated_at=now,
                )
            ],
            keys=["window", "window_start", "label"],
            update=["count", "updated_at"],
        )
    elif kind == "creator":
        flagged = sum(seen.values())
        db.upsert(
            session,
            db.CreatorFlagRate,
            [dict(creator_id=rest, analyzed=len(seen), flagged=flagged, rate=flagged / len(seen), updated_at=now)],
            keys=["creator_id"],
            update=["analyzed", "flagged", "rate", "updated_at"],
        )
    else:
        raise SchemaError(f"unknown aggregate key {key!r}")


def run_streams(
    settings: Settings,
    app_id: str = "keye-streams",
    loglevel: str = "info",
    *,
    session_timeout_s: float = SESSION_TIMEOUT_S,
    instance_id: str | None = None,
) -> None:
    """`keye streams`: run the faust worker until SIGTERM/SIGINT (creates topics and migrates SQL first)."""
    from service.kafka import ensure_topics, partition_count

    engine = db.engine_from(settings)
    db.migrate(engine)
    ensure_topics(settings)
    _explain_wait(settings, app_id, session_timeout_s, instance_id)
    # Tables are co-partitioned with the ingest topic: same partition count.
    app = create_app(
        settings,
        app_id,
        engine=engine,
        partitions=partition_count(settings, settings.topic_ingest),
        session_timeout_s=session_timeout_s,
        instance_id=instance_id,
    )
    worker = _Worker(app, loglevel=loglevel)
    worker.execute_from_commandline()


class _Worker(faust.Worker):
    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        quiet.install(logger)  # after faust configured the handlers: a broker outage is not 75 lines a second


def _explain_wait(settings: Settings, group: str, session_timeout_s: float, instance_id: str | None) -> None:
    """Say why partitions may take a while: members of the group from before (a killed process is
    one until its session times out) must leave or time out before the group rebalances."""
    from kafka import KafkaAdminClient

    try:
        admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=15000)
        try:
            members = admin.describe_groups([group])[group].get("members") or []
        finally:
            admin.close()
    except Exception as e:  # noqa: BLE001 - only an explanation; the join itself reports real faults
        log.info("could not describe consumer group %s: %s", group, e)
        return
    if not members:
        return
    how = (
        f"as static member {instance_id!r} this process takes over that member's partitions at once"
        if instance_id
        else "a restart with --instance-id (KEYE_STREAMS_INSTANCE_ID) would take them over at once"
    )
    log.warning(
        "consumer group %s still has %d member(s) from before: a killed process stays one until its "
        "session times out (%.0fs here), and partitions are assigned only then; %s",
        group,
        len(members),
        session_timeout_s,
        how,
    )
