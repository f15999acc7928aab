"""The per-video analysis step, behind a small interface.

`Analyzer.analyze(path, submission)` turns a local video file into the analysis record of the
service spec (with its embedding). `KeyeAnalyzer` is the product implementation on keye_model.

Honest status: the analysis-tasks issue (tags, long summary, title, moderation with constrained
decoding) has not landed. Until it does, `KeyeAnalyzer` fills only:
- summary.short: a short greedy generation describing the video;
- the embedding: `model.embed` of the video;
- tags: the submission's own hashtags (score 1.0), i.e. nothing the model inferred;
- moderation: status "clear" with no categories, i.e. NOT a moderation decision.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol, runtime_checkable

from keye.schemas import AnalysisRecord, Submission, Summary, TagScore, analysis_id_for, utcnow
from keye.settings import Settings

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
    """

    prompt_version = PROMPT_VERSION

    def __init__(self, settings: Settings) -> None:
        try:
            import torch

            import keye_model
        except ImportError as e:
            raise AnalyzerUnavailableError(f"keye_model cannot be imported: {e}") from e
        if not hasattr(keye_model, "load") or not hasattr(keye_model, "KeyeProcessor"):
            raise AnalyzerUnavailableError("keye_model does not provide load() and KeyeProcessor yet")
        dtype = getattr(torch, settings.dtype, None)
        if not isinstance(dtype, torch.dtype):
            raise AnalyzerUnavailableError(f"unknown dtype {settings.dtype!r}")
        self.model = keye_model.load(settings.model, device=settings.device, dtype=dtype)
        self.processor = keye_model.KeyeProcessor.from_model(self.model) if hasattr(
            keye_model.KeyeProcessor, "from_model") else keye_model.KeyeProcessor()
        self.model_version = str(getattr(self.model, "version", None) or settings.model)
        self._lock = threading.Lock()

    def analyze(self, path: Path, submission: Submission) -> AnalysisRecord:
        import torch

        video = self.processor.load_video(str(path))
        messages = [{"role": "user", "content": [{"type": "video", "video": video},
                                                 {"type": "text", "text": SUMMARY_PROMPT}]}]
        with self._lock, torch.inference_mode():
            inputs = self.processor(messages)
            out = self.model.generate(inputs, max_new_tokens=SUMMARY_MAX_NEW_TOKENS, do_sample=False)
            summary = self.processor.decode(out[0], skip_special_tokens=True).strip()
            embedding = self.model.embed(inputs).float().reshape(-1).tolist()
        return AnalysisRecord(
            analysis_id=analysis_id_for(submission.video_id, self.model_version), video_id=submission.video_id,
            model_version=self.model_version, prompt_version=self.prompt_version, status="partial",
            duration_s=float(getattr(video, "duration_s", 0.0)), frames_used=len(getattr(video, "timestamps", [])),
            tags=hashtag_tags(submission), summary=Summary(short=summary), embedding_dim=len(embedding),
            created_at=utcnow(), creator_id=submission.creator_id, language=submission.language,
            embedding=embedding)


def load_analyzer(settings: Settings) -> Analyzer:
    return KeyeAnalyzer(settings)
