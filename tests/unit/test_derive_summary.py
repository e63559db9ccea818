"""Trace summaries, ``derive_all`` (one pass, same records as the single derivations), and the
docstring examples of the derive package."""

from __future__ import annotations

import doctest
import importlib
from typing import Any

import pytest

from hopscope.ingest import conventions as c
from hopscope.processors.derive import (
    DerivedRecords,
    TraceSummary,
    critical_path,
    derive_all,
    derive_coordination,
    derive_failovers,
    derive_hops,
    derive_retries,
    derive_two_phase_commits,
    summarize_trace,
)
from hopscope.processors.records import (
    CLIENT,
    INTERNAL,
    SERVER,
    LogRecord,
    SpanEvent,
    SpanRecord,
)


def span(
    sid: str,
    start: int,
    end: int,
    parent: str | None,
    kind: str,
    service: str,
    node: str | None = None,
    *,
    name: str | None = None,
    events: tuple[SpanEvent, ...] = (),
    **attrs: Any,
) -> SpanRecord:
    return SpanRecord("t1", sid, parent, name or sid, kind, start, end, service, node,
                      attributes=attrs, events=events)  # fmt: skip


def payment_trace() -> list[SpanRecord]:
    """A payment: the first node times out, the second one answers after a lock wait, a ledger
    read and a risk call."""
    failover = SpanEvent(c.EVENT_FAILOVER, 3150, {c.FAILOVER_FROM: "pay-1", c.FAILOVER_TO: "pay-2"})
    call = {c.PEER_SERVICE: "payment", c.RPC_SERVICE: "payment", c.RPC_METHOD: "Authorize"}
    return [
        span("g", 0, 10_000, None, SERVER, "gateway", "gateway-1", name="POST /v1/payments",
             events=(failover,), **{c.PAYMENT_ID: "pay-42"}),
        span("a1", 100, 3100, "g", CLIENT, "gateway", "gateway-1",
             **call, **{c.SERVER_ADDRESS: "pay-1", c.ERROR_TYPE: "timeout"}),
        span("a2", 3200, 9000, "g", CLIENT, "gateway", "gateway-1",
             **call, **{c.SERVER_ADDRESS: "pay-2", c.HTTP_RESEND_COUNT: 1}),
        span("s2", 3300, 8900, "a2", SERVER, "payment", "pay-2", **{c.PAYMENT_ID: "pay-42"}),
        span("lock", 3400, 3600, "s2", INTERNAL, "payment", "pay-2",
             **{c.COORDINATION_KIND: c.LOCK_WAIT, c.COORDINATION_RESOURCE: "account:7"}),
        span("db", 3700, 4700, "s2", CLIENT, "payment", "pay-2",
             **{c.DB_SYSTEM: "postgresql", c.SERVER_ADDRESS: "pg-0"}),
        span("rc", 4800, 8800, "s2", CLIENT, "payment", "pay-2", **{c.PEER_SERVICE: "risk"}),
        span("rs", 4900, 8700, "rc", SERVER, "risk", "risk-1"),
    ]  # fmt: skip


LOGS = [
    # The same failover, logged in the root's context: a duplicate.
    LogRecord(3150, "gateway", "gateway-1", "WARN", "failing over", "t1", "g",
              attributes={c.EVENT_NAME: c.LOG_FAILOVER, c.FAILOVER_FROM: "pay-1",
                          c.FAILOVER_TO: "pay-2"}),
    # A cluster event without a trace.
    LogRecord(5000, "clearing", "clearing-1", "WARN", "leader moved",
              event_name=c.LOG_FAILOVER,
              attributes={c.FAILOVER_FROM: "clearing-1", c.FAILOVER_TO: "clearing-2"}),
]  # fmt: skip


def test_summary_of_a_payment_with_a_failover() -> None:
    assert summarize_trace(payment_trace(), LOGS, complete=False) == TraceSummary(
        trace_id="t1", root_span_id="g", root_service="gateway",
        root_operation="POST /v1/payments", start_ns=0, duration_ns=10_000, extent_ns=10_000,
        span_count=8, services=("gateway", "payment", "risk"), error=True, root_error=False,
        complete=False,
        critical_by_service={"gateway": 4400, "payment": 1800, "risk": 3800},
        critical_by_kind={"self": 9400, "network": 400, "coordination": 200},
        failover_count=2, retry_count=0, hop_count=4, payment_id="pay-42",
    )  # fmt: skip


def test_summary_without_logs_counts_the_trace_failover_once() -> None:
    summary = summarize_trace(payment_trace())
    assert (summary.failover_count, summary.complete) == (1, True)


def test_empty_trace() -> None:
    summary = summarize_trace([])
    assert summary.root_span_id is None and summary.root_service is None
    assert (summary.span_count, summary.duration_ns, summary.extent_ns) == (0, 0, 0)
    assert summary.critical_by_kind == {"self": 0, "network": 0, "coordination": 0}
    assert (summary.trace_id, summary.error, summary.payment_id) == ("", False, None)
    only_a_log = summarize_trace([], [LogRecord(1, "gw", None, None, "x", "t7", None,
                                                attributes={c.PAYMENT_ID: "pay-1"})])  # fmt: skip
    assert (only_a_log.trace_id, only_a_log.payment_id) == ("t7", "pay-1")


def test_payment_id_falls_back_to_the_earliest_span_that_has_one() -> None:
    spans = [
        span("r", 0, 100, None, SERVER, "gw"),
        span("late", 50, 60, "r", INTERNAL, "gw", **{c.PAYMENT_ID: "pay-late"}),
        span("early", 10, 20, "r", INTERNAL, "gw", **{c.PAYMENT_ID: "pay-early"}),
    ]
    assert summarize_trace(spans).payment_id == "pay-early"


def test_extent_includes_work_after_the_response() -> None:
    spans = [span("r", 100, 200, None, SERVER, "gw"), span("bg", 150, 400, "gone", INTERNAL, "gw")]
    summary = summarize_trace(spans)
    assert (summary.start_ns, summary.duration_ns, summary.extent_ns) == (100, 100, 300)
    assert summary.critical_by_service == {"gw": 100}


def test_derive_all_matches_the_single_derivations() -> None:
    spans = payment_trace()
    records = derive_all(spans, LOGS, complete=False)
    assert records == DerivedRecords(
        trace_id="t1",
        hops=tuple(derive_hops(spans)),
        failovers=tuple(derive_failovers(spans, LOGS)),
        retries=tuple(derive_retries(spans)),
        coordination=tuple(derive_coordination(spans)),
        two_phase_commits=tuple(derive_two_phase_commits(spans)),
        critical_path=critical_path(spans),
        summary=summarize_trace(spans, LOGS, complete=False),
    )
    assert [h.kind for h in records.hops] == ["virtual", "rpc", "db", "rpc"]
    assert [(d.span_id, d.critical_ns) for d in records.coordination] == [("lock", 200)]


def test_logs_may_be_any_iterable() -> None:
    assert derive_all(payment_trace(), iter(LOGS)).summary.failover_count == 2


@pytest.mark.parametrize(
    "module",
    ["", "._common", ".critical_path", ".hops", ".failovers", ".coordination", ".summary"],
)
def test_docstring_examples(module: str) -> None:
    imported = importlib.import_module(f"hopscope.processors.derive{module}")
    result = doctest.testmod(imported, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
