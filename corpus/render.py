"""Frames of a planned clip, and their encoding with PyAV (H.264 in MP4, VP9 in WebM).

Frame i of a clip shows the original timeline at frame i * speed (speed is 1 except for sped-up
duplicates); cuts switch shots between two frames, fades go through black, with the black frame
exactly at the labelled shot start.
"""

from __future__ import annotations

import bisect
import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from . import concepts as C
from . import draw
from .plan import FADE_S, ClipPlan, ShotSpec

WATERMARK = "@reposter"


class _Shot:
    """What one shot needs per frame: its backdrop, its object sprite and its overlay layer."""

    def __init__(self, spec: ShotSpec, w: int, h: int) -> None:
        rng = np.random.default_rng(spec.salt)
        self.spec = spec
        self.bg = draw.background(spec.scene, w, h, rng)
        self.size = int(0.4 * min(w, h))
        self.sprite = draw.sprite(spec.obj, C.COLOURS[spec.colour], self.size)
        self.overlay = None
        if spec.word or spec.cue:
            self.overlay = Image.new("RGBA", (w, h), (0, 0, 0, 0))
            if spec.word:
                draw.word(self.overlay, spec.word)
            if spec.cue:
                draw.cue(self.overlay, spec.cue[0], spec.cue[1], rng)

    def frame(self, u: float, length: float) -> Image.Image:
        """The shot at u seconds from its start (length: its duration in seconds)."""
        img = self.bg.copy()
        w, h = img.size
        s, motion = self.size, self.spec.motion
        sprite = self.sprite
        x, y = self.spec.x0 * w, 0.52 * h
        if motion == "bouncing":
            y = 0.55 * h - abs(math.sin(math.pi * 1.2 * u)) * 0.2 * h
        elif motion == "sliding":
            x = (0.05 + 0.9 * u / length) * (w - s)
        elif motion == "spinning":
            sprite = sprite.rotate(-150.0 * u, resample=Image.Resampling.BILINEAR)
        elif motion == "zooming":
            k = 0.6 + 0.8 * u / length
            side = max(2, int(s * k))
            sprite = sprite.resize((side, side), Image.Resampling.BILINEAR)
            x, y = x + (s - side) / 2, y + (s - side) / 2
        img.paste(sprite, (int(x), int(y)), sprite)
        if self.overlay is not None:
            img.paste(self.overlay, (0, 0), self.overlay)
        return img


def frames(p: ClipPlan):
    """Yield the clip's frames as RGB uint8 arrays (height, width, 3)."""
    src = p.duplicate_of or p  # a duplicate shows its original's timeline
    speed = p.transform.speed if p.transform else 1.0
    shots = [_Shot(s, src.width, src.height) for s in src.shots]
    ends = [*src.starts[1:], src.frames]
    fade_f = FADE_S * src.fps
    for i in range(p.frames):
        t = i * speed  # in frames of the original timeline
        j = bisect.bisect_right(src.starts, t) - 1
        img = shots[j].frame((t - src.starts[j]) / src.fps, (ends[j] - src.starts[j]) / src.fps)
        if p.transform and p.transform.kind == "crop":
            left, top = (src.width - p.width) // 2, (src.height - p.height) // 2
            img = img.crop((left, top, left + p.width, top + p.height))
        if p.transform and p.transform.kind == "watermark":
            img = draw.watermark(img, WATERMARK)
        arr = np.asarray(img)
        light = _fade(t, j, src, fade_f)
        yield arr if light >= 1.0 else (arr * light).astype(np.uint8)


def _fade(t: float, j: int, p: ClipPlan, fade_f: float) -> float:
    """Brightness at original frame t in shot j: 0 at a fading boundary, back to 1 within FADE_S either side."""
    if p.fades[j] and t - p.starts[j] < fade_f:
        return (t - p.starts[j]) / fade_f
    if j + 1 < len(p.starts) and p.fades[j + 1] and p.starts[j + 1] - t <= fade_f:
        return (p.starts[j + 1] - t) / fade_f
    return 1.0


def _frame(rgb: np.ndarray, pts: int, fps: int) -> av.VideoFrame:
    """An input frame with its timestamp (the encoders' rate control reads it)."""
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    frame.pts, frame.time_base = pts, Fraction(1, fps)
    return frame


def encode(p: ClipPlan, path: Path) -> None:
    """Write the clip, identical to the byte for the same plan: bit-exact muxing, one encoder thread,
    and x264 without MB-tree, whose propagation read memory left over from earlier encodes in the
    process (the same clip came out differently depending on what the process had encoded before)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(
        str(path), mode="w", format="webm" if p.codec == "vp9" else "mp4", options={"fflags": "+bitexact"}
    ) as out:
        if p.codec == "vp9":
            stream = out.add_stream(
                "libvpx-vp9",
                rate=Fraction(p.fps),
                options={"crf": str(p.crf + 9), "b": "0", "deadline": "realtime", "cpu-used": "8"},
            )
        else:
            stream = out.add_stream(
                "libx264",
                rate=Fraction(p.fps),
                options={"crf": str(p.crf), "preset": "veryfast", "x264-params": "mbtree=0"},
            )
        stream.width, stream.height, stream.pix_fmt = p.width, p.height, "yuv420p"
        stream.codec_context.thread_count = 1
        stream.codec_context.time_base = Fraction(1, p.fps)
        for i, arr in enumerate(frames(p)):
            out.mux(stream.encode(_frame(arr, i, p.fps)))
        out.mux(stream.encode(None))
