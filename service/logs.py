"""Logging for the long-running commands (`keye worker`, `keye vector-sink`, ...): one line per event,
to stderr, at a level from the command line or KEYE_LOG_LEVEL."""

from __future__ import annotations

import logging
import os

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Client libraries that log every reconnect attempt at INFO (a broker outage would flood the log);
# their warnings still show.
CHATTY = ("kafka", "aiokafka", "httpx", "httpcore", "alembic.runtime.plugins")


def setup_logging(level: str | None = None) -> int:
    """Configure the root logger once per process; returns the numeric level. `level` is a name
    (debug, info, warning, error); None reads KEYE_LOG_LEVEL (default info)."""
    name = (level or os.environ.get("KEYE_LOG_LEVEL") or "info").upper()
    numeric = logging.getLevelName(name)
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {name.lower()!r}; use debug, info, warning or error")
    logging.basicConfig(level=numeric, format=FORMAT, force=True)
    for lib in CHATTY:
        logging.getLogger(lib).setLevel(max(numeric, logging.WARNING))
    return numeric


__all__ = ["setup_logging"]
