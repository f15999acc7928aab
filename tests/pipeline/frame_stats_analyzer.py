"""TEST ONLY: a small deterministic analyzer for pipeline tests, never used by the product.

It really decodes the video with PyAV (so broken files fail like they do in the product, with
keye_model's typed MediaError when available) and derives an 8-dim embedding from per-frame colour
statistics. `KEYE_TEST_ANALYZE_DELAY_S` slows each video down so a test can kill a worker mid-batch.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import av
import numpy as np

from keye.schemas import AnalysisRecord, CategoryFlag, Evidence, Moderation, Submission, Summary, TagScore
from keye.schemas import analysis_id_for, utcnow

try:
    from keye_model.processor.errors import VideoDecodeError
except ImportError:  # the model package is not there yet
    class VideoDecodeError(Exception):  # type: ignore[no-redef]
        pass


class FrameStatsAnalyzer:
    model_version = "test-framestats-1"
    prompt_version = "test"

    def __init__(self, max_frames: int = 4, flag_hashtag: str = "flagme") -> None:
        self.max_frames = max_frames
        self.flag_hashtag = flag_hashtag
        self.delay_s = float(os.environ.get("KEYE_TEST_ANALYZE_DELAY_S", "0"))

    def analyze(self, path: Path, submission: Submission) -> AnalysisRecord:
        try:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                frames = []
                for frame in container.decode(stream):
                    frames.append(frame.to_ndarray(format="rgb24")[::8, ::8].astype(np.float32))
                    if len(frames) >= self.max_frames:
                        break
                duration = float(stream.duration * stream.time_base) if stream.duration else 0.0
        except (av.FFmpegError, IndexError) as e:
            raise VideoDecodeError(f"cannot decode {path.name}: {e}") from None
        if not frames:
            raise VideoDecodeError(f"no frames in {path.name}")
        if self.delay_s:
            time.sleep(self.delay_s)
        stack = np.stack(frames)
        emb = np.concatenate([stack.mean(axis=(0, 1, 2)), stack.std(axis=(0, 1, 2)), [stack.mean(), 1.0]]) / 255.0
        tags = [TagScore(label=h.lstrip("#").lower(), score=1.0) for h in submission.hashtags]
        moderation = Moderation()
        if self.flag_hashtag in {t.label for t in tags}:
            moderation = Moderation(status="flagged", categories=[CategoryFlag(
                category="scam_spam", severity=2, confidence=0.9,
                evidence=[Evidence(start_s=0.0, end_s=1.0, reason="test flag")])])
        return AnalysisRecord(
            analysis_id=analysis_id_for(submission.video_id, self.model_version), video_id=submission.video_id,
            model_version=self.model_version, prompt_version=self.prompt_version, duration_s=duration,
            frames_used=len(frames), tags=tags, summary=Summary(short=f"{len(frames)} frames of {path.name}"),
            moderation=moderation, embedding_dim=len(emb), created_at=utcnow(), creator_id=submission.creator_id,
            language=submission.language, embedding=[float(x) for x in emb])
