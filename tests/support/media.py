"""Generate small test media with PyAV encoders, deterministic per seed."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def pattern(i: int, h: int, w: int) -> np.ndarray:
    """A moving gradient with a frame-number stripe, so frames differ and can be told apart."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack(
        [(x * 255 // max(w - 1, 1) + 7 * i) % 256, (y * 255 // max(h - 1, 1)) % 256, np.full_like(x, (40 * i) % 256)],
        axis=-1,
    ).astype(np.uint8)
    return img


def _mux(out: av.container.OutputContainer, stream: av.stream.Stream, frame: object) -> None:
    """Encode one frame (None flushes the encoder) and write its packets."""
    for p in stream.encode(frame):
        out.mux(p)


def write_video(
    path: Path,
    n: int = 20,
    w: int = 64,
    h: int = 48,
    fps: int = 10,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    rotation: int | None = None,
    pts: list[int] | None = None,
    time_base: Fraction | None = None,
    options: dict | None = None,
    container_options: dict | None = None,
) -> Path:
    """Encode `n` pattern frames. `pts` (in `time_base`) gives variable frame timing."""
    with av.open(str(path), "w", options=container_options or {}) as out:
        s = out.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        if options:
            s.options = options
        if time_base is not None:
            s.time_base = time_base
            s.codec_context.time_base = time_base
        if rotation is not None:
            s.set_display_rotation(rotation)
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(pattern(i, h, w), format="rgb24")
            if pts is not None:
                frame.pts = pts[i]
                frame.time_base = time_base
            _mux(out, s, frame)
        _mux(out, s, None)
    return path


def write_audio_only(path: Path, seconds: float = 1.0) -> Path:
    with av.open(str(path), "w") as out:
        s = out.add_stream("aac", rate=16000)
        samples = int(16000 * seconds)
        t = np.arange(samples) / 16000
        data = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        for start in range(0, samples, 1024):
            f = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(data[:, start : start + 1024]), format="fltp", layout="mono"
            )
            f.sample_rate = 16000
            f.pts = start
            _mux(out, s, f)
        _mux(out, s, None)
    return path
