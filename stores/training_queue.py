"""Whether feedback is enough to fine-tune on: the light check (SQL only, no torch) the streams app runs
after every stored event; `training.jobs` queues the run only when it says so. Below both apps, so the
streams app never imports training for it."""

from __future__ import annotations

from sqlmodel import Session, col, func, select

from service.schemas import FEEDBACK_KINDS
from stores.db import FeedbackRow, TrainingRun

SUPERVISED_KINDS = tuple(k for k in FEEDBACK_KINDS if k != "engagement")  # engagement has no corrected answer


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
