"""The ground truth of a planned clip: shots, tags, facts, texts, moderation, products, caption."""

from __future__ import annotations

from typing import cast

from service.schemas import CategoryFlag, Evidence, Moderation, Summary, TagScore

from . import concepts as C
from .labels import Fact, GroundTruth, LabelledClip, Shot, Split
from .plan import ClipPlan, ShotSpec

# Reference texts respect the analyzer's own length limits (default_config.json, tasks.summary.limits).
TITLE_CHARS, SHORT_CHARS, LONG_CHARS = 60, 120, 300


def _t(frame: int, fps: int) -> float:
    return round(frame / fps, 4)


def shot_ranges(p: ClipPlan) -> list[tuple[float, float]]:
    ends = [*p.starts[1:], p.frames]
    return [(_t(a, p.fps), _t(b, p.fps)) for a, b in zip(p.starts, ends)]


def _runs(ranges: list[tuple[float, float]], present: list[bool]) -> list[tuple[float, float]]:
    """Merge the ranges of consecutive shots where something is present."""
    runs: list[tuple[float, float]] = []
    for (a, b), on in zip(ranges, present):
        if on:
            if runs and runs[-1][1] == a:
                runs[-1] = (runs[-1][0], b)
            else:
                runs.append((a, b))
    return runs


def _labels(s: ShotSpec) -> list[str]:
    return [s.obj, s.colour, s.scene, s.motion] + ([C.word_tag(s.word)] if s.word else [])


def _shot_fact(s: ShotSpec) -> str:
    return f"a {s.colour} {s.obj} {C.MOTIONS[s.motion]} {C.SCENES[s.scene]}"


def _facts(p: ClipPlan, ranges: list[tuple[float, float]]) -> list[Fact]:
    facts = []
    for s, (a, _) in zip(p.shots, ranges):
        facts.append(Fact(t_s=a, text=_shot_fact(s), objects=[s.obj]))
        if s.word:
            facts.append(Fact(t_s=a, text=f'the word "{s.word}" appears', objects=[C.word_tag(s.word)]))
        if s.cue:
            facts.append(Fact(t_s=a, text=C.CUES[s.cue[0]][s.cue[1]][0], objects=[s.cue[0]]))
    return facts


def _fit(parts: list[str], limit: int, join: str, end: str = "") -> str:
    """As many leading parts as fit within limit characters (always at least the first, cut to size)."""
    text = parts[0]
    for part in parts[1:]:
        if len(text + join + part + end) > limit:
            break
        text += join + part
    return (text + end)[:limit]


def _summary(p: ClipPlan, facts: list[Fact]) -> Summary:
    first = p.shots[0]
    title = f"{first.colour} {first.obj} {C.SCENES[first.scene]}".capitalize()
    others = sorted({s.obj for s in p.shots[1:]} - {first.obj})
    if others:
        title = _fit([title, *(f"a {o}" for o in others)], TITLE_CHARS, ", ")
    shot_texts = [_shot_fact(s) for s in p.shots]
    short = _fit(shot_texts, SHORT_CHARS - 1, ", then ", ".").capitalize()
    steps = [f.text for f in facts]
    long = _fit([f"First {steps[0]}", *(f"then {x}" for x in steps[1:])], LONG_CHARS - 1, "; ", ".")
    return Summary(title=title, short=short, long=long)


def _caption(p: ClipPlan) -> str:
    text = ", then ".join(_shot_fact(s) for s in p.shots)
    words = sorted({s.word for s in p.shots if s.word})
    if words:
        text += ", with the word" + ("s " if len(words) > 1 else " ") + " and ".join(f'"{w}"' for w in words)
    return text[0].upper() + text[1:] + "."


def _moderation(p: ClipPlan, ranges: list[tuple[float, float]]) -> Moderation:
    flags: dict[tuple[str, int], list[Evidence]] = {}
    for s, (a, b) in zip(p.shots, ranges):
        if s.cue:
            flags.setdefault(s.cue, []).append(Evidence(start_s=a, end_s=b, reason=C.CUES[s.cue[0]][s.cue[1]][1]))
    if not flags:
        return Moderation(status="clear")
    return Moderation(
        status="flagged",
        categories=[
            CategoryFlag(category=c, severity=sev, confidence=1.0, evidence=ev) for (c, sev), ev in flags.items()
        ],
    )


def _products(p: ClipPlan, ranges: list[tuple[float, float]]) -> list[dict]:
    seen = sorted(
        {(s.obj, s.colour) for s in p.shots if C.OBJECTS[s.obj]},
        key=lambda k: next(i for i, s in enumerate(p.shots) if (s.obj, s.colour) == k),
    )
    out = []
    for obj, colour in seen:
        for a, b in _runs(ranges, [(s.obj, s.colour) == (obj, colour) for s in p.shots]):
            out.append(
                {"name": obj, "category": C.OBJECTS[obj], "attributes": {"colour": colour}, "start_s": a, "end_s": b}
            )
    return out


def _tags(p: ClipPlan, ranges: list[tuple[float, float]]) -> list[TagScore]:
    labels = {label for s in p.shots for label in _labels(s)}
    tags = [
        TagScore(label=label, score=1.0, start_s=a, end_s=b)
        for label in labels
        for a, b in _runs(ranges, [label in _labels(s) for s in p.shots])
    ]
    return sorted(tags, key=lambda t: (t.start_s, t.label))


def labelled(p: ClipPlan) -> LabelledClip:
    ranges = shot_ranges(p)
    facts = _facts(p, ranges)
    shots = [
        Shot(start_s=a, end_s=b, transition_in=None if i == 0 else ("fade" if p.fades[i] else "cut"), scene=s.scene)
        for i, (s, (a, b)) in enumerate(zip(p.shots, ranges))
    ]
    return LabelledClip(
        video_id=p.video_id,
        file=f"clips/{p.video_id}.{p.ext}",
        split=cast(Split, p.split),  # a plan's split is any str; LabelledClip (pydantic) checks it is a Split
        seed=p.seed,
        duration_s=_t(p.frames, p.fps),
        fps=float(p.fps),
        width=p.width,
        height=p.height,
        codec=p.codec,
        shots=shots,
        record=GroundTruth(
            tags=_tags(p, ranges),
            summary=_summary(p, facts),
            moderation=_moderation(p, ranges),
            products=_products(p, ranges),
        ),
        facts=facts,
        caption=_caption(p),
        duplicate_of=p.duplicate_of.video_id if p.duplicate_of else None,
        duplicate_kind=p.transform.kind if p.transform else None,
        novel=p.novel,
    )
