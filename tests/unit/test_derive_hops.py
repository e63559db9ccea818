"""Hops: CLIENT/SERVER and PRODUCER/CONSUMER pairing, network time and legs, clock skew, and
one-sided calls to virtual targets."""

from __future__ import annotations

import random
from typing import Any

from hopscope.ingest import conventions as c
from hopscope.processors.derive import DB, MESSAGING, RPC, VIRTUAL, Hop, derive_hops
from hopscope.processors.records import (
    CLIENT,
    CONSUMER,
    ERROR,
    INTERNAL,
    PRODUCER,
    SERVER,
    SpanLink,
    SpanRecord,
)


def span(
    sid: str,
    start: int,
    end: int,
    parent: str | None = None,
    *,
    kind: str = INTERNAL,
    service: str = "svc",
    name: str | None = None,
    node: str | None = None,
    status: str = "unset",
    attrs: dict[str, Any] | None = None,
    links: tuple[SpanLink, ...] = (),
    trace: str = "t1",
) -> SpanRecord:
    return SpanRecord(
        trace, sid, parent, name or sid, kind, start, end, service, node, status,
        attributes=attrs or {}, links=links,
    )  # fmt: skip


def client(sid: str, start: int, end: int, **attrs: Any) -> SpanRecord:
    return span(sid, start, end, "root", kind=CLIENT, service="payment", node="payment-1",
                name="risk/Score", attrs=attrs)  # fmt: skip


def server(sid: str, start: int, end: int, parent: str = "c", **kw: Any) -> SpanRecord:
    kw.setdefault("node", "risk-2")
    return span(sid, start, end, parent, kind=SERVER, service="risk", name="risk/Score", **kw)


def only(hops: list[Hop]) -> Hop:
    assert len(hops) == 1
    return hops[0]


def test_rpc_hop_network_time_and_legs() -> None:
    rpc = {c.RPC_SERVICE: "risk", c.RPC_METHOD: "Score", c.HTTP_RESEND_COUNT: 1}
    hop = only(derive_hops([client("c", 0, 100, **rpc), server("s", 10, 80)]))
    assert hop == Hop(
        trace_id="t1", hop_id="c", kind=RPC,
        source_service="payment", source_node="payment-1",
        target_service="risk", target_node="risk-2",
        operation="risk/Score", start_ns=0,
        client_ns=100, server_ns=70, network_ns=30,
        request_leg_ns=10, response_leg_ns=20, clock_skew_suspected=False,
        adjusted_request_leg_ns=10, adjusted_response_leg_ns=20,
        queue_ns=None, error=False, attempt=1, server_span_id="s",
    )  # fmt: skip
    assert not hop.one_sided


def test_server_inside_its_client_is_not_skew() -> None:
    hop = only(derive_hops([client("c", 100, 200), server("s", 120, 190)]))
    assert (hop.network_ns, hop.request_leg_ns, hop.response_leg_ns) == (30, 20, 10)
    assert not hop.clock_skew_suspected
    assert (hop.adjusted_request_leg_ns, hop.adjusted_response_leg_ns) == (20, 10)


def test_negative_leg_means_clock_skew_and_a_symmetric_split() -> None:
    # The server's clock runs 20 ns behind: it seems to start before its caller.
    spans = [client("c", 100, 200), server("s", 90, 170)]
    hop = only(derive_hops(spans))
    assert (hop.network_ns, hop.request_leg_ns, hop.response_leg_ns) == (20, -10, 30)
    assert hop.clock_skew_suspected
    assert (hop.adjusted_request_leg_ns, hop.adjusted_response_leg_ns) == (10, 10)
    assert spans[1].start_ns == 90  # raw timestamps are never rewritten


def test_odd_network_time_splits_into_halves_that_add_up() -> None:
    hop = only(derive_hops([client("c", 100, 200), server("s", 130, 209)]))
    assert (hop.network_ns, hop.response_leg_ns, hop.clock_skew_suspected) == (21, -9, True)
    assert (hop.adjusted_request_leg_ns, hop.adjusted_response_leg_ns) == (10, 11)


def test_server_outlasting_its_client_gives_negative_network_time() -> None:
    hop = only(derive_hops([client("c", 0, 100), server("s", 10, 130)]))
    assert (hop.network_ns, hop.clock_skew_suspected) == (-20, True)
    assert (hop.adjusted_request_leg_ns, hop.adjusted_response_leg_ns) == (-10, -10)


def test_target_node_falls_back_to_server_address() -> None:
    hop = only(derive_hops([
        client("c", 0, 100, **{c.SERVER_ADDRESS: "risk.internal"}), server("s", 10, 90, node=None),
    ]))  # fmt: skip
    assert hop.target_node == "risk.internal"
    assert hop.operation == "risk/Score"  # no rpc.* attributes: the client's span name


def test_error_on_either_side_and_db_kind_when_paired() -> None:
    failed_server = [client("c", 0, 100), server("s", 10, 90, status=ERROR)]
    timed_out_client = [client("c", 0, 100, **{c.ERROR_TYPE: "timeout"}), server("s", 10, 90)]
    assert only(derive_hops(failed_server)).error
    assert only(derive_hops(timed_out_client)).error
    db = only(derive_hops([client("c", 0, 100, **{c.DB_SYSTEM: "postgresql"}),
                           server("s", 10, 90)]))  # fmt: skip
    assert db.kind == DB and db.server_ns == 80


def test_one_sided_call_to_a_virtual_target() -> None:
    attrs = {c.PEER_SERVICE: "issuer", c.SERVER_ADDRESS: "issuer.bank.example"}
    hop = only(derive_hops([client("c", 0, 250, **attrs)]))
    assert (hop.kind, hop.target_service, hop.target_node) == (
        VIRTUAL,
        "issuer",
        attrs[c.SERVER_ADDRESS],
    )
    assert hop.one_sided and hop.server_span_id is None
    assert (hop.client_ns, hop.server_ns, hop.network_ns) == (250, None, None)
    assert hop.request_leg_ns is None and hop.adjusted_request_leg_ns is None
    assert not hop.clock_skew_suspected


def test_one_sided_database_call() -> None:
    attrs = {c.DB_SYSTEM: "postgresql", c.SERVER_ADDRESS: "pg-primary-0"}
    hop = only(derive_hops([client("c", 0, 40, **attrs)]))
    assert (hop.kind, hop.target_service, hop.target_node) == (DB, "postgresql", "pg-primary-0")


def test_one_sided_target_precedence() -> None:
    only_address = only(derive_hops([client("c", 0, 1, **{c.SERVER_ADDRESS: "10.0.0.7"})]))
    assert (only_address.kind, only_address.target_service) == (VIRTUAL, "10.0.0.7")
    both = only(derive_hops([client("c", 0, 1, **{c.PEER_SERVICE: "ledger", c.DB_SYSTEM: "pg"})]))
    assert (both.kind, both.target_service) == (DB, "ledger")


def test_client_naming_no_target_is_not_a_hop() -> None:
    assert derive_hops([client("c", 0, 100), span("i", 10, 20, "c")]) == []


def test_messaging_hop_through_the_parent() -> None:
    spans = [
        span("p", 0, 5, kind=PRODUCER, service="payment", attrs={c.MESSAGING_SYSTEM: "kafka"}),
        span("q", 20, 50, "p", kind=CONSUMER, service="notifier", node="notifier-1"),
    ]
    hop = only(derive_hops(spans))
    assert (hop.kind, hop.hop_id, hop.server_span_id) == (MESSAGING, "p", "q")
    assert (hop.target_service, hop.target_node) == ("notifier", "notifier-1")
    assert (hop.client_ns, hop.server_ns, hop.queue_ns) == (5, 30, 15)
    assert hop.network_ns is None and hop.request_leg_ns is None
    assert not hop.clock_skew_suspected


def test_messaging_hop_through_a_link() -> None:
    spans = [
        span("p", 0, 5, kind=PRODUCER, service="payment"),
        span("q", 40, 50, kind=CONSUMER, service="notifier", links=(SpanLink("t1", "p"),)),
        span("other", 1, 2, kind=CONSUMER, links=(SpanLink("t2", "p"),)),  # another trace's p
    ]
    hop = only(derive_hops(spans))
    assert (hop.server_span_id, hop.queue_ns) == ("q", 35)


def test_child_consumer_wins_over_linking_one_and_negative_queue_is_skew() -> None:
    spans = [
        span("p", 0, 10, kind=PRODUCER),
        span("linked", 1, 3, kind=CONSUMER, links=(SpanLink("t1", "p"),)),
        span("child", 8, 30, "p", kind=CONSUMER),
    ]
    hop = only(derive_hops(spans))
    assert (hop.server_span_id, hop.queue_ns, hop.clock_skew_suspected) == ("child", -2, True)


def test_producer_without_consumer_is_a_one_sided_messaging_hop() -> None:
    attrs = {c.MESSAGING_SYSTEM: "kafka", c.MESSAGING_DESTINATION: "payments.settled"}
    hop = only(derive_hops([span("p", 0, 5, kind=PRODUCER, attrs=attrs)]))
    assert (hop.kind, hop.target_service, hop.one_sided) == (MESSAGING, "payments.settled", True)
    assert derive_hops([span("p", 0, 5, kind=PRODUCER)]) == []


def test_one_hop_per_client_the_earliest_server_answers() -> None:
    spans = [client("c", 0, 100), server("late", 30, 60), server("early", 10, 90)]
    hop = only(derive_hops(spans))
    assert hop.server_span_id == "early"


def test_server_of_another_trace_does_not_pair() -> None:
    other_trace = span("s", 10, 90, "c", kind=SERVER, trace="t2")
    hop = only(derive_hops([client("c", 0, 100, **{c.PEER_SERVICE: "risk"}), other_trace]))
    assert hop.one_sided


def test_duplicates_keep_the_first_and_reversed_spans_last_zero() -> None:
    spans = [
        client("c", 0, 100),
        server("s", 10, 80),
        server("s", 0, 1000),  # duplicate id: ignored
        client("c2", 50, 40, **{c.PEER_SERVICE: "x"}),  # end < start: zero length
    ]
    hops = derive_hops(spans)
    assert [h.hop_id for h in hops] == ["c", "c2"]
    assert hops[0].server_ns == 70
    assert hops[1].client_ns == 0


def test_input_order_does_not_matter() -> None:
    spans = [
        client("c", 0, 100),
        server("s", 10, 80),
        client("c2", 5, 60, **{c.DB_SYSTEM: "pg"}),
        span("p", 0, 5, kind=PRODUCER),
        span("q", 20, 50, "p", kind=CONSUMER),
    ]
    hops = derive_hops(spans)
    for seed in range(5):
        shuffled = spans[:]
        random.Random(seed).shuffle(shuffled)
        assert derive_hops(shuffled) == hops
    assert [h.hop_id for h in hops] == ["c", "p", "c2"]


MS = 1_000_000


def test_server_outlasting_its_client_is_a_caller_that_gave_up() -> None:
    # The caller waited 100 ms and gave up; the server went on for 130 ms. On one host or two,
    # durations are offset-free: this is a timeout, not skew, and the wire time is unknown.
    hop = only(derive_hops([client("c", 0, 100 * MS), server("s", 5 * MS, 135 * MS)]))
    assert hop.client_abandoned
    assert (hop.client_ns, hop.server_ns, hop.network_ns) == (100 * MS, 130 * MS, None)
    assert not hop.clock_skew_suspected
    assert (hop.adjusted_request_leg_ns, hop.adjusted_response_leg_ns) == (None, None)
    # The measured legs are kept as recorded: 5 ms in, −35 ms back.
    assert (hop.request_leg_ns, hop.response_leg_ns) == (5 * MS, -35 * MS)


def test_server_longer_within_coarse_timestamps_is_no_abandon() -> None:
    # Start and end truncated to the millisecond: the server looks 1 ms longer than its client.
    hop = only(derive_hops([client("c", 0, 10 * MS), server("s", 0, 11 * MS)]))
    assert not hop.client_abandoned
    assert hop.network_ns == -MS and hop.clock_skew_suspected
    # 2.5 ms over a 1 s client is within 1 % of it: coarse timestamps too.
    hop = only(derive_hops([client("c", 0, 1000 * MS), server("s", 0, 1002 * MS + MS // 2)]))
    assert not hop.client_abandoned
