"""Supervised examples from a labelled corpus: every analysis task of every clip, taught its ground truth.

    made = corpus_examples(processor, cfg, "corpus/train")   # reads labels.jsonl, decodes each clip
    made.examples   # the same Example the feedback path builds (training/dataset.py's one builder)
    made.clips      # video_id -> the clip's visual passes (prompt prefix + pixels), for contrastive pairs
    made.skipped    # (video_id, task, reason) for what could not be taught

The targets are the clip's ground-truth record read by analysis/answers.py exactly as it reads a
stored analysis record, so they are written in the form the analyzer's grammar admits; the clip is
decoded, segmented and chunked with the analysis configuration's budgets like the analyzer does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from analysis import answers as A
from analysis.config import TASK_NAMES, AnalysisConfig
from analysis.errors import AnalysisError, UnusableEvent
from corpus.labels import LabelledClip, load_labels
from keye_model.processor import MediaError, ProcessorInputError
from training.dataset import ChunkPrompt, Example, Targets, decode_video, task_examples, video_chunks


@dataclass
class CorpusExamples:
    examples: list[Example] = field(default_factory=list)
    clips: dict[str, list[ChunkPrompt]] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)


def clip_targets(cfg: AnalysisConfig, clip: LabelledClip) -> Targets:
    record = clip.record.model_dump(mode="json")
    return Targets(
        tags=A.record_tags(record),
        moderation=A.corrected_moderation(cfg, record, []),
        summary={k: record["summary"].get(k, "") for k in A.SUMMARY_FIELDS},
        products=A.record_products(record),
    )


def corpus_examples(
    processor,
    cfg: AnalysisConfig,
    folder: str | Path,
    clips: list[LabelledClip] | None = None,
    tasks: tuple[str, ...] | None = None,
) -> CorpusExamples:
    """Examples of `tasks` (default: every task the configuration has) for the clips (default: all labelled)."""
    folder = Path(folder)
    wanted = [t for t in TASK_NAMES if t in cfg.tasks and (tasks is None or t in tasks)]
    out = CorpusExamples()
    for clip in load_labels(folder) if clips is None else clips:
        try:
            chunks = video_chunks(processor, cfg, decode_video(processor, cfg, folder / clip.file))
        except (MediaError, ProcessorInputError, AnalysisError, OSError) as e:
            out.skipped.append((clip.video_id, "*", f"cannot be read: {type(e).__name__}: {e}"))
            continue
        out.clips[clip.video_id] = chunks
        out.captions[clip.video_id] = clip.caption
        targets = clip_targets(cfg, clip)
        for task in wanted:
            try:
                out.examples.extend(task_examples(processor, cfg, targets, task, chunks, clip.video_id))
            except (UnusableEvent, AnalysisError) as e:
                out.skipped.append((clip.video_id, task, str(e)))
    return out
