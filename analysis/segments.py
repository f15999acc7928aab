"""Shot segmentation on the sampled frames, and chunking of long videos into whole-shot passes.

The change score between consecutive sampled frames is the mean of two signals on small
thumbnails: half the L1 distance of the per-channel colour histograms (global content) and the
mean absolute pixel difference (layout and motion), both in [0, 1]. A cut goes where the score
reaches the threshold; the strongest cuts win when shots would be shorter than min_shot_s or more
than max_segments. A shot spans from its first frame's time to the next shot's first frame's
time (the last one to the end of the video), so shots tile the video without gaps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from analysis.config import SegmentationConfig
from analysis.errors import SegmentationError


@dataclass(frozen=True)
class Segment:
    index: int
    start_s: float
    end_s: float
    frames: tuple[int, ...]  # indices into the sampled frames


def _check(frames: torch.Tensor, timestamps: Sequence[float]) -> None:
    if not isinstance(frames, torch.Tensor) or frames.dim() != 4 or frames.shape[1] != 3 or frames.dtype != torch.uint8:
        raise SegmentationError("frames must be a uint8 tensor of shape (T, 3, H, W)")
    if frames.shape[0] == 0:
        raise SegmentationError("a video needs at least one sampled frame")
    if len(timestamps) != frames.shape[0]:
        raise SegmentationError(f"{frames.shape[0]} frames but {len(timestamps)} timestamps")
    if any(b < a for a, b in zip(timestamps, timestamps[1:])):
        raise SegmentationError("frame timestamps must not decrease")


def change_scores(frames: torch.Tensor, cfg: SegmentationConfig) -> torch.Tensor:
    """(T-1,) scores in [0, 1]: how much frame i+1 differs from frame i."""
    if frames.shape[0] < 2:
        return torch.zeros(0)
    side = cfg.thumb_side
    thumbs = F.interpolate(frames.float(), size=(side, side), mode="area") / 255.0  # (T, 3, s, s)
    bins = cfg.hist_bins
    idx = (thumbs * bins).long().clamp_(max=bins - 1).flatten(2)  # (T, 3, s*s)
    hist = torch.zeros(frames.shape[0], 3, bins).scatter_add_(2, idx, torch.ones_like(idx, dtype=torch.float))
    hist = hist / hist.sum(-1, keepdim=True)
    hist_d = 0.5 * (hist[1:] - hist[:-1]).abs().sum(-1).mean(-1)  # per channel in [0, 1], averaged
    pix_d = (thumbs[1:] - thumbs[:-1]).abs().flatten(1).mean(-1)
    return (0.5 * (hist_d + pix_d)).clamp_(0.0, 1.0)


def _end_time(timestamps: Sequence[float], duration_s: float) -> float:
    # the container's duration; never before the last sampled frame (a missing or short duration)
    return max(float(duration_s), float(timestamps[-1]))


def segment_video(
    frames: torch.Tensor, timestamps: Sequence[float], duration_s: float, cfg: SegmentationConfig
) -> list[Segment]:
    _check(frames, timestamps)
    ts = [float(t) for t in timestamps]
    end = _end_time(ts, duration_s)
    scores = change_scores(frames, cfg)
    candidates = sorted(((float(s), i + 1) for i, s in enumerate(scores) if s >= cfg.threshold), reverse=True)
    cuts: list[int] = []  # frame index where a new shot starts
    for _, cut in candidates:
        if len(cuts) >= cfg.max_segments - 1:
            break
        bounds = sorted(cuts + [cut])
        starts = [ts[0]] + [ts[c] for c in bounds] + [end]
        if all(b - a >= cfg.min_shot_s for a, b in zip(starts, starts[1:])):
            cuts = bounds
    return _build(ts, [0] + cuts, end)


def _build(ts: list[float], starts: list[int], end: float) -> list[Segment]:
    out = []
    for k, first in enumerate(starts):
        last = starts[k + 1] if k + 1 < len(starts) else len(ts)
        seg_end = ts[starts[k + 1]] if k + 1 < len(starts) else end
        out.append(Segment(k, ts[first], seg_end, tuple(range(first, last))))
    return out


@dataclass(frozen=True)
class Chunk:
    """A run of whole shots analyzed in one visual pass; `segments` are renumbered from 0."""

    frames: tuple[int, ...]
    segments: list[Segment]
    global_index: tuple[int, ...]  # the video-level index of each local segment


def chunk_segments(segments: list[Segment], timestamps: Sequence[float], frames_per_pass: int) -> list[Chunk]:
    """Group consecutive shots into passes of at most frames_per_pass frames (a longer shot is split)."""
    limit = max(2, frames_per_pass - frames_per_pass % 2)
    pieces: list[tuple[Segment, int]] = []  # (piece, index of the video-level segment it came from)
    for s in segments:
        parts = [s.frames[i : i + limit] for i in range(0, len(s.frames), limit)]
        for j, fr in enumerate(parts):
            a = s.start_s if j == 0 else float(timestamps[fr[0]])
            b = s.end_s if j == len(parts) - 1 else float(timestamps[parts[j + 1][0]])
            pieces.append((Segment(0, a, b, tuple(fr)), s.index))
    chunks: list[Chunk] = []
    cur: list[tuple[Segment, int]] = []
    for piece in pieces:
        if cur and sum(len(p.frames) for p, _ in cur) + len(piece[0].frames) > limit:
            chunks.append(_chunk(cur))
            cur = []
        cur.append(piece)
    if cur:
        chunks.append(_chunk(cur))
    return chunks


def _chunk(pieces: list[tuple[Segment, int]]) -> Chunk:
    segs = [Segment(k, p.start_s, p.end_s, p.frames) for k, (p, _) in enumerate(pieces)]
    return Chunk(tuple(f for p, _ in pieces for f in p.frames), segs, tuple(g for _, g in pieces))
