"""Summary metrics: ROUGE-L (longest common subsequence of words) and fact recall."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from evaluation.counts import mean
from service.schemas import Summary

_WORD = re.compile(r"[a-z0-9]+")
FIELDS = ("title", "short", "long")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (one row of the dynamic programme at a time)."""
    if len(a) < len(b):
        a, b = b, a
    row = [0] * (len(b) + 1)
    for x in a:
        diag = 0
        for j, y in enumerate(b, 1):
            diag, row[j] = row[j], diag + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def rouge_l(candidate: str, reference: str) -> float | None:
    """ROUGE-L F1 of one text against one reference; None when the reference is empty (nothing to
    measure), 0.0 for an empty candidate."""
    ref, cand = words(reference), words(candidate)
    if not ref:
        return None
    lcs = lcs_length(cand, ref)
    if lcs == 0:
        return 0.0
    p, r = lcs / len(cand), lcs / len(ref)
    return 2 * p * r / (p + r)


def mentions(text_words: set[str], name: str) -> bool:
    """A concept is mentioned when every word of its name appears (a plural 's' or 'es' counts)."""
    need = words(name.rsplit(":", 1)[-1])  # an on-screen word "text: sale" is mentioned as "sale"
    return bool(need) and all(w in text_words or w + "s" in text_words or w + "es" in text_words for w in need)


@dataclass(frozen=True)
class FactItem:
    """One labelled fact: the concept names it involves."""

    objects: tuple[str, ...]
    text: str = ""


@dataclass(frozen=True)
class SummaryCase:
    reference: Summary
    predicted: Summary
    facts: Sequence[FactItem] = field(default_factory=tuple)


def fact_scores(predicted: Summary, facts: Sequence[FactItem]) -> tuple[float | None, float | None]:
    """(fact recall, object recall) of one video: the share of facts whose concepts are all mentioned
    in the predicted title, short and long texts, and the share of distinct concepts mentioned."""
    said = set(words(" ".join(getattr(predicted, f) for f in FIELDS)))
    facts = [f for f in facts if f.objects]
    objects = {o for f in facts for o in f.objects}
    if not facts:
        return None, None
    fact_hits = [all(mentions(said, o) for o in f.objects) for f in facts]
    object_hits = [mentions(said, o) for o in objects]
    return sum(fact_hits) / len(fact_hits), sum(object_hits) / len(object_hits)


def summary_metrics(cases: Sequence[SummaryCase]) -> dict:
    per_field = {f: mean(rouge_l(getattr(c.predicted, f), getattr(c.reference, f)) for c in cases) for f in FIELDS}
    scores = [fact_scores(c.predicted, c.facts) for c in cases]
    return {
        "rouge_l": mean(per_field.values()),
        "rouge_l_by_field": per_field,
        "fact_recall": mean(s[0] for s in scores),
        "object_recall": mean(s[1] for s in scores),
        "empty_predictions": sum(not any(getattr(c.predicted, f).strip() for f in FIELDS) for c in cases),
        "videos": len(cases),
    }
