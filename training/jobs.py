"""Celery jobs: fine-tuning runs executed by a worker, with Redis (KEYE_REDIS_URL) as broker and result store.

    celery -A training.jobs worker -Q keye.training --pool solo     # or `keye train worker`
    run = submit(settings, TrainConfig(steps=200))                   # queued row + a `train` message
    maybe_trigger(settings, min_new_examples=200)                    # what the feedback stream calls

The message carries only the run id; the configuration lives on the TrainingRun row, so what
ran is always what the row says. Late acknowledgement plus the run's atomic claim make a
redelivered message harmless: the second delivery finds the run no longer queued.
"""

from __future__ import annotations

from celery import Celery
from sqlalchemy import Engine
from sqlmodel import Session

from service.settings import Settings, get_settings
from stores.db import migrated_engine
from stores.training_queue import due
from training.errors import TrainingError
from training.runner import execute_run, fail_unsent, queue_run, summary
from training.sft import TrainConfig

QUEUE = "keye.training"
TASK = "keye.training.train"


class RunFailed(TrainingError):
    """The run ended as failed (its row holds the error); raised so the job's state says FAILURE."""


def make_app(settings: Settings | None = None, queue: str = QUEUE) -> Celery:
    s = settings or get_settings()
    app = Celery("keye.training", broker=s.redis_url, backend=s.redis_url)
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

    app.task(name=TASK, shared=False)(train)  # not shared: each app keeps its own registration
    return app


def train(run_id: str) -> dict:
    """The `train` job: execute one queued run. Settings are read where the job runs (the worker's
    environment), not where it was sent."""
    run = execute_run(Settings(), run_id)
    if run.status != "succeeded":
        raise RunFailed(f"training run {run_id} failed: {run.error}")
    return summary(run)


app = make_app()


def submit(settings: Settings, config: TrainConfig | None = None, celery_app: Celery | None = None):
    """Queue a run and send its job; returns (run row, AsyncResult). A job that cannot be sent
    fails its run (with the reason) so it never blocks later triggers as a forever-queued run."""
    with migrated_engine(settings) as engine:
        return _submit(engine, settings, config, celery_app)


def _submit(engine: Engine, settings: Settings, config: TrainConfig | None, celery_app: Celery | None):
    with Session(engine) as session:
        run = queue_run(session, settings, config)
        session.expunge(run)
    target = celery_app or app
    try:
        result = target.send_task(TASK, args=[run.run_id], queue=target.conf.task_default_queue)
    except Exception as e:  # noqa: BLE001 - any broker failure: record it on the run, then raise
        with Session(engine) as session:
            fail_unsent(session, run.run_id, f"could not send the job to the broker: {e}")
        raise
    return run, result


def maybe_trigger(
    settings: Settings, min_new_examples: int, config: TrainConfig | None = None, celery_app: Celery | None = None
):
    """Submit a run when at least `min_new_examples` supervised events are unused and no run is pending."""
    with migrated_engine(settings) as engine:
        with Session(engine) as session:
            if not due(session, min_new_examples):
                return None
        return _submit(engine, settings, config, celery_app)
