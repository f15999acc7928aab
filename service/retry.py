"""The one retry policy of the services: exponential backoff (base, doubled per failure, capped,
optionally jittered), a limit in tries or in time, and which errors are worth another try.

`RetryPolicy.call` runs an action under the policy (`acall` awaits a coroutine); the caller's
`on_retry` logs each retry, so an operator sees what is retried and when. Loops that keep their own
state between tries (a Kafka batch rewound, a delivery rescheduled in SQL) ask `delay` for the wait
and `exhausted` whether to give up.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

# A retry is logged by the caller: (the error, failures so far, the wait before the next try).
OnRetry = Callable[[BaseException, int, float], None]
# Errors worth another try: exception types, or a predicate on the error.
RetryOn = tuple[type[BaseException], ...] | Callable[[BaseException], bool]

_MAX_DOUBLINGS = 64  # past this every delay is the cap; keeps 2**n finite as a float


class Stopped(Exception):
    """Asked to stop while waiting to retry."""


def _any_error(_: BaseException) -> bool:
    return True


@dataclass(frozen=True)
class RetryPolicy:
    base_s: float  # the wait after the first failure
    cap_s: float  # no wait is longer
    jitter: float = 0.0  # 0..1: each wait is drawn from [(1 - jitter) * d, d], so a fleet does not retry in step
    attempts: int | None = None  # tries in all, the first one included; None: no limit
    deadline_s: float | None = None  # no try starts later than this after the first; None: no limit
    retry_on: RetryOn = _any_error

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.cap_s:
            raise ValueError(f"need 0 < base_s <= cap_s, got base_s={self.base_s}, cap_s={self.cap_s}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter is a fraction in [0, 1], got {self.jitter}")
        if self.attempts is not None and self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")
        if self.deadline_s is not None and self.deadline_s <= 0:
            raise ValueError(f"deadline_s must be positive, got {self.deadline_s}")

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """The wait after `failures` failures in a row: base, 2 x base, 4 x base, ... up to the cap."""
        if failures < 1:
            raise ValueError(f"a delay follows at least one failure, got {failures}")
        d = min(self.base_s * 2.0 ** min(failures - 1, _MAX_DOUBLINGS), self.cap_s)
        if self.jitter:
            d *= 1.0 - self.jitter * (rng or random).random()
        return d

    def retries(self, error: BaseException) -> bool:
        if isinstance(self.retry_on, tuple):
            return isinstance(error, self.retry_on)
        return self.retry_on(error)

    def exhausted(self, failures: int, elapsed_s: float = 0.0, next_delay_s: float = 0.0) -> bool:
        """Whether to give up after `failures` failed tries, `elapsed_s` after the first began, when
        the next try would start `next_delay_s` from now."""
        if self.attempts is not None and failures >= self.attempts:
            return True
        return self.deadline_s is not None and elapsed_s + next_delay_s > self.deadline_s

    def _wait_after(self, error: BaseException, failures: int, elapsed_s: float, rng: random.Random | None) -> float:
        """The wait before the next try, or re-raise `error` (from inside its except block) to give up."""
        if not self.retries(error):
            raise error
        delay = self.delay(failures, rng)
        if self.exhausted(failures, elapsed_s, delay):
            raise error
        return delay

    def call(
        self,
        action: Callable[[], T],
        *,
        on_retry: OnRetry,
        sleep: Callable[[float], bool | None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> T:
        """`action()` until it succeeds; the last error propagates once the policy gives up or the
        error is not retried. A `sleep` that returns True was interrupted (a `threading.Event.wait`
        whose event is set): the call raises `Stopped` from the last error."""
        started, failures = clock(), 0
        while True:
            try:
                return action()
            except Exception as e:
                failures += 1
                delay = self._wait_after(e, failures, clock() - started, rng)
                on_retry(e, failures, delay)
                if sleep(delay):
                    raise Stopped() from e

    async def acall(
        self,
        action: Callable[[], Awaitable[T]],
        *,
        on_retry: OnRetry,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> T:
        """`call` for a coroutine: `await action()` until it succeeds, waiting with `await sleep(d)`."""
        started, failures = clock(), 0
        while True:
            try:
                return await action()
            except Exception as e:  # noqa: BLE001 - _wait_after re-raises what the policy does not retry
                failures += 1
                delay = self._wait_after(e, failures, clock() - started, rng)
                on_retry(e, failures, delay)
                await sleep(delay)


__all__ = ["OnRetry", "RetryOn", "RetryPolicy", "Stopped"]
