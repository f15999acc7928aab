"""What the review queue shows beside each case's id: the video's title and creator and a strip of
frames at its evidence times (the case page shows the whole record)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlmodel import Session, col, select

from api.cases import Queue, evidence_times
from stores.db import ModerationFlag, Video


@dataclass
class QueueContext:
    title: str | None = None
    creator_id: str | None = None
    thumbnails: list[float] = field(default_factory=list)  # seconds into the video


def queue_context(session: Session, queue: Queue, per_case: int = 4) -> dict[str, QueueContext]:
    """Per analysis id of the queue's items; two queries however long the page."""
    ids = [item.analysis_id for item in queue.items]
    if not ids:
        return {}
    flags: dict[str, list[ModerationFlag]] = {}
    for f in session.exec(select(ModerationFlag).where(col(ModerationFlag.analysis_id).in_(ids))):
        flags.setdefault(f.analysis_id, []).append(f)
    videos = {
        v.video_id: v
        for v in session.exec(select(Video).where(col(Video.video_id).in_({item.video_id for item in queue.items})))
    }
    out = {}
    for item in queue.items:
        video = videos.get(item.video_id)
        out[item.analysis_id] = QueueContext(
            title=video.title if video else None,
            creator_id=video.creator_id if video else None,
            thumbnails=evidence_times(flags.get(item.analysis_id, []), per_case),
        )
    return out
