"""The active model version, and KEYE_MODEL registered as the first one: what a queued run trains from.

Below the apps so that queueing a run (stores/training_queue.py) names its base version without the
training package; the registry's promotion and rollback (training/registry.py) build on the same two.
"""

from __future__ import annotations

from sqlmodel import Session, select

from service.schemas import utcnow
from service.settings import Settings
from stores.db import ModelVersion, model_version_name


def active_version(session: Session, lock: bool = False) -> ModelVersion | None:
    q = select(ModelVersion).where(ModelVersion.status == "active")
    return session.exec(q.with_for_update() if lock else q).first()


def ensure_base(session: Session, settings: Settings) -> ModelVersion:
    """The active version, registering KEYE_MODEL as active when the registry is empty."""
    active = active_version(session)
    if active is not None:
        return active
    name = model_version_name(settings.model)
    row = session.get(ModelVersion, name)
    if row is None:
        row = ModelVersion(
            version=name,
            path=str(settings.model),
            status="active",
            metrics={},
            created_at=utcnow(),
            promoted_at=utcnow(),
        )
        session.add(row)
        session.flush()
    return row
