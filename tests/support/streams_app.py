"""TEST ONLY entry point of the streams app (`python -m tests.support.streams_app ARGS`), never used by the product.

It runs the product's `python -m streams` unchanged, with one test hook the product does not have:
`KEYE_TEST_GATE_DELAY_S` sleeps in each queue write of the gate (a slow database), so a backlog
builds up and a test can SIGKILL the app in the middle of it.
"""

from __future__ import annotations

import os
import runpy
import time

from stores import db

_delay_s = float(os.environ.get("KEYE_TEST_GATE_DELAY_S", "0"))
_record_submission = db.record_submission


def _slow_record_submission(session, submission) -> None:
    time.sleep(_delay_s)
    _record_submission(session, submission)


if _delay_s:
    db.record_submission = _slow_record_submission
runpy.run_module("streams", run_name="__main__", alter_sys=True)
