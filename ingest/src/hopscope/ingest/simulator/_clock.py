"""Virtual time for the simulator: one shared clock, per-node views of it, ISO 8601 parsing.

The simulator never sleeps and never reads the wall clock for telemetry: every timestamp comes
from a :class:`VirtualClock` that the model moves forward (a network leg, a query, a lock wait).
Nodes read it through a ``Clock`` callable; a node with a wrong clock (the clock-skew scenario)
reads it through a :class:`SkewedClock`, so only its timestamps shift, never the model's time.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000
NS_PER_US = 1_000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class VirtualClock:
    """Nanoseconds since the epoch, moved only by the model.

    Traces overlap in virtual time (one starts before the previous one ended), so the model
    rewinds the clock with :meth:`set` to each arrival; within a trace it only moves forward.

    >>> clock = VirtualClock(1_000)
    >>> clock.advance(500)
    1500
    >>> clock.set(200); clock()
    200
    """

    __slots__ = ("_now",)

    def __init__(self, start_ns: int) -> None:
        if start_ns < 0:
            raise ValueError(f"start_ns must be >= 0, got {start_ns}")
        self._now = start_ns

    def now(self) -> int:
        """The current virtual time (ns)."""
        return self._now

    def advance(self, ns: int) -> int:
        """Move forward by ``ns`` (>= 0) and return the new time."""
        if ns < 0:
            raise ValueError(f"advance needs ns >= 0, got {ns}")
        self._now += ns
        return self._now

    def set(self, ns: int) -> None:
        """Jump to ``ns`` (forward or back: the next arrival, a parallel branch's start)."""
        self._now = ns

    def __call__(self) -> int:
        return self._now

    def __repr__(self) -> str:
        return f"VirtualClock({self._now})"


class SkewedClock:
    """A node's clock that is off by ``offset_ns`` from the shared virtual clock.

    >>> base = VirtualClock(10_000)
    >>> SkewedClock(base, -3_000)()
    7000
    """

    __slots__ = ("_base", "offset_ns")

    def __init__(self, base: VirtualClock, offset_ns: int) -> None:
        self._base = base
        self.offset_ns = offset_ns

    def __call__(self) -> int:
        return self._base._now + self.offset_ns

    def __repr__(self) -> str:
        return f"SkewedClock({self._base!r}, offset_ns={self.offset_ns})"


def parse_iso8601_ns(text: str) -> int:
    """Nanoseconds since the epoch of an ISO 8601 time; without an offset it is UTC.

    >>> parse_iso8601_ns("2025-03-01T12:00:00Z")
    1740830400000000000
    >>> parse_iso8601_ns("2025-03-01T13:00:00.000250+01:00")
    1740830400000250000
    """
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"not an ISO 8601 time: {text!r} (expected e.g. 2025-03-01T12:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    # Integer arithmetic on the timedelta: a float timestamp would lose the microseconds.
    return (moment - _EPOCH) // timedelta(microseconds=1) * NS_PER_US


def format_ns_iso(ns: int) -> str:
    """ISO 8601 in UTC with nanoseconds.

    >>> format_ns_iso(1740830400000250001)
    '2025-03-01T12:00:00.000250001Z'
    """
    seconds, fraction = divmod(ns, NS_PER_S)
    stamp = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{fraction:09d}Z"


def default_start_ns() -> int:
    """Now, rounded to the second: the default start of a simulation (only a start time is
    taken from the wall clock; everything after it is virtual)."""
    return round(time.time()) * NS_PER_S
