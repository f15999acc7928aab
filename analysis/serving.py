"""The per-video analysis step, behind a small interface.

`Analyzer.analyze(path, submission)` turns a local video file into the analysis record of the
service spec (with its embedding). Two implementations:
- `analysis.VideoAnalyzer` (the analysis-tasks work: tags, summaries, moderation with
  constrained decoding), the default of `load_analyzer`;
- `KeyeAnalyzer` below, the basic fallback that calls the model directly. It fills only:
- summary.short: a short greedy generation describing the video;
- the embedding: `model.embed` of the video;
- tags: the submission's own hashtags (score 1.0), i.e. nothing the model inferred;
- moderation: status "clear" with no categories, i.e. NOT a moderation decision.
Its records say status "partial".
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from service.schemas import AnalysisRecord, Submission, Summary, TagScore, analysis_id_for, utcnow
from service.settings import Settings
from service.waiting import database_label, until_available
from stores.db import engine_from, migrate, model_version_name, serving_model

PROMPT_VERSION = "summary-v0"
SUMMARY_PROMPT = "Describe this video in one sentence."
SUMMARY_MAX_NEW_TOKENS = 32


class AnalyzerUnavailableError(RuntimeError):
    """The model library or checkpoint cannot be loaded."""


@runtime_checkable
class Analyzer(Protocol):
    model_version: str
    prompt_version: str

    def analyze(self, path: Path, submission: Submission) -> AnalysisRecord:
        """Analyze one local video; raise a keye_model MediaError for an unusable file."""
        ...


def hashtag_tags(submission: Submission) -> list[TagScore]:
    seen: dict[str, TagScore] = {}
    for h in submission.hashtags:
        label = h.lstrip("#").strip().lower()
        if label and label not in seen:
            seen[label] = TagScore(label=label[:200], score=1.0)
    return list(seen.values())


class KeyeAnalyzer:
    """Summary by greedy generation and embedding by `model.embed`, on one device.

    The model is loaded once per process; calls are serialized (one forward at a time per device).
    The embedding is of the video alone (no instruction), so it does not change with prompt versions.
    `max_frames` / `max_pixels` bound the vision sequence (defaults: 32 x 256*28*28 on CUDA, 8 x 64*28*28
    elsewhere).
    """

    prompt_version = PROMPT_VERSION

    def __init__(
        self,
        settings: Settings,
        *,
        max_frames: int | None = None,
        max_pixels: int | None = None,
        max_new_tokens: int = SUMMARY_MAX_NEW_TOKENS,
    ) -> None:
        try:
            import torch

            import keye_model
            from keye_model.processor import KeyeProcessor
        except ImportError as e:
            raise AnalyzerUnavailableError(f"keye_model cannot be imported: {e}") from e
        dtype = getattr(torch, settings.dtype, None)
        if not isinstance(dtype, torch.dtype):
            raise AnalyzerUnavailableError(f"unknown KEYE_DTYPE {settings.dtype!r}; use float32, bfloat16 or float16")
        self.model = keye_model.load(settings.model, dtype=dtype, device=settings.device).eval()
        folder = Path(settings.model)
        self.processor = KeyeProcessor.from_pretrained(folder) if folder.is_dir() else KeyeProcessor()
        self.model_version = model_version_name(settings.model)
        # The whole video is one attention segment in the vision tower: bound it, tighter on CPU
        # (where `keye analyze` of a sample clip should take seconds, not minutes).
        on_gpu = str(settings.device).startswith("cuda")
        self.video_options = {
            "max_frames": max_frames or (32 if on_gpu else 8),
            "max_pixels": max_pixels or (256 * 28 * 28 if on_gpu else 64 * 28 * 28),
        }
        self.max_new_tokens = max_new_tokens
        self._lock = threading.Lock()

    def analyze(self, path: Path, submission: Submission) -> AnalysisRecord:
        import torch

        video = self.processor.load_video(path, **self.video_options)
        ask = [
            {"role": "user", "content": [{"type": "video", "video": video}, {"type": "text", "text": SUMMARY_PROMPT}]}
        ]
        alone = [{"role": "user", "content": [{"type": "video", "video": video}]}]
        device = self.model.device
        with self._lock, torch.inference_mode():
            # Any: the tensors go to generate's input and vision parameters, never to its sampling ones
            inputs: dict[str, Any] = {k: v.to(device) for k, v in self.processor(ask).model_inputs().items()}
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens)
            summary = self.processor.decode(out[0], skip_special_tokens=True).strip()
            inputs = {
                k: v.to(device) for k, v in self.processor(alone, add_generation_prompt=False).model_inputs().items()
            }
            embedding = self.model.embed(**inputs)[0].float().cpu().tolist()
        return AnalysisRecord(
            analysis_id=analysis_id_for(submission.video_id, self.model_version),
            video_id=submission.video_id,
            model_version=self.model_version,
            prompt_version=self.prompt_version,
            status="partial",
            duration_s=float(video.duration_s),
            frames_used=len(video.timestamps),
            tags=hashtag_tags(submission),
            summary=Summary(short=summary[:2000]),
            embedding_dim=len(embedding),
            created_at=utcnow(),
            creator_id=submission.creator_id,
            language=submission.language,
            embedding=embedding,
        )


def serving_settings(settings: Settings) -> tuple[Settings, str]:
    """Settings whose KEYE_MODEL is the model to serve (the registry's active version, else
    KEYE_MODEL itself), and that version's name. Read once at start: after `keye train promote`
    workers pick the new version up when restarted."""
    from sqlmodel import Session

    engine = engine_from(settings)
    try:
        migrate(engine)
        with Session(engine) as session:
            version, path = serving_model(session, settings)
    finally:
        engine.dispose()
    return settings.for_model(path), version


def load_analyzer(settings: Settings, kind: str = "full", **options: int) -> Analyzer:
    """The analyzer for the model to serve (`serving_settings`) on KEYE_DEVICE.

    kind "full": `analysis.VideoAnalyzer` (tags, summaries, moderation by constrained decoding;
    its own versioned task config decides frames and pixels, `options` do not apply).
    kind "basic": `KeyeAnalyzer` above (summary + embedding only; options: max_frames, max_pixels,
    max_new_tokens).
    """
    if kind not in ("full", "basic"):
        raise ValueError(f"unknown analyzer kind {kind!r}; use 'full' or 'basic'")
    # The registry is in the database: a worker started before it waits here, before loading the model.
    settings, version = until_available(lambda: serving_settings(settings), database_label(settings))
    if kind == "basic":
        analyzer = KeyeAnalyzer(settings, **options)
        analyzer.model_version = version
        return analyzer
    try:
        from analysis import VideoAnalyzer
    except ImportError as e:
        raise AnalyzerUnavailableError(
            f"the full analysis (analysis) cannot be imported: {e}; use the basic analyzer"
        ) from e
    return VideoAnalyzer.from_settings(settings, model_version=version)
