"""Trace assembly per partition: collect a trace's spans until it has been idle, bounded.

A trace is complete after ``trace_idle_s`` without a new span. Memory is bounded by
``max_open_spans``: past it, the traces idle the longest are flushed early, marked incomplete.
Every trace remembers the Kafka messages (partition, offset) its spans came from, because those
offsets may only be committed once the trace's derived records are in Elasticsearch.

A span that arrives after its trace was flushed (a late span) reopens the trace from a bounded
memory of recently flushed traces, so its records are derived again from all its spans (the
deterministic ids make the new documents replace the old ones).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from hopscope.processors.records import LogRecord, SpanRecord

TopicPartitionOffset = tuple[str, int, int]  # topic, partition, offset


@dataclass
class OpenTrace:
    """Spans (and trace-scoped logs) of one trace seen so far."""

    trace_id: str
    spans: dict[str, SpanRecord] = field(default_factory=dict)
    logs: list[LogRecord] = field(default_factory=list)
    sources: set[TopicPartitionOffset] = field(default_factory=set)
    last_seen: float = 0.0
    complete: bool = True


class TraceAssembler:
    """Open traces of the partitions one processor owns."""

    def __init__(
        self,
        *,
        trace_idle_s: float = 5.0,
        max_open_spans: int = 200_000,
        remember_flushed: int = 5_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if trace_idle_s <= 0:
            raise ValueError(f"trace_idle_s must be positive, got {trace_idle_s}")
        if max_open_spans < 1:
            raise ValueError(f"max_open_spans must be at least 1, got {max_open_spans}")
        self.trace_idle_s = trace_idle_s
        self.max_open_spans = max_open_spans
        self._clock = clock
        # Insertion order = order of last activity (moved to the end on every new span).
        self._open: OrderedDict[str, OpenTrace] = OrderedDict()
        self._open_spans = 0
        self._flushed: OrderedDict[str, dict[str, SpanRecord]] = OrderedDict()
        self._remember_flushed = remember_flushed
        self.late_spans = 0

    @property
    def open_traces(self) -> int:
        return len(self._open)

    @property
    def open_spans(self) -> int:
        return self._open_spans

    def add_spans(self, spans: Iterable[SpanRecord], source: TopicPartitionOffset) -> set[str]:
        """Add the spans of one message; return the ids of the traces they belong to."""
        now = self._clock()
        touched: set[str] = set()
        for span in spans:
            trace = self._open.get(span.trace_id)
            if trace is None:
                trace = OpenTrace(span.trace_id, last_seen=now)
                earlier = self._flushed.pop(span.trace_id, None)
                if earlier is not None:  # a late span: bring the rest of its trace back
                    self.late_spans += 1
                    trace.spans.update(earlier)
                    self._open_spans += len(earlier)
                self._open[span.trace_id] = trace
            if span.span_id not in trace.spans:  # a duplicate span id keeps the first
                trace.spans[span.span_id] = span
                self._open_spans += 1
            trace.sources.add(source)
            trace.last_seen = now
            self._open.move_to_end(span.trace_id)
            touched.add(span.trace_id)
        return touched

    def add_log(self, log: LogRecord, source: TopicPartitionOffset) -> str:
        """Attach a trace-scoped log to its open trace (for cluster events in the trace).

        Returns ``"not_open"`` (the log is then only indexed), ``"attached"``, or
        ``"new_source"`` when the log's message now also feeds that trace (the caller holds
        the message's offset until the trace's records are written).
        """
        trace = self._open.get(log.trace_id or "")
        if trace is None:
            return "not_open"
        trace.logs.append(log)
        if source in trace.sources:
            return "attached"
        trace.sources.add(source)
        return "new_source"

    def _pop(self, trace_id: str, complete: bool) -> OpenTrace:
        trace = self._open.pop(trace_id)
        trace.complete = complete
        self._open_spans -= len(trace.spans)
        self._flushed[trace_id] = trace.spans
        while len(self._flushed) > self._remember_flushed:
            self._flushed.popitem(last=False)
        return trace

    def due(self) -> list[OpenTrace]:
        """Traces idle for ``trace_idle_s`` (complete), then the oldest beyond the memory
        bound (incomplete)."""
        now = self._clock()
        flushed = []
        while self._open:
            trace_id, trace = next(iter(self._open.items()))
            if now - trace.last_seen < self.trace_idle_s:
                break
            flushed.append(self._pop(trace_id, complete=True))
        while self._open_spans > self.max_open_spans and self._open:
            flushed.append(self._pop(next(iter(self._open)), complete=False))
        return flushed

    def flush_all(self, complete: bool) -> list[OpenTrace]:
        """Every open trace (end of input in drain mode)."""
        return [self._pop(trace_id, complete) for trace_id in list(self._open)]

    def drop_partitions(self, partitions: set[tuple[str, int]]) -> int:
        """Forget the traces fed by revoked partitions; return how many were dropped.

        Their offsets were not committed, so the new owner reads and rebuilds them.
        """
        dropped = [
            trace_id
            for trace_id, trace in self._open.items()
            if any((topic, part) in partitions for topic, part, _ in trace.sources)
        ]
        for trace_id in dropped:
            trace = self._open.pop(trace_id)
            self._open_spans -= len(trace.spans)
        self._flushed.clear()
        return len(dropped)
