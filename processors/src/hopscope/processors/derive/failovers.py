"""Failovers and retries: a caller trying again after a failure (docs/DESIGN.md §3 "Failover").

**Attempt chains** (source ``"siblings"``). CLIENT spans under one parent are grouped by target
and operation: the target is the client-side name of the callee (``peer.service``, else
``db.system``, else ``rpc.service``), never ``server.address``, which names the node and
changes on a failover; the operation is ``rpc.service/rpc.method``, else the span name. (The
records' ``target_service`` falls back to the paired SERVER span's service.) In start order
(ties: span id), a span continues the chain of the attempt before it when

- that attempt failed (error status or ``error.type``, e.g. ``"timeout"``), and
- it started after that attempt started, and
- it is marked as a resend (``http.request.resend_count`` above the previous attempt's, or above
  0 when the previous one has none), or — unmarked — it started once the failed attempt had
  ended (the caller reacted to the failure; overlapping unmarked calls are a fan-out, not a
  retry). An explicit ``resend_count`` of 0 always starts a new call.

Each attempt's node is its ``hopscope.peer.node`` (inferred from the endpoint map, see
``semconv.py``), else its ``server.address``, else the node of its SERVER span. Within a chain,
each step to a different node is a **failover**, each step to the same node (or with a node
unknown on either side) a **retry**. A failover record carries:

- ``from_node``/``to_node``, ``reason`` (the failed attempt's ``error.type``, else its status
  message, else None);
- ``attempts``: the chain's length;
- ``detection_ns``: from the start of the first failed attempt on the old node (the first of
  the consecutive attempts there) to the start of the first attempt on the new node;
- ``added_ns``: from the chain's first attempt start to its final attempt start;
- ``outcome``: ``"recovered"`` when the final attempt succeeded, else ``"failed"``.

A chain A✗ → A✗ → B✓ is one retry and one failover (A→B, 3 attempts). A✗ → B✗ → C✓ is two
failovers, sharing ``attempts``, ``added_ns`` and ``outcome``.

**Explicit events.** A ``hopscope.failover`` span event (attributes ``from``, ``to``,
``reason``) is a failover of source ``"span_event"``; a log record whose ``event_name`` (or
``attributes["event.name"]``) is ``hopscope.failover`` one of source ``"cluster_event"`` (it may
have no trace). Their chain figures (attempts, detection, added) are None; a span event's
outcome is its span's status, a log's is unknown (None). An event is dropped as a duplicate
when a failover with the same trace, ``from`` and ``to`` is already known in its scope: the
event's span (the log's span) is the chain's parent or one of its attempts, or is the span of
an earlier event; a log without a span id matches any failover of its trace. Siblings come
first, then span events, then logs, so the record with the most figures survives, and a
sibling failover without a reason takes the event's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Final

from hopscope.ingest import conventions as c
from hopscope.processors.derive._common import (
    TraceIndex,
    attr_int,
    attr_str,
    call_operation,
    end_of,
    error_reason,
    failed,
)
from hopscope.processors.records import CLIENT, LogRecord, SpanRecord

# Outcomes.
RECOVERED: Final = "recovered"
FAILED: Final = "failed"

# Where a failover was seen.
SIBLINGS: Final = "siblings"
SPAN_EVENT: Final = "span_event"
CLUSTER_EVENT: Final = "cluster_event"


@dataclass(frozen=True, slots=True)
class Failover:
    """A caller moving from one node to another (module docstring for the definitions).

    ``failover_id`` is unique and stable within a trace (the first attempt on the new node; the
    event's span and index; a content hash for logs). ``span_id`` is that attempt, the span
    carrying the event, or the log's span. ``time_ns`` is when the new node was tried, or the
    event's time.
    """

    failover_id: str
    trace_id: str | None
    parent_span_id: str | None
    span_id: str | None
    time_ns: int
    service: str
    target_service: str | None
    operation: str | None
    from_node: str | None
    to_node: str | None
    reason: str | None
    attempts: int | None
    detection_ns: int | None
    added_ns: int | None
    outcome: str | None
    source: str


@dataclass(frozen=True, slots=True)
class Retry:
    """A resend to the same node after a failed attempt. ``attempt`` is the 0-based position in
    its chain; ``backoff_ns`` the gap from the failed attempt's end to this attempt's start
    (negative for a hedged resend); ``reason`` as for :class:`Failover`."""

    trace_id: str
    parent_span_id: str | None
    span_id: str
    previous_span_id: str
    time_ns: int
    service: str
    target_service: str | None
    operation: str
    node: str | None
    attempt: int
    backoff_ns: int
    reason: str | None


def derive_failovers(spans: Iterable[SpanRecord], logs: Iterable[LogRecord] = ()) -> list[Failover]:
    """Failovers in one trace's spans and logs, deduplicated, ordered by time then id.

    Parameters:
        spans: the spans of one trace, in any order.
        logs: log records; those with event name ``hopscope.failover`` become cluster-event
            failovers (they need not belong to the trace).

    Examples:
        A payment call times out on ``pay-1`` and succeeds on ``pay-2``:

        >>> from hopscope.processors.records import SpanRecord
        >>> def call(sid, start, end, node, **attrs):
        ...     attrs = {"peer.service": "payment", "server.address": node, **attrs}
        ...     return SpanRecord("t", sid, "root", "payment/Authorize", "client", start, end,
        ...                       "gateway", attributes=attrs)
        >>> spans = [call("a1", 0, 50, "pay-1", **{"error.type": "timeout"}),
        ...          call("a2", 60, 90, "pay-2")]
        >>> (f,) = derive_failovers(spans)
        >>> f.from_node, f.to_node, f.attempts, f.detection_ns, f.added_ns, f.outcome
        ('pay-1', 'pay-2', 2, 60, 60, 'recovered')
    """
    index = TraceIndex(spans)
    return _with_events(index, _analyze_chains(index), logs)


def derive_retries(spans: Iterable[SpanRecord]) -> list[Retry]:
    """Same-node resends after a failure in one trace, ordered by time then span id."""
    return _analyze_chains(TraceIndex(spans)).retries


def count_retries(spans: Iterable[SpanRecord]) -> int:
    """How many same-node retries one trace holds (see :func:`derive_retries`)."""
    return len(derive_retries(spans))


@dataclass(frozen=True, slots=True)
class _Attempt:
    span: SpanRecord
    node: str | None
    target: str | None


def _continues(last: SpanRecord, nxt: SpanRecord) -> bool:
    """Whether ``nxt`` retries ``last`` (module docstring, "Attempt chains")."""
    if not failed(last) or nxt.start_ns <= last.start_ns:
        return False
    resend = attr_int(nxt.attributes, c.HTTP_RESEND_COUNT)
    if resend is None:
        return end_of(last) <= nxt.start_ns
    previous = attr_int(last.attributes, c.HTTP_RESEND_COUNT)
    return resend > (previous if previous is not None else 0)


def _chains(index: TraceIndex) -> list[list[_Attempt]]:
    """Attempt chains of two or more attempts, in a deterministic order."""
    by_parent: dict[str | None, list[SpanRecord]] = {}
    for span in index.spans:
        if span.kind == CLIENT:
            by_parent.setdefault(span.parent_id, []).append(span)
    candidates = [
        span
        for siblings in by_parent.values()
        # A chain needs two attempts and a failure: most parents have neither, skip them cheaply.
        if len(siblings) > 1 and any(map(failed, siblings))
        for span in siblings
    ]
    groups: dict[tuple[str | None, str | None, str], list[_Attempt]] = {}
    for span in candidates:
        server = index.server_of.get(span.span_id)
        attrs = span.attributes
        target = (
            attr_str(attrs, c.PEER_SERVICE)
            or attr_str(attrs, c.DB_SYSTEM)
            or attr_str(attrs, c.RPC_SERVICE)
        )
        node = (
            attr_str(attrs, c.PEER_NODE)
            or attr_str(attrs, c.SERVER_ADDRESS)
            or (server.node if server else None)
        )
        key = (span.parent_id, target, call_operation(span))
        groups.setdefault(key, []).append(
            _Attempt(span, node, target or (server.service if server else None))
        )
    chains: list[list[_Attempt]] = []
    for attempts in groups.values():
        attempts.sort(key=lambda a: (a.span.start_ns, a.span.span_id))
        chain = [attempts[0]]
        for attempt in attempts[1:]:
            if _continues(chain[-1].span, attempt.span):
                chain.append(attempt)
                continue
            if len(chain) > 1:
                chains.append(chain)
            chain = [attempt]
        if len(chain) > 1:
            chains.append(chain)
    chains.sort(key=lambda ch: (ch[0].span.start_ns, ch[0].span.span_id))
    return chains


@dataclass(frozen=True, slots=True)
class _ChainResult:
    failovers: list[Failover]
    retries: list[Retry]
    # Attempt span id → its chain's number; failover id → the number of its chain. An event on
    # an attempt is about the failovers of that attempt's chain.
    chain_of_span: dict[str, int]
    chain_of_failover: dict[str, int]


def _analyze_chains(index: TraceIndex) -> _ChainResult:
    failovers: list[Failover] = []
    retries: list[Retry] = []
    chain_of_span: dict[str, int] = {}
    chain_of_failover: dict[str, int] = {}
    for number, chain in enumerate(_chains(index)):
        chain_of_span.update((a.span.span_id, number) for a in chain)
        first, final = chain[0].span, chain[-1].span
        target = next((a.target for a in chain if a.target), None)
        operation = call_operation(first)
        added = final.start_ns - first.start_ns
        outcome = FAILED if failed(final) else RECOVERED
        run_start = 0  # first attempt of the current run on one node
        for i in range(1, len(chain)):
            before, now = chain[i - 1], chain[i]
            if before.node is not None and now.node is not None and before.node != now.node:
                failovers.append(
                    Failover(
                        failover_id=now.span.span_id,
                        trace_id=now.span.trace_id,
                        parent_span_id=now.span.parent_id,
                        span_id=now.span.span_id,
                        time_ns=now.span.start_ns,
                        service=now.span.service,
                        target_service=target,
                        operation=operation,
                        from_node=before.node,
                        to_node=now.node,
                        reason=error_reason(before.span),
                        attempts=len(chain),
                        detection_ns=now.span.start_ns - chain[run_start].span.start_ns,
                        added_ns=added,
                        outcome=outcome,
                        source=SIBLINGS,
                    )
                )
                chain_of_failover[now.span.span_id] = number
                run_start = i
            else:
                retries.append(
                    Retry(
                        trace_id=now.span.trace_id,
                        parent_span_id=now.span.parent_id,
                        span_id=now.span.span_id,
                        previous_span_id=before.span.span_id,
                        time_ns=now.span.start_ns,
                        service=now.span.service,
                        target_service=target,
                        operation=operation,
                        node=now.node or before.node,
                        attempt=i,
                        backoff_ns=now.span.start_ns - end_of(before.span),
                        reason=error_reason(before.span),
                    )
                )
    failovers.sort(key=lambda f: (f.time_ns, f.failover_id))
    retries.sort(key=lambda r: (r.time_ns, r.span_id))
    return _ChainResult(failovers, retries, chain_of_span, chain_of_failover)


class _Known:
    """Failovers found so far, indexed for deduplication in constant time per event.

    A record's scope is its parent span and, for a chain, the chain's attempts (looked up by
    chain, so a 100k-attempt chain does not cost 100k entries per failover), or the span of the
    event or log it came from.
    """

    def __init__(self, chains: _ChainResult) -> None:
        self.records: list[Failover] = []
        self.ids: set[str] = set()
        self.by_span: dict[tuple[str | None, str, str | None, str | None], int] = {}
        self.by_trace: dict[tuple[str | None, str | None, str | None], int] = {}
        self.by_chain: dict[tuple[int, str | None, str | None], int] = {}
        self.chain_of_span = chains.chain_of_span
        for failover in chains.failovers:
            i = self.add(failover, failover.parent_span_id)
            chain = chains.chain_of_failover[failover.failover_id]
            self.by_chain.setdefault((chain, failover.from_node, failover.to_node), i)

    def add(self, failover: Failover, scope_span: str | None) -> int:
        i = len(self.records)
        self.records.append(failover)
        self.ids.add(failover.failover_id)
        move = (failover.from_node, failover.to_node)
        self.by_trace.setdefault((failover.trace_id, *move), i)
        if scope_span:
            self.by_span.setdefault((failover.trace_id, scope_span, *move), i)
        return i

    def match(
        self, trace_id: str | None, scope_span: str | None, from_node: str | None, to: str | None
    ) -> int | None:
        if scope_span is None:
            return self.by_trace.get((trace_id, from_node, to))
        found = self.by_span.get((trace_id, scope_span, from_node, to))
        if found is not None:
            return found
        chain = self.chain_of_span.get(scope_span)
        if chain is not None:
            found = self.by_chain.get((chain, from_node, to))
            if found is not None and self.records[found].trace_id == trace_id:
                return found
        return None

    def absorb(self, i: int, reason: str | None) -> None:
        """A duplicate event: keep its reason when the record had none."""
        if self.records[i].reason is None and reason is not None:
            self.records[i] = replace(self.records[i], reason=reason)


def _with_events(
    index: TraceIndex, chains: _ChainResult, logs: Iterable[LogRecord]
) -> list[Failover]:
    known = _Known(chains)
    for span in index.spans:
        for number, event in enumerate(span.events):
            if event.name != c.EVENT_FAILOVER:
                continue
            from_node = attr_str(event.attributes, c.FAILOVER_FROM)
            to_node = attr_str(event.attributes, c.FAILOVER_TO)
            reason = attr_str(event.attributes, c.FAILOVER_REASON)
            duplicate = known.match(span.trace_id, span.span_id, from_node, to_node)
            if duplicate is not None:
                known.absorb(duplicate, reason)
                continue
            known.add(
                Failover(
                    failover_id=f"{span.span_id}/{number}",
                    trace_id=span.trace_id,
                    parent_span_id=span.span_id,
                    span_id=span.span_id,
                    time_ns=event.time_ns,
                    service=span.service,
                    target_service=None,
                    operation=None,
                    from_node=from_node,
                    to_node=to_node,
                    reason=reason,
                    attempts=None,
                    detection_ns=None,
                    added_ns=None,
                    outcome=FAILED if failed(span) else RECOVERED,
                    source=SPAN_EVENT,
                ),
                span.span_id,
            )

    for log in logs:
        event_name = log.event_name or attr_str(log.attributes, c.EVENT_NAME)
        if event_name != c.LOG_FAILOVER:
            continue
        from_node = attr_str(log.attributes, c.FAILOVER_FROM)
        to_node = attr_str(log.attributes, c.FAILOVER_TO)
        reason = attr_str(log.attributes, c.FAILOVER_REASON)
        if log.trace_id is not None:
            duplicate = known.match(log.trace_id, log.span_id, from_node, to_node)
            if duplicate is not None:
                known.absorb(duplicate, reason)
                continue
        failover_id = _log_id(log, from_node, to_node)
        if failover_id in known.ids:  # the same log delivered twice
            continue
        known.add(
            Failover(
                failover_id=failover_id,
                trace_id=log.trace_id,
                parent_span_id=log.span_id,
                span_id=log.span_id,
                time_ns=log.time_ns,
                service=log.service,
                target_service=None,
                operation=None,
                from_node=from_node,
                to_node=to_node,
                reason=reason,
                attempts=None,
                detection_ns=None,
                added_ns=None,
                outcome=None,
                source=CLUSTER_EVENT,
            ),
            log.span_id,
        )
    return sorted(known.records, key=lambda f: (f.time_ns, f.failover_id))


def _log_id(log: LogRecord, from_node: str | None, to_node: str | None) -> str:
    """A content hash: the same log replayed gets the same id.

    The resource is part of it: a cluster event outside any trace has no trace id to tell it
    apart, and two runs of the same simulation (or two clusters sharing node names) emit the
    same event at the same instant from otherwise equal logs; their resources differ.
    """
    resource = sorted((str(k), str(v)) for k, v in log.resource.items())
    content = "\x1f".join(
        str(part)
        for part in (log.time_ns, log.service, log.node, log.trace_id, from_node, to_node, resource)
    )
    return "log-" + hashlib.sha256(content.encode()).hexdigest()[:32]
