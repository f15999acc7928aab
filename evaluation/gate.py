"""The promotion gate: a candidate may not be worse than the active version on any headline metric
(report.HEADLINE) by more than a tolerance, measured on the same labels."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from evaluation.report import HEADLINE, lookup


@dataclass(frozen=True)
class Regression:
    metric: str
    base: float
    candidate: float

    def __str__(self) -> str:
        return f"{self.metric} {self.base:.4f} -> {self.candidate:.4f}"

    def as_dict(self) -> dict:
        return asdict(self)


def regressions(base: dict, candidate: dict, tolerance: float) -> list[Regression]:
    """Headline metrics where the candidate is worse than the base by more than `tolerance`
    (a metric either report could not measure is not compared)."""
    out = []
    for name, (path, direction) in HEADLINE.items():
        b, c = lookup(base, path), lookup(candidate, path)
        if b is not None and c is not None and (c - b) * direction < -tolerance:
            out.append(Regression(name, float(b), float(c)))
    return out
