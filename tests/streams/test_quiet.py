"""streams.quiet: a flood of one repeated error becomes one line per period, with the count suppressed."""

from __future__ import annotations

import io
import logging
import time

from streams.quiet import RepeatFilter


def test_repeated_errors_collapse_into_one_line_per_period() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RepeatFilter(period_s=0.5))
    log = logging.getLogger("test.streams.quiet")
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)
    try:
        for n in range(75):
            log.error("Unable connect to node with id %d", n % 2)
        log.warning("another fault")
        log.info("progress %d", 1)
        log.info("progress %d", 2)
        time.sleep(0.6)
        log.error("Unable connect to node with id %d", 1)
    finally:
        log.removeHandler(handler)
    assert out.getvalue().splitlines() == [
        "Unable connect to node with id 0",
        "another fault",
        "progress 1",
        "progress 2",
        "Unable connect to node with id 1 [and 74 more like this since it was last shown]",
    ]
