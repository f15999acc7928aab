"""Tag metrics: micro and per-tag precision / recall / F1 over (video, label) pairs, and the
temporal IoU of a correctly found tag's time ranges with the labelled ones."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from evaluation.counts import Counts, mean
from evaluation.ranges import Range, iou
from service.schemas import TagScore


@dataclass(frozen=True)
class TagCase:
    truth: Sequence[TagScore]
    predicted: Sequence[TagScore]
    duration_s: float


def normalize(label: str) -> str:
    return " ".join(label.split()).lower()


def _ranges(tags: Sequence[TagScore], duration_s: float) -> dict[str, list[Range]]:
    """Label -> its time ranges; a tag without a range applies to the whole video."""
    out: dict[str, list[Range]] = defaultdict(list)
    for t in tags:
        if t.start_s is None or t.end_s is None:
            out[normalize(t.label)].append((0.0, duration_s))
        else:
            out[normalize(t.label)].append((t.start_s, t.end_s))
    return out


def tag_metrics(cases: Sequence[TagCase]) -> dict:
    """`micro` over every (video, label) pair; `per_tag` rows for the labelled vocabulary (a guess
    outside it counts in micro only); `temporal_iou` averages over correctly found pairs."""
    split = [(_ranges(c.truth, c.duration_s), _ranges(c.predicted, c.duration_s)) for c in cases]
    vocabulary = {label for truth, _ in split for label in truth}
    micro = Counts()
    per: dict[str, Counts] = {label: Counts() for label in sorted(vocabulary)}
    ious: dict[str, list[float]] = defaultdict(list)
    for truth, pred in split:
        for label in truth.keys() | pred.keys():
            micro.add(label in pred, label in truth)
            if label in vocabulary:
                per[label].add(label in pred, label in truth)
            if label in truth and label in pred:
                ious[label].append(iou(pred[label], truth[label]))
    per_tag = {label: {**counts.as_dict(), "temporal_iou": mean(ious[label])} for label, counts in per.items()}
    return {
        "micro": micro.as_dict(),
        "macro_f1": mean(p["f1"] for p in per_tag.values()),
        "temporal_iou": mean(v for vs in ious.values() for v in vs),
        "per_tag": per_tag,
        "videos": len(cases),
    }
