"""Kafka message and record schemas: one definition and one serialization for every producer and consumer.

Every value is UTF-8 JSON of a pydantic model; every key is the video_id as UTF-8. Each message
carries `schema_version`; a consumer accepts versions up to its own and refuses newer ones with a
SchemaError (so an old consumer never half-reads a message it does not understand). Unknown fields
are ignored, which lets a producer add optional fields without a version bump.

Beyond the service spec, the analysis record carries `creator_id`, `language` and `embedding`:
the single owner of the embedded vector index builds Qdrant points from `videos.analyzed` alone.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

SCHEMA_VERSION = 1

# Fixed namespace: analysis ids and Qdrant point ids are uuid5(POINT_NAMESPACE, "video_id:model_version").
POINT_NAMESPACE = uuid.UUID("5d0b7f3e-6c61-4b8e-9a57-2f3c1e0d4b6a")

MODERATION_CATEGORIES = (
    "violence",
    "sexual",
    "minors",
    "hate",
    "harassment",
    "self_harm",
    "dangerous_acts",
    "weapons",
    "drugs",
    "scam_spam",
    "misinformation",
)
TaskName = Literal["tags", "summary", "moderation", "embedding", "products"]  # what a submission may ask for
FeedbackKind = Literal["moderation_decision", "tag_correction", "summary_rating", "summary_edit", "engagement"]
TASKS: tuple[TaskName, ...] = get_args(TaskName)
FEEDBACK_KINDS: tuple[FeedbackKind, ...] = get_args(FeedbackKind)
URI_SCHEMES = ("file", "http", "https")

VideoId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$")]


class SchemaError(ValueError):
    """A message that does not match its schema; permanent: it goes to the DLQ, never retried."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def analysis_id_for(video_id: str, model_version: str) -> str:
    """The id of the analysis (and Qdrant point) of one video by one model version."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"{video_id}:{model_version}"))


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_version: int = SCHEMA_VERSION

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if not 1 <= v <= SCHEMA_VERSION:
            raise ValueError(f"schema_version {v} is not supported (this consumer reads 1..{SCHEMA_VERSION})")
        return v


class Submission(Message):
    """A raw submission on `videos.ingest`."""

    video_id: VideoId
    uri: str = Field(min_length=1, max_length=4096)
    title: str | None = Field(default=None, max_length=1000)
    description: str | None = Field(default=None, max_length=10000)
    hashtags: list[str] = Field(default_factory=list, max_length=100)
    creator_id: str | None = Field(default=None, max_length=128)
    language: str | None = Field(default=None, max_length=35)
    submitted_at: datetime
    tasks: list[TaskName] = Field(default_factory=list)

    @field_validator("uri")
    @classmethod
    def _scheme(cls, v: str) -> str:
        scheme = v.split("://", 1)[0].lower() if "://" in v else ""
        if scheme not in URI_SCHEMES:
            raise ValueError(f"uri must start with one of {', '.join(s + '://' for s in URI_SCHEMES)}")
        return v


class WorkItem(Submission):
    """An accepted submission on `videos.work`."""

    accepted_at: datetime


class TagScore(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    label: str = Field(min_length=1, max_length=200)
    score: float = Field(ge=0.0, le=1.0)
    start_s: float | None = None
    end_s: float | None = None


class Summary(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    short: str = ""
    long: str = ""
    title: str = ""


class Evidence(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    start_s: float
    end_s: float
    reason: str


class CategoryFlag(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    category: str
    severity: int = Field(ge=0, le=3)
    confidence: float = Field(ge=0.0, le=1.0)
    evidence: list[Evidence] = Field(default_factory=list)


class Moderation(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    status: Literal["clear", "flagged", "needs_review"] = "clear"
    categories: list[CategoryFlag] = Field(default_factory=list)
    reasoning: str | None = None

    @property
    def max_severity(self) -> int:
        return max((c.severity for c in self.categories), default=0)


class AnalysisRecord(Message):
    """The analysis of one video by one model version, on `videos.analyzed`."""

    analysis_id: str
    video_id: VideoId
    model_version: str
    prompt_version: str
    status: Literal["ok", "partial"] = "ok"
    duration_s: float = Field(ge=0.0)
    frames_used: int = Field(ge=0)
    tags: list[TagScore] = Field(default_factory=list)
    summary: Summary = Field(default_factory=Summary)
    moderation: Moderation = Field(default_factory=Moderation)
    products: list[dict[str, Any]] = Field(default_factory=list)
    embedding_dim: int = Field(ge=0)
    timings_ms: dict[str, float] = Field(default_factory=dict)
    created_at: datetime
    # extensions (see module docstring)
    creator_id: str | None = None
    language: str | None = None
    embedding: list[float] | None = None


class FlagMessage(Message):
    """A flagged analysis on `moderation.flags`."""

    video_id: VideoId
    analysis_id: str
    categories: list[CategoryFlag]
    max_severity: int = Field(ge=0, le=3)
    evidence: list[Evidence] = Field(default_factory=list)
    model_version: str

    @classmethod
    def from_record(cls, r: AnalysisRecord) -> FlagMessage:
        return cls(
            video_id=r.video_id,
            analysis_id=r.analysis_id,
            categories=r.moderation.categories,
            max_severity=r.moderation.max_severity,
            evidence=[e for c in r.moderation.categories for e in c.evidence],
            model_version=r.model_version,
        )


class FeedbackEvent(Message):
    """A moderator decision, correction, rating or engagement signal on `feedback.events`."""

    event_id: str = Field(min_length=1, max_length=128)
    video_id: VideoId
    kind: FeedbackKind
    actor: str = Field(min_length=1, max_length=128)
    payload: dict[str, Any] = Field(default_factory=dict)
    at: datetime


def check_feedback(e: FeedbackEvent) -> FeedbackEvent:
    """Kind-specific payload rules; a violation is a SchemaError (the event goes to the DLQ)."""
    p = e.payload

    def need(ok: bool, rule: str) -> None:
        if not ok:
            raise SchemaError(f"FeedbackEvent {e.event_id} ({e.kind}): {rule}")

    if e.kind == "moderation_decision":
        need(
            p.get("decision") in ("confirm", "clear", "escalate"), "payload.decision must be confirm, clear or escalate"
        )
        need(
            p.get("category") is None or p.get("category") in MODERATION_CATEGORIES,
            f"payload.category must be one of {', '.join(MODERATION_CATEGORIES)}",
        )
    elif e.kind == "tag_correction":
        lists = [p.get("add", []), p.get("remove", [])]
        need(
            all(isinstance(x, list) and all(isinstance(t, str) and t for t in x) for x in lists) and any(lists),
            "payload needs non-empty add and/or remove lists of tag labels",
        )
    elif e.kind == "summary_rating":
        need(
            isinstance(p.get("rating"), int) and not isinstance(p.get("rating"), bool) and 1 <= p["rating"] <= 5,
            "payload.rating must be an integer 1..5",
        )
    elif e.kind == "summary_edit":
        need(isinstance(p.get("text"), str) and p["text"].strip() != "", "payload.text must be a non-empty string")
    elif e.kind == "engagement":
        need(isinstance(p.get("metric"), str) and p["metric"] != "", "payload.metric must be a non-empty string")
        need(
            isinstance(p.get("value"), (int, float)) and not isinstance(p.get("value"), bool),
            "payload.value must be a number",
        )
    return e


class DeadLetter(Message):
    """A message that failed permanently, on `videos.dlq`; `original` is the message as received."""

    original: Any
    error_type: str
    error: str
    attempts: int = Field(ge=1)
    failed_at: datetime
    stage: str
    # the same for every copy of one failure (a redelivered message fails again): consumers dedup by it
    dlq_id: str | None = None

    @classmethod
    def of(
        cls,
        original: bytes | str | dict | None,
        error: BaseException,
        *,
        stage: str,
        attempts: int = 1,
        error_type: str | None = None,
        dlq_id: str | None = None,
    ) -> DeadLetter:
        return cls(
            original=_as_json_value(original),
            error_type=error_type or type(error).__name__,
            error=str(error) or type(error).__name__,
            attempts=attempts,
            failed_at=utcnow(),
            stage=stage,
            dlq_id=dlq_id,
        )


def dead_letter_id(stage: str, topic: str, partition: int, offset: int) -> str:
    """The DLQ id of the failure of one source message at one stage: stable across redeliveries."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"dlq:{stage}:{topic}:{partition}:{offset}"))


M = TypeVar("M", bound=BaseModel)


def encode(message: BaseModel) -> bytes:
    return message.model_dump_json().encode("utf-8")


def decode(cls: type[M], data: bytes | str | None) -> M:
    """Parse one message; any problem (not JSON, wrong shape, newer version) is a SchemaError."""
    if data is None:
        raise SchemaError(f"{cls.__name__}: the message has no value")
    try:
        return cls.model_validate_json(data)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'message'}: {err['msg']}" for err in e.errors()[:5])
        raise SchemaError(f"{cls.__name__}: {problems}") from None


def key_of(video_id: str) -> bytes:
    return video_id.encode("utf-8")


def video_id_hint(data: bytes | str | None) -> str | None:
    """The video_id of a message that failed validation, when it has a usable one (to mark it failed)."""
    try:
        value = json.loads(data) if data is not None else None
    except (ValueError, UnicodeDecodeError):
        return None
    vid = value.get("video_id") if isinstance(value, dict) else None
    if isinstance(vid, str) and 0 < len(vid) <= 128:
        return vid
    return None


def _as_json_value(original: bytes | str | dict | None) -> Any:
    if original is None or isinstance(original, dict):
        return original
    text = original.decode("utf-8", errors="replace") if isinstance(original, bytes) else original
    try:
        return json.loads(text)
    except ValueError:
        return text
