"""The analysis configuration's types: taxonomy, per-task prompts and budgets, thresholds, shot
segmentation, video sampling. Parsing and validation are config.py's (validation needs the answer
schemas, which are built from these types)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from analysis.errors import AnalysisConfigError

TASK_NAMES = ("tags", "summary", "moderation", "products")
THINKING_MODES = ("no_think", "think", "auto")

Thinking = Literal["no_think", "think", "auto"]


@dataclass(frozen=True)
class TaskConfig:
    name: str
    prompt: str
    thinking: Thinking = "no_think"
    max_new_tokens: int = 512
    limits: dict[str, int] = field(default_factory=dict)
    default: bool = True  # run when a submission does not list its tasks

    def limit(self, key: str) -> int:
        if key not in self.limits:
            raise AnalysisConfigError(f"task {self.name}: limits.{key} is missing")
        return self.limits[key]


@dataclass(frozen=True)
class Thresholds:
    flag_severity: int = 2  # severity at or above which a confident finding flags the video
    flag_confidence: float = 0.6  # below it, a severe finding goes to review instead of flagging
    review_severity: int = 1  # severity at or above which a video needs review
    tag_min_score: float = 0.2  # tags scored below are dropped


@dataclass(frozen=True)
class SegmentationConfig:
    threshold: float = 0.3  # content-change score in [0, 1] that starts a new shot
    min_shot_s: float = 1.0
    max_segments: int = 12  # the weakest cuts are dropped beyond this
    hist_bins: int = 16
    thumb_side: int = 32


@dataclass(frozen=True)
class VideoBudget:
    """One visual pass serves every task, so frame and pixel budgets are per video, not per task."""

    fps: float = 2.0
    max_frames: int = 64
    # Per frame. The released processor never makes a video frame smaller than 128*28*28 pixels and
    # spreads its total budget down to 1.05x that floor on long videos: the smallest frames the
    # model was trained on, so the cheapest budget that stays in its input distribution.
    max_pixels: int = 105369
    min_pixels: int = 100352
    frames_per_pass: int = 32  # longer videos are analyzed in chunks of whole shots and merged


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = 0


@dataclass(frozen=True)
class AnalysisConfig:
    version: str
    moderation_categories: dict[str, str]
    product_categories: tuple[str, ...]
    tasks: dict[str, TaskConfig]
    thresholds: Thresholds = field(default_factory=Thresholds)
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    video: VideoBudget = field(default_factory=VideoBudget)
    sampling: Sampling = field(default_factory=Sampling)

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(self.moderation_categories)

    def task(self, name: str) -> TaskConfig:
        if name not in self.tasks:
            raise AnalysisConfigError(f"unknown task {name!r}; configured: {', '.join(self.tasks)}")
        return self.tasks[name]
