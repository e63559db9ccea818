"""Failovers and retries: attempt chains among sibling CLIENT spans, explicit span events and
cluster-event logs, and their deduplication."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hopscope.ingest import conventions as c
from hopscope.processors.derive import (
    CLUSTER_EVENT,
    FAILED,
    RECOVERED,
    SIBLINGS,
    SPAN_EVENT,
    Failover,
    Retry,
    count_retries,
    derive_failovers,
    derive_retries,
)
from hopscope.processors.records import (
    CLIENT,
    ERROR,
    SERVER,
    LogRecord,
    SpanEvent,
    SpanRecord,
)

TIMEOUT = {c.ERROR_TYPE: "timeout"}


def root(*events: SpanEvent, status: str = "unset") -> SpanRecord:
    return SpanRecord("t1", "root", None, "POST /v1/payments", SERVER, 0, 10_000, "gateway",
                      "gateway-1", status, events=events)  # fmt: skip


def attempt(
    sid: str,
    start: int,
    end: int,
    node: str | None,
    *,
    parent: str = "root",
    method: str = "Authorize",
    status: str = "unset",
    **attrs: Any,
) -> SpanRecord:
    """A gateway → payment call, as ``hopscope.ingest.spans.rpc_call`` records it."""
    attributes = {c.PEER_SERVICE: "payment", c.RPC_SERVICE: "payment", c.RPC_METHOD: method}
    if node is not None:
        attributes[c.SERVER_ADDRESS] = node
    attributes.update(attrs)
    return SpanRecord("t1", sid, parent, f"payment/{method}", CLIENT, start, end, "gateway",
                      "gateway-1", status, attributes=attributes)  # fmt: skip


def failover_event(
    time_ns: int, from_node: str, to_node: str, reason: str = "timeout"
) -> SpanEvent:
    return SpanEvent(c.EVENT_FAILOVER, time_ns, {
        c.FAILOVER_FROM: from_node, c.FAILOVER_TO: to_node, c.FAILOVER_REASON: reason,
    })  # fmt: skip


def failover_log(
    time_ns: int, from_node: str, to_node: str, *, trace: str | None = None, span: str | None = None
) -> LogRecord:
    attrs = {c.EVENT_NAME: c.LOG_FAILOVER, c.FAILOVER_FROM: from_node, c.FAILOVER_TO: to_node,
             c.FAILOVER_REASON: "timeout"}  # fmt: skip
    return LogRecord(time_ns, "gateway", "gateway-1", "WARN", "failing over", trace, span,
                     attributes=attrs)  # fmt: skip


def test_timeout_on_one_node_then_success_on_another_is_a_failover() -> None:
    spans = [
        root(),
        attempt("a1", 100, 600, "pay-1", **TIMEOUT, **{c.HTTP_RESEND_COUNT: 0}),
        attempt("a2", 650, 700, "pay-2", **{c.HTTP_RESEND_COUNT: 1}),
    ]
    assert derive_failovers(spans) == [
        Failover(
            failover_id="a2", trace_id="t1", parent_span_id="root", span_id="a2", time_ns=650,
            service="gateway", target_service="payment", operation="payment/Authorize",
            from_node="pay-1", to_node="pay-2", reason="timeout", attempts=2,
            detection_ns=550, added_ns=550, outcome=RECOVERED, source=SIBLINGS,
        )
    ]  # fmt: skip
    assert derive_retries(spans) == []


def test_retry_on_the_same_node_is_not_a_failover() -> None:
    spans = [
        root(),
        attempt("a1", 100, 200, "pay-1", status=ERROR),
        attempt("a2", 250, 300, "pay-1"),
    ]
    assert derive_failovers(spans) == []
    assert derive_retries(spans) == [
        Retry(
            trace_id="t1", parent_span_id="root", span_id="a2", previous_span_id="a1",
            time_ns=250, service="gateway", target_service="payment",
            operation="payment/Authorize", node="pay-1", attempt=1, backoff_ns=50, reason=None,
        )
    ]  # fmt: skip
    assert count_retries(spans) == 1


def test_retries_then_failover_detection_counts_from_the_first_failure() -> None:
    spans = [
        root(),
        attempt("a1", 100, 600, "pay-1", **TIMEOUT),
        attempt("a2", 700, 1200, "pay-1", **TIMEOUT),
        attempt("a3", 1300, 1400, "pay-3"),
    ]
    (failover,) = derive_failovers(spans)
    assert (failover.from_node, failover.to_node, failover.attempts) == ("pay-1", "pay-3", 3)
    assert (failover.detection_ns, failover.added_ns, failover.outcome) == (1200, 1200, RECOVERED)
    assert count_retries(spans) == 1


def test_failing_everywhere_gives_one_failover_per_move_and_outcome_failed() -> None:
    spans = [
        root(),
        attempt("a1", 0, 100, "n1", **TIMEOUT),
        attempt("a2", 150, 250, "n2", status=ERROR),
        attempt("a3", 300, 400, "n3", **{c.ERROR_TYPE: "unavailable"}),
    ]
    moves = [(f.from_node, f.to_node, f.reason, f.detection_ns) for f in derive_failovers(spans)]
    assert moves == [("n1", "n2", "timeout", 150), ("n2", "n3", None, 150)]
    assert {(f.attempts, f.added_ns, f.outcome) for f in derive_failovers(spans)} == {
        (3, 300, FAILED)
    }


def test_node_from_the_server_span_when_the_client_names_none() -> None:
    spans = [
        root(),
        attempt("a1", 0, 100, None, **TIMEOUT),
        SpanRecord("t1", "s1", "a1", "payment/Authorize", SERVER, 10, 20, "payment", "pay-1"),
        attempt("a2", 200, 300, None),
        SpanRecord("t1", "s2", "a2", "payment/Authorize", SERVER, 210, 290, "payment", "pay-2"),
    ]
    (failover,) = derive_failovers(spans)
    assert (failover.from_node, failover.to_node) == ("pay-1", "pay-2")


def test_unknown_node_counts_as_a_retry() -> None:
    spans = [root(), attempt("a1", 0, 100, None, **TIMEOUT), attempt("a2", 200, 300, "pay-2")]
    assert derive_failovers(spans) == []
    assert [r.node for r in derive_retries(spans)] == ["pay-2"]


def test_not_a_chain() -> None:
    after_success = [root(), attempt("a1", 0, 100, "n1"), attempt("a2", 200, 300, "n2")]
    fan_out = [root(), attempt("a1", 0, 100, "n1", **TIMEOUT), attempt("a2", 50, 150, "n2")]
    new_call = [
        root(),
        attempt("a1", 0, 100, "n1", **TIMEOUT),
        attempt("a2", 200, 300, "n2", **{c.HTTP_RESEND_COUNT: 0}),  # explicitly a first try
    ]
    other_method = [root(), attempt("a1", 0, 100, "n1", **TIMEOUT),
                    attempt("a2", 200, 300, "n2", method="Capture")]  # fmt: skip
    other_parent = [root(), attempt("a1", 0, 100, "n1", **TIMEOUT),
                    attempt("a2", 200, 300, "n2", parent="elsewhere")]  # fmt: skip
    for spans in (after_success, fan_out, new_call, other_method, other_parent):
        assert derive_failovers(spans) == []
        assert derive_retries(spans) == []


def test_marked_resend_overlapping_its_predecessor_still_chains() -> None:
    spans = [
        root(),
        attempt("a1", 0, 100, "n1", **TIMEOUT, **{c.HTTP_RESEND_COUNT: 0}),
        attempt("a2", 80, 150, "n2", **{c.HTTP_RESEND_COUNT: 1}),  # a hedge, marked as resend
    ]
    (failover,) = derive_failovers(spans)
    assert (failover.to_node, failover.detection_ns) == ("n2", 80)


def test_span_event_duplicating_a_sibling_failover_is_absorbed() -> None:
    spans = [
        root(failover_event(620, "pay-1", "pay-2", reason="connect timeout")),
        attempt("a1", 100, 600, "pay-1", status=ERROR),  # no error.type: reason from the event
        attempt("a2", 650, 700, "pay-2"),
    ]
    (failover,) = derive_failovers(spans)
    assert (failover.source, failover.reason) == (SIBLINGS, "connect timeout")


def test_event_on_an_attempt_is_in_the_chains_scope() -> None:
    failed = replace(
        attempt("a1", 100, 600, "pay-1", **TIMEOUT), events=(failover_event(600, "pay-1", "pay-2"),)
    )
    spans = [root(), failed, attempt("a2", 650, 700, "pay-2")]
    assert [f.source for f in derive_failovers(spans)] == [SIBLINGS]


def test_span_event_alone_is_a_failover() -> None:
    spans = [root(failover_event(500, "pay-1", "pay-2"), status=ERROR)]
    assert derive_failovers(spans) == [
        Failover(
            failover_id="root/0", trace_id="t1", parent_span_id="root", span_id="root",
            time_ns=500, service="gateway", target_service=None, operation=None,
            from_node="pay-1", to_node="pay-2", reason="timeout", attempts=None,
            detection_ns=None, added_ns=None, outcome=FAILED, source=SPAN_EVENT,
        )
    ]  # fmt: skip


def test_other_moves_in_events_are_not_duplicates() -> None:
    spans = [
        root(failover_event(620, "pay-1", "pay-3")),
        attempt("a1", 100, 600, "pay-1", **TIMEOUT),
        attempt("a2", 650, 700, "pay-2"),
    ]
    assert [(f.source, f.to_node) for f in derive_failovers(spans)] == [
        (SPAN_EVENT, "pay-3"),  # ordered by time: the event at 620, the new attempt at 650
        (SIBLINGS, "pay-2"),
    ]


def test_cluster_event_logs_without_a_trace_and_delivered_twice() -> None:
    log = failover_log(5_000, "clearing-1", "clearing-2")
    (failover,) = derive_failovers([], [log, log])
    assert (failover.source, failover.trace_id, failover.outcome) == (CLUSTER_EVENT, None, None)
    assert (failover.from_node, failover.to_node, failover.service) == (
        "clearing-1", "clearing-2", "gateway",
    )  # fmt: skip
    assert failover.failover_id.startswith("log-")
    other = failover_log(5_001, "clearing-1", "clearing-2")
    assert len(derive_failovers([], [log, other])) == 2


def test_event_name_field_or_attribute_selects_the_log() -> None:
    by_field = LogRecord(1, "gw", None, None, "x", event_name=c.LOG_FAILOVER,
                         attributes={c.FAILOVER_FROM: "a", c.FAILOVER_TO: "b"})  # fmt: skip
    not_a_failover = LogRecord(2, "gw", None, None, "x", event_name=c.LOG_NODE_DOWN)
    assert [f.to_node for f in derive_failovers([], [by_field, not_a_failover])] == ["b"]


def test_the_simulators_triple_record_is_one_failover() -> None:
    # The simulator emits each failover as attempts, an event on the root and a log in its
    # context: one failover, with the chain's figures.
    spans = [
        root(failover_event(620, "pay-1", "pay-2")),
        attempt("a1", 100, 600, "pay-1", **TIMEOUT),
        attempt("a2", 650, 700, "pay-2"),
    ]
    logs = [
        failover_log(620, "pay-1", "pay-2", trace="t1", span="root"),
        failover_log(621, "pay-1", "pay-2", trace="t1"),  # no span id: any of the trace
    ]
    (failover,) = derive_failovers(spans, logs)
    assert (failover.source, failover.attempts) == (SIBLINGS, 2)


def test_log_of_another_trace_is_not_a_duplicate() -> None:
    spans = [root(), attempt("a1", 100, 600, "pay-1", **TIMEOUT), attempt("a2", 650, 700, "pay-2")]
    logs = [failover_log(620, "pay-1", "pay-2", trace="t9", span="root")]
    assert [f.source for f in derive_failovers(spans, logs)] == [CLUSTER_EVENT, SIBLINGS]
