"""The processor's pure steps: message → documents, holds, dead letters; trace → derived documents.

Nothing here does I/O: the steps take decoded bytes and in-memory state (the
:class:`~hopscope.processors.assembly.TraceAssembler`) and return what should be written, what
should be held and what should be dead-lettered. Two callers share them, so a record means the
same thing whichever way it came in:

- the stream runtime (:mod:`hopscope.processors.runtime`), message by message, traces as the
  assembler completes them;
- the file loader and tests (:mod:`hopscope.analysis.loaders`), records gathered in full,
  every trace complete (:func:`derive_gathered`, :func:`documents_from_records`).

One message (:func:`take_message`):

1. Decode it; an undecodable message, or one unusable span of it, becomes a dead letter with
   the reason.
2. Its spans and logs become documents at once.
3. Its spans feed the assembler (one hold per trace fed, released when the trace's derived
   records are acknowledged); a log joining an open trace is held the same way.
4. A cluster event outside any trace is a failover record of its own.
5. The message is held once more while its own documents or dead letters are unacknowledged.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from hopscope.core.settings import DEFAULT_INDEX_PREFIX
from hopscope.ingest import conventions as c
from hopscope.processors.assembly import (
    LOG_BYTES,
    OpenTrace,
    TopicPartitionOffset,
    TraceAssembler,
    footprints,
)
from hopscope.processors.decode import RejectedSpan, decode_logs, decode_span_message
from hopscope.processors.derive import DerivedRecords, derive_all
from hopscope.processors.derive.failovers import Failover, derive_failovers
from hopscope.processors.derive.semconv import configured_rules, enrich_spans, infer_cache
from hopscope.processors.documents import (
    Document,
    deletion,
    derived_documents,
    failover_document,
    log_document,
    span_document,
)
from hopscope.processors.errors import DecodeError
from hopscope.processors.records import LogRecord, SpanRecord

# Derived documents of one trace, estimated for the batch byte bound: about as many as its
# spans, ~1 KB each.
DERIVED_BYTES_PER_SPAN = 1024


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """What cannot be processed: the original bytes, the reason and, for a message, its source.

    ``source`` is None for a document Elasticsearch rejected (its value is the JSON body).
    """

    value: bytes
    reason: str
    key: bytes | None = None
    source: TopicPartitionOffset | None = None

    @property
    def kind(self) -> str:
        """The ``reason`` label of the ``hopscope_dead_letters`` metric."""
        return "decode" if self.source else "rejected"


@dataclass(frozen=True, slots=True)
class Decoded:
    """The records of one payload and the spans rejected alone (unusable ids)."""

    spans: list[SpanRecord]
    logs: list[LogRecord]
    rejected: tuple[RejectedSpan, ...] = ()


def decode(
    kind: Literal["spans", "logs"],
    payload: bytes,
    *,
    received_ns: int | None = None,
    strict: bool = False,
) -> Decoded:
    """Decode one OTLP payload (protobuf or JSON) of ``kind``.

    Parameters:
        kind: ``"spans"`` (an ``ExportTraceServiceRequest``) or ``"logs"``.
        payload: the bytes.
        received_ns: when the payload was received (implausible times are replaced).
        strict: fail the whole payload on one unusable span (a file the user handed in),
            instead of rejecting that span alone (a Kafka message of many services).

    Raises:
        DecodeError: no OTLP request of that kind, no record at all, or (strict) an
            unusable span.
    """
    if kind == "logs":
        return Decoded([], decode_logs(payload, received_ns=received_ns))
    decoded = decode_span_message(payload, received_ns=received_ns)
    if strict and decoded.rejected:
        raise DecodeError(decoded.rejected[0].reason.removeprefix("span rejected: "))
    return Decoded(decoded.spans, [], tuple(decoded.rejected))


def standalone_failover_documents(log: LogRecord, prefix: str) -> list[Document]:
    """A cluster event outside any trace is a failover record of its own (else nothing)."""
    if log.event_name != c.LOG_FAILOVER or log.trace_id:
        return []
    return [failover_document(f, prefix) for f in derive_failovers((), (log,))]


@dataclass
class Taken:
    """What one message gave: documents, holds on it, dead letters, flags, estimated bytes."""

    documents: list[Document] = field(default_factory=list)
    holds: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    sanitized: Counter[tuple[str, str]] = field(default_factory=Counter)  # (kind, flag)
    bytes: int = 0


def take_message(
    value: bytes,
    *,
    kind: Literal["spans", "logs"],
    source: TopicPartitionOffset,
    key: bytes | None,
    received_ns: int,
    assembler: TraceAssembler,
    prefix: str,
) -> Taken:
    """Steps 1-5 of the module docstring for one message; feeds ``assembler``."""
    taken = Taken()
    try:
        # Step 1: decode; an unusable span is dead-lettered alone, not its whole message.
        decoded = decode(kind, value, received_ns=received_ns)
    except DecodeError as error:
        taken.dead_letters.append(DeadLetter(value, str(error), key, source))
        taken.bytes, taken.holds = len(value), 1  # Step 5: held until dead-lettered
        return taken
    taken.dead_letters += [DeadLetter(r.payload, r.reason, key, source) for r in decoded.rejected]
    # What standard instrumentations leave out (peer service and node, database role, lock
    # waits), inferred per span before anything is written (derive/semconv.py, steps 1-3).
    spans, logs = enrich_spans(decoded.spans, configured_rules()), decoded.logs
    for record_kind, records in (("spans", spans), ("logs", logs)):
        for record in records:
            if record.flags:  # rare: most records need nothing counted
                taken.sanitized.update((record_kind, flag) for flag in record.flags)
    sizes = footprints(spans)  # once: the assembler counts them too
    taken.bytes = sum(sizes) + LOG_BYTES * len(logs)
    taken.bytes += sum(len(letter.value) for letter in taken.dead_letters)
    # Step 2: the records' own documents.
    documents = [span_document(s, prefix) for s in spans] + [log_document(g, prefix) for g in logs]
    # Step 3: one hold per trace fed, released when its derived records are acknowledged.
    taken.holds += len(assembler.add_spans(spans, source, sizes))
    for log in logs:
        if log.trace_id:
            attached = assembler.add_log(log, source)
            if attached == "new_source":
                taken.holds += 1
            if attached != "not_open":
                continue
        # Step 4: a cluster event outside any (open) trace.
        documents += standalone_failover_documents(log, prefix)
    # Step 5: held while its own documents or dead letters are unacknowledged.
    taken.documents = documents
    if documents or taken.dead_letters:
        taken.holds += 1
    return taken


@dataclass
class DerivedTrace:
    """One trace's derived records and documents, and the messages its acknowledgement frees."""

    records: DerivedRecords
    documents: list[Document]
    sources: set[TopicPartitionOffset]
    complete: bool
    bytes: int


def derive_trace(trace: OpenTrace, prefix: str) -> DerivedTrace:
    """An assembled trace → its derived documents.

    Cache reads get their outcome from their siblings (derive/semconv.py, step 4): those
    spans are written again with it (same id: the earlier document is overwritten).

    A trace derived before (reopened by a late span) also gets the deletion of every document
    of its earlier derivation that this one does not produce (``trace.derived``, which is then
    set to this derivation's documents): what stays in Elasticsearch is what the trace's spans
    taken whole give, no record of the partial trace (see :mod:`hopscope.processors.assembly`).
    """
    cache_reads = infer_cache(trace.spans.values())
    for span in cache_reads:
        trace.spans[span.span_id] = span
    records = derive_all(
        trace.spans.values(), trace.logs, complete=trace.complete, anomalies=trace.flags
    )
    documents = list(derived_documents(records, prefix))
    stamps = {d.key: d.stamp for d in documents}
    stale = [deletion(*key, trace.derived[key]) for key in sorted(trace.derived.keys() - stamps)]
    trace.derived = stamps
    return DerivedTrace(
        records=records,
        documents=[span_document(s, prefix) for s in cache_reads] + documents + stale,
        sources=trace.sources,
        complete=trace.complete,
        bytes=DERIVED_BYTES_PER_SPAN * (len(trace.spans) + 1),
    )


@dataclass(frozen=True)
class CompleteTrace:
    """One trace of records gathered in full (a file, a test): its spans and derived records."""

    spans: list[SpanRecord]
    records: DerivedRecords


def derive_gathered(
    spans: Iterable[SpanRecord], logs: Iterable[LogRecord] = ()
) -> tuple[list[CompleteTrace], list[Failover]]:
    """Records gathered in full → every trace's derived records, each trace taken as complete,
    and the failovers of cluster events outside any trace.

    What the processors derive for the same records; the in-memory paths (documents for tests
    and benchmarks, frames for the file loaders) both start here.
    """
    by_trace: dict[str, list[SpanRecord]] = defaultdict(list)
    for span in enrich_spans(list(spans), configured_rules()):
        by_trace[span.trace_id].append(span)
    for trace_id, trace_spans in by_trace.items():
        inferred = {s.span_id: s for s in infer_cache(trace_spans)}
        if inferred:
            by_trace[trace_id] = [inferred.get(s.span_id, s) for s in trace_spans]
    logs_by_trace: dict[str, list[LogRecord]] = defaultdict(list)
    standalone: list[Failover] = []
    for log in logs:
        if log.trace_id:
            logs_by_trace[log.trace_id].append(log)
        elif log.event_name == c.LOG_FAILOVER:
            standalone.extend(derive_failovers((), (log,)))
    traces = [
        CompleteTrace(trace_spans, derive_all(trace_spans, logs_by_trace[trace_id]))
        for trace_id, trace_spans in by_trace.items()
    ]
    return traces, standalone


def documents_from_records(
    spans: Iterable[SpanRecord],
    logs: Iterable[LogRecord] = (),
    *,
    prefix: str = DEFAULT_INDEX_PREFIX,
) -> Iterator[Document]:
    """Span documents and the derived documents of every trace, every trace taken as complete.

    What the runtime indexes for the same records, less the log documents (a file's logs only
    feed their traces' derivations); cluster events outside a trace become failovers.
    """
    traces, standalone = derive_gathered(spans, logs)
    yield from (failover_document(f, prefix) for f in standalone)
    for trace in traces:
        yield from (span_document(s, prefix) for s in trace.spans)
        yield from derived_documents(trace.records, prefix)


@dataclass
class Batch:
    """Documents of one write, the holds their acknowledgement releases, the dead letters."""

    documents: list[Document] = field(default_factory=list)
    releases: list[TopicPartitionOffset] = field(default_factory=list)
    trace_releases: list[set[TopicPartitionOffset]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    bytes: int = 0  # estimated bytes of the records taken (assembly.footprint)

    def add_message(self, source: TopicPartitionOffset, taken: Taken) -> None:
        self.dead_letters += taken.dead_letters
        self.bytes += taken.bytes
        self.documents += taken.documents
        if taken.documents or taken.dead_letters:  # the hold of step 5
            self.releases.append(source)

    def add_trace(self, derived: DerivedTrace) -> None:
        self.documents += derived.documents
        self.trace_releases.append(derived.sources)
        self.bytes += derived.bytes

    def __bool__(self) -> bool:
        return bool(self.documents or self.releases or self.trace_releases or self.dead_letters)


def written(documents: Sequence[Document], rejected: Iterable[Document]) -> Counter[str]:
    """Documents indexed per kind: all of ``documents`` but the ``rejected`` and the
    deletions."""
    counts = Counter(d.kind for d in documents if not d.delete)
    counts.subtract(d.kind for d in rejected if not d.delete)
    return counts
