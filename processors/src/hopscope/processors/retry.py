"""Retry with exponential backoff, full jitter and a deadline; the sleep wakes on stop.

Full jitter (each delay drawn uniformly from ``[0, min(max_s, initial_s * 2**attempt)]``)
spreads the members of a consumer group over the backoff window: after an Elasticsearch outage
they come back one by one instead of all at once, in lockstep, with a full batch each.

Only :class:`~hopscope.processors.errors.SinkUnavailableError` is retried (connection errors,
408/429/5xx, an unacknowledged dead letter); anything else, :class:`SinkAccessError` among
them, goes straight to the caller: retrying cannot fix wrong credentials.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from hopscope.processors.errors import SinkUnavailableError

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """When to try again.

    Parameters:
        initial_s: the first delay's upper bound.
        max_s: the cap of every delay's upper bound.
        deadline_s: give up (re-raise the last error) once this long has passed since the
            first attempt; None: retry until stopped. The processor passes None: it never
            drops what it read, it waits for the sink.

    Examples:
        >>> policy = Backoff(initial_s=0.5, max_s=4.0)
        >>> [policy.ceiling(n) for n in range(6)]
        [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
        >>> 0 <= policy.delay(3, random.Random(1)) <= 4.0
        True
    """

    initial_s: float = 0.5
    max_s: float = 10.0
    deadline_s: float | None = None

    def __post_init__(self) -> None:
        if self.initial_s <= 0:
            raise ValueError(f"initial_s must be positive, got {self.initial_s}")
        if self.max_s < self.initial_s:
            raise ValueError(f"max_s ({self.max_s}) must be at least initial_s ({self.initial_s})")
        if self.deadline_s is not None and self.deadline_s <= 0:
            raise ValueError(f"deadline_s must be positive or None, got {self.deadline_s}")

    def ceiling(self, attempt: int) -> float:
        """The upper bound of the delay after failed attempt ``attempt`` (0-based)."""
        # min() before the power would overflow: 2**attempt grows without bound.
        return float(min(self.max_s, self.initial_s * 2 ** min(attempt, 64)))

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform over ``[0, ceiling(attempt)]``."""
        return rng.uniform(0.0, self.ceiling(attempt))


def retry(
    call: Callable[[], T],
    policy: Backoff,
    stop: threading.Event,
    *,
    on_retry: Callable[[SinkUnavailableError, float], None] | None = None,
    rng: random.Random | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Call ``call`` until it returns, retrying :class:`SinkUnavailableError` with backoff.

    Parameters:
        call: the attempt.
        policy: delays and deadline.
        stop: set to give up at once; the wait between attempts returns when it is set.
        on_retry: called with the error and the coming delay before each wait (metrics,
            pausing the consumer, a log line).
        rng: the jitter's source (tests pass a seeded one).
        clock: monotonic seconds, for the deadline.

    Returns:
        What ``call`` returned.

    Raises:
        SinkUnavailableError: the last error, when ``stop`` was set or the deadline passed.
    """
    rng = rng or random.Random()  # noqa: S311 (jitter, not secrets)
    started = clock()
    attempt = 0
    while True:
        try:
            return call()
        except SinkUnavailableError as error:
            delay = policy.delay(attempt, rng)
            if policy.deadline_s is not None:
                left = policy.deadline_s - (clock() - started)
                if left <= 0:
                    raise
                delay = min(delay, left)
            if on_retry is not None:
                on_retry(error, delay)
            if stop.wait(delay):
                raise
            attempt += 1
