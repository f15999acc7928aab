"""service.retry: the backoff schedule, when a retry happens and when it gives up, on a fake clock
(sleeping advances it) and a seeded jitter; and the policies of the call sites that use it."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from service.retry import RetryPolicy, Stopped


class FakeTime:
    """A clock that only sleeping moves; records every wait."""

    def __init__(self) -> None:
        self.now, self.waits = 100.0, list[float]()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


class failing:  # lower case: it reads as an action, `failing(error, ...)`
    """An action that raises `errors` one per call, then returns `result`; counts its calls."""

    def __init__(self, *errors: BaseException, result: str = "done") -> None:
        self.pending, self.result, self.calls = list(errors), result, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.pending:
            raise self.pending.pop(0)
        return self.result


def test_delays_double_from_the_base_up_to_the_cap() -> None:
    p = RetryPolicy(base_s=0.5, cap_s=5.0)
    assert [p.delay(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert p.delay(10_000) == 5.0  # a store down for days does not overflow the float
    with pytest.raises(ValueError):
        p.delay(0)


def test_seeded_jitter_stays_within_its_fraction_and_repeats() -> None:
    p = RetryPolicy(base_s=1.0, cap_s=60.0, jitter=0.5)
    first = [p.delay(n, random.Random(7)) for n in range(1, 7)]
    rng = random.Random(7)
    assert [p.delay(n, random.Random(7)) for n in range(1, 7)] == first
    drawn = [p.delay(n, rng) for n in range(1, 7)]
    plain = [RetryPolicy(base_s=1.0, cap_s=60.0).delay(n) for n in range(1, 7)]
    assert all(0.5 * d <= j <= d for j, d in zip(drawn, plain, strict=True))
    assert len({j / d for j, d in zip(drawn, plain, strict=True)}) > 1  # each wait draws anew


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(base_s=0, cap_s=1),
        dict(base_s=2, cap_s=1),
        dict(base_s=1, cap_s=2, jitter=1.5),
        dict(base_s=1, cap_s=2, attempts=0),
        dict(base_s=1, cap_s=2, deadline_s=0),
    ],
)
def test_a_policy_that_makes_no_sense_is_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


def test_call_retries_with_the_schedule_and_reports_each_retry() -> None:
    t, seen = FakeTime(), []
    boom = [ConnectionError("down"), ConnectionError("still down")]
    action = failing(*boom)
    result = RetryPolicy(base_s=0.5, cap_s=5.0).call(
        action, on_retry=lambda e, n, d: seen.append((e, n, d)), sleep=t.sleep, clock=t.clock
    )
    assert result == "done" and action.calls == 3
    assert t.waits == [0.5, 1.0]
    assert seen == [(boom[0], 1, 0.5), (boom[1], 2, 1.0)]


def test_call_gives_up_after_its_attempts_with_the_last_error() -> None:
    t = FakeTime()
    action = failing(*(TimeoutError(f"try {i}") for i in range(1, 6)))
    with pytest.raises(TimeoutError, match="try 3"):
        RetryPolicy(base_s=1.0, cap_s=8.0, attempts=3).call(
            action, on_retry=lambda *_: None, sleep=t.sleep, clock=t.clock
        )
    assert action.calls == 3 and t.waits == [1.0, 2.0]


def test_an_error_not_retried_propagates_at_once() -> None:
    t = FakeTime()
    by_type = RetryPolicy(base_s=1.0, cap_s=8.0, retry_on=(ConnectionError,))
    by_predicate = RetryPolicy(base_s=1.0, cap_s=8.0, retry_on=lambda e: "transient" in str(e))
    with pytest.raises(ValueError):
        by_type.call(failing(ValueError("bad input")), on_retry=lambda *_: None, sleep=t.sleep, clock=t.clock)
    with pytest.raises(RuntimeError, match="fatal"):
        by_predicate.call(
            failing(RuntimeError("transient"), RuntimeError("fatal")),
            on_retry=lambda *_: None,
            sleep=t.sleep,
            clock=t.clock,
        )
    assert t.waits == [1.0]  # only the transient one waited


def test_a_deadline_starts_no_try_after_it() -> None:
    t = FakeTime()
    action = failing(*(OSError(i) for i in range(10)))
    with pytest.raises(OSError):
        RetryPolicy(base_s=1.0, cap_s=10.0, deadline_s=3.0).call(
            action, on_retry=lambda *_: None, sleep=t.sleep, clock=t.clock
        )
    # tries at 0 s, 1 s and 3 s; the next one would start at 7 s, past the deadline
    assert action.calls == 3 and t.waits == [1.0, 2.0]


def test_an_interrupted_wait_stops_the_retries() -> None:
    stop = threading.Event()
    stop.set()
    action = failing(ConnectionError("down"))
    with pytest.raises(Stopped) as caught:
        RetryPolicy(base_s=30.0, cap_s=60.0).call(action, on_retry=lambda *_: None, sleep=stop.wait)
    assert isinstance(caught.value.__cause__, ConnectionError) and action.calls == 1


def test_acall_awaits_the_same_schedule() -> None:
    t, seen = FakeTime(), []
    action = failing(ConnectionError("a"), ConnectionError("b"))

    async def run() -> str:
        async def attempt() -> str:
            return action()

        return await RetryPolicy(base_s=0.5, cap_s=0.75, attempts=3).acall(
            attempt, on_retry=lambda e, n, d: seen.append((n, d)), sleep=t.asleep, clock=t.clock
        )

    assert asyncio.run(run()) == "done"
    assert t.waits == [0.5, 0.75] and seen == [(1, 0.5), (2, 0.75)]


def test_acall_does_not_retry_what_it_should_not() -> None:
    t = FakeTime()

    async def attempt() -> str:
        raise KeyError("no")

    with pytest.raises(KeyError):
        asyncio.run(
            RetryPolicy(base_s=1.0, cap_s=2.0, retry_on=(OSError,)).acall(
                attempt, on_retry=lambda *_: None, sleep=t.asleep, clock=t.clock
            )
        )
    assert t.waits == []


# ---- the call sites keep the schedules they had ------------------------------------------------


def test_the_call_sites_keep_their_schedules() -> None:
    from api.outbox import Relay
    from api.webhooks import RETRY
    from service.settings import Settings
    from service.waiting import STORE_OUTAGE
    from stores.vector_sink import WRITE_RETRY
    from streams.app import DATABASE_OUTAGE
    from workers.consumer import Worker, WorkerConfig

    def schedule(p: RetryPolicy, n: int = 8) -> list[float]:
        return [p.delay(i) for i in range(1, n + 1)]

    assert schedule(STORE_OUTAGE) == schedule(WRITE_RETRY) == [0.5, 1, 2, 4, 5, 5, 5, 5]
    assert schedule(DATABASE_OUTAGE) == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert DATABASE_OUTAGE.retries(sa.exc.OperationalError("SELECT 1", {}, Exception("gone")))
    assert not DATABASE_OUTAGE.retries(sa.exc.IntegrityError("INSERT", {}, Exception("dup")))
    assert schedule(RETRY, 9) == [5, 10, 20, 40, 80, 160, 320, 640, 1280] and RETRY.attempts == 8
    assert schedule(RETRY, 12)[-1] == 3600
    relay = Relay(sa.create_engine("sqlite://"), "127.0.0.1:9", interval_s=1.0)
    assert schedule(relay.retry, 6) == [2, 4, 8, 16, 30, 30]
    config = WorkerConfig(max_attempts=3, backoff_s=0.5, backoff_max_s=5.0)
    worker = Worker(Settings(), None, config)  # type: ignore[arg-type]  # no analysis runs here
    assert worker._analysis_retry.attempts == 3 and worker._store_retry.attempts is None
    assert schedule(worker._analysis_retry, 5) == schedule(worker._store_retry, 5) == [0.5, 1, 2, 4, 5]


def test_until_available_logs_each_wait_and_stops_when_asked(caplog: pytest.LogCaptureFixture) -> None:
    from service.waiting import until_available

    stop = threading.Event()
    stop.set()

    def connect() -> None:
        raise sa.exc.OperationalError("SELECT 1", {}, Exception("connection refused\nhint"))

    with caplog.at_level(logging.WARNING, "keye.wait"), pytest.raises(Stopped):
        until_available(connect, "the database at test", stop)
    assert (
        "the database at test is unavailable (OperationalError: connection refused); waiting, retry 1 in 0.5s"
        in caplog.text
    )
    with pytest.raises(ValueError):  # not an outage: no waiting
        until_available(lambda: int("x"), "the database at test", threading.Event())


@pytest.mark.kafka
def test_the_outbox_relay_logs_the_wait_it_makes(
    kafka_bootstrap: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Regression: the relay logged the wait it had just made, not the (doubled) one it was about to make."""
    from api.outbox import Relay

    relay = Relay(sa.create_engine(f"sqlite:///{tmp_path / 'no-tables.db'}"), kafka_bootstrap, interval_s=0.1)

    def waits() -> list[str]:
        logged = re.compile(r"no such table.*; retrying in (\S+)s$", re.S)
        found = (logged.search(r.getMessage()) for r in caplog.records if r.name == "api.outbox")
        return [m.group(1) for m in found if m]

    with caplog.at_level(logging.WARNING, "api.outbox"):
        relay.start()
        try:
            deadline = time.monotonic() + 30
            while len(waits()) < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            relay.stop()
    assert waits()[:3] == ["0.2", "0.4", "0.8"]
