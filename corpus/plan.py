"""What each clip shows: a random but seeded plan of shots, and the ground truth that follows from it.

A plan fixes everything (format, shot boundaries in frames, per-shot scene, object, colour, motion,
word and moderation cue); rendering and labelling are pure functions of it. A near-duplicate keeps
its original's shots and only changes how they are turned into frames.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np

from . import concepts as C
from .labels import Codec, DuplicateKind

SPLIT_CODES = {"train": 1, "val": 2, "test": 3}
FORMATS = ((180, 320),) * 7 + ((360, 640),) + ((240, 240), (320, 180), (144, 256), (176, 320), (200, 356))
VIOLATING_SHARE = 0.17
DUPLICATE_SHARE = 0.08
NOVEL_SHARE = 0.25  # of test clips, forced to hold a held-out combination
MIN_SHOT_S = 1.0
FADE_S = 0.3


@dataclass(frozen=True)
class ShotSpec:
    scene: str
    obj: str
    colour: str
    motion: str
    word: str | None = None
    cue: tuple[str, int] | None = None  # (category, severity)
    x0: float = 0.5  # where the object starts, as a share of the frame width
    salt: int = 0  # seeds the details of the background


@dataclass(frozen=True)
class Transform:
    """How a near-duplicate differs from its original."""

    kind: DuplicateKind
    speed: float = 1.0
    crop: float = 1.0  # share of each side kept, centred


@dataclass(frozen=True)
class ClipPlan:
    video_id: str
    split: str
    seed: int
    index: int
    width: int
    height: int
    fps: int
    codec: Codec
    frames: int
    shots: tuple[ShotSpec, ...]
    starts: tuple[int, ...]  # first frame of each shot
    fades: tuple[bool, ...]  # per shot: enters with a fade (never the first)
    crf: int = 23
    duplicate_of: ClipPlan | None = None
    transform: Transform | None = None
    novel: bool = False

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps

    @property
    def ext(self) -> str:
        return "webm" if self.codec == "vp9" else "mp4"


def clip_rng(split: str, seed: int, index: int) -> np.random.Generator:
    """Each clip has its own stream, keyed by split as well, so no two splits share content."""
    return np.random.default_rng([SPLIT_CODES[split], seed, index])


_T = TypeVar("_T")


def _pick(rng: np.random.Generator, options: Sequence[_T]) -> _T:
    return options[int(rng.integers(len(options)))]


def _shot_frames(rng: np.random.Generator, frames: int, fps: int) -> list[int]:
    duration = frames / fps
    most = max(2, min(6, int(duration // MIN_SHOT_S)))
    n = int(rng.integers(2, most + 1))
    min_f = math.ceil(MIN_SHOT_S * fps)
    lengths = min_f + np.floor((frames - n * min_f) * rng.dirichlet(np.ones(n))).astype(int)
    return [0, *np.cumsum(lengths[:-1]).tolist()]


def _allowed(colour: str, obj: str, cue: tuple[str, int] | None, scene: str) -> bool:
    return (colour, obj) not in C.NOVEL_COLOUR_OBJECT and (cue is None or (cue[0], scene) not in C.NOVEL_CUE_SCENE)


def _shot(rng: np.random.Generator, previous: str | None, cue: tuple[str, int] | None) -> ShotSpec:
    while True:  # held-out combinations only ever come from _force_novel
        scene = str(_pick(rng, [s for s in C.SCENES if s != previous]))
        obj, colour = str(_pick(rng, list(C.OBJECTS))), str(_pick(rng, list(C.COLOURS)))
        if _allowed(colour, obj, cue, scene):
            break
    word = str(_pick(rng, C.WORDS)) if rng.random() < 0.3 else None
    return ShotSpec(
        scene,
        obj,
        colour,
        str(_pick(rng, list(C.MOTIONS))),
        word,
        cue,
        float(rng.uniform(0.1, 0.5)),
        int(rng.integers(1 << 30)),
    )


def _force_novel(rng: np.random.Generator, shots: list[ShotSpec], cue_at: int | None) -> None:
    """Turn one shot into a held-out combination: a cue in a held-out scene, or a held-out colour on an object."""
    if cue_at is not None:
        cue = shots[cue_at].cue
        assert cue is not None, "plan_clip puts its cue in shot cue_at"
        cat = cue[0]
        scenes = [s for c, s in sorted(C.NOVEL_CUE_SCENE) if c == cat]
        if scenes:
            shots[cue_at] = replace(shots[cue_at], scene=scenes[0])
            for j in (cue_at - 1, cue_at + 1):  # neighbours keep a different scene: every boundary shows
                if 0 <= j < len(shots) and shots[j].scene == scenes[0]:
                    near = {x.scene for x in shots[max(0, j - 1) : j + 2]}
                    shots[j] = replace(shots[j], scene=next(s for s in C.SCENES if s not in near))
            return
    i = int(rng.integers(len(shots)))
    colour, obj = sorted(C.NOVEL_COLOUR_OBJECT)[int(rng.integers(len(C.NOVEL_COLOUR_OBJECT)))]
    shots[i] = replace(shots[i], colour=colour, obj=obj)


def is_novel(shots: tuple[ShotSpec, ...] | list[ShotSpec]) -> bool:
    return any(not _allowed(s.colour, s.obj, s.cue, s.scene) for s in shots)


def plan_clip(split: str, seed: int, index: int, cue: tuple[str, int] | None = None) -> ClipPlan:
    """A fresh clip; `cue` (category, severity) puts that moderation stand-in into one of its shots."""
    rng = clip_rng(split, seed, index)
    width, height = _pick(rng, FORMATS)
    fps = int(_pick(rng, (24, 25, 30)))
    codec: Codec = "vp9" if rng.random() < 0.15 else "h264"
    frames = int(round((2.0 + 18.0 * rng.beta(1.3, 2.5)) * fps))
    starts = _shot_frames(rng, frames, fps)
    cue_at = int(rng.integers(len(starts))) if cue else None
    shots: list[ShotSpec] = []
    for i in range(len(starts)):
        shots.append(_shot(rng, shots[-1].scene if shots else None, cue if i == cue_at else None))
    if split == "test" and rng.random() < NOVEL_SHARE:
        _force_novel(rng, shots, cue_at)
    fades = tuple(i > 0 and bool(rng.random() < 0.3) for i in range(len(starts)))
    return ClipPlan(
        f"{split}-s{seed}-{index:04d}",
        split,
        seed,
        index,
        width,
        height,
        fps,
        codec,
        frames,
        tuple(shots),
        tuple(starts),
        fades,
        novel=is_novel(shots),
    )


def plan_duplicate(original: ClipPlan, split: str, seed: int, index: int) -> ClipPlan:
    """A near-duplicate of `original`, as re-uploaded by someone else."""
    rng = clip_rng(split, seed, index)
    kinds: list[DuplicateKind] = ["reencode", "crop", "watermark"]
    if original.duration_s >= 3.0:
        kinds.append("speed")
    kind = _pick(rng, kinds)
    t = Transform(
        kind, speed=float(_pick(rng, (1.25, 1.5))) if kind == "speed" else 1.0, crop=0.85 if kind == "crop" else 1.0
    )
    frames = math.floor(original.frames / t.speed)
    starts = tuple(math.ceil(s / t.speed - 1e-9) for s in original.starts)
    width, height = original.width, original.height
    if kind == "crop":
        width, height = 2 * round(width * t.crop / 2), 2 * round(height * t.crop / 2)
    crf = 36 if kind == "reencode" else original.crf
    return replace(
        original,
        video_id=f"{split}-s{seed}-{index:04d}",
        index=index,
        width=width,
        height=height,
        frames=frames,
        starts=starts,
        crf=crf,
        duplicate_of=original,
        transform=t,
    )


def plan_corpus(split: str, seed: int, clips: int, violating_share: float = VIOLATING_SHARE) -> list[ClipPlan]:
    """The corpus's clips in order. Violating clips take the (category, severity) pairs in turns
    from a seeded shuffle, so even a small corpus holds every pair about equally often. A training
    set may ask for more violating clips than the platform's share (a classifier learns a rare
    class from its examples); evaluation sets keep the default."""
    rng = np.random.default_rng([SPLIT_CODES[split], seed])
    pairs = [(c, s) for c in C.MODERATION for s in C.SEVERITIES]
    order = [pairs[k] for k in rng.permutation(len(pairs))]
    plans: list[ClipPlan] = []
    violating = 0
    for i in range(clips):
        originals = [p for p in plans if p.duplicate_of is None]
        draw = rng.random()
        if len(originals) >= 3 and draw < DUPLICATE_SHARE:
            plans.append(plan_duplicate(originals[int(rng.integers(len(originals)))], split, seed, i))
        elif draw > 1.0 - violating_share:
            plans.append(plan_clip(split, seed, i, order[violating % len(order)]))
            violating += 1
        else:
            plans.append(plan_clip(split, seed, i))
    return plans
