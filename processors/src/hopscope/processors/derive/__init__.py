"""Derived records of one trace: hops, failovers and retries, coordination delays, two-phase
commits, the critical path and the trace summary (docs/DESIGN.md §3 "Derived records").

Every function is pure and deterministic: the same spans (and logs), in any order, give the same
records, so replays produce the same documents. Inputs are the spans of *one* trace; duplicates,
missing parents, parent cycles and ``end < start`` are tolerated, never raised on (see
:mod:`._common`). Every duration is an ``int`` in nanoseconds.

:func:`derive_all` runs everything once over a shared index, computing the critical path once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hopscope.processors.derive._common import CoordinationRule, TraceIndex
from hopscope.processors.derive.coordination import (
    ABORTED,
    COMMITTED,
    IN_DOUBT,
    CoordinationDelay,
    TwoPhaseCommit,
    _coordination_records,
    derive_coordination,
    derive_two_phase_commits,
)
from hopscope.processors.derive.critical_path import (
    COORDINATION,
    NETWORK,
    SELF,
    CriticalPath,
    PathSegment,
    _critical_path,
    critical_path,
)
from hopscope.processors.derive.failovers import (
    CLUSTER_EVENT,
    FAILED,
    RECOVERED,
    SIBLINGS,
    SPAN_EVENT,
    Failover,
    Retry,
    _analyze_chains,
    _with_events,
    count_retries,
    derive_failovers,
    derive_retries,
)
from hopscope.processors.derive.hops import (
    DB,
    MESSAGING,
    RPC,
    VIRTUAL,
    Hop,
    _derive_hops,
    derive_hops,
)
from hopscope.processors.derive.summary import TraceSummary, _summarize, summarize_trace
from hopscope.processors.records import LogRecord, SpanRecord


@dataclass(frozen=True, slots=True)
class DerivedRecords:
    """Everything derived from one trace (see the modules for each record's definition)."""

    trace_id: str
    hops: tuple[Hop, ...]
    failovers: tuple[Failover, ...]
    retries: tuple[Retry, ...]
    coordination: tuple[CoordinationDelay, ...]
    two_phase_commits: tuple[TwoPhaseCommit, ...]
    critical_path: CriticalPath
    summary: TraceSummary


def derive_all(
    spans: Iterable[SpanRecord],
    logs: Iterable[LogRecord] = (),
    *,
    complete: bool = True,
    rules: Sequence[CoordinationRule] = (),
    anomalies: Iterable[str] = (),
) -> DerivedRecords:
    """Derive every record of one trace, indexing the spans and walking the critical path once.

    Parameters:
        spans: the spans of one trace, in any order.
        logs: log records; ``hopscope.failover`` cluster events become failovers.
        complete: whether the assembler saw the trace finish (copied to the summary).
        rules: extra coordination rules (see :class:`CoordinationRule`).
        anomalies: reason codes the caller adds to the summary's (the assembler's
            ``span_limit``, ``duplicate_span_ids``).

    Examples:
        >>> from hopscope.processors.records import SpanRecord
        >>> spans = [
        ...     SpanRecord("t", "c", None, "risk/Score", "client", 0, 100, "payment"),
        ...     SpanRecord("t", "s", "c", "risk/Score", "server", 10, 80, "risk"),
        ... ]
        >>> records = derive_all(spans)
        >>> records.hops[0].network_ns, records.summary.critical_by_kind["network"]
        (30, 30)
    """
    logs = list(logs)
    index = TraceIndex(spans)
    critical = _critical_path(index, rules)
    chains = _analyze_chains(index)
    failovers = _with_events(index, chains, logs)
    hops = _derive_hops(index)
    summary = _summarize(
        index,
        logs,
        critical=critical,
        failover_count=len(failovers),
        retry_count=len(chains.retries),
        hop_count=len(hops),
        complete=complete,
        anomalies=anomalies,
    )
    delays, commits = _coordination_records(index, critical, rules)
    return DerivedRecords(
        trace_id=summary.trace_id,
        hops=tuple(hops),
        failovers=tuple(failovers),
        retries=tuple(chains.retries),
        coordination=tuple(delays),
        two_phase_commits=tuple(commits),
        critical_path=critical,
        summary=summary,
    )


__all__ = [
    "ABORTED",
    "CLUSTER_EVENT",
    "COMMITTED",
    "COORDINATION",
    "DB",
    "FAILED",
    "IN_DOUBT",
    "MESSAGING",
    "NETWORK",
    "RECOVERED",
    "RPC",
    "SELF",
    "SIBLINGS",
    "SPAN_EVENT",
    "VIRTUAL",
    "CoordinationDelay",
    "CoordinationRule",
    "CriticalPath",
    "DerivedRecords",
    "Failover",
    "Hop",
    "PathSegment",
    "Retry",
    "TraceSummary",
    "TwoPhaseCommit",
    "count_retries",
    "critical_path",
    "derive_all",
    "derive_coordination",
    "derive_failovers",
    "derive_hops",
    "derive_retries",
    "derive_two_phase_commits",
    "summarize_trace",
]
