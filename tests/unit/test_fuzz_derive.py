"""Property tests of the derivations and the assembler on random span forests.

Forests with random parents (cycles, self-parents, unknown ids), duplicate ids and random times
(``end < start``, far apart): the derivations never raise and never give a negative duration;
the critical path's exclusive times sum exactly to the root's duration (the walk tiles the
root's interval, see :mod:`hopscope.processors.derive.critical_path`); the anomalies say what
is wrong with the tree. The assembler keeps its bounds and loses no span.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hopscope.ingest import conventions as c
from hopscope.processors import sanitize as s
from hopscope.processors.assembly import TraceAssembler
from hopscope.processors.checkpoint import OffsetTracker
from hopscope.processors.derive import derive_all
from hopscope.processors.documents import derived_documents
from hopscope.processors.records import CLIENT, CONSUMER, INTERNAL, PRODUCER, SERVER, SpanRecord

T0 = 1_775_030_400_000_000_000
KINDS = [CLIENT, SERVER, PRODUCER, CONSUMER, INTERNAL]
ATTRIBUTES = st.sampled_from(
    [
        {},
        {c.PEER_SERVICE: "risk"},
        {c.SERVER_ADDRESS: "n1", c.ERROR_TYPE: "timeout"},
        {c.SERVER_ADDRESS: "n2"},
        {c.COORDINATION_KIND: c.TWO_PC_PREPARE, c.COORDINATION_RESOURCE: "tx1"},
        {c.COORDINATION_KIND: c.LOCK_WAIT},
        {c.MESSAGING_DESTINATION: "q"},
    ]
)


@st.composite
def forests(draw: st.DrawFn) -> list[SpanRecord]:
    """Up to 60 spans over an id pool smaller than the span count at times (duplicates);
    parents anywhere in the pool, unknown, absent or the span itself."""
    count = draw(st.integers(1, 60))
    pool = [f"{i:016x}" for i in range(draw(st.integers(1, count + 3)))]
    spans = []
    for _ in range(count):
        span_id = draw(st.sampled_from(pool))
        parent = draw(
            st.one_of(st.none(), st.sampled_from(pool), st.just("f" * 16), st.just(span_id))
        )
        start = T0 + draw(st.integers(0, 10_000))
        end = start + draw(st.one_of(st.integers(-500, 5_000), st.integers(0, 10**12)))
        spans.append(
            SpanRecord(
                "a" * 32,
                span_id,
                parent,
                draw(st.sampled_from(["op", "pay/Auth", "lock"])),
                draw(st.sampled_from(KINDS)),
                start,
                end,
                draw(st.sampled_from(["gw", "pay"])),
                node=draw(st.sampled_from([None, "n1", "n2"])),
                status=draw(st.sampled_from(["unset", "error"])),
                attributes=draw(ATTRIBUTES),
            )
        )
    return spans


def has_cycle(spans: list[SpanRecord]) -> bool:
    """Whether the parent links (first copy of each id wins) contain a cycle."""
    parent: dict[str, str | None] = {}
    for span in spans:
        parent.setdefault(span.span_id, span.parent_id)
    for start in parent:
        seen, node = set(), start
        while node in parent and node not in seen:
            seen.add(node)
            node = parent[node]  # type: ignore[assignment]
        if node in seen:
            return True
    return False


@given(forests())
@settings(max_examples=150, deadline=None)
def test_derivations_on_random_forests_never_raise_nor_go_negative(
    spans: list[SpanRecord],
) -> None:
    derived = derive_all(spans, complete=False)
    path, summary = derived.critical_path, derived.summary

    # Durations are never negative; a negative network or queue time is flagged as skew.
    for hop in derived.hops:
        assert hop.client_ns >= 0 and (hop.server_ns is None or hop.server_ns >= 0)
        if hop.network_ns is not None and hop.network_ns < 0:
            assert hop.clock_skew_suspected
        if hop.queue_ns is not None and hop.queue_ns < 0:
            assert hop.clock_skew_suspected
    for delay in derived.coordination:
        assert 0 <= delay.critical_ns <= delay.duration_ns
    for failover in derived.failovers:
        assert (failover.detection_ns or 0) >= 0 and (failover.added_ns or 0) >= 0
    assert summary.duration_ns >= 0 and summary.extent_ns >= 0

    # The critical path tiles the root's interval: exclusive times sum exactly to it.
    assert all(segment.duration_ns > 0 for segment in path.segments)
    assert all(value >= 0 for value in path.exclusive_ns.values())
    assert sum(path.exclusive_ns.values()) == path.duration_ns == summary.duration_ns
    assert sum(path.by_service.values()) == sum(path.by_kind.values()) == path.duration_ns
    assert sum(segment.duration_ns for segment in path.segments) == path.duration_ns

    # The anomalies say what is wrong with the forest.
    ids = {span.span_id for span in spans}
    first = {}
    for span in spans:
        first.setdefault(span.span_id, span)
    assert (s.PARENT_CYCLE in summary.anomalies) == has_cycle(spans)
    orphaned = any(p.parent_id and p.parent_id not in ids for p in first.values())
    assert (s.ORPHAN_SPANS in summary.anomalies) == orphaned
    assert (s.MISSING_ROOT in summary.anomalies) == all(p.parent_id for p in first.values())
    conflicting = any(span != first[span.span_id] for span in spans)
    assert (s.DUPLICATE_SPAN_IDS in summary.anomalies) == conflicting
    assert summary.span_count == len(ids)

    # Every document serializes.
    for document in derived_documents(derived, "p"):
        json.dumps(document.body)


# -- the assembler ---------------------------------------------------------------------------

messages = st.lists(
    st.tuples(
        st.floats(0, 3),  # clock advance before the message
        st.lists(
            st.tuples(st.integers(0, 7), st.integers(0, 12), st.integers(0, 2)),
            min_size=1,
            max_size=8,
        ),  # (trace, span, variant)
    ),
    min_size=1,
    max_size=40,
)


@given(
    messages,
    st.integers(1, 12),
    st.one_of(st.none(), st.integers(1, 40_000)),
    st.integers(1, 10),
)
@settings(max_examples=300, deadline=None)
def test_the_assembler_keeps_its_bounds_and_loses_no_span(
    plan: list[tuple[float, list[tuple[int, int, int]]]],
    max_spans: int,
    max_bytes: int | None,
    max_trace_spans: int,
) -> None:
    now = [0.0]
    assembler = TraceAssembler(
        trace_idle_s=2,
        max_open_spans=max_spans,
        max_open_bytes=max_bytes,
        max_trace_spans=max_trace_spans,
        remember_flushed=3,
        clock=lambda: now[0],
    )
    tracker = OffsetTracker()
    derived: dict[tuple[str, str], SpanRecord] = {}  # the last derivation of each span
    sent: dict[tuple[str, str], SpanRecord] = {}

    def settle(traces: list[Any]) -> None:
        for trace in traces:
            assert trace.spans and len(trace.spans) <= assembler.max_trace_spans
            for span in trace.spans.values():
                derived[(span.trace_id, span.span_id)] = span
            tracker.release_trace(trace.sources)

    for offset, (advance, spans) in enumerate(plan):
        now[0] += advance
        records = [
            SpanRecord(
                f"{t:032x}",
                f"{i:016x}",
                None if i == 0 else f"{0:016x}",
                "op",
                SERVER,
                T0 + i,
                T0 + i + variant,
                "svc",
                attributes={"k": "v" * 50 * variant},
            )
            for t, i, variant in spans
        ]
        for record in records:
            sent[(record.trace_id, record.span_id)] = record
        tracker.seen("t", 0, offset)
        for _ in assembler.add_spans(records, ("t", 0, offset)):
            tracker.hold("t", 0, offset)
        settle(assembler.due())
        assert not assembler.over_bound() or (not assembler.open_traces)
        assert assembler.held_spans >= 0 and assembler.held_bytes >= 0
    settle(assembler.flush_all(complete=True))

    assert tracker.held_count() == 0  # every hold released once
    assert assembler.open_spans == 0 and assembler.open_traces == 0
    # Every span was derived, or counted as arriving after its trace's eviction.
    missing = set(sent) - set(derived)
    assert len(missing) <= assembler.unassembled_spans
    # A derived span is one that was sent under its id (the last copy, or one before it).
    for key, span in derived.items():
        assert span.trace_id == key[0] and span.span_id == key[1]
