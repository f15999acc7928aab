"""Resolution and frame-count arithmetic of the reference (keye-vl-utils + image processor)."""

from __future__ import annotations

import math

import torch

from .config import FACTOR, PixelBudgets
from .errors import ProcessorInputError

FRAME_FACTOR = 2  # frame counts are even


def smart_resize(
    height: int,
    width: int,
    factor: int = FACTOR,
    min_pixels: int = 56 * 56,
    max_pixels: float = 14 * 14 * 4096,  # a video frame's share of the total budget is fractional
    max_ratio: float = 200.0,
) -> tuple[int, int]:
    """Sides rounded to multiples of `factor`, area within [min_pixels, max_pixels], aspect kept.

    Follows keye-vl-utils: never below one factor per side.
    """
    if height <= 0 or width <= 0:
        raise ProcessorInputError(f"image size must be positive, got {height}x{width}")
    if max(height, width) / min(height, width) > max_ratio:
        raise ProcessorInputError(
            f"aspect ratio must be at most {max_ratio:g}, got {max(height, width) / min(height, width):.1f}"
        )
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def sample_count(
    total_frames: int, video_fps: float, fps: float = 2.0, min_frames: int = 4, max_frames: int | None = None
) -> int:
    """Number of frames to sample (keye-vl-utils `smart_nframes`, fps mode)."""
    if total_frames < FRAME_FACTOR:
        raise ProcessorInputError(f"a video needs at least {FRAME_FACTOR} frames, got {total_frames}")
    lo = math.ceil(min_frames / FRAME_FACTOR) * FRAME_FACTOR
    cap = min(768, total_frames) if max_frames is None else max_frames
    hi = math.floor(cap / FRAME_FACTOR) * FRAME_FACTOR
    n = total_frames / video_fps * fps
    n = min(min(max(n, lo), hi), total_frames)
    n = math.floor(n / FRAME_FACTOR) * FRAME_FACTOR
    if not FRAME_FACTOR <= n <= total_frames:
        raise ProcessorInputError(f"frame count must be in [{FRAME_FACTOR}, {total_frames}], got {n}")
    return n


def sample_indices(start: int, end: int, n: int) -> list[int]:
    """round(linspace(start, end, n)) exactly as the reference computes it (float32, half to even)."""
    return torch.linspace(start, end, n).round().long().tolist()


def frame_range(total_frames: int, video_fps: float, start_s: float | None, end_s: float | None) -> tuple[int, int]:
    """First and last frame index inside [video_start, video_end] (keye-vl-utils decord path)."""
    if start_s is None and end_s is None:
        return 0, total_frames - 1
    duration = total_frames / video_fps
    first = math.ceil(max(0.0, min(start_s, duration)) * video_fps) if start_s is not None else 0
    last = total_frames - 1
    if end_s is not None:
        last = min(math.floor(max(0.0, min(end_s, duration)) * video_fps), total_frames - 1)
    if first >= last:
        raise ProcessorInputError(
            f"empty time range: video_start={start_s} video_end={end_s} on a {duration:.2f}s video"
        )
    return first, last


def video_frame_pixels(
    nframes: int,
    budgets: PixelBudgets,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    total_pixels: int | None = None,
) -> tuple[int, float]:
    """(min, max) pixels per frame: the total budget shared across frames, capped per frame.

    The max stays a float when the shared budget wins, as in keye-vl-utils.
    """
    lo = budgets.video_min_pixels if min_pixels is None else min_pixels
    total = budgets.video_total_pixels if total_pixels is None else total_pixels
    hi = max(min(budgets.video_max_pixels, total / nframes * FRAME_FACTOR), int(lo * 1.05))
    if max_pixels is not None:
        hi = min(max_pixels, hi)  # a request may lower the cap, never raise it
    return lo, hi
