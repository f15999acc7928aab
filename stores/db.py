"""SQL tables (sqlmodel), the engine from settings, and idempotent writes.

SQLite file by default, PostgreSQL by URL. The schema is owned by the alembic migrations in
`stores/migrations/` (run by `migrate()` at startup), never by `create_all`. Every write a
redelivered message can repeat is an upsert on a natural key, so at-least-once delivery never
creates a second row.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import JSON, Column, Field, Session, SQLModel, col, select

from service.schemas import AnalysisRecord, FeedbackEvent, Submission, utcnow
from service.settings import Settings


def _ts(**kw: Any) -> Any:
    return Field(sa_column=Column(sa.DateTime(timezone=True), **kw))


class Video(SQLModel, table=True):
    __tablename__ = "videos"
    video_id: str = Field(primary_key=True, max_length=128)
    uri: str
    title: str | None = None
    description: str | None = None
    hashtags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    creator_id: str | None = Field(default=None, index=True, max_length=128)
    language: str | None = Field(default=None, max_length=35)
    status: str = Field(default="queued", index=True, max_length=16)  # queued | analyzed | failed
    error: str | None = None
    submitted_at: datetime | None = _ts(nullable=True)
    updated_at: datetime = _ts(nullable=False)


class Analysis(SQLModel, table=True):
    __tablename__ = "analyses"
    __table_args__ = (sa.UniqueConstraint("video_id", "model_version", name="uq_analyses_video_model"),)
    analysis_id: str = Field(primary_key=True, max_length=36)
    video_id: str = Field(index=True, max_length=128)
    model_version: str = Field(max_length=128)
    prompt_version: str = Field(max_length=64)
    moderation_status: str = Field(index=True, max_length=16)
    max_severity: int = 0
    summary_short: str = ""
    duration_s: float = 0.0
    record: dict = Field(sa_column=Column(JSON, nullable=False))  # the full analysis record, minus the vector
    created_at: datetime = _ts(nullable=False)


class Tag(SQLModel, table=True):
    __tablename__ = "tags"
    analysis_id: str = Field(primary_key=True, max_length=36)
    label: str = Field(primary_key=True, max_length=200)
    video_id: str = Field(index=True, max_length=128)
    score: float
    start_s: float | None = None
    end_s: float | None = None


class ModerationFlag(SQLModel, table=True):
    __tablename__ = "moderation_flags"
    analysis_id: str = Field(primary_key=True, max_length=36)
    category: str = Field(primary_key=True, max_length=64)
    video_id: str = Field(index=True, max_length=128)
    severity: int = Field(index=True)
    confidence: float
    evidence: list[dict] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    review_status: str = Field(
        default="pending", index=True, max_length=16
    )  # pending | confirmed | cleared | escalated


class Review(SQLModel, table=True):
    __tablename__ = "reviews"
    id: int | None = Field(default=None, primary_key=True)
    analysis_id: str = Field(index=True, max_length=36)
    video_id: str = Field(index=True, max_length=128)
    category: str | None = Field(default=None, max_length=64)
    decision: str = Field(max_length=16)  # confirm | clear | escalate
    reviewer: str = Field(max_length=128)
    note: str | None = None
    at: datetime = _ts(nullable=False)


class FeedbackRow(SQLModel, table=True):
    """A validated, deduplicated feedback event: one training example."""

    __tablename__ = "feedback_events"
    event_id: str = Field(primary_key=True, max_length=128)
    video_id: str = Field(index=True, max_length=128)
    kind: str = Field(index=True, max_length=32)
    actor: str = Field(max_length=128)
    payload: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    at: datetime = _ts(nullable=False)
    stored_at: datetime = _ts(nullable=False)
    used_in_run: str | None = Field(default=None, index=True, max_length=64)


class ModelVersion(SQLModel, table=True):
    __tablename__ = "model_versions"
    version: str = Field(primary_key=True, max_length=128)
    path: str
    base_version: str | None = Field(default=None, max_length=128)
    status: str = Field(default="candidate", max_length=16)  # candidate | active | retired
    metrics: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _ts(nullable=False)
    promoted_at: datetime | None = _ts(nullable=True)


class TrainingRun(SQLModel, table=True):
    __tablename__ = "training_runs"
    run_id: str = Field(primary_key=True, max_length=64)
    base_version: str = Field(max_length=128)
    output_version: str | None = Field(default=None, max_length=128)
    status: str = Field(default="queued", index=True, max_length=16)  # queued | running | succeeded | failed
    examples: int = 0
    config: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    metrics: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    error: str | None = None
    created_at: datetime = _ts(nullable=False)
    finished_at: datetime | None = _ts(nullable=True)


class TagTrend(SQLModel, table=True):
    """Distinct analyses carrying a tag per time window (written by the streams app)."""

    __tablename__ = "tag_trends"
    window: str = Field(primary_key=True, max_length=8)  # hour | day
    window_start: datetime = Field(sa_column=Column(sa.DateTime(timezone=True), primary_key=True))
    label: str = Field(primary_key=True, max_length=200)
    count: int
    updated_at: datetime = _ts(nullable=False)


class CreatorFlagRate(SQLModel, table=True):
    __tablename__ = "creator_flag_rates"
    creator_id: str = Field(primary_key=True, max_length=128)
    analyzed: int
    flagged: int
    rate: float
    updated_at: datetime = _ts(nullable=False)


# ---- engine and migrations ---------------------------------------------------------------------------


def make_engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn: Any, _record: Any) -> None:
            # WAL lets the worker, the streams app and the API share one file.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")

        return engine
    return sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})


def engine_from(settings: Settings) -> sa.Engine:
    return make_engine(settings.resolved_database_url)


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest revision of every branch (safe from many processes at once)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Serialize concurrent startups; the lock ends with the transaction.
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(7413001)"))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "heads")  # every branch (the API owns one)


@contextmanager
def migrated_engine(settings: Settings) -> Iterator[sa.Engine]:
    """An engine on the migrated database, disposed on the way out."""
    engine = engine_from(settings)
    try:
        migrate(engine)
        yield engine
    finally:
        engine.dispose()


# ---- the model to serve ------------------------------------------------------------------------------


def model_version_name(model: str | Path) -> str:
    """A configured model's version name: a checkpoint folder's name, or the preset's."""
    return Path(model).name if Path(model).is_dir() else str(model)


# Built once, and two columns rather than an ORM row: every search asks (~0.6 ms less per call).
_ACTIVE = select(ModelVersion.version, ModelVersion.path).where(ModelVersion.status == "active")


def serving_model(session: Session, settings: Settings) -> tuple[str, str]:
    """(version, checkpoint) that workers and the API serve: the registry's active version (set by
    `keye train promote` / `rollback`), else KEYE_MODEL."""
    row = session.exec(_ACTIVE).first()
    if row is not None:
        return row[0], row[1]
    return model_version_name(settings.model), str(settings.model)


# ---- idempotent writes -------------------------------------------------------------------------------


def table_of(model: type[SQLModel]) -> sa.Table:
    """A table model's Core table, for the statements that bypass the ORM (bulk insert, update, delete)."""
    return model.__table__  # type: ignore[attr-defined]  # SQLModel sets it on table=True classes; its stubs omit it


def upsert(
    session: Session, model: type[SQLModel], rows: list[dict], keys: list[str], update: list[str] | None = None
) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE (or DO NOTHING when `update` is empty)."""
    if not rows:
        return
    table = table_of(model)
    dialect = session.get_bind().dialect.name
    stmt: postgresql.Insert | sqlite.Insert
    if dialect == "postgresql":
        stmt = postgresql.insert(table).values(rows)
    elif dialect == "sqlite":
        stmt = sqlite.insert(table).values(rows)
    else:
        raise NotImplementedError(f"upsert is not implemented for {dialect}; use SQLite or PostgreSQL")
    if update:
        stmt = stmt.on_conflict_do_update(index_elements=keys, set_={c: stmt.excluded[c] for c in update})
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=keys)
    session.execute(stmt)


def record_submission(session: Session, s: Submission) -> None:
    """A queued video; a video that is already known keeps its status."""
    upsert(
        session,
        Video,
        [
            dict(
                video_id=s.video_id,
                uri=s.uri,
                title=s.title,
                description=s.description,
                hashtags=list(s.hashtags),
                creator_id=s.creator_id,
                language=s.language,
                status="queued",
                submitted_at=s.submitted_at,
                updated_at=utcnow(),
            )
        ],
        keys=["video_id"],
    )


def mark_failed(session: Session, video_id: str, reason: str, uri: str = "") -> None:
    """Failed with a reason, unless an analysis already succeeded (a late duplicate must not undo it)."""
    now = utcnow()
    upsert(
        session,
        Video,
        [dict(video_id=video_id, uri=uri, hashtags=[], status="failed", error=reason[:2000], updated_at=now)],
        keys=["video_id"],
    )
    session.execute(
        sa.update(table_of(Video))
        .where(col(Video.video_id) == video_id, col(Video.status) != "analyzed")
        .values(status="failed", error=reason[:2000], updated_at=now)
    )


def write_analysis(session: Session, r: AnalysisRecord, submission: Submission | None = None) -> None:
    """One row per (video_id, model_version) plus its tags and flags; replaying it changes nothing."""
    if submission is not None:
        record_submission(session, submission)
    body = r.model_dump(mode="json", exclude={"embedding"})
    upsert(
        session,
        Analysis,
        [
            dict(
                analysis_id=r.analysis_id,
                video_id=r.video_id,
                model_version=r.model_version,
                prompt_version=r.prompt_version,
                moderation_status=r.moderation.status,
                max_severity=r.moderation.max_severity,
                summary_short=r.summary.short,
                duration_s=r.duration_s,
                record=body,
                created_at=r.created_at,
            )
        ],
        keys=["analysis_id"],
        update=["prompt_version", "moderation_status", "max_severity", "summary_short", "duration_s", "record"],
    )
    session.execute(sa.delete(table_of(Tag)).where(col(Tag.analysis_id) == r.analysis_id))
    upsert(
        session,
        Tag,
        [
            dict(
                analysis_id=r.analysis_id,
                label=t.label,
                video_id=r.video_id,
                score=t.score,
                start_s=t.start_s,
                end_s=t.end_s,
            )
            for t in _unique_tags(r)
        ],
        keys=["analysis_id", "label"],
    )
    upsert(
        session,
        ModerationFlag,
        [
            dict(
                analysis_id=r.analysis_id,
                category=c.category,
                video_id=r.video_id,
                severity=c.severity,
                confidence=c.confidence,
                evidence=[e.model_dump() for e in c.evidence],
            )
            for c in r.moderation.categories
        ],
        keys=["analysis_id", "category"],
        update=["severity", "confidence", "evidence"],
    )
    session.execute(
        sa.update(table_of(Video))
        .where(col(Video.video_id) == r.video_id)
        .values(status="analyzed", error=None, updated_at=utcnow())
    )


def write_feedback(session: Session, e: FeedbackEvent) -> bool:
    """Store one feedback event as a training example; False when its event_id was already stored."""
    exists = session.get(FeedbackRow, e.event_id) is not None
    upsert(
        session,
        FeedbackRow,
        [
            dict(
                event_id=e.event_id,
                video_id=e.video_id,
                kind=e.kind,
                actor=e.actor,
                payload=e.payload,
                at=e.at,
                stored_at=utcnow(),
            )
        ],
        keys=["event_id"],
    )
    return not exists


def _unique_tags(r: AnalysisRecord) -> list:
    best: dict[str, Any] = {}
    for t in r.tags:
        if t.label not in best or t.score > best[t.label].score:
            best[t.label] = t
    return list(best.values())
