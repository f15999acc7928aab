"""Celery jobs: fine-tuning runs executed by a worker, with Redis (KEYE_REDIS_URL) as broker and result store.

    celery -A training.jobs worker -Q keye.training --pool solo     # or `keye train worker`
    run = submit(settings, TrainConfig(steps=200))                   # queued row + a `train` message
    maybe_trigger(settings, min_new_examples=200)                    # the feedback trigger's check and submit

Queueing and sending live below the apps (stores/training_queue.py: the row, the Celery configuration,
the task's name and queue), so the streams app's trigger sends the same message without this module;
here the worker's app registers the task that executes it. Late acknowledgement plus the run's atomic
claim make a redelivered message harmless: the second delivery finds the run no longer queued.
"""

from __future__ import annotations

from celery import Celery
from sqlmodel import Session

from service.settings import Settings, get_settings
from service.train_config import TrainConfig, TrainingError
from stores import training_queue
from stores.db import migrated_engine
from training.runner import execute_run, summary


class RunFailed(TrainingError):
    """The run ended as failed (its row holds the error); raised so the job's state says FAILURE."""


def make_app(settings: Settings | None = None, queue: str = training_queue.QUEUE) -> Celery:
    app = training_queue.celery_app(settings or get_settings(), queue)
    app.task(name=training_queue.TASK, shared=False)(train)  # not shared: each app keeps its own registration
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
    """Queue a run and send its job (stores.training_queue.submit); returns (run row, AsyncResult)."""
    with migrated_engine(settings) as engine:
        return training_queue.submit(engine, settings, celery_app or app, config)


def maybe_trigger(
    settings: Settings, min_new_examples: int, config: TrainConfig | None = None, celery_app: Celery | None = None
):
    """Submit a run when at least `min_new_examples` supervised events are unused and no run is pending."""
    with migrated_engine(settings) as engine:
        with Session(engine) as session:
            if not training_queue.due(session, min_new_examples):
                return None
        return training_queue.submit(engine, settings, celery_app or app, config)
