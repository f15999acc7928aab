"""Moderation cases: the queue, claims, decisions and thumbnails; shared by the JSON routes and the
review page so both behave the same.

A case is one analysis whose moderation status is flagged or needs_review. It is open until a
moderator decides: confirm and clear close it, escalate moves it to the escalated queue where a
confirm or clear closes it. Only the holder of an unexpired claim may decide.
"""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlmodel import Session, col, select

from api import idempotency, outbox
from api.auth import Principal
from api.deps import Services
from api.problems import AlreadyDecided, Conflict, Invalid, NotFound, Unavailable
from api.tables import CaseClaim
from api.types import UtcDatetime
from service.schemas import MODERATION_CATEGORIES, FeedbackEvent, utcnow
from stores.db import Analysis, ModerationFlag, Review, Video, table_of

Decision = Literal["confirm", "clear", "escalate"]
QueueState = Literal["open", "escalated"]
_FLAG_STATUS = {"confirm": "confirmed", "clear": "cleared", "escalate": "escalated"}
_MODERATION_STATUS = {"confirm": "flagged", "clear": "clear", "escalate": "needs_review"}


class ClaimInfo(BaseModel):
    moderator: str
    key_id: str
    claimed_at: UtcDatetime
    expires_at: UtcDatetime


class CaseSummary(BaseModel):
    analysis_id: str
    video_id: str
    model_version: str
    moderation_status: str
    max_severity: int
    categories: list[str]
    summary_short: str
    created_at: UtcDatetime
    age_s: float
    claim: ClaimInfo | None = None


class Queue(BaseModel):
    items: list[CaseSummary]
    total: int
    limit: int
    offset: int


class FlagView(BaseModel):
    category: str
    severity: int
    confidence: float
    review_status: str
    evidence: list[dict[str, Any]]


class ReviewView(BaseModel):
    decision: str
    reviewer: str
    note: str | None
    category: str | None
    at: UtcDatetime


class Thumbnail(BaseModel):
    t: float
    url: str


class Case(BaseModel):
    analysis_id: str
    video_id: str
    state: Literal["open", "escalated", "closed"]
    moderation_status: str
    max_severity: int
    reasoning: str | None
    flags: list[FlagView]
    thumbnails: list[Thumbnail]
    reviews: list[ReviewView]
    claim: ClaimInfo | None
    video: dict[str, Any]
    record: dict[str, Any]


class DecisionIn(BaseModel):
    decision: Decision
    note: str | None = Field(default=None, max_length=4000)
    category: str | None = Field(default=None, max_length=64, description="limit the decision to one category")


class MissedIn(BaseModel):
    category: str = Field(max_length=64, description="the policy category the video violates")
    severity: int = Field(default=2, ge=1, le=3, description="1 mild, 2 clear violation, 3 severe")
    note: str | None = Field(default=None, max_length=4000)


class DecisionOut(BaseModel):
    analysis_id: str
    video_id: str
    decision: Decision
    moderation_status: str
    event_id: str


def _aware(dt: datetime) -> datetime:
    # SQLite hands back naive datetimes; every stored time is UTC.
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _claims(session: Session, ids: list[str]) -> dict[str, ClaimInfo]:
    if not ids:
        return {}
    now = utcnow()
    rows = session.exec(select(CaseClaim).where(col(CaseClaim.analysis_id).in_(ids)))
    return {
        c.analysis_id: ClaimInfo(
            moderator=c.moderator, key_id=c.key_id, claimed_at=_aware(c.claimed_at), expires_at=_aware(c.expires_at)
        )
        for c in rows
        if _aware(c.expires_at) > now
    }


def _decided(final: bool) -> Any:
    decisions = ["confirm", "clear"] if final else ["escalate"]
    return select(Review.analysis_id).where(col(Review.decision).in_(decisions))


def queue(
    session: Session,
    *,
    state: QueueState = "open",
    category: str | None = None,
    min_age_s: float | None = None,
    max_age_s: float | None = None,
    min_severity: int = 0,
    limit: int = 50,
    offset: int = 0,
) -> Queue:
    """Open (or escalated) cases, most severe first, then oldest first."""
    now = utcnow()
    where: list[sa.ColumnElement[bool]] = [
        col(Analysis.moderation_status).in_(["flagged", "needs_review"]),
        col(Analysis.max_severity) >= min_severity,
        col(Analysis.analysis_id).not_in(_decided(final=True)),
    ]
    where.append(
        col(Analysis.analysis_id).not_in(_decided(final=False))
        if state == "open"
        else col(Analysis.analysis_id).in_(_decided(final=False))
    )
    if category:
        where.append(
            col(Analysis.analysis_id).in_(select(ModerationFlag.analysis_id).where(ModerationFlag.category == category))
        )
    if min_age_s is not None:
        where.append(col(Analysis.created_at) <= now - timedelta(seconds=min_age_s))
    if max_age_s is not None:
        where.append(col(Analysis.created_at) >= now - timedelta(seconds=max_age_s))
    total = session.exec(select(sa.func.count()).select_from(Analysis).where(*where)).one()
    rows = list(
        session.exec(
            select(Analysis)
            .where(*where)
            .order_by(col(Analysis.max_severity).desc(), col(Analysis.created_at), col(Analysis.analysis_id))
            .limit(limit)
            .offset(offset)
        )
    )
    ids = [r.analysis_id for r in rows]
    cats: dict[str, list[str]] = {}
    if ids:
        for f in session.exec(
            select(ModerationFlag)
            .where(col(ModerationFlag.analysis_id).in_(ids))
            .order_by(col(ModerationFlag.severity).desc())
        ):
            cats.setdefault(f.analysis_id, []).append(f.category)
    claims = _claims(session, ids)
    items = [
        CaseSummary(
            analysis_id=r.analysis_id,
            video_id=r.video_id,
            model_version=r.model_version,
            moderation_status=r.moderation_status,
            max_severity=r.max_severity,
            categories=cats.get(r.analysis_id, []),
            summary_short=r.summary_short,
            created_at=_aware(r.created_at),
            age_s=(now - _aware(r.created_at)).total_seconds(),
            claim=claims.get(r.analysis_id),
        )
        for r in rows
    ]
    return Queue(items=items, total=total, limit=limit, offset=offset)


def _analysis(session: Session, analysis_id: str) -> Analysis:
    row = session.get(Analysis, analysis_id)
    if row is None:
        raise NotFound(f"no analysis {analysis_id!r}")
    return row


def _state(session: Session, analysis_id: str) -> Literal["open", "escalated", "closed"]:
    decisions = set(session.exec(select(Review.decision).where(Review.analysis_id == analysis_id)))
    if decisions & {"confirm", "clear"}:
        return "closed"
    return "escalated" if "escalate" in decisions else "open"


def evidence_times(flags: list[ModerationFlag], limit: int = 12) -> list[float]:
    times = sorted({round(float(e.get("start_s", 0.0)), 2) for f in flags for e in f.evidence})
    return times[:limit]


def get_case(session: Session, analysis_id: str, thumb_url: str) -> Case:
    """`thumb_url` is a format string with {analysis_id} and {t}."""
    a = _analysis(session, analysis_id)
    flags = list(
        session.exec(
            select(ModerationFlag)
            .where(ModerationFlag.analysis_id == analysis_id)
            .order_by(col(ModerationFlag.severity).desc())
        )
    )
    reviews = list(session.exec(select(Review).where(Review.analysis_id == analysis_id).order_by(col(Review.id))))
    video = session.get(Video, a.video_id)
    moderation = (a.record or {}).get("moderation") or {}
    return Case(
        analysis_id=a.analysis_id,
        video_id=a.video_id,
        state=_state(session, analysis_id),
        moderation_status=a.moderation_status,
        max_severity=a.max_severity,
        reasoning=moderation.get("reasoning"),
        flags=[
            FlagView(
                category=f.category,
                severity=f.severity,
                confidence=f.confidence,
                review_status=f.review_status,
                evidence=list(f.evidence),
            )
            for f in flags
        ],
        thumbnails=[Thumbnail(t=t, url=thumb_url.format(analysis_id=analysis_id, t=t)) for t in evidence_times(flags)],
        reviews=[
            ReviewView(decision=r.decision, reviewer=r.reviewer, note=r.note, category=r.category, at=_aware(r.at))
            for r in reviews
        ],
        claim=_claims(session, [analysis_id]).get(analysis_id),
        video=video.model_dump(mode="json", exclude={"uri"}) if video else {"video_id": a.video_id},
        record=a.record or {},
    )


def claim(session: Session, analysis_id: str, who: Principal, ttl_s: float) -> ClaimInfo:
    """Claim (or renew one's own claim on) an undecided case; 409 when another moderator holds it."""
    _analysis(session, analysis_id)
    if _state(session, analysis_id) == "closed":
        raise AlreadyDecided(f"case {analysis_id} is already decided")
    now = utcnow()
    # An expired claim is anyone's: drop it first so the insert below can win.
    session.execute(
        sa.delete(table_of(CaseClaim)).where(
            col(CaseClaim.analysis_id) == analysis_id, col(CaseClaim.expires_at) <= now
        )
    )
    session.execute(
        sa.update(table_of(CaseClaim))
        .where(col(CaseClaim.analysis_id) == analysis_id, col(CaseClaim.key_id) == who.key_id)
        .values(expires_at=now + timedelta(seconds=ttl_s))
    )
    session.commit()
    row = CaseClaim(
        analysis_id=analysis_id,
        key_id=who.key_id,
        moderator=who.name,
        claimed_at=now,
        expires_at=now + timedelta(seconds=ttl_s),
    )
    if session.get(CaseClaim, analysis_id) is None:
        session.add(row)
        try:
            session.commit()
        except sa.exc.IntegrityError:  # someone else claimed between our check and our insert
            session.rollback()
    session.expire_all()
    held = session.get(CaseClaim, analysis_id)
    if held is None or held.key_id != who.key_id:
        by = held.moderator if held else "another moderator"
        raise Conflict(f"case {analysis_id} is claimed by {by}")
    return ClaimInfo(
        moderator=held.moderator,
        key_id=held.key_id,
        claimed_at=_aware(held.claimed_at),
        expires_at=_aware(held.expires_at),
    )


def release(session: Session, analysis_id: str, who: Principal) -> None:
    held = session.get(CaseClaim, analysis_id)
    if held is None:
        raise NotFound(f"case {analysis_id} is not claimed")
    if held.key_id != who.key_id:
        raise Conflict(f"case {analysis_id} is claimed by {held.moderator}, not by this key")
    # Conditional: a decision racing this release may have used the claim up already.
    if not _take_claim(session, analysis_id, who, expired_too=True):
        session.rollback()
        raise NotFound(f"case {analysis_id} is not claimed")
    session.commit()


def _take_claim(session: Session, analysis_id: str, who: Principal, expired_too: bool = False) -> bool:
    """Delete this key's claim; True for the one transaction that did (concurrent ones wait on the
    row, then find it gone), so the claim is used exactly once."""
    where = [col(CaseClaim.analysis_id) == analysis_id, col(CaseClaim.key_id) == who.key_id]
    if not expired_too:
        where.append(col(CaseClaim.expires_at) > utcnow())
    deleted = session.execute(sa.delete(table_of(CaseClaim)).where(*where))
    assert isinstance(deleted, sa.CursorResult)  # a Core DELETE's result, which counts its rows
    return deleted.rowcount == 1


def decide(
    svc: Services,
    session: Session,
    analysis_id: str,
    body: DecisionIn,
    who: Principal,
    idempotency_key: idempotency.Key | None = None,
) -> DecisionOut:
    """Store the decision of the claim's holder; the claim is used up by it, so a second decision
    on the same claim (a double click, a retry) stores nothing and answers 409. With
    `idempotency_key` the response is recorded in the same transaction, for replays."""
    a = _analysis(session, analysis_id)
    state = _state(session, analysis_id)
    if state == "closed":
        raise AlreadyDecided(f"case {analysis_id} is already decided")
    if state == "escalated" and body.decision == "escalate":
        raise Conflict(f"case {analysis_id} is already escalated; confirm or clear it")
    held = session.get(CaseClaim, analysis_id)
    if held is None or held.key_id != who.key_id or _aware(held.expires_at) <= utcnow():
        raise Conflict(f"claim case {analysis_id} before deciding it (a decision uses the claim up)")
    flags = list(session.exec(select(ModerationFlag).where(ModerationFlag.analysis_id == analysis_id)))
    if body.category is not None and body.category not in {f.category for f in flags}:
        raise Invalid(f"case {analysis_id} has no flag in category {body.category!r}")
    if not _take_claim(session, analysis_id, who):
        session.rollback()
        raise AlreadyDecided(f"case {analysis_id}: a concurrent decision used this claim first; nothing was stored")
    now = utcnow()
    status = _MODERATION_STATUS[body.decision]
    session.add(
        Review(
            analysis_id=analysis_id,
            video_id=a.video_id,
            category=body.category,
            decision=body.decision,
            reviewer=who.name,
            note=body.note,
            at=now,
        )
    )
    for f in flags:
        if body.category is None or f.category == body.category:
            f.review_status = _FLAG_STATUS[body.decision]
            session.add(f)
    record = dict(a.record or {})
    record["moderation"] = {**(record.get("moderation") or {}), "status": status}
    a.moderation_status, a.record = status, record
    session.add(a)
    event = FeedbackEvent(
        event_id=str(uuid.uuid4()),
        video_id=a.video_id,
        kind="moderation_decision",
        actor=who.name,
        at=now,
        payload={
            "analysis_id": analysis_id,
            "model_version": a.model_version,
            "decision": body.decision,
            "note": body.note,
            "category": body.category,
            "categories": [f.category for f in flags],
            "moderation_status": status,
        },
    )
    outbox.enqueue(session, svc.settings.topic_feedback, a.video_id, event)
    out = DecisionOut(
        analysis_id=analysis_id,
        video_id=a.video_id,
        decision=body.decision,
        moderation_status=status,
        event_id=event.event_id,
    )
    if idempotency_key is not None:
        idempotency.remember(session, idempotency_key, 200, out)
    try:
        session.commit()
    except sa.exc.IntegrityError:  # the same Idempotency-Key, sent at once for another case, won
        session.rollback()
        if idempotency_key is None:
            raise
        raise Conflict(f"Idempotency-Key {idempotency_key.value!r} is in use by another request") from None
    _update_vector_payload(svc, analysis_id, status)
    return out


def report_missed(svc: Services, session: Session, analysis_id: str, body: MissedIn, who: Principal) -> DecisionOut:
    """A violation the model did not flag, found by a moderator on a clear analysis or a decided
    case: the category becomes a confirmed flag, the analysis flagged, and the feedback a
    `confirm` of that category, which training learns as the answer the model should have given."""
    a = _analysis(session, analysis_id)
    if body.category not in MODERATION_CATEGORIES:
        raise Invalid(f"category must be one of {', '.join(MODERATION_CATEGORIES)}")
    if a.moderation_status in ("flagged", "needs_review") and _state(session, analysis_id) != "closed":
        # a report closes nothing: the model's own flags keep their case until someone decides it
        raise Conflict(f"case {analysis_id} is undecided; decide it first, then report what it missed")
    flags = list(session.exec(select(ModerationFlag).where(ModerationFlag.analysis_id == analysis_id)))
    if body.category in {f.category for f in flags}:
        raise Conflict(f"case {analysis_id} already has a {body.category} flag; confirm it with a decision")
    now = utcnow()
    session.add(
        ModerationFlag(
            analysis_id=analysis_id,
            category=body.category,
            video_id=a.video_id,
            severity=body.severity,
            confidence=1.0,
            evidence=[],
            review_status="confirmed",
        )
    )
    session.add(
        Review(
            analysis_id=analysis_id,
            video_id=a.video_id,
            category=body.category,
            decision="confirm",
            reviewer=who.name,
            note=body.note,
            at=now,
        )
    )
    record = dict(a.record or {})
    record["moderation"] = {**(record.get("moderation") or {}), "status": "flagged"}
    a.moderation_status, a.max_severity, a.record = "flagged", max(a.max_severity, body.severity), record
    session.add(a)
    event = FeedbackEvent(
        event_id=str(uuid.uuid4()),
        video_id=a.video_id,
        kind="moderation_decision",
        actor=who.name,
        at=now,
        payload={
            "analysis_id": analysis_id,
            "model_version": a.model_version,
            "decision": "confirm",
            "note": body.note,
            "category": body.category,
            "severity": body.severity,
            "missed": True,
            "categories": [f.category for f in flags],
            "moderation_status": "flagged",
        },
    )
    outbox.enqueue(session, svc.settings.topic_feedback, a.video_id, event)
    try:
        session.commit()
    except sa.exc.IntegrityError:  # the same report, sent at once, stored its flag first
        session.rollback()
        raise Conflict(f"case {analysis_id} already has a {body.category} flag") from None
    _update_vector_payload(svc, analysis_id, "flagged")
    return DecisionOut(
        analysis_id=analysis_id,
        video_id=a.video_id,
        decision="confirm",
        moderation_status="flagged",
        event_id=event.event_id,
    )


def _update_vector_payload(svc: Services, analysis_id: str, status: str) -> None:
    """Keep the search filter on moderation status true to the decision (best effort: the SQL row is
    the source of truth, and a missing point simply has nothing to update)."""
    store = svc.vectors
    if store is None:
        return
    try:
        store.set_payload([analysis_id], {"moderation_status": status})
    except Exception:  # noqa: BLE001 - best effort: the SQL row is the truth, the payload a search filter
        pass


# ---- thumbnails ---------------------------------------------------------------------------------------


def thumbnail(svc: Services, session: Session, analysis_id: str, t: float, width: int = 320) -> bytes:
    """A JPEG of the frame nearest `t` seconds, cached under the data folder."""
    a = _analysis(session, analysis_id)
    if not 0.0 <= t <= max(a.duration_s, 0.0) + 1.0:
        raise Invalid(f"t={t} is outside the video (0..{a.duration_s:.2f}s)")
    cache = svc.settings.data_dir / "thumbs" / analysis_id / f"{int(round(t * 1000))}.jpg"
    if cache.is_file():
        return cache.read_bytes()
    video = session.get(Video, a.video_id)
    if video is None:
        raise NotFound(f"video {a.video_id} has no stored submission to take frames from")
    from service.fetch import FetchError, fetched

    try:
        with fetched(video.uri, svc.settings) as path:
            data = _frame_jpeg(path, t, width)
    except FetchError as e:
        raise Unavailable(f"the video of {a.video_id} cannot be read: {e}") from None
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(data)
    return data


def _frame_jpeg(path: Path, t: float, width: int) -> bytes:
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            tb = float(stream.time_base) if stream.time_base else 1e-6
            container.seek(int(t / tb), stream=stream, backward=True, any_frame=False)
            chosen = None
            for frame in container.decode(stream):
                chosen = frame
                if frame.pts is not None and frame.pts * tb >= t:
                    break
    except (av.FFmpegError, IndexError) as e:
        raise Unavailable(f"cannot decode a frame at {t}s: {e}") from None
    if chosen is None:
        raise Unavailable(f"no frame at {t}s")
    img = chosen.to_image()
    img.thumbnail((width, width))
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=80)
    return buf.getvalue()
