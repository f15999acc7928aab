"""When feedback is enough to fine-tune on: a light check (SQL only, no torch) the streams app runs
after every stored event; `training.jobs.submit` does the heavy part only when it says so."""

from __future__ import annotations

from sqlmodel import Session, func, select

from stores.db import FeedbackRow, TrainingRun

SUPERVISED_KINDS = ("moderation_decision", "tag_correction", "summary_rating", "summary_edit")


def due(session: Session, min_new_examples: int) -> bool:
    """Enough unused supervised feedback and no run queued or running."""
    if min_new_examples <= 0:
        return False
    pending = session.exec(
        select(func.count()).select_from(TrainingRun).where(TrainingRun.status.in_(("queued", "running")))
    ).one()
    fresh = session.exec(
        select(func.count())
        .select_from(FeedbackRow)
        .where(FeedbackRow.used_in_run.is_(None), FeedbackRow.kind.in_(SUPERVISED_KINDS))
    ).one()
    return not pending and fresh >= min_new_examples
