"""Time ranges as unions of intervals, and their intersection over union."""

from __future__ import annotations

from collections.abc import Iterable

Range = tuple[float, float]


def union(ranges: Iterable[Range]) -> list[Range]:
    """Sorted, disjoint intervals covering the same time; empty and reversed ones are dropped."""
    out: list[list[float]] = []
    for a, b in sorted((float(a), float(b)) for a, b in ranges if b > a):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def length(ranges: Iterable[Range]) -> float:
    return sum(b - a for a, b in union(ranges))


def intersection(x: Iterable[Range], y: Iterable[Range]) -> float:
    xs, ys = union(x), union(y)
    total, i, j = 0.0, 0, 0
    while i < len(xs) and j < len(ys):
        lo, hi = max(xs[i][0], ys[j][0]), min(xs[i][1], ys[j][1])
        total += max(0.0, hi - lo)
        if xs[i][1] < ys[j][1]:
            i += 1
        else:
            j += 1
    return total


def iou(x: Iterable[Range], y: Iterable[Range]) -> float:
    """Intersection over union of two sets of intervals (overlaps inside each set count once).
    Two empty sets agree perfectly (1.0)."""
    x, y = union(x), union(y)
    inter = intersection(x, y)
    whole = length(x) + length(y) - inter
    return 1.0 if whole <= 0 else inter / whole
