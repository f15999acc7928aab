"""Corrected answers: from a stored analysis record plus feedback, the answer the model should have given.

Targets are kept in video time (seconds) like the record, then written per visual pass (chunk) in
the exact form the analyzer's grammar admits: the task's JSON schema with its properties in
schema order, compact separators (", " and ": "), bounded strings without quotes, backslashes or
control characters, shot numbers of the chunk, and for a thinking task a `<think>...</think>`
prelude. So a target is an answer constrained decoding could have produced (the tests check it
against the compiled grammar).

Feedback semantics (one target per video and task, events applied in time order):
- tag_correction: removed labels leave, added labels join with score 100 and no time range;
  items keep the record's scores and moments otherwise.
- moderation_decision confirm: the decided flags (all when no category) become certain
  (confidence 100, severity at least the flagging threshold); a confirmed category the record
  lacks (a missed violation) is added, at payload.severity when given. clear: the decided flags leave the answer. escalate has no final answer and is
  skipped.
- summary_edit: payload.text replaces payload.field (title, short or long; default short).
- summary_rating: 4-5 makes the rated summary a target (weight (rating-3)/2) unless an edit of
  the same video exists; 1-2 marks it as a rejected summary for preference pairs; 3 says
  nothing. Engagement carries no per-task correction and is never a supervised target.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from typing import Any

from analysis.config import AnalysisConfig
from analysis.errors import UnusableEvent
from analysis.segments import Segment

_UNSAFE = re.compile(r'["\\\x00-\x1f]')  # what the grammar's text pattern refuses
SUMMARY_FIELDS = ("title", "short", "long")


def clean_text(value: Any, max_chars: int) -> str | None:
    """A string the grammar admits: no quotes, backslashes or control characters, no leading space, bounded."""
    text = " ".join(_UNSAFE.sub(" ", str(value or "")).split())[:max_chars].rstrip()
    return text or None


def clean_reasoning(value: Any, max_chars: int) -> str:
    return " ".join(str(value or "").replace("<", " ").split())[:max_chars]


# ---- targets in video time ----------------------------------------------------------------------


def _label(value: Any) -> str:
    """A tag label as targets compare them: whitespace collapsed, lower case."""
    return " ".join(str(value).split()).lower()


def _percent(value: Any) -> int:
    """A 0..1 score of the record as the answers' 0..100 integer."""
    return round(100 * min(max(float(value), 0.0), 1.0))


@dataclass
class TagItem:
    label: str
    score: int  # 0..100
    ranges: list[tuple[float, float]] = field(default_factory=list)  # empty: the whole video


@dataclass
class FlagItem:
    category: str
    severity: int
    confidence: int  # 0..100
    evidence: list[tuple[float, float, str]] = field(default_factory=list)


@dataclass
class ModerationTarget:
    flags: list[FlagItem]
    reasoning: str


def record_tags(record: dict) -> list[TagItem]:
    """The record's tags, one item per label (best score, every moment)."""
    items: dict[str, TagItem] = {}
    for t in record.get("tags") or []:
        label = _label(t.get("label", ""))
        if not label:
            continue
        item = items.setdefault(label, TagItem(label, 0))
        item.score = max(item.score, _percent(t.get("score", 0.0)))
        if t.get("start_s") is not None and t.get("end_s") is not None:
            item.ranges.append((float(t["start_s"]), float(t["end_s"])))
    return list(items.values())


def corrected_tags(record: dict, payloads: list[dict]) -> list[TagItem]:
    items = {t.label: t for t in record_tags(record)}
    for p in payloads:
        for label in p.get("remove") or []:
            items.pop(_label(label), None)
        for label in p.get("add") or []:
            key = _label(label)
            if key:
                items[key] = TagItem(key, 100)
    return sorted(items.values(), key=lambda t: (-t.score, t.label))


def record_flags(record: dict) -> list[FlagItem]:
    out = []
    for c in (record.get("moderation") or {}).get("categories") or []:
        conf = _percent(c.get("confidence", 0.0))
        ev = [(float(e["start_s"]), float(e["end_s"]), str(e.get("reason", ""))) for e in c.get("evidence") or []]
        out.append(FlagItem(str(c.get("category")), int(c.get("severity", 0)), conf, ev))
    return out


def corrected_moderation(cfg: AnalysisConfig, record: dict, payloads: list[dict]) -> ModerationTarget:
    """Apply confirm/clear decisions in order; escalations must be filtered out before."""
    flags = {f.category: f for f in record_flags(record)}
    notes: list[str] = []
    for p in payloads:
        decision, category = p.get("decision"), p.get("category")
        chosen = [category] if category else list(flags)
        if decision == "clear":
            for name in chosen:
                flags.pop(name, None)
        elif decision == "confirm":
            if category and category not in flags:  # a miss: at the moderator's severity when given
                flags[category] = FlagItem(category, int(p.get("severity") or cfg.thresholds.flag_severity), 100)
            for name in chosen:
                f = flags[name]
                flags[name] = replace(f, severity=max(f.severity, cfg.thresholds.flag_severity), confidence=100)
        else:
            raise UnusableEvent(f"moderation decision {decision!r} has no final answer")
        if p.get("note"):
            notes.append(str(p["note"]))
    kept = sorted(
        (f for f in flags.values() if f.category in cfg.moderation_categories),
        key=lambda f: (-f.severity, -f.confidence, f.category),
    )
    if kept:
        said = "; ".join(f"{f.category} (severity {f.severity})" for f in kept)
        verdict = f"The video shows content under {said}."
    else:
        verdict = "Nothing in the video falls under a policy category."
    # the moderators' own words first: the reasoning budget may cut the end
    return ModerationTarget(kept, " ".join([*notes, verdict]))


def edited_summary(record: dict, payloads: list[dict]) -> dict[str, str]:
    summary = {k: str((record.get("summary") or {}).get(k) or "") for k in SUMMARY_FIELDS}
    for p in payloads:
        name = p.get("field", "short")
        if name not in SUMMARY_FIELDS:
            raise UnusableEvent(f"summary_edit field {name!r} is not one of {', '.join(SUMMARY_FIELDS)}")
        summary[name] = str(p["text"])
    return summary


# ---- answers of one chunk -----------------------------------------------------------------------


def _shots(a: float, b: float, segments: list[Segment]) -> list[int]:
    """Shots of the chunk that overlap [a, b] (the containing shot for an instant)."""
    hit = [s.index for s in segments if s.start_s < b and a < s.end_s]
    if not hit:
        hit = [s.index for s in segments if s.start_s <= a <= s.end_s][:1]
    return hit


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)  # ", " and ": ": the separators the grammar emits


def tags_answer(cfg: AnalysisConfig, items: list[TagItem], segments: list[Segment]) -> str:
    lim = cfg.task("tags").limits
    out = []
    for t in items:
        label = clean_text(t.label, lim["text_chars"])
        shots = sorted({s for a, b in t.ranges for s in _shots(a, b, segments)})
        if label is None or (t.ranges and not shots):  # only seen outside this chunk
            continue
        out.append({"label": label, "score": t.score, "shots": shots[: min(lim["max_segments"], len(segments))]})
    return _dumps({"tags": out[: lim["max_items"]]})


def summary_answer(cfg: AnalysisConfig, summary: dict[str, str]) -> str:
    lim = cfg.task("summary").limits
    out = {}
    for name in SUMMARY_FIELDS:
        text = clean_text(summary.get(name), lim[f"{name}_chars"])
        if text is None:
            raise UnusableEvent(f"the summary has no {name} (the analysis lacks it and no edit supplies it)")
        out[name] = text
    return _dumps(out)


def moderation_answer(cfg: AnalysisConfig, target: ModerationTarget, segments: list[Segment]) -> str:
    lim = cfg.task("moderation").limits
    flags = []
    for f in target.flags:
        evidence = []
        for a, b, reason in f.evidence:
            shots = _shots(a, b, segments)
            text = clean_text(reason, lim["text_chars"]) or clean_text(f.category, lim["text_chars"])
            if shots:
                evidence.append({"shot": shots[0], "reason": text})
        if f.evidence and not evidence:  # evidence only outside this chunk
            continue
        flags.append(
            {
                "category": f.category,
                "severity": min(max(f.severity, 0), 3),
                "confidence": min(max(f.confidence, 0), 100),
                "evidence": evidence[: lim["max_evidence"]],
            }
        )
    return _dumps({"categories": flags[: min(lim["max_items"], len(cfg.moderation_categories))]})


def with_prelude(cfg: AnalysisConfig, task: str, body: str, reasoning: str) -> str:
    """The answer with the reasoning block the task's grammar expects before the JSON (none for no_think)."""
    t = cfg.task(task)
    if t.thinking == "no_think":
        return body
    return f"<think>{clean_reasoning(reasoning, t.limits.get('think_chars', 0))}</think>\n\n{body}"


# ---- products (ground truth only: no feedback kind corrects them) -----------------------------------


@dataclass
class ProductItem:
    name: str
    category: str
    attributes: dict[str, str] = field(default_factory=dict)
    ranges: list[tuple[float, float]] = field(default_factory=list)  # empty: the whole video


def record_products(record: dict) -> list[ProductItem]:
    """The record's products, one item per name; moments as the analyzer writes them or one start/end."""
    items: dict[str, ProductItem] = {}
    for p in record.get("products") or []:
        name = " ".join(str(p.get("name", "")).split())
        if not name:
            continue
        item = items.setdefault(name.lower(), ProductItem(name, str(p.get("category", "other"))))
        for k, v in (p.get("attributes") or {}).items():
            item.attributes.setdefault(str(k), str(v))
        moments = p.get("moments") or ([p] if p.get("start_s") is not None and p.get("end_s") is not None else [])
        item.ranges.extend((float(m["start_s"]), float(m["end_s"])) for m in moments)
    return list(items.values())


def products_answer(cfg: AnalysisConfig, items: list[ProductItem], segments: list[Segment]) -> str:
    lim = cfg.task("products").limits
    out = []
    for p in items:
        name = clean_text(p.name, lim["text_chars"])
        shots = sorted({s for a, b in p.ranges for s in _shots(a, b, segments)})
        if name is None or p.category not in cfg.product_categories or (p.ranges and not shots):
            continue
        attrs = [
            {"name": k, "value": v}
            for k, v in ((clean_text(k, 20), clean_text(v, lim["text_chars"])) for k, v in p.attributes.items())
            if k and v
        ]
        out.append(
            {
                "name": name,
                "category": p.category,
                "attributes": attrs[: lim["max_attributes"]],
                "shots": shots[: min(lim["max_segments"], len(segments))],
            }
        )
    return _dumps({"products": out[: lim["max_items"]]})
