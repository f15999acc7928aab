"""The whole pipeline under seeded faults: ingest -> streams gate -> two workers -> SQL + the vector
sink, on a private Kafka and PostgreSQL, while every process kind is SIGKILLed, the broker restarts
and PostgreSQL goes away (tests/support/faults.py). Afterwards, from the stores: each good
video has exactly one analysis row and one point, each bad input is `failed` and in the DLQ.
`bench/faults.py --fault-videos N` runs the longer form and reports videos/min under faults."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.settings import Settings
from tests.support.faults import FaultRun, private_stack

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]


def test_every_good_video_once_every_bad_input_failed_under_faults(
    kafka_bootstrap: str, postgres_url: str, stack_settings: Settings, tmp_path: Path, sample_clips: list[Path]
) -> None:
    clips = [c for c in sample_clips if c.name != "bigbuckbunny.mp4"]
    with private_stack(tmp_path, stack_settings) as stack:
        run = FaultRun(stack, tmp_path / "run", clips, seed=13, good=9, faults=True, fault_window_s=45)
        result = run.run(timeout_s=200)
    print(result.summary())
    logs = run.p.logs()
    assert set(result.faults) >= {"worker-a", "worker-b", "streams", "sink", "broker", "postgres"}
    # Workers and the sink wait out a broker or database outage; they never exit on their own.
    crashed = [e for e in result.unexpected_exits if e.startswith(("worker", "sink"))]
    assert crashed == [], "\n".join(crashed)
    assert result.settled, f"the stores did not settle: {result.summary()}\n{logs}"
    assert result.problems() == [], f"{result.summary()}\n{logs}"
    assert result.worker_restart_to_commit_s, "no worker restart was followed by a commit"
