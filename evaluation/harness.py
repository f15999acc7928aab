"""Run the analyzer on a labelled set the way a worker does, and score what it produced.

The worker's path is `analysis.stages.VideoProcessor`: safe fetch of the video's URI, then the
analyzer (batched through `analyze_many`, falling back to one video at a time), with the same
settings and the same analyzer `analysis.serving.load_analyzer` builds. Nothing is stored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from evaluation.labelled import LabelledSet
from evaluation.report import build_report
from service.schemas import AnalysisRecord, Submission, utcnow
from service.settings import Settings

log = logging.getLogger("keye.eval")


@dataclass
class AnalyzerRun:
    records: dict[str, AnalysisRecord] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    generated_tokens: dict[str, int] = field(default_factory=dict)  # per video, when the analyzer exposes answers


class _TokenCounter:
    """The analyzer itself, counting the tokens of every answer it generates (reasoning included).
    `analyze_many` is what VideoAnalyzer.analyze_many does, keeping the raw answers it drops."""

    def __init__(self, analyzer, tokens: dict[str, int]) -> None:
        self.inner, self.tokens = analyzer, tokens
        self.model_version, self.prompt_version = analyzer.model_version, analyzer.prompt_version

    def analyze_many(self, items):
        out = []
        for record, chunks in self.inner.analyze_with_answers(items):
            texts = [t for ch in chunks for o in ch.outputs.values() for t in (o.analysis, o.think, o.answer_text) if t]
            self.tokens[record.video_id] = sum(len(self.inner.processor.tokenizer.encode(t)) for t in texts)
            out.append(record)
        return out

    def analyze(self, path, submission: Submission) -> AnalysisRecord:
        return self.analyze_many([(path, submission)])[0]


def run_analyzer(
    analyzer,
    labelled: LabelledSet,
    settings: Settings,
    batch_size: int = 4,
    progress: Callable[[int, int], None] | None = None,
) -> AnalyzerRun:
    """Analyze every video of the set; a video that fails is recorded with its reason, never fatal
    (a store is never touched, so there is no outage to propagate)."""
    from analysis.stages import VideoProcessor

    settings = settings.model_copy(update={"file_roots": [*settings.file_roots, *labelled.roots]})
    run = AnalyzerRun()
    counted = _TokenCounter(analyzer, run.generated_tokens) if hasattr(analyzer, "analyze_with_answers") else analyzer
    processor = VideoProcessor(settings, counted, engine=None)
    works = [Submission(video_id=v.video_id, uri=v.uri, submitted_at=utcnow()) for v in labelled.videos]
    start = time.perf_counter()
    for i in range(0, len(works), batch_size):
        batch = works[i : i + batch_size]
        run.records.update(processor.analyze_many(batch))
        for w in batch:
            if w.video_id in run.records:
                continue
            try:
                run.records[w.video_id] = processor.analyze(w)
            except Exception as e:  # noqa: BLE001 - a bad clip is a measured failure, not a crash
                run.errors[w.video_id] = f"{type(e).__name__}: {e}"[:500]
                log.warning("eval: %s failed: %s", w.video_id, run.errors[w.video_id])
        if progress:
            progress(min(i + batch_size, len(works)), len(works))
    run.seconds = time.perf_counter() - start
    return run


def evaluate(
    analyzer,
    labelled: LabelledSet,
    settings: Settings,
    config=None,
    batch_size: int = 4,
    progress: Callable[[int, int], None] | None = None,
    **score_options: Any,
) -> dict:
    """Run and score: the report (see report.py for its keys)."""
    run = run_analyzer(analyzer, labelled, settings, batch_size, progress)
    embed = getattr(analyzer, "embed_text", None)
    return build_report(
        labelled,
        run.records,
        config=config,
        text_embed=embed,
        run=run,
        model_version=analyzer.model_version,
        prompt_version=analyzer.prompt_version,
        **score_options,
    )
