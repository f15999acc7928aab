"""Reports in SQL: every evaluation of a model version is kept (table `eval_reports`, migration 0002)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import JSON, Column, Field, Session, SQLModel, col, select

from service.schemas import utcnow


class EvalReport(SQLModel, table=True):
    __tablename__ = "eval_reports"
    id: int | None = Field(default=None, primary_key=True)
    model_version: str = Field(index=True, max_length=128)
    dataset_id: str = Field(index=True, max_length=32)
    dataset_name: str = Field(max_length=256)
    report: dict = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(sa_column=Column(sa.DateTime(timezone=True), nullable=False))


def save_report(session: Session, model_version: str, report: dict) -> EvalReport:
    """Keep `report` as one of `model_version`'s (the caller commits)."""
    d = report["dataset"]
    row = EvalReport(
        model_version=model_version,
        dataset_id=d["id"],
        dataset_name=d["name"][:256],
        report=report,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row


def reports_of(session: Session, model_version: str) -> list[EvalReport]:
    """Newest first."""
    q = select(EvalReport).where(EvalReport.model_version == model_version)
    return list(session.exec(q.order_by(sa.desc(col(EvalReport.created_at)), sa.desc(col(EvalReport.id)))))


def latest(session: Session, model_version: str, dataset_id: str | None = None) -> EvalReport | None:
    return next((r for r in reports_of(session, model_version) if dataset_id in (None, r.dataset_id)), None)


def comparable(session: Session, candidate: str, base: str) -> tuple[EvalReport, EvalReport] | None:
    """The candidate's newest report and the base's newest on the same labels, if both exist."""
    for row in reports_of(session, candidate):
        other = latest(session, base, row.dataset_id)
        if other is not None:
            return row, other
    return None
