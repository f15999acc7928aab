"""Model versions: candidates from fine-tuning runs, one active version, promotion and rollback.

States: candidate -> active -> retired. Exactly one version is active once any is: promoting a
version retires the one that was active; rolling back retires the active version and re-activates
the one promoted before it (never one that was itself rolled back, so repeated rollbacks walk back
through history). Promotion is gated by evaluation (evaluation/gate.py): the version must have a
report on the same labelled set as the active version and be no worse on any headline metric by
more than the tolerance, unless forced; the gate's verdict (and whether it was forced) stays in
the version's metrics under "promotion". The configured base model (KEYE_MODEL) is registered as the first active version
the first time the registry is used, so the first promotion can be rolled back to it. Row locks
(PostgreSQL) keep two operators from activating two versions at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from service.schemas import utcnow
from stores.db import ModelVersion
from stores.model_versions import active_version as active_version  # below the apps: queueing a run needs
from stores.model_versions import ensure_base as ensure_base  # them too; still the registry's API
from training.errors import RegistryError


class PromotionRefused(RegistryError):
    """The evaluation gate refused the promotion (a regression, or no comparable reports)."""


def list_versions(session: Session) -> list[ModelVersion]:
    return list(
        session.exec(select(ModelVersion).order_by(sa.desc(col(ModelVersion.created_at)), col(ModelVersion.version)))
    )


def register_candidate(
    session: Session, version: str, path: str | Path, base_version: str | None, metrics: dict
) -> ModelVersion:
    if session.get(ModelVersion, version) is not None:
        raise RegistryError(f"model version {version!r} already exists")
    row = ModelVersion(
        version=version,
        path=str(path),
        base_version=base_version,
        status="candidate",
        metrics=dict(metrics),
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row


def _get(session: Session, version: str) -> ModelVersion:
    row = session.exec(select(ModelVersion).where(ModelVersion.version == version).with_for_update()).first()
    if row is None:
        known = ", ".join(v.version for v in list_versions(session)) or "none"
        raise RegistryError(f"unknown model version {version!r} (known: {known})")
    return row


def _activate(session: Session, row: ModelVersion, previous: ModelVersion | None) -> ModelVersion:
    now = utcnow()
    if previous is not None:
        previous.status = "retired"
        session.add(previous)
        session.flush()
    row.status, row.promoted_at = "active", now
    session.add(row)
    session.flush()
    return row


def gate(session: Session, row: ModelVersion, active: ModelVersion | None, tolerance: float) -> dict:
    """The promotion gate's verdict on `row` against the active version: passed, regressed or unmeasured."""
    from evaluation.gate import regressions
    from evaluation.store import comparable

    verdict: dict[str, Any] = {
        "against": active.version if active else None,
        "tolerance": tolerance,
        "dataset": None,
        "regressions": [],
    }
    if active is None:
        return {**verdict, "verdict": "passed", "reason": "no active version to compare with"}
    pair = comparable(session, row.version, active.version)
    if pair is None:
        return {
            **verdict,
            "verdict": "unmeasured",
            "reason": f"{row.version} and {active.version} have no evaluation reports on the same labelled set",
        }
    mine, theirs = pair
    worse = regressions(theirs.report, mine.report, tolerance)
    verdict.update(dataset={"id": mine.dataset_id, "name": mine.dataset_name}, regressions=[w.as_dict() for w in worse])
    if worse:
        return {
            **verdict,
            "verdict": "regressed",
            "reason": f"{row.version} is worse than {active.version} on "
            f"{mine.dataset_name} by more than {tolerance}: " + "; ".join(map(str, worse)),
        }
    return {**verdict, "verdict": "passed", "reason": f"no headline metric worse by more than {tolerance}"}


def promote(session: Session, version: str, force: bool = False, tolerance: float = 0.02) -> ModelVersion:
    """Make `version` (a candidate, or a retired version brought back) the active one, if the
    evaluation gate passes or `force`; commit is the caller's. Raises PromotionRefused."""
    row = _get(session, version)
    if row.status == "active":
        raise RegistryError(f"model version {version!r} is already active")
    if not Path(row.path).is_dir() and row.base_version is not None:
        raise RegistryError(f"model version {version!r} has no checkpoint at {row.path}")
    current = active_version(session, lock=True)
    verdict = gate(session, row, current, tolerance)
    refused = verdict["verdict"] != "passed"
    if refused and not force:
        raise PromotionRefused(f"promotion of {version} refused: {verdict['reason']} (pass --force to promote anyway)")
    metrics = {k: v for k, v in row.metrics.items() if k != "rolled_back_at"}
    row.metrics = {**metrics, "promotion": {**verdict, "forced": refused, "at": utcnow().isoformat()}}
    return _activate(session, row, current)


def rollback(session: Session) -> ModelVersion:
    """Retire the active version and re-activate the one promoted before it; returns the new active one."""
    current = active_version(session, lock=True)
    if current is None:
        raise RegistryError("no model version is active; nothing to roll back")
    earlier = [
        v
        for v in session.exec(
            select(ModelVersion)
            .where(ModelVersion.status == "retired", col(ModelVersion.promoted_at).is_not(None))
            .order_by(sa.desc(col(ModelVersion.promoted_at)))
            .with_for_update()
        )
        if not v.metrics.get("rolled_back_at")
    ]
    if not earlier:
        raise RegistryError(f"{current.version} is the first active version; there is none to roll back to")
    current.metrics = {**current.metrics, "rolled_back_at": utcnow().isoformat()}
    return _activate(session, earlier[0], current)
