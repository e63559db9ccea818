"""Trace assembly per partition: collect a trace's spans until it has been idle, bounded.

A trace is complete after ``trace_idle_s`` without a new span. Every trace remembers the Kafka
messages (partition, offset) its spans came from, because those offsets may only be committed
once the trace's derived records are in Elasticsearch.

Memory is bounded three ways, each evicting traces *incomplete* (their records derived from
the spans seen so far, ``complete: false``):

- ``max_open_spans`` and ``max_open_bytes`` bound all open traces together: past either, the
  traces idle the longest are evicted first. Bytes are estimated per span
  (:func:`footprint`: Python objects, not wire bytes), so an operator can size the bound in
  memory terms (:func:`memory_bounds` turns a process budget into the bounds);
- ``max_trace_spans`` bounds one trace: the span past it evicts the trace at once, flagged
  ``span_limit``, so one huge trace cannot push every other trace out.

A span of a trace evicted that way, arriving later, is still indexed (its document is written
at once), but not assembled: the trace's derived records stay those derived at eviction, instead
of being replaced by ones derived from the remainder alone. The evicted trace ids are
remembered (a bounded set of ids, not spans) for that.

A span that arrives after its trace completed and was flushed (a late span) reopens the trace
from a memory of recently flushed traces, so its records are derived again from all its spans
and logs. The deterministic ids make most new documents replace the old ones, but not all: a
record of the partial trace can have an id the whole trace does not give (a 2PC transaction
whose coordinator span came late was keyed on no coordinator; a record whose time moved to
another day is in another daily index). So a flushed trace also remembers where the documents
of its derivation are (:attr:`OpenTrace.derived`, set by
:func:`hopscope.processors.pipeline.derive_trace`), and the new derivation deletes those it no
longer produces: the trace ends with exactly the records of its spans taken whole. That memory
counts towards the bounds too, and is given up first: past a bound, the oldest flushed traces
are forgotten before any open trace is evicted (a span of a forgotten trace starts a trace of
its own, as it would after a rebalance: the memory is per process).

Duplicate span ids: an identical copy (a redelivery) is ignored; a different copy replaces the
earlier one, which is what Elasticsearch does with the documents of both (same id, the later
write wins), and the trace is flagged ``duplicate_span_ids``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from hopscope.processors import core, sanitize
from hopscope.processors.records import LogRecord, SpanRecord

TopicPartitionOffset = tuple[str, int, int]  # topic, partition, offset

# Estimated bytes (CPython 3.11, 64-bit) of what an open trace holds; see footprint(). Measured
# with tracemalloc on simulated payment traces (about 1.6 KB per span with 5-6 attributes) and
# on one-span traces; the estimate errs on the high side.
SPAN_BYTES: Final = 700  # the record, its id and name strings, its dicts, its slot in the trace
ATTRIBUTE_BYTES: Final = 150  # a key and a value object and their dict entry, text excluded
EVENT_BYTES: Final = 250
TRACE_BYTES: Final = 900  # the open trace, its dicts and sets, its entry in the assembler
LOG_BYTES: Final = 1_500  # a log record and its document, for the runtime's batch estimate
# Memory not held by open traces: the interpreter and its libraries, Kafka fetch buffers, one
# iteration's documents and bulk request (see memory_bounds).
BASELINE_BYTES: Final = 128 * 1024 * 1024
# Evicted trace ids remembered so their later spans are not assembled: about 180 B each, so
# 4 MB at most (part of BASELINE_BYTES); late spans come within seconds, and a flood evicts
# far more traces than any of them could be waiting for.
EVICTED_IDS: Final = 20_000
# A remembered derived document's (kind, index, id) and time (OpenTrace.derived): a tuple, its
# id, index and time strings, its slot in the dict. A trace has about as many derived
# documents as spans (hops, coordination delays), so a flushed trace is charged this much per
# span.
DERIVED_KEY_BYTES: Final = 330


def footprint(span: SpanRecord) -> int:
    """Estimated bytes ``span`` holds in memory (its text counted one byte a character).

    >>> footprint(SpanRecord("t", "s", None, "op", "server", 0, 1, "svc", attributes={"k": "v"}))
    854
    """
    attributes = span.attributes
    size = SPAN_BYTES + len(span.name) + ATTRIBUTE_BYTES * len(attributes)
    if attributes:
        size += sum(map(len, attributes))
        size += sum(len(v) for v in attributes.values() if v.__class__ is str)
    for event in span.events:
        size += EVENT_BYTES + len(event.name) + _map_bytes(event.attributes)
    for link in span.links:
        size += EVENT_BYTES + _map_bytes(link.attributes)
    if span.status_message:
        size += len(span.status_message)
    return size


def footprints(spans: Sequence[SpanRecord]) -> list[int]:
    """:func:`footprint` of each of ``spans``, counted by the native core when it is in use
    (:mod:`hopscope.processors.core`; :func:`footprint` is the specification).

    >>> footprints([SpanRecord("t", "s", None, "op", "server", 0, 1, "svc")])
    [702]
    """
    native = core.native()
    if native is not None:
        sizes: list[int] | None = native.footprints(spans)
        if sizes is not None:
            return sizes
    return [footprint(span) for span in spans]


def _map_bytes(values: object) -> int:
    if not isinstance(values, dict) or not values:
        return 0
    text = sum(len(v) for v in values.values() if v.__class__ is str)
    return ATTRIBUTE_BYTES * len(values) + sum(map(len, values)) + text


def memory_bounds(max_memory_mb: int) -> tuple[int, int]:
    """``(max_open_spans, max_open_bytes)`` for a processor that should stay within
    ``max_memory_mb`` of resident memory.

    What is not open traces (:data:`BASELINE_BYTES`: the interpreter, libraries, Kafka
    buffers, one iteration's documents) is set aside; the open traces get three quarters of
    the rest, the last quarter absorbing the allocator's fragmentation and the estimate's
    error. The span bound assumes the smallest span a trace can hold.

    >>> memory_bounds(512)
    (355282, 301989888)
    """
    total = max_memory_mb * 1024 * 1024
    if total <= BASELINE_BYTES + 16 * 1024 * 1024:
        raise ValueError(
            f"max_memory_mb must leave room past the processor's baseline of "
            f"{BASELINE_BYTES // (1024 * 1024)} MB plus 16 MB for traces, got {max_memory_mb}"
        )
    open_bytes = (total - BASELINE_BYTES) * 3 // 4
    return open_bytes // (SPAN_BYTES + ATTRIBUTE_BYTES), open_bytes


@dataclass
class OpenTrace:
    """Spans (and trace-scoped logs) of one trace seen so far."""

    trace_id: str
    spans: dict[str, SpanRecord] = field(default_factory=dict)
    logs: list[LogRecord] = field(default_factory=list)
    sources: set[TopicPartitionOffset] = field(default_factory=set)
    last_seen: float = 0.0
    complete: bool = True
    # Estimated bytes of the spans (footprint) and of the trace itself.
    bytes: int = TRACE_BYTES
    # Reason codes for the trace summary (sanitize): span_limit, duplicate_span_ids.
    flags: set[str] = field(default_factory=set)
    # (kind, index, id) -> @timestamp of the derived documents of its last derivation
    # (pipeline.derive_trace sets it): a trace reopened by a late span deletes those its new
    # derivation does not give (the time places the deletion in the archive's hour).
    derived: dict[tuple[str, str, str], str] = field(default_factory=dict)


@dataclass
class _Flushed:
    """A flushed trace kept for late spans, and the bytes charged for it (its own, and its
    derived documents' keys once derived: :data:`DERIVED_KEY_BYTES`)."""

    trace: OpenTrace
    bytes: int


class TraceAssembler:
    """Open traces of the partitions one processor owns (module docstring for the bounds)."""

    def __init__(
        self,
        *,
        trace_idle_s: float = 5.0,
        max_open_spans: int = 200_000,
        max_open_bytes: int | None = None,
        max_trace_spans: int = 100_000,
        remember_flushed: int = 5_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if trace_idle_s <= 0:
            raise ValueError(f"trace_idle_s must be positive, got {trace_idle_s}")
        if max_open_spans < 1:
            raise ValueError(f"max_open_spans must be at least 1, got {max_open_spans}")
        if max_open_bytes is not None and max_open_bytes < 1:
            raise ValueError(f"max_open_bytes must be at least 1 or None, got {max_open_bytes}")
        if max_trace_spans < 1:
            raise ValueError(f"max_trace_spans must be at least 1, got {max_trace_spans}")
        self.trace_idle_s = trace_idle_s
        self.max_open_spans = max_open_spans
        self.max_open_bytes = max_open_bytes
        # A trace can never hold more than all traces together.
        self.max_trace_spans = min(max_trace_spans, max_open_spans)
        self._clock = clock
        # Insertion order = order of last activity (moved to the end on every new span).
        self._open: OrderedDict[str, OpenTrace] = OrderedDict()
        self._open_spans = 0
        self._open_bytes = 0
        # Flushed traces kept for late spans, oldest first; their spans and bytes count
        # towards the bounds as well.
        self._flushed: OrderedDict[str, _Flushed] = OrderedDict()
        self._flushed_spans = 0
        self._flushed_bytes = 0
        self._remember_flushed = remember_flushed
        # Traces evicted at once (span_limit), waiting for due().
        self._ready: list[OpenTrace] = []
        # Ids of traces evicted incomplete: later spans are indexed, not assembled.
        self._evicted: OrderedDict[str, None] = OrderedDict()
        self.late_spans = 0
        self.duplicate_spans = 0  # a different span under a known id (the later one kept)
        self.redelivered_spans = 0  # an identical copy (ignored)
        self.unassembled_spans = 0  # spans of evicted traces, indexed only

    @property
    def open_traces(self) -> int:
        return len(self._open)

    @property
    def open_spans(self) -> int:
        """Spans of the open traces."""
        return self._open_spans

    @property
    def held_spans(self) -> int:
        """Spans held: the open traces' and the flushed ones remembered for late spans."""
        return self._open_spans + self._flushed_spans

    @property
    def held_bytes(self) -> int:
        """Estimated bytes held (:func:`footprint` plus the per-trace overhead), open and
        remembered traces together: what the bounds limit."""
        return self._open_bytes + self._flushed_bytes

    def add_spans(
        self,
        spans: Sequence[SpanRecord],
        source: TopicPartitionOffset,
        sizes: Sequence[int] | None = None,
    ) -> set[str]:
        """Add the spans of one message; return the ids of the traces they feed (each holds
        ``source`` until its records are written).

        ``sizes`` are the spans' :func:`footprint`, one per span, when the caller has them
        already (the processor counts them for its batch estimate): each is computed once.
        """
        now = self._clock()
        touched: set[str] = set()
        if sizes is None:
            sizes = footprints(spans)
        elif len(sizes) != len(spans):
            raise ValueError(f"sizes must give one footprint a span: {len(sizes)} for {len(spans)}")
        for span, size in zip(spans, sizes, strict=True):
            trace = self._open.get(span.trace_id)
            if trace is None:
                if span.trace_id in self._evicted:
                    self.unassembled_spans += 1
                    continue
                trace = self._reopen(span.trace_id, now)
            known = trace.spans.get(span.span_id)
            if known is None:
                if len(trace.spans) >= self.max_trace_spans:
                    # The span past the bound: this trace is evicted now, flagged; this span and
                    # the later ones are indexed only.
                    trace.flags.add(sanitize.SPAN_LIMIT)
                    trace.sources.add(source)
                    touched.add(span.trace_id)
                    self._ready.append(self._pop(span.trace_id, complete=False))
                    self.unassembled_spans += 1
                    continue
                trace.spans[span.span_id] = span
                trace.bytes += size
                self._open_spans += 1
                self._open_bytes += size
            elif known != span:
                trace.spans[span.span_id] = span  # the later copy, as in Elasticsearch
                size -= footprint(known)
                trace.bytes += size
                self._open_bytes += size
                trace.flags.add(sanitize.DUPLICATE_SPAN_IDS)
                self.duplicate_spans += 1
            else:
                self.redelivered_spans += 1
            trace.sources.add(source)
            trace.last_seen = now
            self._open.move_to_end(span.trace_id)
            touched.add(span.trace_id)
        return touched

    def _reopen(self, trace_id: str, now: float) -> OpenTrace:
        """A new open trace, with the spans of its flushed part when remembered."""
        trace = OpenTrace(trace_id, last_seen=now)
        earlier = self._flushed.pop(trace_id, None)
        if earlier is not None:  # a late span: bring the rest of its trace back
            self.late_spans += 1
            flushed = earlier.trace
            self._flushed_spans -= len(flushed.spans)
            self._flushed_bytes -= earlier.bytes
            trace.spans.update(flushed.spans)
            trace.logs = list(flushed.logs)
            trace.bytes = flushed.bytes
            trace.flags = flushed.flags
            trace.derived = flushed.derived
            self._open_spans += len(flushed.spans)
        self._open_bytes += trace.bytes
        self._open[trace_id] = trace
        return trace

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
        self._open_bytes -= trace.bytes
        if complete:
            self._remember(trace)
        else:
            # Evicted: its later spans must not make a second, partial trace (module docstring).
            self._evicted[trace_id] = None
            if len(self._evicted) > EVICTED_IDS:
                self._evicted.popitem(last=False)
        return trace

    def _remember(self, trace: OpenTrace) -> None:
        """Keep a flushed trace for late spans (at most ``remember_flushed`` traces;
        :meth:`due` forgets the oldest first when the bounds are passed). The trace is kept
        as handed out, so what its derivation records on it (:attr:`OpenTrace.derived`) is
        remembered too."""
        charged = trace.bytes + DERIVED_KEY_BYTES * len(trace.spans)
        self._flushed[trace.trace_id] = _Flushed(trace, charged)
        self._flushed_spans += len(trace.spans)
        self._flushed_bytes += charged
        while len(self._flushed) > self._remember_flushed:
            self._forget_oldest()

    def _forget_oldest(self) -> None:
        _, forgotten = self._flushed.popitem(last=False)
        self._flushed_spans -= len(forgotten.trace.spans)
        self._flushed_bytes -= forgotten.bytes

    def over_bound(self) -> bool:
        """Whether the open and remembered traces hold more than the bounds allow."""
        return self.held_spans > self.max_open_spans or (
            self.max_open_bytes is not None and self.held_bytes > self.max_open_bytes
        )

    def due(self) -> list[OpenTrace]:
        """Traces to derive now: those evicted at their span bound, those idle for
        ``trace_idle_s`` (complete), then, beyond the memory bounds, the least recently active
        (incomplete) once no flushed trace is left to forget."""
        now = self._clock()
        flushed, self._ready = self._ready, []
        while self._open:
            trace_id, trace = next(iter(self._open.items()))
            if now - trace.last_seen < self.trace_idle_s:
                break
            flushed.append(self._pop(trace_id, complete=True))
        while self.over_bound():
            if self._flushed:
                self._forget_oldest()
            elif self._open:
                flushed.append(self._pop(next(iter(self._open)), complete=False))
            else:
                break
        return flushed

    def flush_all(self, complete: bool) -> list[OpenTrace]:
        """Every open trace (end of input in drain mode), and those evicted meanwhile."""
        flushed, self._ready = self._ready, []
        return flushed + [self._pop(trace_id, complete) for trace_id in list(self._open)]

    def drop_partitions(self, partitions: set[tuple[str, int]]) -> int:
        """Forget the traces fed by revoked partitions; return how many were dropped.

        Their offsets were not committed, so the new owner reads and rebuilds them. What is
        remembered about flushed and evicted traces goes too: were the partitions assigned
        back, they are read again from the committed offsets and must assemble afresh.
        """

        def revoked(trace: OpenTrace) -> bool:
            return any((topic, part) in partitions for topic, part, _ in trace.sources)

        dropped = [trace_id for trace_id, trace in self._open.items() if revoked(trace)]
        for trace_id in dropped:
            trace = self._open.pop(trace_id)
            self._open_spans -= len(trace.spans)
            self._open_bytes -= trace.bytes
        kept = [trace for trace in self._ready if not revoked(trace)]
        dropped_ready = len(self._ready) - len(kept)
        self._ready = kept
        self._flushed.clear()
        self._flushed_spans = self._flushed_bytes = 0
        self._evicted.clear()
        return len(dropped) + dropped_ready
