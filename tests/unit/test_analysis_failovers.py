"""Failovers job: tables and the node_failure finding on hand-made failovers; the dead node
found where the simulator killed one, and nothing where no node failed."""

from __future__ import annotations

import doctest
from datetime import timedelta
from typing import Any

import polars as pl
import pytest

from hopscope.analysis.jobs import failovers
from hopscope.analysis.schema import Dataset
from tests.analysis_support import MS, SECOND, START, dataset, frame, simulated


def failover(
    trace: str,
    at_ms: int,
    from_node: str,
    to_node: str,
    detection_ms: int,
    added_ms: int,
    **kw: Any,
) -> dict[str, Any]:
    return {
        "time": START + at_ms * MS,
        "failover_id": f"f-{trace}",
        "trace_id": trace,
        "service": "gateway",
        "target_service": "payment",
        "operation": "payment/Authorize",
        "from_node": from_node,
        "to_node": to_node,
        "reason": "timeout",
        "attempts": 2,
        "detection_ns": detection_ms * MS,
        "added_ns": added_ms * MS,
        "outcome": "recovered",
        "source": "siblings",
        **kw,
    }


def hand_made() -> Dataset:
    """payment-2 fails three payments over to payment-1 (twice) and payment-3; clearing-1
    fails one over once. Two calls to payment-2 never got an answer (250 ms timeouts)."""
    rows = [
        failover("t1", 2_100, "payment-2", "payment-1", 100, 150),
        failover("t2", 2_400, "payment-2", "payment-3", 300, 350),
        failover("t3", 3_500, "payment-2", "payment-1", 200, 250, attempts=3),
        failover(
            "t4",
            500,
            "clearing-1",
            "clearing-2",
            40,
            60,
            service="payment",
            target_service="clearing",
            reason="error",
            outcome="failed",
        ),
    ]
    unanswered = [
        {
            "time": START + at * MS,
            "trace_id": trace,
            "hop_kind": "virtual",
            "source_service": "gateway",
            "target_service": "payment",
            "target_node": "payment-2",
            "client_ns": 250 * MS,
            "error": True,
        }
        for trace, at in (("t1", 2_100), ("t2", 2_400))
    ]
    traces = [{"time": START + i * SECOND, "trace_id": f"x{i}", "duration_ns": 1} for i in range(5)]
    return dataset(
        failovers=frame("failovers", rows),
        hops=frame("hops", unanswered),
        traces=frame("traces", traces),
    )


@pytest.fixture(scope="module")
def result() -> Any:
    return failovers.run(hand_made(), bucket=SECOND)


def at(offset_ms: int) -> Any:
    start = pl.Series([START], dtype=pl.Int64).cast(pl.Datetime("ns", "UTC")).item()
    return start + timedelta(milliseconds=offset_ms)


def test_failovers_table(result: Any) -> None:
    table = result.tables["failovers"]
    assert table.columns == [
        "time",
        "trace_id",
        "service",
        "target_service",
        "operation",
        "from_node",
        "to_node",
        "reason",
        "attempts",
        "detection_ns",
        "added_ns",
        "outcome",
        "source",
    ]
    assert table["trace_id"].to_list() == ["t4", "t1", "t2", "t3"]  # by time


def test_by_node(result: Any) -> None:
    rows = {r["from_node"]: r for r in result.tables["by_node"].iter_rows(named=True)}
    payment = rows["payment-2"]
    assert payment["failovers"] == 3
    assert payment["to_nodes"] == ["payment-1", "payment-3"]
    # detection 100, 200, 300 ms: nearest p50 = rank 1, p99 = rank round(1.98) = 2.
    assert (payment["detection_p50_ns"], payment["detection_p99_ns"]) == (200 * MS, 300 * MS)
    assert (payment["added_p50_ns"], payment["added_p99_ns"]) == (250 * MS, 350 * MS)
    assert payment["payments"] == 3
    assert (payment["first_time"], payment["last_time"]) == (at(2_100), at(3_500))
    assert (rows["clearing-1"]["target_service"], rows["clearing-1"]["reason"]) == (
        "clearing",
        "error",
    )
    assert list(rows) == ["payment-2", "clearing-1"]  # most failovers first


def test_timeline_has_every_bucket(result: Any) -> None:
    timeline = result.tables["timeline"]
    assert timeline.columns == ["bucket", "from_node", "failovers"]
    # The traces span 0 … 4 s: five 1 s buckets per node, zeros included.
    payment = timeline.filter(from_node="payment-2").select("bucket", "failovers").rows()
    assert payment == [(at(0), 0), (at(1_000), 0), (at(2_000), 2), (at(3_000), 1), (at(4_000), 0)]
    assert timeline.filter(from_node="clearing-1")["failovers"].to_list() == [1, 0, 0, 0, 0]


def test_node_failure_findings(result: Any) -> None:
    findings = {f.subject["node"]: f for f in result.findings}
    payment = findings["payment-2"]
    assert (payment.kind, payment.impact) == ("node_failure", "high")
    assert payment.subject == {"service": "payment", "node": "payment-2"}
    assert payment.gain_ns == 350 * MS
    evidence = payment.evidence
    assert evidence["failovers"] == 3
    assert evidence["to_nodes"] == {"payment-1": 2, "payment-3": 1}
    assert (evidence["first_time"], evidence["last_time"]) == (
        at(2_100).isoformat(),
        at(3_500).isoformat(),
    )
    assert (evidence["detection_p50_ns"], evidence["added_p99_ns"]) == (200 * MS, 350 * MS)
    assert (evidence["payments"], evidence["unanswered_calls"]) == (3, 2)
    assert evidence["unanswered_call_p50_ns"] == 250 * MS
    assert list(payment.example_traces) == ["t2", "t3", "t1"]  # most added time first
    for words in ("health check", "outlier ejection", "connect timeout", "least-connections"):
        assert words in payment.recommendation
    # One failover is a blip: noted, not an alarm.
    clearing = findings["clearing-1"]
    assert (clearing.impact, clearing.evidence["unrecovered"]) == ("medium", 1)
    raised = failovers.run(hand_made(), high_failovers=4).findings
    assert {f.impact for f in raised} == {"medium"}


def test_no_failovers_no_finding() -> None:
    result = failovers.run(dataset())
    assert result.findings == []
    assert all(t.is_empty() for t in result.tables.values())
    with pytest.raises(ValueError, match="bucket"):
        failovers.run(dataset(), bucket=-1)


def test_doctests() -> None:
    failures, _ = doctest.testmod(failovers)
    assert failures == 0


def test_node_failure_scenario_names_the_dead_node() -> None:
    data = simulated("node-failure")
    injected = data.ground_truth["injected"][0]
    effect = data.ground_truth["effect"]
    result = failovers.run(data.dataset)
    high = [f for f in result.findings if f.impact == "high"]
    assert len(high) == 1
    finding = high[0]
    assert finding.subject == {"service": injected["service"], "node": injected["node"]}
    assert finding.evidence["failovers"] == effect["failovers"]
    assert finding.evidence["to_nodes"] == effect["failover_to"]
    assert set(finding.example_traces) <= set(effect["failover_traces"])
    assert finding.evidence["unanswered_call_p50_ns"] == injected["connect_timeout_ns"]
    assert finding.gain_ns >= injected["connect_timeout_ns"]


def test_baseline_has_no_finding() -> None:
    result = failovers.run(simulated("baseline").dataset)
    assert result.findings == []
    assert result.tables["failovers"].is_empty()


def _hop(trace: str, at_ms: int, kind: str, source: tuple[str, str], target: tuple[str, str]):
    return {
        "time": START + at_ms * MS,
        "trace_id": trace,
        "hop_kind": kind,
        "source_service": source[0],
        "source_node": source[1],
        "target_service": target[0],
        "target_node": target[1],
        "client_ns": 5 * MS,
        "error": True,
    }


def test_failovers_that_started_below_the_nodes_are_charged_there() -> None:
    """A database switchover: each payment node's call to the ledger failed because the
    ledger's statement on its primary failed, and the gateway failed over to another payment
    node (three times). A dead node (payment-9: its attempt's error is the call to it) keeps
    its node_failure."""
    rows, hops = [], []
    for i, (node, other) in enumerate([("payment-1", "payment-2"), ("payment-2", "payment-3"),
                                       ("payment-3", "payment-1")]):  # fmt: skip
        trace, at_ms = f"s{i}", 1_000 + 100 * i
        rows.append(failover(trace, at_ms + 30, node, other, 30, 40, reason="502"))
        hops += [
            _hop(trace, at_ms, "rpc", ("gateway", "gateway-1"), ("payment", node)),
            _hop(trace, at_ms + 2, "rpc", ("payment", node), ("ledger", "ledger-1")),
            _hop(trace, at_ms + 3, "db", ("ledger", "ledger-1"), ("postgres", "ledger-primary")),
        ]
    for i in range(3):
        trace, at_ms = f"d{i}", 3_000 + 100 * i
        rows.append(failover(trace, at_ms + 250, "payment-9", "payment-1", 250, 260))
        hops.append(
            _hop(trace, at_ms, "virtual", ("gateway", "gateway-1"), ("payment", "payment-9"))
        )
    traces = [{"time": START + i * SECOND, "trace_id": f"x{i}", "duration_ns": 1} for i in range(5)]
    data = dataset(failovers=frame("failovers", rows), hops=frame("hops", hops),
                   traces=frame("traces", traces))  # fmt: skip
    result = failovers.run(data)
    by_kind = {(f.kind, f.subject.get("node")): f for f in result.findings}
    assert set(by_kind) == {("node_failure", "payment-9"), ("dependency_failure", "ledger-primary")}
    below = by_kind[("dependency_failure", "ledger-primary")]
    assert below.impact == "high" and below.evidence["failovers"] == 3
    assert below.subject == {"service": "ledger", "source_service": "ledger",
                             "target_service": "postgres", "node": "ledger-primary"}  # fmt: skip
    assert below.evidence["from_nodes"] == ["payment-1", "payment-2", "payment-3"]
    table = result.tables["downstream"]
    assert table.select("origin_service", "origin_node", "failovers").rows() == [
        ("postgres", "ledger-primary", 3)
    ]
