"""A labelled set: the videos to analyze and what each should have produced.

A part left None is not labelled for that video (a set built from reviews knows the moderation and
tags a moderator looked at, nothing of summaries); its metrics skip the video.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from evaluation.text import FactItem
from service.kafka import to_uri
from service.schemas import (
    MODERATION_CATEGORIES,
    AnalysisRecord,
    Moderation,
    Summary,
    TagScore,
    analysis_id_for,
    utcnow,
)


@dataclass(frozen=True)
class LabelledVideo:
    video_id: str
    uri: str  # what a worker would fetch (file:// for a corpus clip)
    duration_s: float
    tags: tuple[TagScore, ...] | None = None
    moderation: Moderation | None = None
    summary: Summary | None = None
    facts: tuple[FactItem, ...] = ()
    caption: str | None = None
    duplicate_of: str | None = None

    def labels(self) -> dict:
        """The ground truth as plain JSON (what the dataset id hashes)."""
        return {
            "video_id": self.video_id,
            "duration_s": self.duration_s,
            "tags": None if self.tags is None else [t.model_dump() for t in self.tags],
            "moderation": None if self.moderation is None else self.moderation.model_dump(),
            "summary": None if self.summary is None else self.summary.model_dump(),
            "facts": [[list(f.objects), f.text] for f in self.facts],
            "caption": self.caption,
            "duplicate_of": self.duplicate_of,
        }


@dataclass(frozen=True)
class LabelledSet:
    name: str  # e.g. "corpus:test-s1000" or "reviews"
    videos: tuple[LabelledVideo, ...]
    roots: tuple[Path, ...] = field(default_factory=tuple)  # folders the harness may read clips from

    @property
    def dataset_id(self) -> str:
        """Identifies the exact labels: two reports compare only when they measured the same set."""
        raw = json.dumps([v.labels() for v in self.videos], sort_keys=True, default=str)
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def describe(self) -> dict:
        return {"name": self.name, "id": self.dataset_id, "videos": len(self.videos)}


def _fact(fact) -> FactItem:
    # A policy category among a fact's concepts ("weapons" for a gun) is what moderation measures;
    # a summary should say what is seen (a gun), so fact recall looks at the other concepts.
    return FactItem(tuple(o for o in fact.objects if o not in MODERATION_CATEGORIES), fact.text)


def from_corpus(folder: str | Path, split: str | None = None, limit: int | None = None) -> LabelledSet:
    """The clips of a `keye corpus make` folder (optionally one split, the first `limit` clips)."""
    from corpus.labels import load_labels

    root = Path(folder).resolve()
    clips = [c for c in load_labels(root) if split is None or c.split == split]
    if limit is not None:
        clips = clips[:limit]
    videos = tuple(
        LabelledVideo(
            video_id=c.video_id,
            uri=to_uri(str(root / c.file)),
            duration_s=c.duration_s,
            tags=tuple(c.record.tags),
            moderation=c.record.moderation,
            summary=c.record.summary,
            facts=tuple(_fact(f) for f in c.facts),
            caption=c.caption,
            duplicate_of=c.duplicate_of,
        )
        for c in clips
    )
    return LabelledSet(f"corpus:{root.name}" + (f"/{split}" if split else ""), videos, (root,))


def truth_records(labelled: LabelledSet, model_version: str = "ground-truth") -> dict[str, AnalysisRecord]:
    """The labels as if an analyzer had answered them (a perfect model), for checking the metrics."""
    return {
        v.video_id: AnalysisRecord(
            analysis_id=analysis_id_for(v.video_id, model_version),
            video_id=v.video_id,
            model_version=model_version,
            prompt_version="labels",
            duration_s=v.duration_s,
            frames_used=0,
            tags=list(v.tags or ()),
            summary=v.summary or Summary(),
            moderation=v.moderation or Moderation(),
            embedding_dim=0,
            created_at=utcnow(),
        )
        for v in labelled.videos
    }
