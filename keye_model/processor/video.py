"""Videos: decode, sample and resize once (`load_video`), many at a time (`load_videos`).

Frame indices, counts and budgets follow the reference formulas (sizing.py); the decoding itself
lives in decode.py. The result, a VideoInput, can be reused across prompts.
"""

from __future__ import annotations

import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import torch

from .config import MediaLimits, PixelBudgets
from .decode import FrameSink, check_frame_count, cores, decode_sequential, decode_targets, index_packets, open_video
from .errors import DecodeTimeout, MediaError, ProcessorInputError, VideoDecodeError, VideoTooLarge
from .image import requested_size
from .isolate import load_video_isolated
from .sizing import frame_range, sample_count, sample_indices, smart_resize, video_frame_pixels

__all__ = ["VideoInput", "VideoRequest", "load_video", "load_videos"]


@dataclass
class VideoInput:
    """A decoded, sampled and resized video, reusable across prompts.

    frames: uint8 (T, 3, H, W), H and W multiples of 28. timestamps: seconds of each frame from
    the start of the stream. sample_fps: frames per second of the sampled sequence (the reference
    `second_per_grid_t` is its inverse).
    """

    frames: torch.Tensor
    timestamps: list[float]
    sample_fps: float
    video_fps: float = 0.0
    total_frames: int = 0
    indices: list[int] = field(default_factory=list)
    duration_s: float = 0.0
    source: str | None = None

    @property
    def second_per_grid_t(self) -> float:
        return 1.0 / self.sample_fps


@dataclass(frozen=True)
class VideoRequest:
    """Per-request sampling options (the keys of a message's video item)."""

    fps: float = 2.0
    min_frames: int = 4
    max_frames: int | None = None
    nframes: int | None = None
    min_pixels: int | None = None
    max_pixels: int | None = None
    total_pixels: int | None = None
    video_start: float | None = None
    video_end: float | None = None
    resized_height: int | None = None
    resized_width: int | None = None

    @classmethod
    def from_item(cls, item: dict[str, Any], budgets: PixelBudgets) -> VideoRequest:
        known = {
            k: item[k]
            for k in (
                "fps",
                "min_frames",
                "max_frames",
                "nframes",
                "min_pixels",
                "max_pixels",
                "total_pixels",
                "video_start",
                "video_end",
                "resized_height",
                "resized_width",
            )
            if item.get(k) is not None
        }
        size = requested_size(known)
        known.pop("resized_height", None)
        known.pop("resized_width", None)
        if size is not None:
            known["resized_height"], known["resized_width"] = size
        if "fps" in known and "nframes" in known:
            raise ProcessorInputError("give either fps or nframes for a video, not both")
        known.setdefault("fps", budgets.fps)
        known.setdefault("min_frames", budgets.min_frames)
        for k in ("fps", "min_frames", "max_frames", "nframes", "min_pixels", "max_pixels", "total_pixels"):
            if k in known and not (
                isinstance(known[k], (int, float))
                and not isinstance(known[k], bool)
                and math.isfinite(known[k])
                and known[k] > 0
            ):
                raise ProcessorInputError(f"video option {k} must be a positive number, got {known[k]!r}")
        for k in ("video_start", "video_end"):
            if k in known and not (isinstance(known[k], (int, float)) and math.isfinite(known[k]) and known[k] >= 0):
                raise ProcessorInputError(f"video option {k} must be a time in seconds >= 0, got {known[k]!r}")
        return cls(**known)


def load_video(
    src: str | os.PathLike,
    budgets: PixelBudgets | None = None,
    limits: MediaLimits | None = None,
    *,
    threads: int | None = None,
    **options: Any,
) -> VideoInput:
    """Decode, sample and resize one video file. Options are the keys of a message's video item;
    `threads` are FFmpeg frame threads (default: limits.decoder_threads, 0 = every core)."""
    budgets = budgets or PixelBudgets()
    limits = limits or MediaLimits()
    if threads is None:
        threads = limits.decoder_threads or cores()
    req = options.pop("request", None)
    if req is None:
        unknown = set(options) - set(VideoRequest.__dataclass_fields__)
        if unknown:
            raise ProcessorInputError(f"unknown video option(s): {sorted(unknown)}")
        req = VideoRequest.from_item(options, budgets)
    name = str(src)
    if limits.isolate:
        return load_video_isolated(load_video, name, budgets, limits, max(1, threads), {"request": req})
    path = Path(name[7:] if name.startswith("file://") else name)
    deadline = time.monotonic() + limits.decode_timeout_s
    try:
        return _load(path, budgets, limits, req, deadline, max(1, threads))
    except (MediaError, ProcessorInputError):
        raise
    except av.ExitError:  # the I/O timeout given to av.open fired
        raise DecodeTimeout("reading the file took longer than the time budget", name) from None
    except av.FFmpegError as e:
        raise VideoDecodeError(f"corrupt video data: {e}", name) from None
    except MemoryError:
        raise VideoTooLarge("decoding ran out of memory", name) from None
    except (OverflowError, ZeroDivisionError, IndexError, KeyError, RuntimeError, ValueError, TypeError) as e:
        # Hostile metadata can push FFmpeg's values where PyAV or our arithmetic fails: still one
        # clear error for this file, never a crashed worker.
        raise VideoDecodeError(f"unusable video ({type(e).__name__}: {e})", name) from None


def _plan(total: int, fps: float, req: VideoRequest) -> tuple[list[int], float]:
    first, last = frame_range(total, fps, req.video_start, req.video_end)
    count = last - first + 1
    if req.nframes is not None:
        n = round(req.nframes / 2) * 2
        if not 2 <= n <= count:
            raise ProcessorInputError(f"nframes must be in [2, {count}], got {n}")
    else:
        n = sample_count(count, fps, req.fps, req.min_frames, req.max_frames)
    return sample_indices(first, last, n), n / count * fps


def _sink(count: int, budgets: PixelBudgets, req: VideoRequest, limits: MediaLimits, path: Path) -> FrameSink:
    lo, hi = video_frame_pixels(count, budgets, req.min_pixels, req.max_pixels, req.total_pixels)
    size = None
    if req.resized_height is not None and req.resized_width is not None:
        # explicit size: rounded to 28 with the image defaults, as the reference does
        size = smart_resize(
            req.resized_height,
            req.resized_width,
            min_pixels=budgets.image_min_pixels,
            max_pixels=budgets.image_max_pixels,
            max_ratio=limits.max_aspect_ratio,
        )
    return FrameSink(count, lo, hi, size, limits, str(path))


def _load(
    path: Path, budgets: PixelBudgets, limits: MediaLimits, req: VideoRequest, deadline: float, threads: int
) -> VideoInput:
    container, stream = open_video(path, limits, threads)
    with container:
        idx = index_packets(container, stream, path, limits, deadline)
        total = len(idx.pts)
        check_frame_count(total, container, path)
        indices, sample_fps = _plan(total, idx.video_fps, req)
        want = [idx.pts[i] for i in indices]
        sink = _sink(len(indices), budgets, req, limits, path)
        ok = idx.reliable and decode_targets(container, stream, idx, want, sink, path, deadline)
        t0 = idx.pts[0]
        times = [float((p - t0) * idx.time_base) for p in want]
    if not ok:
        # Timestamps lied: count the frames that really decode, then decode again keeping the
        # sampled ones (converted and resized on the fly, so memory stays bounded).
        total, _ = decode_sequential(path, limits, deadline, threads)
        if total < 2:
            raise VideoDecodeError(f"the video decodes to {total} frame(s); at least 2 are needed", str(path))
        indices, sample_fps = _plan(total, idx.video_fps, req)
        sink = _sink(len(indices), budgets, req, limits, path)
        _, all_times = decode_sequential(path, limits, deadline, threads, sink, {i: k for k, i in enumerate(indices)})
        base = next((t for t in all_times if not math.isnan(t)), 0.0)
        times = [
            all_times[i] - base if i < len(all_times) and not math.isnan(all_times[i]) else i / idx.video_fps
            for i in indices
        ]
    if sink.frames is None or not all(sink.filled):
        raise VideoDecodeError("some sampled frames could not be decoded", str(path))
    return VideoInput(sink.frames, times, sample_fps, idx.video_fps, total, indices, idx.duration_s, str(path))


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="keye-decode")
        return _POOL


def load_videos(
    jobs: list[tuple[str, dict[str, Any]]], budgets: PixelBudgets | None = None, limits: MediaLimits | None = None
) -> list[VideoInput | MediaError]:
    """Decode several videos in parallel threads (PyAV and torch release the GIL).

    Returns, in order, each VideoInput or the MediaError that video raised, so one bad file
    never hides the others.
    """
    limits = limits or MediaLimits()
    workers = limits.workers or cores()
    # split the cores between the videos decoded at once
    threads = limits.decoder_threads or max(1, cores() // max(1, min(len(jobs), workers)))
    futures = [
        _pool(workers).submit(load_video, src, budgets, limits, threads=threads, **dict(opts)) for src, opts in jobs
    ]
    out: list[VideoInput | MediaError] = []
    for fut in futures:
        try:
            out.append(fut.result())
        except MediaError as e:
            out.append(e)
    return out
