"""Trace summary: one record per trace (docs/DESIGN.md §3 "Trace summary").

Fields and their sources:

- root span, service and operation (the span name): the trace's main root (:mod:`._common`:
  the earliest-starting root, else the earliest orphan); ``start_ns`` and ``duration_ns`` are the
  root's, the request's latency, which the critical-path figures add up to; ``extent_ns`` runs
  from the first span start to the last span end and includes asynchronous work after the
  response;
- ``span_count`` (distinct span ids), ``services`` (sorted), ``error`` (any span failed: error
  status or ``error.type``, so a recovered failover counts), ``root_error`` (the root failed:
  what the payer saw), ``complete`` (as the assembler decided: idle timeout reached, not flushed
  early);
- critical-path time per service and per kind (``self``/``network``/``coordination``), from
  :mod:`.critical_path`;
- ``failover_count`` (deduplicated, span events included; log records are counted when given),
  ``retry_count``, ``hop_count``;
- ``payment_id``: the root's ``payment.id``, else the first span's that has one (by start, then
  span id), else the first log record's;
- ``anomalies``: what is wrong with the trace's tree (orphans, no root, several roots, parent
  cycles, conflicting duplicate ids, ``end < start``; :attr:`TraceIndex.anomalies`) plus what
  the caller noticed (the assembler's ``span_limit``), sorted reason codes of
  :mod:`hopscope.processors.sanitize`.

With no spans the summary is empty: no root, zeros, ``trace_id`` from the logs or ``""``.

What is read from the spans themselves (extent, services, errors, the spans' payment id) is read
by the native core when it is in use (:mod:`hopscope.processors.core`;
``processors/native/src/summary.rs``): :func:`_facts` is its specification, and
``tests/unit/test_native_differential.py`` holds the two to the same values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from hopscope.ingest import conventions as c
from hopscope.processors import core
from hopscope.processors.derive._common import (
    CoordinationRule,
    TraceIndex,
    attr_str,
    duration,
    end_of,
    failed,
)
from hopscope.processors.derive.critical_path import CriticalPath, _critical_path
from hopscope.processors.derive.failovers import _analyze_chains, _with_events
from hopscope.processors.derive.hops import _derive_hops
from hopscope.processors.records import LogRecord, SpanRecord


@dataclass(frozen=True, slots=True)
class TraceSummary:
    """One trace at a glance (module docstring); figures in ns."""

    trace_id: str
    root_span_id: str | None
    root_service: str | None
    root_operation: str | None
    start_ns: int
    duration_ns: int
    extent_ns: int
    span_count: int
    services: tuple[str, ...]
    error: bool
    root_error: bool
    complete: bool
    critical_by_service: Mapping[str, int]
    critical_by_kind: Mapping[str, int]
    failover_count: int
    retry_count: int
    hop_count: int
    payment_id: str | None
    anomalies: tuple[str, ...] = ()


def summarize_trace(
    spans: Iterable[SpanRecord],
    logs: Iterable[LogRecord] = (),
    *,
    complete: bool = True,
    rules: Sequence[CoordinationRule] = (),
    anomalies: Iterable[str] = (),
) -> TraceSummary:
    """Summarize one trace.

    Parameters:
        spans: the spans of one trace, in any order.
        logs: its log records (for cluster-event failovers and a ``payment.id`` fallback).
        complete: whether the assembler saw the trace finish (passed through).
        rules: extra coordination rules for the critical path's ``coordination`` time.
        anomalies: reason codes the caller adds to the tree's own (e.g. ``span_limit``).

    Examples:
        >>> from hopscope.processors.records import SpanRecord
        >>> spans = [
        ...     SpanRecord("t", "r", None, "POST /v1/payments", "server", 0, 100, "gateway",
        ...                attributes={"payment.id": "pay-1"}),
        ...     SpanRecord("t", "c", "r", "payment/Authorize", "client", 10, 90, "gateway"),
        ...     SpanRecord("t", "s", "c", "payment/Authorize", "server", 20, 80, "payment"),
        ... ]
        >>> summary = summarize_trace(spans)
        >>> summary.payment_id, summary.hop_count, dict(summary.critical_by_service)
        ('pay-1', 1, {'gateway': 40, 'payment': 60})
        >>> dict(summary.critical_by_kind)
        {'self': 80, 'network': 20, 'coordination': 0}
    """
    logs = list(logs)
    index = TraceIndex(spans)
    critical = _critical_path(index, rules)
    chains = _analyze_chains(index)
    failovers = _with_events(index, chains, logs)
    return _summarize(
        index,
        logs,
        critical=critical,
        failover_count=len(failovers),
        retry_count=len(chains.retries),
        hop_count=len(_derive_hops(index)),
        complete=complete,
        anomalies=anomalies,
    )


class _Facts(NamedTuple):
    """What the summary reads from the spans themselves; the native core returns the same, as
    a tuple."""

    extent_ns: int
    services: tuple[str, ...]
    error: bool
    root_error: bool
    payment_id: str | None  # the spans' (the root's, else the first's): logs are not read


def _facts(index: TraceIndex) -> _Facts:
    """The spans' part of the summary (the reference the native core is held to)."""
    root = index.main_root
    spans = index.spans
    return _Facts(
        extent_ns=(max(map(end_of, spans)) - min(s.start_ns for s in spans)) if spans else 0,
        services=tuple(sorted({s.service for s in spans if s.service})),
        error=any(map(failed, spans)),
        root_error=failed(root) if root else False,
        payment_id=_span_payment_id(index),
    )


def _span_payment_id(index: TraceIndex) -> str | None:
    root = index.main_root
    if root is not None and (found := attr_str(root.attributes, c.PAYMENT_ID)):
        return found
    first = min(
        (s for s in index.spans if attr_str(s.attributes, c.PAYMENT_ID)),
        key=lambda s: (s.start_ns, s.span_id),
        default=None,
    )
    return None if first is None else attr_str(first.attributes, c.PAYMENT_ID)


def _log_payment_id(logs: Sequence[LogRecord]) -> str | None:
    for log in logs:
        if found := attr_str(log.attributes, c.PAYMENT_ID):
            return found
    return None


def _summarize(
    index: TraceIndex,
    logs: Sequence[LogRecord],
    *,
    critical: CriticalPath,
    failover_count: int,
    retry_count: int,
    hop_count: int,
    complete: bool,
    anomalies: Iterable[str] = (),
) -> TraceSummary:
    """The summary from the index, the derived records' counts and the logs; the spans are read
    by the native core when it is in use (:mod:`hopscope.processors.core`), else by
    :func:`_facts`, its specification."""
    root = index.main_root
    native = core.native()
    parts = None if native is None else native.summary_facts(index.spans, root)
    facts = _facts(index) if parts is None else _Facts(*parts)
    trace_id = index.trace_id or next((log.trace_id for log in logs if log.trace_id), "")
    return TraceSummary(
        trace_id=trace_id,
        root_span_id=root.span_id if root else None,
        root_service=root.service if root else None,
        root_operation=root.name if root else None,
        start_ns=root.start_ns if root else 0,
        duration_ns=duration(root) if root else 0,
        extent_ns=facts.extent_ns,
        span_count=len(index.spans),
        services=facts.services,
        error=facts.error,
        root_error=facts.root_error,
        complete=complete,
        critical_by_service=critical.by_service,
        critical_by_kind=critical.by_kind,
        failover_count=failover_count,
        retry_count=retry_count,
        hop_count=hop_count,
        payment_id=facts.payment_id or _log_payment_id(logs),
        anomalies=tuple(sorted({*index.anomalies, *anomalies})),
    )
