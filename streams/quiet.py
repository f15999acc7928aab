"""Collapse a flood of one repeated log line into one line per period.

A broker outage makes aiokafka and faust log the same connection error about 75 times a second.
Per (logger, level, message template) of warnings and errors, the first record of each period
passes; the others are counted, and the next record shown carries the count of those suppressed.
"""

from __future__ import annotations

import logging
import threading
import time

PERIOD_S = 10.0


class RepeatFilter(logging.Filter):
    def __init__(self, period_s: float = PERIOD_S) -> None:
        super().__init__()
        self.period_s = period_s
        self.seen: dict[tuple[str, int, str], list[float | int]] = {}  # key -> [period start, suppressed]
        self.lock = threading.Lock()  # the faust consumer logs from its own thread

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True  # progress lines are not repeats of one fault
        key = (record.name, record.levelno, str(record.msg))
        now = time.monotonic()
        with self.lock:
            state = self.seen.get(key)
            if state is not None and now - state[0] < self.period_s:
                state[1] += 1
                return False
            self.seen[key] = [now, 0]
        if state is not None and state[1]:
            record.msg = f"{record.msg} [and {state[1]} more like this since it was last shown]"
        return True


def install(logger: logging.Logger, period_s: float = PERIOD_S) -> RepeatFilter:
    """Put one filter on every handler of `logger` (the root: records of every library pass there)."""
    quiet = RepeatFilter(period_s)
    for handler in logger.handlers:
        handler.addFilter(quiet)
    return quiet
