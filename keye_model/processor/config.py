"""Preprocessing settings and media limits, as typed dataclasses.

Defaults are the released Keye-VL-8B-Preview values (preprocessor_config.json and keye-vl-utils),
copied here so that nothing outside the package is needed at run time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

PATCH = 14
MERGE = 2
FACTOR = PATCH * MERGE  # 28: each side must be a multiple of one merged patch
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class PixelBudgets:
    """Resolution budgets in pixels; per-request values override these."""

    # keye-vl-utils `fetch_image` (first rounding of every image and of frame-list videos)
    image_min_pixels: int = 4 * 28 * 28
    image_max_pixels: int = 16384 * 28 * 28
    # processor (preprocessor_config.json): second resize of images
    processor_min_pixels: int = 3136
    processor_max_pixels: int = 1003520
    # videos decoded from files
    video_min_pixels: int = 128 * 28 * 28
    video_max_pixels: int = 768 * 28 * 28
    video_total_pixels: int = int(128000 * 28 * 28 * 0.9)
    fps: float = 2.0
    min_frames: int = 4
    max_frames: int = 768

    @classmethod
    def from_preprocessor_config(cls, path: Path) -> PixelBudgets:
        data = json.loads(Path(path).read_text())
        return cls(
            processor_min_pixels=int(data.get("min_pixels", cls.processor_min_pixels)),
            processor_max_pixels=int(data.get("max_pixels", cls.processor_max_pixels)),
        )


@dataclass(frozen=True)
class MediaLimits:
    """Hard limits that keep one hostile file from taking a worker down."""

    max_file_bytes: int = 2 << 30
    max_duration_s: float = 15 * 60.0
    max_side: int = 8192  # declared width or height
    max_frame_pixels: int = 8192 * 4320  # declared width * height
    max_image_pixels: int = 16384 * 16384
    max_aspect_ratio: float = 200.0
    max_packets: int = 500_000  # index scan bound (a 15 min clip at 240 fps is 216k)
    decode_timeout_s: float = 120.0
    workers: int = 0  # videos decoded at once by load_videos; 0 = one per CPU core
    # FFmpeg frame threads per video; 0 = share the cores: all of them for a single video,
    # cores // batch size in load_videos. Frame threading never changes the decoded pixels.
    decoder_threads: int = 0
    # Decode in a separate process (forkserver): a decoder crash becomes VideoDecodeError, a decode
    # stuck inside FFmpeg is killed after decode_timeout_s + isolate_grace_s, and the child's
    # address space is capped at max_memory_bytes (0 = no cap). Costs ~0.3 s per video; like any
    # multiprocessing start method but fork, the main module must be importable (run with
    # `python -m ...` or a script guarded by `if __name__ == "__main__"`).
    isolate: bool = False
    isolate_grace_s: float = 5.0
    max_memory_bytes: int = 0

    def with_overrides(self, **kw: Any) -> MediaLimits:  # field values, as the caller gives them
        known = {f.name for f in fields(self)}
        bad = set(kw) - known
        if bad:
            from .errors import ProcessorInputError

            raise ProcessorInputError(f"unknown media limit(s): {sorted(bad)}")
        return replace(self, **kw)
