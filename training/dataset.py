"""Supervised examples from stored feedback: the analyzer's exact prompt for a task on a video, and
the corrected answer (see answers.py for what each kind of feedback means).

    ds = build_dataset(session, unused_feedback(session), processor, analysis_cfg, settings)
    ds.examples   # Example: input_ids = prompt + answer + <|im_end|>, labels -100 on the prompt
    ds.pairs      # PreferencePair: summaries rated low against a better one of the same video
    ds.skipped    # Skip: (event_id, kind, reason) for every event that gave nothing

The prompt is built by the analyzer's own code (analysis.prompts: the shared video prefix plus
the task's continuation) on the video decoded with the analysis configuration's budgets, segmented
and chunked like the analyzer does: one example per (video, task, visual pass); the tasks of one
pass share its pixel tensors. Nothing here raises for a bad event: a missing video
or analysis, a refused URI, an undecodable file or an unknown kind becomes a Skip with its reason.
Feedback only decides the Targets (the answers a video should get); turning Targets into examples
(video_chunks, task_examples) is one builder, shared with labelled corpus clips (corpus_examples.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa
import torch
from sqlmodel import Session, col, select

from analysis import answers as A
from analysis import prompts
from analysis.config import AnalysisConfig
from analysis.errors import AnalysisError, UnusableEvent
from analysis.segments import Chunk, Segment, chunk_segments, segment_video
from keye_model.config import IM_END_TOKEN_ID
from keye_model.processor import MediaError, ProcessorInputError, VideoInput
from service.fetch import FetchError, fetched
from service.settings import Settings
from stores.db import Analysis, FeedbackRow, Video

IGNORE = -100  # label of a token that carries no loss (prompt, vision pads)
KIND_ORDER = {
    k: i
    for i, k in enumerate(("tag_correction", "moderation_decision", "summary_edit", "summary_rating", "engagement"))
}


@dataclass
class Example:
    key: str  # video:task:chunk
    video_id: str
    task: str
    event_ids: tuple[str, ...]
    input_ids: torch.Tensor  # (L,) prompt + answer + <|im_end|>
    labels: torch.Tensor  # (L,) IGNORE on the prompt, the token itself on the answer
    vision: dict[str, torch.Tensor]  # pixel_values_videos, video_grid_thw, second_per_grid_ts
    answer: str
    weight: float = 1.0
    prefix_len: int = 0  # tokens of the pass's shared prefix (the chat up to the end of the video)

    @property
    def prompt_len(self) -> int:
        return int((self.labels == IGNORE).sum())

    def model_inputs(self) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids[None], **self.vision}


@dataclass
class PreferencePair:
    chosen: Example
    rejected: Example


@dataclass
class Skip:
    event_id: str
    kind: str
    reason: str


@dataclass
class FeedbackDataset:
    examples: list[Example] = field(default_factory=list)
    pairs: list[PreferencePair] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    considered: list[str] = field(default_factory=list)  # every event id looked at

    @property
    def used(self) -> set[str]:
        return {e for ex in self.examples for e in ex.event_ids} | {
            e for p in self.pairs for e in p.chosen.event_ids + p.rejected.event_ids
        }

    def skip_reasons(self) -> dict[str, str]:
        return {s.event_id: f"{s.kind}: {s.reason}" for s in self.skipped}


def unused_feedback(session: Session, limit: int | None = None) -> list[FeedbackRow]:
    """Stored events no run has consumed yet, oldest first."""
    q = (
        select(FeedbackRow)
        .where(col(FeedbackRow.used_in_run).is_(None))
        .order_by(col(FeedbackRow.at), col(FeedbackRow.event_id))
    )
    if limit is not None:
        q = q.limit(limit)
    return list(session.exec(q))


@dataclass
class ChunkPrompt:
    """The analyzer's shared visual prefix of one pass: its tokens and pixels serve every task's example."""

    ids: torch.Tensor  # (P,) the chat up to the end of the video
    vision: dict[str, torch.Tensor]
    segments: list[Segment]


def chunk_prompt(processor, video: VideoInput, chunk: Chunk) -> ChunkPrompt:
    from analysis.analyzer import chunk_video

    inputs = prompts.prefix_inputs(processor, chunk_video(video, chunk))
    ids = inputs.pop("input_ids")[0]
    inputs.pop("attention_mask", None)
    return ChunkPrompt(ids, inputs, chunk.segments)


def decode_video(processor, cfg: AnalysisConfig, path) -> VideoInput:
    """The video as the analyzer decodes it: the configuration's frame rate, frame and pixel budgets."""
    b = cfg.video
    return processor.load_video(
        str(path), fps=b.fps, max_frames=b.max_frames, max_pixels=b.max_pixels, min_pixels=b.min_pixels
    )


def tokenize_example(
    processor,
    cfg: AnalysisConfig,
    task: str,
    prefix: ChunkPrompt,
    answer: str,
    key: str,
    video_id: str,
    event_ids: Iterable[str],
    weight: float = 1.0,
) -> Example:
    """The analyzer's prompt for `task` (shared prefix + task continuation), the answer and the stop token."""
    cont = torch.tensor(prompts.continuation_ids(processor, cfg, task, prefix.segments), dtype=torch.long)
    prompt = torch.cat([prefix.ids, cont])
    target = torch.tensor(processor.tokenizer.encode(answer) + [IM_END_TOKEN_ID], dtype=torch.long)
    ids = torch.cat([prompt, target])
    labels = torch.cat([torch.full_like(prompt, IGNORE), target])
    return Example(
        key, video_id, task, tuple(event_ids), ids, labels, prefix.vision, answer, weight, int(prefix.ids.shape[0])
    )


# ---- the one example builder: a video's target answers -> examples (feedback and corpus alike) -------


@dataclass(kw_only=True)
class Targets:
    """The answers one video should get, in video time; None: the task is not taught."""

    tags: list[A.TagItem] | None = None
    moderation: A.ModerationTarget | None = None
    summary: dict[str, str] | None = None
    products: list[A.ProductItem] | None = None


def video_chunks(processor, cfg: AnalysisConfig, video: VideoInput) -> list[ChunkPrompt]:
    """The analyzer's visual passes of a decoded video, each with its shared prompt prefix."""
    segments = segment_video(video.frames, video.timestamps, video.duration_s, cfg.segmentation)
    chunks = chunk_segments(segments, video.timestamps, cfg.video.frames_per_pass)
    return [chunk_prompt(processor, video, c) for c in chunks]


def summary_text(cfg: AnalysisConfig, summary: dict[str, str]) -> str:
    return A.with_prelude(cfg, "summary", A.summary_answer(cfg, summary), "Summary of the video.")


def task_answer(cfg: AnalysisConfig, targets: Targets, task: str, chunk: ChunkPrompt) -> str:
    """The answer of a taught task: its target is set."""
    if task == "tags":
        assert targets.tags is not None, "tags are not taught for this video"
        return A.with_prelude(cfg, task, A.tags_answer(cfg, targets.tags, chunk.segments), "Tags from what is visible.")
    if task == "moderation":
        assert targets.moderation is not None, "moderation is not taught for this video"
        body = A.moderation_answer(cfg, targets.moderation, chunk.segments)
        return A.with_prelude(cfg, task, body, targets.moderation.reasoning)
    if task == "products":
        assert targets.products is not None, "products are not taught for this video"
        return A.with_prelude(cfg, task, A.products_answer(cfg, targets.products, chunk.segments), "Products in view.")
    assert targets.summary is not None, "the summary is not taught for this video"
    return summary_text(cfg, targets.summary)


def task_examples(
    processor,
    cfg: AnalysisConfig,
    targets: Targets,
    task: str,
    chunks: list[ChunkPrompt],
    video_id: str,
    event_ids: Iterable[str] = (),
    weight: float = 1.0,
) -> list[Example]:
    """One example per visual pass; a whole-video summary only when the video is one pass."""
    if task == "summary" and len(chunks) > 1:
        raise UnusableEvent(
            f"the video is analyzed in {len(chunks)} passes; a whole-video summary has no single-pass answer"
        )
    return [
        tokenize_example(
            processor,
            cfg,
            task,
            chunk,
            task_answer(cfg, targets, task, chunk),
            f"{video_id}:{task}:{k}",
            video_id,
            event_ids,
            weight,
        )
        for k, chunk in enumerate(chunks)
    ]


# ---- planning: which answers each video's feedback asks for -----------------------------------------


@dataclass
class _Plan(Targets):
    """The corrected answers one video's feedback asks for (video time), with the events behind them."""

    video_id: str
    record: dict
    summary_weight: float = 1.0
    rejected: list[tuple[dict[str, str], str]] = field(default_factory=list)  # (summary, event_id)
    events: dict[str, list[FeedbackRow]] = field(default_factory=dict)  # task -> events used


class _Builder:
    def __init__(self, session: Session, processor, cfg: AnalysisConfig, settings: Settings) -> None:
        self.session, self.processor, self.cfg, self.settings = session, processor, cfg, settings
        self.ds = FeedbackDataset()

    def skip(self, rows: Iterable[FeedbackRow], reason: str) -> None:
        self.ds.skipped.extend(Skip(r.event_id, r.kind, reason) for r in rows)

    def analysis_of(self, rows: list[FeedbackRow]) -> dict | None:
        """The record the newest event refers to, else the video's newest analysis."""
        for r in sorted(rows, key=lambda r: r.at, reverse=True):
            aid = (r.payload or {}).get("analysis_id")
            a = self.session.get(Analysis, aid) if isinstance(aid, str) else None
            if a is not None:
                return a.record or {}
        a = self.session.exec(
            select(Analysis).where(Analysis.video_id == rows[0].video_id).order_by(sa.desc(col(Analysis.created_at)))
        ).first()
        return None if a is None else (a.record or {})

    def plan(self, video_id: str, rows: list[FeedbackRow]) -> _Plan | None:
        record = self.analysis_of(rows)
        if record is None:
            self.skip(rows, f"no analysis of video {video_id} is stored")
            return None
        plan = _Plan(video_id, record)
        by_kind: dict[str, list[FeedbackRow]] = defaultdict(list)
        for r in rows:
            by_kind[r.kind].append(r)
        # edits before ratings: a rating only becomes the target when no edit exists
        for kind, group in sorted(by_kind.items(), key=lambda kv: KIND_ORDER.get(kv[0], len(KIND_ORDER))):
            try:
                self._plan_kind(plan, kind, group)
            except UnusableEvent as e:
                self.skip(group, str(e))
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                self.skip(group, f"malformed payload: {type(e).__name__}: {e}")
        return plan

    def _plan_kind(self, plan: _Plan, kind: str, rows: list[FeedbackRow]) -> None:
        payloads = [r.payload or {} for r in rows]
        if kind == "tag_correction":
            plan.tags = A.corrected_tags(plan.record, payloads)
            plan.events["tags"] = rows
        elif kind == "moderation_decision":
            final = [r for r in rows if (r.payload or {}).get("decision") in ("confirm", "clear")]
            if final:
                plan.moderation = A.corrected_moderation(self.cfg, plan.record, [r.payload for r in final])
                plan.events["moderation"] = final
            self.skip([r for r in rows if r not in final], "an escalation has no final decision to learn from")
        elif kind == "summary_edit":
            valid = [r for r in rows if (r.payload or {}).get("field", "short") in A.SUMMARY_FIELDS]
            self.skip(
                [r for r in rows if r not in valid], f"summary_edit field must be one of {', '.join(A.SUMMARY_FIELDS)}"
            )
            if valid:
                plan.summary = A.edited_summary(plan.record, [r.payload for r in valid])
                plan.summary_weight = 1.0
                plan.events["summary"] = valid
        elif kind == "summary_rating":
            self._plan_ratings(plan, rows)
        elif kind == "engagement":
            raise UnusableEvent("engagement carries no corrected answer; it is not a supervised target")
        else:
            raise UnusableEvent(f"unknown feedback kind {kind!r}")

    def _plan_ratings(self, plan: _Plan, rows: list[FeedbackRow]) -> None:
        def rated(r: FeedbackRow) -> dict[str, str]:  # the summary the rater saw
            shown = r.payload.get("summary") or plan.record.get("summary") or {}
            return {k: str(shown.get(k) or "") for k in A.SUMMARY_FIELDS}

        ratings = {r.event_id: int(r.payload["rating"]) for r in rows}  # a malformed one fails before any change
        good = [r for r in rows if ratings[r.event_id] >= 4]
        for r in rows:
            rating = ratings[r.event_id]
            if rating <= 2:
                plan.rejected.append((rated(r), r.event_id))
            elif rating == 3:
                self.skip([r], "a neutral rating (3) is neither a target nor a rejected answer")
        if good and plan.summary is None:  # an explicit edit beats a good rating
            best = max(good, key=lambda r: (ratings[r.event_id], r.at))
            plan.summary = rated(best)
            plan.summary_weight = (ratings[best.event_id] - 3) / 2
            plan.events["summary"] = [best]
            self.skip([r for r in good if r is not best], "superseded by a better or newer rating of the same video")
        elif good:
            self.skip(good, "superseded by an edit of the same summary")
        plan.events["summary_rating"] = rows

    # ---- from plan to tokens --------------------------------------------------------------------
    def realize(self, plan: _Plan, rows: list[FeedbackRow]) -> None:
        wanted = [t for t in ("tags", "moderation", "summary") if getattr(plan, t) is not None]
        low = [eid for _, eid in plan.rejected]
        if not wanted:
            self.skip([r for r in rows if r.event_id in low], "a low rating without a better summary to prefer")
            return
        video_row = self.session.get(Video, plan.video_id)
        task_rows = [r for t in wanted for r in plan.events[t]] + [r for r in rows if r.event_id in low]
        if video_row is None:
            self.skip(task_rows, f"video {plan.video_id} is not in the videos table")
            return
        try:
            chunks = video_chunks(self.processor, self.cfg, self.decode(video_row.uri))
        except (FetchError, MediaError, ProcessorInputError, AnalysisError, OSError) as e:
            self.skip(task_rows, f"video {plan.video_id} cannot be read: {type(e).__name__}: {e}")
            return
        made: dict[str, list[Example]] = {}
        for task in wanted:
            events = [r.event_id for r in plan.events[task]]
            try:
                made[task] = task_examples(
                    self.processor,
                    self.cfg,
                    plan,
                    task,
                    chunks,
                    plan.video_id,
                    events,
                    plan.summary_weight if task == "summary" else 1.0,
                )
            except (UnusableEvent, AnalysisError) as e:
                self.skip(plan.events[task], str(e))
            self.ds.examples.extend(made.get(task, []))
        if low and made.get("summary"):
            self._pairs(plan, chunks[0], made["summary"][0])
        elif low:
            self.skip([r for r in rows if r.event_id in low], "a low rating without a better summary to prefer")

    def decode(self, uri: str) -> VideoInput:
        with fetched(uri, self.settings) as path:
            return decode_video(self.processor, self.cfg, path)

    def _pairs(self, plan: _Plan, chunk: ChunkPrompt, chosen: Example) -> None:
        for summary, event_id in plan.rejected:
            row = [r for r in plan.events["summary_rating"] if r.event_id == event_id]
            try:
                answer = summary_text(self.cfg, summary)
            except UnusableEvent as e:
                self.skip(row, f"rejected summary: {e}")
                continue
            if answer == chosen.answer:
                self.skip(row, "the rejected summary equals the preferred one")
                continue
            rejected = tokenize_example(
                self.processor,
                self.cfg,
                "summary",
                chunk,
                answer,
                f"{plan.video_id}:summary:rejected:{event_id}",
                plan.video_id,
                (event_id,),
            )
            self.ds.pairs.append(PreferencePair(chosen, rejected))


def build_dataset(
    session: Session, rows: list[FeedbackRow], processor, cfg: AnalysisConfig, settings: Settings
) -> FeedbackDataset:
    """Examples, preference pairs and skip reasons from stored feedback rows (never raises for a bad event)."""
    b = _Builder(session, processor, cfg, settings)
    b.ds.considered = [r.event_id for r in rows]
    by_video: dict[str, list[FeedbackRow]] = defaultdict(list)
    for r in sorted(rows, key=lambda r: (r.at, r.event_id)):
        by_video[r.video_id].append(r)
    for video_id, group in by_video.items():
        plan = b.plan(video_id, group)
        if plan is not None:
            b.realize(plan, group)
    return b.ds
