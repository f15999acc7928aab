"""best_of: the timing rule of the benchmarks (stdlib only, so the official-baseline subprocess,
which runs with another transformers on its path, can use it too)."""

from __future__ import annotations

import time


def best_of(fn, repeat: int = 2) -> float:
    """Seconds of the fastest of `repeat` calls, after one warm-up call (shared, noisy CPUs)."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)
