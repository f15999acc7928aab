"""From parsed task answers (per chunk) to the record's fields, merged over a video's chunks.

Shot numbers in answers are mapped to the seconds of the chunk's shots; a list of shots becomes
one time range per run of consecutive shots. The moderation status follows the configured
thresholds, never the model's own say: flagged when a category is at least flag_severity with
at least flag_confidence, needs_review when anything reaches review_severity (or the moderation
answer is missing), clear otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from analysis.config import AnalysisConfig
from analysis.output import ParsedOutput
from analysis.segments import Segment
from service.schemas import CategoryFlag, Evidence, Moderation, Summary, TagScore


@dataclass
class ChunkAnswers:
    """The parsed answers of one visual pass (chunk) of a video."""

    segments: list[Segment]
    outputs: dict[str, ParsedOutput] = field(default_factory=dict)


def _runs(shots: Sequence[int], segments: Sequence[Segment]) -> list[tuple[float, float]]:
    valid = sorted({s for s in shots if isinstance(s, int) and 0 <= s < len(segments)})
    runs: list[list[int]] = []
    for s in valid:
        if runs and s == runs[-1][-1] + 1:
            runs[-1].append(s)
        else:
            runs.append([s])
    return [(segments[r[0]].start_s, segments[r[-1]].end_s) for r in runs]


def _answer(out: ParsedOutput | None, key: str) -> Any:
    if out is None or not out.ok or not isinstance(out.answer, dict):
        return None
    return out.answer.get(key)


def tags(cfg: AnalysisConfig, chunks: Sequence[ChunkAnswers]) -> list[TagScore]:
    best: dict[tuple[str, float | None, float | None], float] = {}
    for ch in chunks:
        for item in _answer(ch.outputs.get("tags"), "tags") or []:
            label = " ".join(str(item.get("label", "")).split()).lower()[:200]
            score = min(max(int(item.get("score", 0)), 0), 100) / 100.0
            if not label or score < cfg.thresholds.tag_min_score:
                continue
            ranges: Sequence[tuple[float | None, float | None]] = _runs(item.get("shots") or [], ch.segments)
            if not ranges:  # no valid shot: one tag with no time range
                ranges = [(None, None)]
            for a, b in ranges:
                key = (label, a, b)
                best[key] = max(best.get(key, 0.0), score)
    ordered = sorted(best.items(), key=lambda kv: (-kv[1], kv[0][0], kv[0][1] or 0.0))
    return [TagScore(label=k[0], score=v, start_s=k[1], end_s=k[2]) for k, v in ordered]


def summary(chunks: Sequence[ChunkAnswers]) -> Summary:
    outs = [(ch, ch.outputs.get("summary")) for ch in chunks]
    parts = [(ch, o.answer) for ch, o in outs if o is not None and o.ok and isinstance(o.answer, dict)]
    if not parts:
        return Summary()
    first = parts[0][1]
    if len(parts) == 1:
        return Summary(short=first.get("short", ""), long=first.get("long", ""), title=first.get("title", ""))
    # a long video: the first pass names it; the long summary tells each pass in order
    long = "\n".join(
        f"[{ch.segments[0].start_s:.0f}s-{ch.segments[-1].end_s:.0f}s] {a.get('long', '')}" for ch, a in parts
    )
    return Summary(short=first.get("short", ""), long=long, title=first.get("title", ""))


def moderation(cfg: AnalysisConfig, chunks: Sequence[ChunkAnswers]) -> Moderation:
    found: dict[str, dict[str, Any]] = {}
    reasoning: list[str] = []
    missing = False
    for ch in chunks:
        out = ch.outputs.get("moderation")
        if out is None:
            continue
        if out.reasoning:
            span = f"[{ch.segments[0].start_s:.1f}s-{ch.segments[-1].end_s:.1f}s] " if len(chunks) > 1 else ""
            reasoning.append(span + out.reasoning)
        answer = _answer(out, "categories")
        if answer is None:
            missing = True
            continue
        for item in answer:
            name = item.get("category")
            if name not in cfg.moderation_categories:
                continue
            entry = found.setdefault(name, {"severity": 0, "confidence": 0.0, "evidence": []})
            entry["severity"] = max(entry["severity"], min(max(int(item.get("severity", 0)), 0), 3))
            entry["confidence"] = max(entry["confidence"], min(max(int(item.get("confidence", 0)), 0), 100) / 100.0)
            for ev in item.get("evidence") or []:
                for a, b in _runs([ev.get("shot")], ch.segments):
                    e = Evidence(start_s=a, end_s=b, reason=str(ev.get("reason", "")).strip())
                    if e not in entry["evidence"]:
                        entry["evidence"].append(e)
    flags = [
        CategoryFlag(category=n, severity=e["severity"], confidence=e["confidence"], evidence=e["evidence"])
        for n, e in found.items()
    ]
    flags.sort(key=lambda f: (-f.severity, -f.confidence, f.category))
    th = cfg.thresholds
    status: Literal["clear", "flagged", "needs_review"]
    if any(f.severity >= th.flag_severity and f.confidence >= th.flag_confidence for f in flags):
        status = "flagged"
    elif missing or any(f.severity >= th.review_severity and f.severity > 0 for f in flags):
        status = "needs_review"
    else:
        status = "clear"
    return Moderation(status=status, categories=flags, reasoning="\n\n".join(reasoning) or None)


def products(chunks: Sequence[ChunkAnswers]) -> list[dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for ch in chunks:
        for item in _answer(ch.outputs.get("products"), "products") or []:
            name = " ".join(str(item.get("name", "")).split())
            if not name:
                continue
            p = merged.setdefault(
                name.lower(), {"name": name, "category": item.get("category", "other"), "attributes": {}, "moments": []}
            )
            for attr in item.get("attributes") or []:
                p["attributes"].setdefault(str(attr.get("name", "")).strip(), str(attr.get("value", "")).strip())
            for a, b in _runs(item.get("shots") or [], ch.segments):
                if {"start_s": a, "end_s": b} not in p["moments"]:
                    p["moments"].append({"start_s": a, "end_s": b})
    return list(merged.values())
