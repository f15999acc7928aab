"""A labelled set from production: the moderators' decisions and tag corrections stored in SQL.

Each video with a final decision (confirm / clear; escalations have none) or a tag correction is
labelled with what the training targets use (analysis.answers): the analysis the moderator saw,
corrected by the decisions and corrections in time order. Only what someone looked at is
labelled: moderation when there is a decision, tags when there is a correction, never summaries.
A category counts as a violation when its corrected severity reaches the flagging threshold; a
flag nobody decided on keeps the model's own severity (as in the training targets). These labels
are the same feedback training learns from, so they are not held out: for a held-out measure set
KEYE_EVAL_CORPUS.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import sqlalchemy as sa
from sqlmodel import Session, col, select

from analysis.answers import corrected_moderation, corrected_tags
from analysis.config import AnalysisConfig
from evaluation.labelled import LabelledSet, LabelledVideo
from service.schemas import CategoryFlag, Evidence, Moderation, TagScore
from stores.db import Analysis, FeedbackRow, Review, Video

FINAL = ("confirm", "clear")


def _decisions(session: Session) -> dict[str, list[tuple]]:
    """video_id -> [(at, analysis_id, payload)] of final decisions, from the review table and the
    feedback events (the same decision reaches both; applying it twice changes nothing)."""
    out: dict[str, list[tuple]] = defaultdict(list)
    seen = set()
    for r in session.exec(select(Review).where(col(Review.decision).in_(FINAL))):
        seen.add((r.analysis_id, r.category, r.decision, r.reviewer))
        out[r.video_id].append((r.at, r.analysis_id, {"decision": r.decision, "category": r.category}))
    for f in session.exec(select(FeedbackRow).where(FeedbackRow.kind == "moderation_decision")):
        p = f.payload or {}
        key = (p.get("analysis_id"), p.get("category"), p.get("decision"), f.actor)
        if p.get("decision") in FINAL and key not in seen:
            out[f.video_id].append((f.at, p.get("analysis_id"), p))
    return out


def _corrections(session: Session) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = defaultdict(list)
    for f in session.exec(select(FeedbackRow).where(FeedbackRow.kind == "tag_correction")):
        out[f.video_id].append((f.at, (f.payload or {}).get("analysis_id"), f.payload or {}))
    return out


def _analysis(session: Session, video_id: str, events: list[tuple]) -> Analysis | None:
    """The analysis the newest event names, else the video's newest one."""
    for _, aid, _ in sorted(events, key=lambda e: e[0], reverse=True):
        row = session.get(Analysis, aid) if isinstance(aid, str) else None
        if row is not None:
            return row
    return session.exec(
        select(Analysis).where(Analysis.video_id == video_id).order_by(sa.desc(col(Analysis.created_at)))
    ).first()


def _tags(record: dict, payloads: list[dict]) -> tuple[TagScore, ...]:
    out = []
    for t in corrected_tags(record, payloads):
        ranges: Sequence[tuple[float | None, float | None]] = t.ranges or [(None, None)]  # None: the whole video
        for a, b in ranges:
            out.append(TagScore(label=t.label, score=1.0, start_s=a, end_s=b))
    return tuple(out)


def _moderation(cfg: AnalysisConfig, record: dict, payloads: list[dict]) -> Moderation:
    target = corrected_moderation(cfg, record, payloads)
    flags = [
        CategoryFlag(
            category=f.category,
            severity=f.severity,
            confidence=1.0,
            evidence=[Evidence(start_s=a, end_s=b, reason=r) for a, b, r in f.evidence],
        )
        for f in target.flags
        if f.severity >= cfg.thresholds.flag_severity
    ]
    return Moderation(status="flagged" if flags else "clear", categories=flags)


def _in_order(events: list[tuple]) -> list[dict]:
    return [p for _, _, p in sorted(events, key=lambda e: e[0])]


def from_reviews(session: Session, cfg: AnalysisConfig, limit: int | None = None) -> LabelledSet:
    decisions, corrections = _decisions(session), _corrections(session)
    videos = []
    for vid in sorted(decisions.keys() | corrections.keys()):
        events = decisions.get(vid, []) + corrections.get(vid, [])
        analysis, video = _analysis(session, vid, events), session.get(Video, vid)
        if analysis is None or video is None:
            continue  # nothing to correct, or nothing to fetch
        record = analysis.record or {}
        videos.append(
            LabelledVideo(
                video_id=vid,
                uri=video.uri,
                duration_s=analysis.duration_s,
                tags=_tags(record, _in_order(corrections[vid])) if vid in corrections else None,
                moderation=_moderation(cfg, record, _in_order(decisions[vid])) if vid in decisions else None,
            )
        )
        if limit is not None and len(videos) >= limit:
            break
    return LabelledSet("reviews", tuple(videos))
