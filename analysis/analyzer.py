"""The per-video analysis: one visual pass per video (or per chunk of a long one), every task
continuing that shared prefix under its grammar, tasks of many videos decoded in one batch.

    analyzer = VideoAnalyzer(model, processor)          # or VideoAnalyzer.from_settings(settings)
    record = analyzer.analyze(path, submission)         # service.schemas.AnalysisRecord
    records = analyzer.analyze_many([(path, submission), ...])
    vector = analyzer.embed_text("cats playing piano")   # same space as record.embedding
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from analysis import merge, prompts
from analysis.config import TASK_NAMES, AnalysisConfig, load_config
from analysis.embedding import embed_text
from analysis.errors import AnalysisConfigError
from analysis.generation import DEFAULT_DECODE, DecodeOptions, generate_rows
from analysis.grammar import STOP_ID, GrammarBook
from analysis.output import parse_output
from analysis.segments import Chunk, Segment, chunk_segments, segment_video
from keye_model.engine import Engine, SamplingParams
from keye_model.processor import VideoInput
from service.schemas import AnalysisRecord, Submission, analysis_id_for, utcnow


@dataclass
class _Video:
    """One video on its way through the batch."""

    submission: Submission
    video: VideoInput
    segments: list[Segment]
    chunks: list[Chunk]
    tasks: tuple[str, ...]
    timings: dict[str, float] = field(default_factory=dict)
    answers: list[merge.ChunkAnswers] = field(default_factory=list)
    embeddings: list[torch.Tensor] = field(default_factory=list)


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000.0, 3)


def chunk_video(video: VideoInput, chunk: Chunk) -> VideoInput:
    """The frames of one chunk as a video of its own, padded to an even count like the processor does."""
    idx = list(chunk.frames)
    if len(idx) % 2:
        idx.append(idx[-1])
    ts = [video.timestamps[i] for i in idx]
    return VideoInput(
        video.frames[idx],
        ts,
        video.sample_fps,
        video.video_fps,
        video.total_frames,
        [video.indices[i] for i in idx] if video.indices else [],
        video.duration_s,
        video.source,
    )


class VideoAnalyzer:
    """Turns videos into analysis records; safe to share between threads (calls are serialized)."""

    def __init__(
        self,
        model,
        processor,
        config: AnalysisConfig | None = None,
        model_version: str | None = None,
        max_batch_rows: int = 16,
        max_batch_tokens: int | None = 262_144,
        decode: DecodeOptions = DEFAULT_DECODE,
    ) -> None:
        """`decode` picks the decoder's shortcuts (generation.py; PLAIN turns them off).

        max_batch_rows / max_batch_tokens bound one decoding batch: every task row holds its own
        copy of its video's KV cache (rows x longest row positions); at Keye-8B's 144 KiB per
        position, 262,144 positions are 36 GiB. A row longer than the limit still runs, alone."""
        self.model = model
        self.processor = processor
        self.cfg = config or load_config()
        self.model_version = str(model_version or getattr(model, "version", None) or "keye-unversioned")
        self.prompt_version = self.cfg.version
        self.engine = Engine(model)
        self.grammars = GrammarBook(self.cfg, processor.tokenizer, model.config.vocab_size)
        if max_batch_rows < 1 or (max_batch_tokens is not None and max_batch_tokens < 1):
            raise AnalysisConfigError("max_batch_rows and max_batch_tokens must be positive")
        self.max_batch_rows = max_batch_rows
        self.max_batch_tokens = max_batch_tokens
        self.decode = decode
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, settings, config_path: str | Path | None = None, model_version: str | None = None
    ) -> VideoAnalyzer:
        import keye_model
        from keye_model.processor import KeyeProcessor

        model = keye_model.load(settings.model, dtype=settings.dtype, device=settings.device)
        folder = Path(settings.model)
        processor = KeyeProcessor.from_pretrained(folder) if folder.is_dir() else KeyeProcessor()
        # settings.analysis_config is KEYE_ANALYSIS_CONFIG
        path = config_path or settings.analysis_config
        from stores.db import model_version_name

        return cls(
            model, processor, load_config(path), model_version=model_version or model_version_name(settings.model)
        )

    # ---- public --------------------------------------------------------------------------------
    def analyze(self, path: str | Path | VideoInput, submission: Submission) -> AnalysisRecord:
        """The worker interface (analysis/serving.py Analyzer): one local video, one record."""
        return self.analyze_many([(path, submission)])[0]

    def analyze_many(self, items: Sequence[tuple[str | Path | VideoInput, Submission]]) -> list[AnalysisRecord]:
        """Several videos: each prefilled once, the tasks of all of them decoded in shared batches."""
        return [record for record, _ in self.analyze_with_answers(items)]

    def analyze_with_answers(
        self, items: Sequence[tuple[str | Path | VideoInput, Submission]]
    ) -> list[tuple[AnalysisRecord, list[merge.ChunkAnswers]]]:
        """Records with the parsed raw answers of every chunk (for audits and tests)."""
        if not items:
            return []
        with self._lock, torch.inference_mode():
            videos = [self._prepare(src, sub) for src, sub in items]
            self._run(videos)
            return [(self._record(v), v.answers) for v in videos]

    def embed_text(self, query: str) -> list[float]:
        """A text query in the same space as the records' embeddings (see embedding.py)."""
        with self._lock:
            return embed_text(self.model, self.processor, query)

    def tasks_for(self, submission: Submission) -> tuple[str, ...]:
        wanted: list[str] = [t for t in submission.tasks if t in TASK_NAMES]
        if not submission.tasks:
            wanted = [name for name, t in self.cfg.tasks.items() if t.default]
        return tuple(t for t in TASK_NAMES if t in wanted and t in self.cfg.tasks)

    # ---- steps ---------------------------------------------------------------------------------
    def _load(self, src: str | Path | VideoInput) -> VideoInput:
        if isinstance(src, VideoInput):
            return src
        b = self.cfg.video
        return self.processor.load_video(
            str(src), fps=b.fps, max_frames=b.max_frames, max_pixels=b.max_pixels, min_pixels=b.min_pixels
        )

    def _prepare(self, src, submission: Submission) -> _Video:
        t0 = time.perf_counter()
        video = self._load(src)
        decode_ms = _ms(t0)
        t0 = time.perf_counter()
        segments = segment_video(video.frames, video.timestamps, video.duration_s, self.cfg.segmentation)
        chunks = chunk_segments(segments, video.timestamps, self.cfg.video.frames_per_pass)
        v = _Video(
            submission,
            video,
            segments,
            chunks,
            self.tasks_for(submission),
            {"decode_ms": decode_ms, "segment_ms": _ms(t0)},
        )
        v.answers = [merge.ChunkAnswers(c.segments) for c in chunks]
        return v

    def _run(self, videos: list[_Video]) -> None:
        rows: list[tuple[_Video, int, str]] = []  # (video, chunk, task)
        prefixes = {}
        for v in videos:
            t0 = time.perf_counter()
            for k, chunk in enumerate(v.chunks):
                inputs = prompts.prefix_inputs(self.processor, chunk_video(v.video, chunk))
                prefix = self.engine.prefill_prefix(inputs, embed=True)
                prefixes[(id(v), k)] = prefix
                assert prefix.embedding is not None, "prefill_prefix(embed=True) returns the embedding"
                v.embeddings.append(prefix.embedding)
                rows.extend((v, k, task) for task in v.tasks if task != "embedding")
            v.timings["prefill_ms"] = _ms(t0)
        t0 = time.perf_counter()
        for batch in self._batches(rows, prefixes):
            self._generate(batch, prefixes)
        generate_ms = _ms(t0)
        for v in videos:
            v.timings["generate_ms"] = generate_ms  # shared by the videos decoded together

    def _batches(self, rows: list[tuple[_Video, int, str]], prefixes: dict) -> list[list[tuple[_Video, int, str]]]:
        """Consecutive rows, cut where the cache (rows x longest row) would pass the limits."""
        out: list[list[tuple[_Video, int, str]]] = []
        width = 0
        for row in rows:
            v, k, task = row
            need = len(prefixes[(id(v), k)].tokens) + 512 + self.cfg.task(task).max_new_tokens  # 512: the task prompt
            wider = max(width, need)
            fits = (
                out
                and len(out[-1]) < self.max_batch_rows
                and (self.max_batch_tokens is None or wider * (len(out[-1]) + 1) <= self.max_batch_tokens)
            )
            if fits:
                out[-1].append(row)
                width = wider
            else:
                out.append([row])
                width = need
        return out

    def _generate(self, rows: list[tuple[_Video, int, str]], prefixes: dict) -> None:
        if not rows:
            return
        conts, grammars, budgets = [], [], []
        for v, k, task in rows:
            segs = v.chunks[k].segments
            conts.append((prefixes[(id(v), k)], prompts.continuation_ids(self.processor, self.cfg, task, segs)))
            grammars.append(self.grammars.compiled(task, len(segs)))
            budgets.append(self.cfg.task(task).max_new_tokens)
        s = self.cfg.sampling
        params = SamplingParams(
            max_new_tokens=max(budgets), temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, seed=s.seed
        )
        result = generate_rows(self.engine, conts, grammars, budgets, params, self.decode)
        for (v, k, task), tokens in zip(rows, result.tokens):
            ids = [t for t in tokens if t != STOP_ID]
            v.answers[k].outputs[task] = parse_output(self.processor.decode(ids))

    def _record(self, v: _Video) -> AnalysisRecord:
        sub = v.submission
        mean = torch.stack(v.embeddings).mean(0)
        emb = torch.nn.functional.normalize(mean, dim=-1).tolist()
        failed = [t for ch in v.answers for t, o in ch.outputs.items() if not o.ok]
        total = sum(x for k, x in v.timings.items() if k.endswith("_ms"))
        return AnalysisRecord(
            analysis_id=analysis_id_for(sub.video_id, self.model_version),
            video_id=sub.video_id,
            model_version=self.model_version,
            prompt_version=self.prompt_version,
            status="partial" if failed else "ok",
            duration_s=max(float(v.video.duration_s), 0.0),
            frames_used=len(v.video.timestamps),
            tags=merge.tags(self.cfg, v.answers) if "tags" in v.tasks else [],
            summary=merge.summary(v.answers) if "summary" in v.tasks else merge.Summary(),
            moderation=merge.moderation(self.cfg, v.answers) if "moderation" in v.tasks else merge.Moderation(),
            products=merge.products(v.answers) if "products" in v.tasks else [],
            embedding_dim=len(emb),
            timings_ms={**v.timings, "total_ms": round(total, 3)},
            created_at=utcnow(),
            creator_id=sub.creator_id,
            language=sub.language,
            embedding=emb,
        )
