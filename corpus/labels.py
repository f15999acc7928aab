"""Ground truth of a generated corpus: one LabelledClip per clip, stored as labels.jsonl.

The models follow /work/notes/labels_contract.md (shared with `keye eval`): the `record` part
carries exactly the meaningful fields of service.schemas.AnalysisRecord, built from its own classes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.schemas import Moderation, Summary, TagScore

LABELS_FILE = "labels.jsonl"
CORPUS_FILE = "corpus.json"

Split = Literal["train", "val", "test"]
DuplicateKind = Literal["reencode", "crop", "speed", "watermark"]
Codec = Literal["h264", "vp9"]


class Fact(BaseModel):
    """One thing that appears or happens, in order."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    t_s: float = Field(ge=0.0)
    text: str = Field(min_length=1)
    objects: list[str] = Field(default_factory=list)


class Shot(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    start_s: float = Field(ge=0.0)
    end_s: float = Field(gt=0.0)
    transition_in: Literal["cut", "fade"] | None = None
    scene: str


class GroundTruth(BaseModel):
    """The analysis record's meaningful fields, as the analyzer should have produced them."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    tags: list[TagScore] = Field(default_factory=list)
    summary: Summary = Field(default_factory=Summary)
    moderation: Moderation = Field(default_factory=Moderation)
    # {"name", "category" (a config product category), "attributes": {"colour": ...}, "start_s", "end_s"}
    products: list[dict[str, Any]] = Field(default_factory=list)


class LabelledClip(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    video_id: str
    file: str
    split: Split
    seed: int
    duration_s: float = Field(gt=0.0)
    fps: float = Field(gt=0.0)
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    codec: Codec
    shots: list[Shot]
    record: GroundTruth
    facts: list[Fact]
    caption: str
    duplicate_of: str | None = None
    duplicate_kind: DuplicateKind | None = None
    novel: bool = False


def write_labels(folder: str | Path, clips: list[LabelledClip]) -> Path:
    """Write labels.jsonl (one clip per line, in the given order); returns its path."""
    path = Path(folder) / LABELS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for c in clips:
            f.write(c.model_dump_json() + "\n")
    return path


def load_labels(folder: str | Path) -> list[LabelledClip]:
    """Read labels.jsonl of a corpus folder; a bad line raises ValueError naming the file and line."""
    path = Path(folder) / LABELS_FILE
    clips = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    clips.append(LabelledClip.model_validate_json(line))
                except ValueError as e:
                    raise ValueError(f"{path}:{n}: {e}") from e
    return clips


def load_corpus_info(folder: str | Path) -> dict[str, Any]:
    """corpus.json: seed, split, generator version and counts."""
    return json.loads((Path(folder) / CORPUS_FILE).read_text(encoding="utf-8"))
