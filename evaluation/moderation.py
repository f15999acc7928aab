"""Moderation metrics per category and per video, at the configured thresholds, plus a sweep of the
confidence threshold (the precision-recall curve of each category).

A prediction flags a category when its severity is at least `flag_severity` and its confidence at
least `flag_confidence` (the thresholds analysis.merge flags a video with). A labelled
category is a violation when its severity is above 0.

- leakage: violating videos (or, per category, videos violating it) that were not flagged;
- overkill: clean videos (per category: videos not violating it) that were flagged;
- severity_accuracy: of the correctly flagged (video, category) pairs, the share with the exact severity;
- evidence_iou: of the same pairs, the IoU of the flagged evidence ranges with the labelled ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from analysis.config import Thresholds
from evaluation.counts import Counts, mean, ratio
from evaluation.ranges import iou
from service.schemas import CategoryFlag, Moderation

SWEEP_STEPS = 20  # confidence thresholds 0, 0.05, ..., 1


@dataclass(frozen=True)
class ModerationCase:
    truth: Moderation
    predicted: Moderation


def _violations(m: Moderation) -> dict[str, CategoryFlag]:
    return {c.category: c for c in m.categories if c.severity > 0}


def _flags(m: Moderation, severity: int, confidence: float) -> dict[str, CategoryFlag]:
    return {c.category: c for c in m.categories if c.severity >= severity and c.confidence >= confidence}


def _ranges(flag: CategoryFlag) -> list[tuple[float, float]]:
    return [(e.start_s, e.end_s) for e in flag.evidence]


class _Tally:
    def __init__(self) -> None:
        self.counts = Counts()
        self.negatives = 0  # videos that should not be flagged
        self.severity_hits: list[float] = []
        self.evidence: list[float] = []

    def add(self, predicted: CategoryFlag | None, actual: CategoryFlag | None) -> None:
        self.counts.add(predicted is not None, actual is not None)
        self.negatives += actual is None
        if predicted is not None and actual is not None:
            self.severity_hits.append(float(predicted.severity == actual.severity))
            if actual.evidence:
                self.evidence.append(iou(_ranges(predicted), _ranges(actual)))

    def as_dict(self) -> dict:
        c = self.counts
        return {
            "precision": c.precision,
            "recall": c.recall,
            "f1": c.f1,
            "leakage": ratio(c.fn, c.tp + c.fn),
            "overkill": ratio(c.fp, self.negatives),
            "severity_accuracy": mean(self.severity_hits),
            "evidence_iou": mean(self.evidence),
            "tp": c.tp,
            "fp": c.fp,
            "fn": c.fn,
            "support": c.tp + c.fn,
            "negatives": self.negatives,
        }


def _score(
    cases: Sequence[ModerationCase], categories: Sequence[str], severity: int, confidence: float
) -> tuple[dict[str, _Tally], _Tally]:
    """Per-category tallies, and the video-level tally (flagged at all vs violating at all)."""
    per = {c: _Tally() for c in categories}
    videos = _Tally()
    for case in cases:
        actual = _violations(case.truth)
        flags = _flags(case.predicted, severity, confidence)
        for name, tally in per.items():
            tally.add(flags.get(name), actual.get(name))
        videos.counts.add(bool(flags), bool(actual))
        videos.negatives += not actual
    return per, videos


def _point(counts: Counts, confidence: float) -> dict:
    return {"confidence": round(confidence, 4), "precision": counts.precision, "recall": counts.recall}


def sweep(
    cases: Sequence[ModerationCase], categories: Sequence[str], severity: int, steps: int = SWEEP_STEPS
) -> dict[str, list[dict]]:
    """Precision and recall of each category (and of videos overall) as the confidence threshold
    goes from 0 to 1 at the configured severity threshold."""
    curves: dict[str, list[dict]] = {c: [] for c in (*categories, "overall")}
    for k in range(steps + 1):
        t = k / steps
        per, videos = _score(cases, categories, severity, t)
        for name, tally in per.items():
            curves[name].append(_point(tally.counts, t))
        curves["overall"].append(_point(videos.counts, t))
    return curves


def moderation_metrics(cases: Sequence[ModerationCase], categories: Sequence[str], thresholds: Thresholds) -> dict:
    per, videos = _score(cases, categories, thresholds.flag_severity, thresholds.flag_confidence)
    overall = videos.as_dict()
    overall["severity_accuracy"] = mean(h for t in per.values() for h in t.severity_hits)
    overall["evidence_iou"] = mean(v for t in per.values() for v in t.evidence)
    statuses = {s: 0 for s in ("clear", "needs_review", "flagged")}
    for case in cases:
        statuses[case.predicted.status] += 1
    return {
        "thresholds": {"flag_severity": thresholds.flag_severity, "flag_confidence": thresholds.flag_confidence},
        "overall": overall,
        "per_category": {name: t.as_dict() for name, t in per.items()},
        "predicted_status": statuses,
        "sweep": sweep(cases, categories, thresholds.flag_severity),
        "videos": len(cases),
    }
