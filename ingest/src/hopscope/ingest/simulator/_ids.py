"""Seeded trace and span ids, so the same seed gives the same ids on every run."""

from __future__ import annotations

import random

from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import INVALID_SPAN_ID, INVALID_TRACE_ID


class SeededIdGenerator(IdGenerator):
    """Trace and span ids drawn from a ``random.Random`` of their own.

    Ids come from a generator separate from the model's random numbers: the model's decisions
    then do not depend on how many ids the SDK asked for. Not for production: ids must be
    unpredictable there (the SDK's default generator).

    >>> a, b = SeededIdGenerator(7), SeededIdGenerator(7)
    >>> a.generate_trace_id() == b.generate_trace_id()
    True
    """

    def __init__(self, seed: int | str) -> None:
        # Reproducibility is the point here, not unpredictability.
        self._rng = random.Random(seed)  # noqa: S311

    def generate_span_id(self) -> int:
        span_id = self._rng.getrandbits(64)
        while span_id == INVALID_SPAN_ID:  # 0 is "no span" in W3C trace context
            span_id = self._rng.getrandbits(64)
        return span_id

    def generate_trace_id(self) -> int:
        trace_id = self._rng.getrandbits(128)
        while trace_id == INVALID_TRACE_ID:
            trace_id = self._rng.getrandbits(128)
        return trace_id
