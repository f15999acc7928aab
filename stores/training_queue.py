"""The training queue: whether feedback is enough to fine-tune on, a queued run's row, and the Celery
message (Redis, KEYE_REDIS_URL) that hands it to a training worker.

    if due(session, min_new_examples):                 # SQL only: what the streams app checks per event
        run, result = submit(engine, settings, celery_app(settings))   # row queued + a `train` message

Below the apps, and without torch or the training package: the streams app's feedback trigger queues
runs through it, and training.jobs registers the worker's task on the same Celery configuration (the
task name, TASK, and the queue, QUEUE). The message carries only the run id; the configuration lives on
the TrainingRun row, so what ran is always what the row says.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from celery import Celery
from sqlmodel import Session, col, func, select

from service.schemas import FEEDBACK_KINDS, utcnow
from service.settings import Settings
from service.train_config import TrainConfig, TrainConfigError
from stores.db import FeedbackRow, TrainingRun, table_of
from stores.model_versions import ensure_base

SUPERVISED_KINDS = tuple(k for k in FEEDBACK_KINDS if k != "engagement")  # engagement has no corrected answer

QUEUE = "keye.training"
TASK = "keye.training.train"


def due(session: Session, min_new_examples: int) -> bool:
    """Enough unused supervised feedback and no run queued or running."""
    if min_new_examples <= 0:
        return False
    pending = session.exec(
        select(func.count()).select_from(TrainingRun).where(col(TrainingRun.status).in_(("queued", "running")))
    ).one()
    fresh = session.exec(
        select(func.count())
        .select_from(FeedbackRow)
        .where(col(FeedbackRow.used_in_run).is_(None), col(FeedbackRow.kind).in_(SUPERVISED_KINDS))
    ).one()
    return not pending and fresh >= min_new_examples


def queue_run(session: Session, settings: Settings, config: TrainConfig | None = None) -> TrainingRun:
    """A queued run against the active version (committed, so a worker can claim it); without a config,
    KEYE_TRAIN_CONFIG's (what triggered runs use), else the defaults."""
    cfg = config or default_config(settings)
    base = ensure_base(session, settings)
    run = TrainingRun(
        run_id=f"run-{utcnow():%Y%m%d%H%M%S}-{uuid.uuid4().hex[:8]}",
        base_version=base.version,
        status="queued",
        config=cfg.to_dict(),
        metrics={},
        created_at=utcnow(),
    )
    session.add(run)
    session.commit()
    session.refresh(run)
    return run


def default_config(settings: Settings) -> TrainConfig:
    """KEYE_TRAIN_CONFIG (a JSON file of TrainConfig fields), else TrainConfig's defaults."""
    if settings.train_config is None:
        return TrainConfig()
    try:
        raw = json.loads(Path(settings.train_config).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise TrainConfigError(f"KEYE_TRAIN_CONFIG {settings.train_config}: {e}") from None
    return TrainConfig.from_dict(raw)


def fail_unsent(session: Session, run_id: str, reason: str) -> None:
    """A queued run whose job never reached a worker: failed, with the reason."""
    session.execute(
        sa.update(table_of(TrainingRun))
        .where(col(TrainingRun.run_id) == run_id, col(TrainingRun.status) == "queued")
        .values(status="failed", error=reason, finished_at=utcnow())
    )
    session.commit()


def celery_app(settings: Settings, queue: str = QUEUE) -> Celery:
    """The Celery app of training jobs, without tasks: what a sender needs, and what the worker
    (training.jobs) registers the `train` task on. Redis is broker and result store."""
    app = Celery("keye.training", broker=settings.redis_url, backend=settings.redis_url)
    app.conf.update(
        task_default_queue=queue,
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=7 * 24 * 3600,
        broker_connection_retry_on_startup=True,
        task_track_started=True,
        # a broker that is down fails a send in seconds, not minutes of retries
        broker_connection_timeout=3,
        broker_transport_options={"socket_connect_timeout": 3},
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0},
        result_backend_transport_options={
            "retry_policy": {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1.0}
        },
    )
    return app


def submit(
    engine: sa.Engine, settings: Settings, app: Celery, config: TrainConfig | None = None
) -> tuple[TrainingRun, Any]:
    """Queue a run and send its job on `app`'s queue; returns (run row, the job's AsyncResult). A job that
    cannot be sent fails its run (with the reason) so it never blocks later triggers as a forever-queued run."""
    with Session(engine) as session:
        run = queue_run(session, settings, config)
        session.expunge(run)
    try:
        result = app.send_task(TASK, args=[run.run_id], queue=app.conf.task_default_queue)
    except Exception as e:  # noqa: BLE001 - any broker failure: record it on the run, then raise
        with Session(engine) as session:
            fail_unsent(session, run.run_id, f"could not send the job to the broker: {e}")
        raise
    return run, result
