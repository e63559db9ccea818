"""Coordination delays (with their critical-path share) and two-phase-commit transactions."""

from __future__ import annotations

from typing import Any

import pytest

from hopscope.ingest import conventions as c
from hopscope.processors.derive import (
    ABORTED,
    COMMITTED,
    IN_DOUBT,
    CoordinationDelay,
    CoordinationRule,
    TwoPhaseCommit,
    critical_path,
    derive_coordination,
    derive_two_phase_commits,
)
from hopscope.processors.records import CLIENT, ERROR, INTERNAL, SERVER, SpanRecord


def span(
    sid: str,
    start: int,
    end: int,
    parent: str | None = None,
    *,
    kind: str = INTERNAL,
    service: str = "clearing",
    node: str | None = "clearing-1",
    name: str | None = None,
    status: str = "unset",
    **attrs: Any,
) -> SpanRecord:
    return SpanRecord("t1", sid, parent, name or sid, kind, start, end, service, node, status,
                      attributes=attrs)  # fmt: skip


def phase(
    sid: str, kind: str, start: int, end: int, participant: str | None, *, parent: str = "clr",
    resource: str = "tx-1", **kw: Any,
) -> SpanRecord:  # fmt: skip
    attrs = {c.COORDINATION_KIND: kind, c.COORDINATION_RESOURCE: resource}
    if participant is not None:
        attrs[c.COORDINATION_PARTICIPANT] = participant
    return span(sid, start, end, parent, name=f"{kind} {resource}", **attrs, **kw)


def settlement(*, commit: bool = True) -> list[SpanRecord]:
    """Clearing coordinates tx-1 over three ledger shards; ledger-1 is the straggler."""
    second = c.TWO_PC_COMMIT if commit else c.TWO_PC_ABORT
    return [
        span("g", 0, 1000, kind=SERVER, service="gateway", node="gateway-1"),
        span("clr", 100, 900, "g", kind=SERVER),
        phase("prep0", c.TWO_PC_PREPARE, 200, 260, "ledger-0"),
        phase("prep1", c.TWO_PC_PREPARE, 200, 300, "ledger-1"),
        phase("prep2", c.TWO_PC_PREPARE, 205, 290, "ledger-2"),
        span("bank", 300, 700, "clr", kind=CLIENT, **{c.PEER_SERVICE: "bank-adapter"}),
        phase("fin0", second, 710, 730, "ledger-0"),
        phase("fin1", second, 710, 745, "ledger-1"),
        phase("fin2", second, 710, 720, "ledger-2"),
    ]


def test_two_phase_commit_with_three_participants_and_a_straggler() -> None:
    assert derive_two_phase_commits(settlement()) == [
        TwoPhaseCommit(
            trace_id="t1", resource="tx-1", coordinator_span_id="clr",
            coordinator_service="clearing", start_ns=200, participants=3,
            participant_names=("ledger-0", "ledger-1", "ledger-2"),
            prepare_ns=100, commit_ns=35, straggler="ledger-1", blocked_ns=40,
            outcome=COMMITTED,
        )
    ]  # fmt: skip


def test_coordination_delays_carry_their_critical_path_share() -> None:
    spans = settlement()
    delays = {d.span_id: d for d in derive_coordination(spans)}
    assert set(delays) == {"prep0", "prep1", "prep2", "fin0", "fin1", "fin2"}
    # Only the phases that ended last in each step block the coordinator.
    assert {k: d.critical_ns for k, d in delays.items()} == {
        "prep0": 0, "prep1": 100, "prep2": 0, "fin0": 0, "fin1": 35, "fin2": 0,
    }  # fmt: skip
    assert delays["prep1"] == CoordinationDelay(
        trace_id="t1", span_id="prep1", parent_span_id="clr", name="2pc.prepare tx-1",
        kind=c.TWO_PC_PREPARE, service="clearing", node="clearing-1", resource="tx-1",
        participant="ledger-1", start_ns=200, duration_ns=100, critical_ns=100, error=False,
    )  # fmt: skip
    # A critical path computed beforehand gives the same records.
    assert derive_coordination(spans, critical_path(spans)) == list(delays.values())


def test_aborted_in_doubt_and_failed_prepare() -> None:
    (aborted,) = derive_two_phase_commits(settlement(commit=False))
    assert (aborted.outcome, aborted.commit_ns) == (ABORTED, 35)

    prepares_only = [s for s in settlement() if not s.span_id.startswith("fin")]
    (in_doubt,) = derive_two_phase_commits(prepares_only)
    assert (in_doubt.outcome, in_doubt.commit_ns, in_doubt.prepare_ns) == (IN_DOUBT, None, 100)

    lock_timeout = [
        span("clr", 0, 100, kind=SERVER),
        phase("p0", c.TWO_PC_PREPARE, 10, 20, "ledger-0"),
        phase("p1", c.TWO_PC_PREPARE, 10, 90, "ledger-1", status=ERROR),
    ]
    (failed,) = derive_two_phase_commits(lock_timeout)
    assert (failed.outcome, failed.straggler, failed.blocked_ns) == (ABORTED, "ledger-1", 70)


def test_commit_without_prepare_and_a_participant_preparing_twice() -> None:
    spans = [
        span("clr", 0, 100, kind=SERVER),
        phase("p0", c.TWO_PC_PREPARE, 10, 30, "ledger-0"),
        phase("p0b", c.TWO_PC_PREPARE, 35, 50, "ledger-0"),  # its answer: the later end
        phase("p1", c.TWO_PC_PREPARE, 10, 40, "ledger-1"),
        phase("other", c.TWO_PC_COMMIT, 60, 70, "ledger-0", resource="tx-2"),
    ]
    first, second = derive_two_phase_commits(spans)
    assert (first.resource, first.participants, first.prepare_ns) == ("tx-1", 2, 30)
    assert (first.straggler, first.blocked_ns, first.outcome) == ("ledger-0", 10, IN_DOUBT)
    assert (second.resource, second.prepare_ns, second.straggler, second.blocked_ns) == (
        "tx-2", None, None, None,
    )  # fmt: skip
    assert (second.participants, second.commit_ns, second.outcome) == (1, 10, COMMITTED)


def test_straggler_ties_go_to_the_smallest_participant_name() -> None:
    spans = [
        span("clr", 0, 100, kind=SERVER),
        phase("b", c.TWO_PC_PREPARE, 10, 50, "ledger-b"),
        phase("a", c.TWO_PC_PREPARE, 20, 50, "ledger-a"),
    ]
    (txn,) = derive_two_phase_commits(spans)
    assert (txn.straggler, txn.blocked_ns) == ("ledger-a", 0)


def test_same_resource_under_two_coordinators_is_two_transactions() -> None:
    spans = [
        span("root", 0, 1000, kind=SERVER, service="gateway"),
        span("call1", 10, 400, "root", kind=CLIENT, service="gateway"),
        span("clr1", 20, 390, "call1", kind=SERVER),
        phase("p1", c.TWO_PC_PREPARE, 30, 40, "ledger-0", parent="clr1"),
        span("call2", 500, 900, "root", kind=CLIENT, service="gateway"),
        span("clr2", 510, 890, "call2", kind=SERVER, node="clearing-2"),
        phase("p2", c.TWO_PC_PREPARE, 520, 530, "ledger-0", parent="clr2"),
    ]
    assert [t.coordinator_span_id for t in derive_two_phase_commits(spans)] == ["clr1", "clr2"]


def test_phases_nested_deeper_share_the_coordinators_service_span() -> None:
    spans = [
        span("clr", 0, 100, kind=SERVER),
        span("phase1", 5, 50, "clr"),
        phase("p0", c.TWO_PC_PREPARE, 10, 20, "ledger-0", parent="phase1"),
        phase("p1", c.TWO_PC_PREPARE, 10, 30, "ledger-1", parent="phase1"),
        span("phase2", 55, 95, "clr"),
        phase("c0", c.TWO_PC_COMMIT, 60, 70, "ledger-0", parent="phase2"),
    ]
    (txn,) = derive_two_phase_commits(spans)
    assert (txn.coordinator_span_id, txn.participants, txn.outcome) == ("clr", 2, COMMITTED)


def test_phases_recorded_by_the_participants_group_under_the_coordinator() -> None:
    spans = [span("clr", 0, 1000, kind=SERVER)]
    for i, (end, commit_end) in enumerate([(200, 620), (260, 640), (230, 610)]):
        node = f"ledger-{i}"
        spans += [
            span(f"call{i}", 100, 250 + 10 * i, "clr", kind=CLIENT),
            span(f"srv{i}", 110, end + 5, f"call{i}", kind=SERVER, service="ledger", node=node),
            phase(f"p{i}", c.TWO_PC_PREPARE, 120, end, None, parent=f"srv{i}",
                  service="ledger", node=node),
            span(f"ccall{i}", 590, 660, "clr", kind=CLIENT),
            span(f"csrv{i}", 595, 655, f"ccall{i}", kind=SERVER, service="ledger", node=node),
            phase(f"c{i}", c.TWO_PC_COMMIT, 600, commit_end, node, parent=f"csrv{i}",
                  service="ledger", node=node),
        ]  # fmt: skip
    (txn,) = derive_two_phase_commits(spans)
    assert txn.coordinator_span_id == "clr"
    assert txn.participant_names == ("ledger-0", "ledger-1", "ledger-2")
    assert (txn.straggler, txn.prepare_ns, txn.blocked_ns, txn.commit_ns) == (
        "ledger-1", 140, 60, 40,
    )  # fmt: skip


def test_rules_classify_spans_without_the_attribute() -> None:
    spans = [
        span("r", 0, 100, kind=SERVER),
        span("w", 10, 40, "r", name="SELECT balance FROM accounts FOR UPDATE"),
        span("raft", 50, 60, "r", name="append", **{"raft.op": "append"}),
        span("lock", 70, 80, "r", name="FOR UPDATE", **{c.COORDINATION_KIND: c.QUEUE_WAIT}),
    ]
    rules = [
        CoordinationRule(c.LOCK_WAIT, name=r"FOR UPDATE$"),
        CoordinationRule(c.CONSENSUS_APPEND, attributes={"raft.op": "append"}),
    ]
    kinds = {d.span_id: (d.kind, d.critical_ns) for d in derive_coordination(spans, rules=rules)}
    assert kinds == {
        "w": (c.LOCK_WAIT, 30), "raft": (c.CONSENSUS_APPEND, 10), "lock": (c.QUEUE_WAIT, 10),
    }  # fmt: skip
    assert [d.span_id for d in derive_coordination(spans)] == ["lock"]


def test_rule_2pc_kinds_make_transactions_too() -> None:
    spans = [
        span("clr", 0, 100, kind=SERVER),
        span("p", 10, 20, "clr", name="PREPARE TRANSACTION",
             **{c.COORDINATION_RESOURCE: "tx-9", c.COORDINATION_PARTICIPANT: "ledger-0"}),
    ]  # fmt: skip
    rule = CoordinationRule(c.TWO_PC_PREPARE, name="^PREPARE TRANSACTION")
    assert derive_two_phase_commits(spans) == []
    assert [t.resource for t in derive_two_phase_commits(spans, rules=[rule])] == ["tx-9"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "nap"}, "kind must be one of"),
        ({"kind": c.LOCK_WAIT}, "needs a name pattern or attributes"),
        ({"kind": c.LOCK_WAIT, "name": "("}, "not a valid regular expression"),
    ],
)
def test_invalid_rules_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CoordinationRule(**kwargs)


def test_transaction_without_resource_or_coordinator() -> None:
    no_resource = [span("p", 0, 10, **{c.COORDINATION_KIND: c.TWO_PC_PREPARE})]
    assert derive_two_phase_commits(no_resource) == []
    assert [d.resource for d in derive_coordination(no_resource)] == [None]
    orphan = [phase("p", c.TWO_PC_PREPARE, 0, 10, "ledger-0", parent="gone")]
    (txn,) = derive_two_phase_commits(orphan)
    assert (txn.coordinator_span_id, txn.participants) == (None, 1)  # nothing above it
