"""Critical path: the Jaeger/CRISP last-finishing-child walk, its sanitizing rules and
tolerances, exact exclusive times, and robustness on garbage and 100k-span traces."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hopscope.ingest import conventions as c
from hopscope.processors.derive import (
    CoordinationRule,
    CriticalPath,
    critical_path,
    derive_all,
)
from hopscope.processors.records import (
    CLIENT,
    CONSUMER,
    ERROR,
    INTERNAL,
    PRODUCER,
    SERVER,
    LogRecord,
    SpanEvent,
    SpanLink,
    SpanRecord,
)

KINDS = [INTERNAL, SERVER, CLIENT, PRODUCER, CONSUMER]


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
    attrs: dict[str, Any] | None = None,
) -> SpanRecord:
    return SpanRecord(
        "t1", sid, parent, name or sid, kind, start, end, service, node, attributes=attrs or {}
    )


def sections(path: CriticalPath) -> list[tuple[str, int, int]]:
    return [(s.span_id, s.start_ns, s.end_ns) for s in path.segments]


def assert_tiles_root(path: CriticalPath) -> None:
    """Segments are ordered, non-empty, contiguous and cover exactly the root's interval; the
    exclusive times are their per-span sums and add up to the root's duration."""
    segments = path.segments
    if path.duration_ns == 0:
        assert segments == ()
    else:
        assert segments[0].start_ns == path.start_ns
        assert segments[-1].end_ns == path.end_ns
    for before, after in itertools.pairwise(segments):
        assert before.end_ns == after.start_ns
    per_span: dict[str, int] = {}
    for segment in segments:
        assert segment.end_ns > segment.start_ns
        per_span[segment.span_id] = per_span.get(segment.span_id, 0) + segment.duration_ns
    assert {k: v for k, v in path.exclusive_ns.items() if v} == per_span
    for totals in (path.exclusive_ns, path.by_operation, path.by_service, path.by_kind):
        assert all(v >= 0 for v in totals.values())
        assert sum(totals.values()) == path.duration_ns


# -- Jaeger semantics --------------------------------------------------------------------------


def test_sequential_children_step_back_to_the_earlier_child() -> None:
    path = critical_path([span("r", 0, 100), span("a", 10, 40, "r"), span("b", 50, 90, "r")])
    assert sections(path) == [
        ("r", 0, 10), ("a", 10, 40), ("r", 40, 50), ("b", 50, 90), ("r", 90, 100),
    ]  # fmt: skip
    assert dict(path.exclusive_ns) == {"r": 30, "a": 30, "b": 40}
    assert_tiles_root(path)


def test_touching_children_are_sequential() -> None:
    path = critical_path([span("r", 0, 100), span("a", 0, 50, "r"), span("b", 50, 100, "r")])
    assert sections(path) == [("a", 0, 50), ("b", 50, 100)]
    assert dict(path.exclusive_ns) == {"r": 0, "a": 50, "b": 50}


def test_parallel_children_only_the_last_finishing_one_blocks() -> None:
    spans = [span("r", 0, 100), span("a", 10, 70, "r"), span("b", 20, 90, "r")]
    path = critical_path(spans)
    assert sections(path) == [("r", 0, 20), ("b", 20, 90), ("r", 90, 100)]
    assert dict(path.exclusive_ns) == {"r": 30, "b": 70}
    assert not path.on_path("a")


def test_nested_walk_descends_and_returns() -> None:
    spans = [
        span("r", 0, 100),
        span("a", 10, 90, "r"),
        span("a1", 20, 30, "a"),  # parallel to p, which ends later: off the path
        span("p", 15, 35, "a"),
        span("a2", 40, 80, "a"),
        span("a2x", 50, 60, "a2"),
    ]
    path = critical_path(spans)
    assert sections(path) == [
        ("r", 0, 10), ("a", 10, 15), ("p", 15, 35), ("a", 35, 40), ("a2", 40, 50),
        ("a2x", 50, 60), ("a2", 60, 80), ("a", 80, 90), ("r", 90, 100),
    ]  # fmt: skip
    assert dict(path.exclusive_ns) == {"r": 20, "a": 20, "p": 20, "a2": 30, "a2x": 10}
    assert not path.on_path("a1")
    assert_tiles_root(path)


def test_equal_ends_prefer_the_child_that_started_first() -> None:
    path = critical_path([span("r", 0, 100), span("late", 50, 100, "r"), span("long", 0, 100, "r")])
    assert dict(path.exclusive_ns) == {"r": 0, "long": 100}


def test_operation_keys_sum_repeated_operations() -> None:
    spans = [
        span("r", 0, 100, service="gw", name="pay"),
        span("a", 10, 30, "r", service="db", name="SELECT"),
        span("b", 40, 70, "r", service="db", name="SELECT"),
    ]
    path = critical_path(spans)
    assert dict(path.by_operation) == {"[db] SELECT": 50, "[gw] pay": 50}
    assert dict(path.by_service) == {"db": 50, "gw": 50}


# -- sanitizing ------------------------------------------------------------------------------


def test_child_overflowing_its_parent_is_clipped() -> None:
    path = critical_path([span("r", 0, 100), span("a", 50, 150, "r"), span("b", -20, 10, "r")])
    assert path.clipped_span_ids == ("a", "b")
    assert sections(path) == [("b", 0, 10), ("r", 10, 50), ("a", 50, 100)]
    assert dict(path.exclusive_ns) == {"r": 40, "a": 50, "b": 10}


def test_clipping_cascades_to_grandchildren() -> None:
    spans = [span("r", 0, 100), span("a", 50, 150, "r"), span("a1", 90, 140, "a")]
    path = critical_path(spans)
    assert dict(path.exclusive_ns) == {"r": 50, "a": 40, "a1": 10}


def test_child_wholly_outside_is_dropped_with_its_subtree() -> None:
    spans = [
        span("r", 0, 100),
        span("late", 120, 150, "r"),
        span("late1", 90, 95, "late"),  # inside r, but its parent is gone
        span("early", -50, 0, "r"),  # ends exactly where r starts: outside
    ]
    path = critical_path(spans)
    assert path.dropped_span_ids == ("early", "late")
    assert dict(path.exclusive_ns) == {"r": 100}


def test_async_consumer_under_producer_does_not_block() -> None:
    spans = [
        span("r", 0, 100),
        span("p", 10, 20, "r", kind=PRODUCER),
        span("q", 30, 95, "p", kind=CONSUMER),  # inside r, but asynchronous
        span("q1", 40, 90, "q"),
    ]
    path = critical_path(spans)
    assert path.async_span_ids == ("q",)
    assert dict(path.exclusive_ns) == {"r": 90, "p": 10}


def test_consumer_under_a_non_producer_still_blocks() -> None:
    path = critical_path([span("r", 0, 100), span("q", 30, 95, "r", kind=CONSUMER)])
    assert dict(path.exclusive_ns) == {"r": 35, "q": 65}


def rpc(server_start: int, server_end: int) -> list[SpanRecord]:
    """A root, a 1000 ns CLIENT call inside it, the SERVER span and its child."""
    return [
        span("r", 0, 2000, kind=SERVER, service="gw"),
        span("c", 500, 1500, "r", kind=CLIENT, service="gw"),
        span("s", server_start, server_end, "c", kind=SERVER, service="pay"),
        span("s1", server_start + 10, server_end - 5, "s", service="pay"),
    ]


def test_server_up_to_1_01x_its_client_is_skew_and_shifted_inside() -> None:
    # The server lasts 1003 ns against the client's 1000: skew. Capped at 1000 and moved 5 ns
    # back to start with the client; its child moves with it (same clock).
    path = critical_path(rpc(505, 1508))
    assert path.skew_adjusted_span_ids == ("s",)
    assert path.clipped_span_ids == ()
    assert sections(path) == [
        ("r", 0, 500), ("s", 500, 510), ("s1", 510, 1498), ("s", 1498, 1500), ("r", 1500, 2000),
    ]  # fmt: skip
    assert dict(path.exclusive_ns) == {"r": 1000, "c": 0, "s": 12, "s1": 988}
    assert path.by_kind == {"self": 2000, "network": 0, "coordination": 0}


def test_server_exactly_1_01x_is_still_skew() -> None:
    path = critical_path(rpc(505, 1515))
    assert path.skew_adjusted_span_ids == ("s",)
    assert path.exclusive_ns["c"] == 0


def test_server_beyond_1_01x_is_overflow_and_clipped() -> None:
    path = critical_path(rpc(505, 1516))  # 1011 ns > 1010
    assert path.skew_adjusted_span_ids == ()
    assert path.clipped_span_ids == ("s", "s1")
    assert dict(path.exclusive_ns) == {"r": 1000, "c": 5, "s": 10, "s1": 985}
    assert path.by_kind == {"self": 1995, "network": 5, "coordination": 0}


def test_skewed_server_wholly_outside_its_client_is_moved_in() -> None:
    path = critical_path(rpc(1700, 1800))  # 100 ns server, 200 ns late: the clocks disagree
    assert path.skew_adjusted_span_ids == ("s",)
    assert sections(path)[1:4] == [("c", 500, 1400), ("s", 1400, 1410), ("s1", 1410, 1495)]
    assert dict(path.exclusive_ns) == {"r": 1000, "c": 900, "s": 15, "s1": 85}


# -- the 1 % overlap tolerance ------------------------------------------------------------------


def test_siblings_overlapping_by_less_than_1_percent_are_sequential() -> None:
    spans = [span("r", 0, 1000), span("a", 100, 505, "r"), span("b", 500, 900, "r")]
    path = critical_path(spans)
    # a overlaps b by 5 ns < 10 ns: a is on the path, walked up to b's start only.
    assert sections(path) == [("r", 0, 100), ("a", 100, 500), ("b", 500, 900), ("r", 900, 1000)]
    assert dict(path.exclusive_ns) == {"r": 200, "a": 400, "b": 400}
    assert_tiles_root(path)


def test_overlap_of_1_percent_or_more_is_parallel() -> None:
    spans = [span("r", 0, 1000), span("a", 100, 510, "r"), span("b", 500, 900, "r")]
    path = critical_path(spans)
    assert dict(path.exclusive_ns) == {"r": 600, "b": 400}


def test_overlap_is_not_tolerated_with_a_third_child_inside_it() -> None:
    spans = [
        span("r", 0, 1000),
        span("a", 100, 505, "r"),
        span("b", 500, 900, "r"),
        span("x", 501, 502, "r"),  # CRISP: more than two events in the overlap window
    ]
    path = critical_path(spans)
    assert dict(path.exclusive_ns) == {"r": 600, "b": 400}


def test_overlapping_child_is_walked_only_up_to_the_next_ones_start() -> None:
    spans = [
        span("r", 0, 1000),
        span("a", 100, 505, "r"),
        span("a1", 400, 505, "a"),  # past the cut at 500: walked up to 500
        span("b", 500, 900, "r"),
    ]
    path = critical_path(spans)
    assert sections(path) == [
        ("r", 0, 100), ("a", 100, 400), ("a1", 400, 500), ("b", 500, 900), ("r", 900, 1000),
    ]  # fmt: skip
    assert_tiles_root(path)


# -- classification -----------------------------------------------------------------------------


def test_segments_are_classified_self_network_coordination() -> None:
    spans = [
        span("r", 0, 200, kind=SERVER, service="clearing"),
        span("c", 10, 100, "r", kind=CLIENT, service="clearing"),
        span("s", 20, 80, "c", kind=SERVER, service="bank"),
        span("db", 100, 150, "r", kind=CLIENT, service="clearing",
             attrs={c.DB_SYSTEM: "postgresql"}),  # one-sided: self
        span("lock", 150, 190, "r", service="clearing", attrs={c.COORDINATION_KIND: c.LOCK_WAIT}),
    ]  # fmt: skip
    path = critical_path(spans)
    kinds = {s.span_id: s.kind for s in path.segments}
    assert kinds == {"r": "self", "c": "network", "s": "self", "db": "self", "lock": "coordination"}
    assert path.by_kind == {"self": 20 + 60 + 50, "network": 30, "coordination": 40}
    assert dict(path.by_service) == {"bank": 60, "clearing": 140}


def test_rules_classify_uninstrumented_coordination() -> None:
    spans = [span("r", 0, 100), span("w", 10, 30, "r", name="SELECT id FOR UPDATE")]
    rule = CoordinationRule(c.LOCK_WAIT, name=r"FOR UPDATE$")
    assert critical_path(spans).by_kind["coordination"] == 0
    assert critical_path(spans, rules=[rule]).by_kind["coordination"] == 20


# -- broken traces ------------------------------------------------------------------------------


def test_empty_trace() -> None:
    path = critical_path([])
    assert path.root_span_id is None and path.segments == () and path.duration_ns == 0
    assert path.by_kind == {"self": 0, "network": 0, "coordination": 0}


def test_several_roots_take_the_earliest_the_others_are_detached() -> None:
    spans = [span("late", 50, 500), span("r", 0, 100), span("a", 10, 20, "late")]
    path = critical_path(spans)
    assert path.root_span_id == "r"
    assert path.detached_span_ids == ("late",)
    assert dict(path.exclusive_ns) == {"r": 100}


def test_roots_starting_together_take_the_longest() -> None:
    assert critical_path([span("short", 0, 10), span("long", 0, 99)]).root_span_id == "long"


def test_orphans_are_excluded_from_the_main_path() -> None:
    spans = [span("r", 0, 100), span("o", 10, 90, "missing"), span("o1", 20, 30, "o")]
    path = critical_path(spans)
    assert path.detached_span_ids == ("o",)
    assert dict(path.exclusive_ns) == {"r": 100}


def test_without_a_root_the_earliest_orphan_is_the_main_root() -> None:
    spans = [span("o2", 5, 50, "gone"), span("o1", 0, 40, "gone"), span("k", 10, 20, "o1")]
    path = critical_path(spans)
    assert path.root_span_id == "o1"
    assert dict(path.exclusive_ns) == {"o1": 30, "k": 10}


def test_parent_cycles_terminate_and_stay_off_the_main_path() -> None:
    spans = [
        span("r", 0, 100),
        span("a", 10, 20, "b"),
        span("b", 12, 30, "a"),
        span("self", 40, 50, "self"),
        span("hang", 14, 16, "a"),
    ]
    path = critical_path(spans)
    assert dict(path.exclusive_ns) == {"r": 100}
    assert path.detached_span_ids == ("a", "self")


def test_a_trace_made_only_of_a_cycle_still_has_a_path() -> None:
    path = critical_path([span("a", 0, 100, "b"), span("b", 10, 40, "a")])
    assert path.root_span_id == "a"
    assert dict(path.exclusive_ns) == {"a": 70, "b": 30}


def test_duplicate_span_ids_keep_the_first() -> None:
    spans = [span("r", 0, 100), span("a", 10, 20, "r"), span("a", 0, 100, "r")]
    assert dict(critical_path(spans).exclusive_ns) == {"r": 90, "a": 10}


def test_zero_duration_and_reversed_spans() -> None:
    spans = [
        span("r", 0, 100),
        span("z", 30, 30, "r"),  # zero length: on the path, no time
        span("rev", 60, 40, "r"),  # end < start: zero length at 60
        span("a", 70, 80, "r"),
    ]
    path = critical_path(spans)
    assert dict(path.exclusive_ns) == {"r": 90, "a": 10, "rev": 0, "z": 0}
    assert sections(path) == [("r", 0, 70), ("a", 70, 80), ("r", 80, 100)]
    assert critical_path([span("r", 50, 10)]).exclusive_ns == {"r": 0}


def test_input_order_does_not_matter() -> None:
    spans = [*rpc(505, 1508), span("x", 100, 400, "r"), span("y", 300, 450, "r")]
    assert critical_path(spans) == critical_path(list(reversed(spans)))


# -- invariants ---------------------------------------------------------------------------------


SERVICES = st.sampled_from(["gw", "pay", "risk"])
NAMES = st.sampled_from(["a", "b", "c"])
TREE_KINDS = st.sampled_from(KINDS)
TREE_ATTRIBUTES = st.sampled_from([{}, {c.COORDINATION_KIND: c.LOCK_WAIT}])


@st.composite
def nested_trees(draw: st.DrawFn) -> list[SpanRecord]:
    """Well-formed trees: every child inside its parent (siblings may overlap anyhow)."""
    count = draw(st.integers(1, 30))
    spans = [span("s0", 0, draw(st.integers(0, 10_000)), kind=draw(TREE_KINDS))]
    for i in range(1, count):
        parent = spans[draw(st.integers(0, i - 1))]
        start = draw(st.integers(parent.start_ns, parent.end_ns))
        end = draw(st.integers(start, parent.end_ns))
        spans.append(
            span(
                f"s{i}",
                start,
                end,
                parent.span_id,
                kind=draw(TREE_KINDS),
                service=draw(SERVICES),
                name=draw(NAMES),
                attrs=draw(TREE_ATTRIBUTES),
            )
        )
    return draw(st.permutations(spans))


@given(nested_trees())
@settings(max_examples=100, deadline=None)
def test_exclusive_times_of_well_formed_trees_sum_to_the_root_duration(
    spans: list[SpanRecord],
) -> None:
    path = critical_path(spans)
    assert path.root_span_id == "s0"
    assert path.duration_ns == spans[[s.span_id for s in spans].index("s0")].duration_ns
    assert_tiles_root(path)
    assert path.dropped_span_ids == () and path.clipped_span_ids == ()


IDS = ["a", "b", "c", "d", "e", "f"]
ATTRIBUTE_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-2, 3), st.sampled_from(["", "x", "n1", "n2", "2"])
)
GARBAGE_ATTRIBUTES = st.dictionaries(
    st.sampled_from(
        [
            c.PEER_SERVICE,
            c.SERVER_ADDRESS,
            c.HTTP_RESEND_COUNT,
            c.ERROR_TYPE,
            c.DB_SYSTEM,
            c.RPC_SERVICE,
            c.RPC_METHOD,
            c.COORDINATION_KIND,
            c.COORDINATION_RESOURCE,
            c.COORDINATION_PARTICIPANT,
            c.PAYMENT_ID,
            c.MESSAGING_DESTINATION,
        ]
    ),
    st.one_of(ATTRIBUTE_VALUES, st.sampled_from(sorted(c.COORDINATION_KINDS))),
    max_size=4,
)
FAILOVER_ATTRIBUTES = st.fixed_dictionaries(
    {}, optional={c.FAILOVER_FROM: ATTRIBUTE_VALUES, c.FAILOVER_TO: ATTRIBUTE_VALUES}
)


# Strategies are built once, here: building them inside a composite's loop costs more than
# the derivations under test.
GARBAGE_EVENTS = st.lists(
    st.builds(
        SpanEvent,
        st.sampled_from([c.EVENT_FAILOVER, "exception"]),
        st.integers(-50, 50),
        FAILOVER_ATTRIBUTES,
    ),
    max_size=2,
).map(tuple)
GARBAGE_LINKS = st.lists(
    st.builds(SpanLink, st.sampled_from(["t1", "t2"]), st.sampled_from(IDS)), max_size=2
).map(tuple)
garbage_spans = st.lists(
    st.builds(
        SpanRecord,
        trace_id=st.sampled_from(["t1", "t1", "t2"]),
        span_id=st.sampled_from(IDS),
        parent_id=st.sampled_from([*IDS, None, "", "missing"]),
        name=st.sampled_from(["op", "SELECT 1 FOR UPDATE", ""]),
        kind=st.sampled_from([*KINDS, "weird"]),
        start_ns=st.integers(-50, 50),
        end_ns=st.integers(-50, 50),
        service=st.sampled_from(["gw", "pay", ""]),
        node=st.sampled_from([None, "n1", "n2"]),
        status=st.sampled_from(["unset", "ok", ERROR, "bogus"]),
        attributes=GARBAGE_ATTRIBUTES,
        events=GARBAGE_EVENTS,
        links=GARBAGE_LINKS,
    ),
    max_size=14,
)


garbage_logs = st.lists(
    st.builds(
        LogRecord,
        time_ns=st.integers(-50, 50),
        service=st.sampled_from(["gw", "pay"]),
        node=st.sampled_from([None, "n1"]),
        severity=st.none(),
        body=st.just("failing over"),
        trace_id=st.sampled_from([None, "t1"]),
        span_id=st.sampled_from([None, *IDS]),
        event_name=st.sampled_from([None, c.LOG_FAILOVER, c.LOG_NODE_DOWN]),
        attributes=st.one_of(FAILOVER_ATTRIBUTES, st.just({c.EVENT_NAME: c.LOG_FAILOVER})),
    ),
    max_size=3,
)


@given(garbage_spans, garbage_logs)
@settings(max_examples=100, deadline=None)
def test_derivations_never_raise_on_garbage(
    spans: list[SpanRecord], logs: Sequence[LogRecord]
) -> None:
    rule = CoordinationRule(c.TWO_PC_PREPARE, name="FOR UPDATE", attributes={c.DB_SYSTEM: "x"})
    records = derive_all(spans, logs, complete=False, rules=[rule])
    assert_tiles_root(records.critical_path)
    assert len({h.hop_id for h in records.hops}) == len(records.hops)
    assert len({f.failover_id for f in records.failovers}) == len(records.failovers)
    assert records.summary.span_count == len({s.span_id for s in spans})
    # Without duplicate ids (which one comes first decides), input order does not matter.
    if len({s.span_id for s in spans}) == len(spans) and len({s.trace_id for s in spans}) <= 1:
        again = derive_all(list(reversed(spans)), logs, complete=False, rules=[rule])
        assert again == records


# -- scale --------------------------------------------------------------------------------------

N = 100_000


def test_100k_span_chain() -> None:
    # Each span nests inside the previous one, alternating CLIENT and SERVER: 1 ns each side.
    spans = [
        span(f"s{i}", i, 2 * N - i, f"s{i - 1}" if i else None,
             kind=CLIENT if i % 2 else SERVER, name="hop")
        for i in range(N)
    ]  # fmt: skip
    records = derive_all(spans)
    path = records.critical_path
    assert len(path.exclusive_ns) == N
    assert set(path.exclusive_ns.values()) == {2}
    assert dict(path.by_operation) == {"[svc] hop": 2 * N}
    network = 2 * (N // 2 - 1)  # every CLIENT but the deepest has a SERVER child
    assert path.by_kind == {"self": 2 * N - network, "network": network, "coordination": 0}
    assert len(records.hops) == N // 2 - 1
    assert len(path.segments) == 2 * N - 1  # the deepest span's two ns make one segment


def test_100k_span_fan_out() -> None:
    # One parent, N sequential failing calls alternating between two nodes, the last succeeds.
    spans = [span("r", 0, N, kind=SERVER, service="gw")]
    for i in range(N):
        attrs = {c.PEER_SERVICE: "pay", c.SERVER_ADDRESS: f"n{i % 2}"}
        if i < N - 1:
            attrs[c.ERROR_TYPE] = "timeout"
        spans.append(
            span(f"c{i}", i, i + 1, "r", kind=CLIENT, service="gw", name="pay/Auth", attrs=attrs)
        )
    records = derive_all(spans)
    path = records.critical_path
    assert path.exclusive_ns["r"] == 0
    assert len(path.segments) == N
    assert path.by_kind == {"self": N, "network": 0, "coordination": 0}
    assert len(records.failovers) == N - 1
    assert records.failovers[-1].attempts == N
    assert records.failovers[-1].outcome == "recovered"
    assert records.summary.hop_count == N


@pytest.mark.parametrize("count", [1, 2, 3])
def test_tiny_traces(count: int) -> None:
    spans = [span(f"s{i}", i, 10 - i, f"s{i - 1}" if i else None) for i in range(count)]
    assert_tiles_root(critical_path(spans))
