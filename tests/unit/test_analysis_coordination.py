"""Coordination job: waits per kind and resource, 2PC stragglers and the findings on hand-made
records; the hot accounts found where the simulator made them, nothing high elsewhere."""

from __future__ import annotations

import doctest
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from hopscope.analysis.jobs import coordination
from hopscope.analysis.schema import Dataset, empty
from tests.analysis_support import MS, START, dataset, frame, simulated


def wait(
    trace: str, resource: str, ns: int, critical: int | None = None, **kw: Any
) -> dict[str, Any]:
    return {
        "time": START,
        "trace_id": trace,
        "coordination_kind": "lock_wait",
        "service": "clearing",
        "resource": resource,
        "duration_ns": ns,
        "critical_ns": ns if critical is None else critical,
        **kw,
    }


# Ten traces t0 … t9 of 1000 + i ms: Σ 10 045 ms.
TRACES = [{"trace_id": f"t{i}", "time": START, "duration_ns": (1000 + i) * MS} for i in range(10)]


def lock_waits(hot: bool = True) -> list[dict[str, Any]]:
    """account:1 waited on 5 times (100 ms each, t5 … t9), account:2 3 times (50 ms, t2 … t4),
    eleven other accounts once each (1 ms; t0 holds two). Σ 661 ms, all on the path."""
    rows = [wait(f"t{i}", "account:1" if hot else f"account:1{i}", 100 * MS) for i in range(5, 10)]
    rows += [wait(f"t{i}", "account:2" if hot else f"account:2{i}", 50 * MS) for i in (2, 3, 4)]
    rows += [wait(f"t{max(i - 1, 0)}", f"account:9{i}", 1 * MS) for i in range(11)]
    # Other kinds: a consensus append on the path, a prepare its statements cover.
    rows.append(wait("t1", "log", 4 * MS, coordination_kind="consensus.append"))
    rows.append(wait("t1", "tx-1", 6 * MS, 0, coordination_kind="2pc.prepare"))
    return rows


def hand_made(hot: bool = True, commits: Sequence[Mapping[str, Any]] = ()) -> Dataset:
    return dataset(
        traces=frame("traces", TRACES),
        coordination=frame("coordination", lock_waits(hot)),
        two_phase_commits=frame("two_phase_commits", commits)
        if commits
        else empty("two_phase_commits").lazy(),
    )


@pytest.fixture(scope="module")
def result() -> Any:
    return coordination.run(hand_made())


def test_by_kind(result: Any) -> None:
    rows = {r["coordination_kind"]: r for r in result.tables["by_kind"].iter_rows(named=True)}
    locks = rows["lock_wait"]
    assert (locks["waits"], locks["total_ns"], locks["critical_ns"]) == (19, 661 * MS, 661 * MS)
    # 19 waits sorted: 11 × 1 ms, 3 × 50 ms, 5 × 100 ms. Nearest p50 = rank 9 -> 1 ms;
    # p99 = rank round(17.82) = 18 -> 100 ms.
    assert (locks["p50_ns"], locks["p99_ns"]) == (1 * MS, 100 * MS)
    assert locks["critical_share"] == 661 / 10_045
    assert rows["2pc.prepare"]["critical_share"] == 0.0
    assert rows["consensus.append"]["critical_share"] == 4 / 10_045
    assert result.tables["by_kind"]["coordination_kind"].to_list() == [
        "lock_wait",
        "consensus.append",
        "2pc.prepare",
    ]


def test_by_resource(result: Any) -> None:
    table = result.tables["by_resource"].filter(coordination_kind="lock_wait")
    top = table.row(0, named=True)
    assert (top["resource"], top["service"], top["waits"]) == ("account:1", "clearing", 5)
    assert (top["total_ns"], top["p50_ns"], top["p99_ns"], top["max_ns"]) == (
        500 * MS,
        100 * MS,
        100 * MS,
        100 * MS,
    )
    assert top["share_of_kind"] == 500 / 661
    assert table.row(1, named=True)["share_of_kind"] == 150 / 661
    assert table.height == 13
    assert table["share_of_kind"].sum() == pytest.approx(1.0)


def test_lock_contention_names_the_hot_resources(result: Any) -> None:
    (finding,) = [f for f in result.findings if f.kind == "lock_contention"]
    assert finding.impact == "high"
    # account:1 76 %, account:2 23 % (3 waits each at least); the eleven others 0.15 % each.
    assert finding.subject == {"service": "clearing", "resources": ["account:1", "account:2"]}
    assert [(r["resource"], r["waits"], r["p99_ns"]) for r in finding.evidence["resources"]] == [
        ("account:1", 5, 100 * MS),
        ("account:2", 3, 50 * MS),
    ]
    assert finding.evidence["hot_share"] == pytest.approx(650 / 661)
    # Slowest 1 % = ceil(0.1) = 1 trace, t9: 100 ms on account:1 + 1 ms on account:910.
    assert finding.gain_ns == 101 * MS
    assert finding.example_traces[0] in {"t5", "t6", "t7", "t8", "t9"}
    assert "issuer" in finding.recommendation


def test_spread_lock_waits_are_medium() -> None:
    findings = coordination.run(hand_made(hot=False)).findings
    assert [(f.kind, f.impact, f.subject["resources"]) for f in findings] == [
        ("lock_contention", "medium", [])
    ]


def test_cheap_lock_waits_are_no_finding() -> None:
    # 661 ms of 10 s is 6.6 %: under a 10 % threshold nothing is reported.
    assert coordination.run(hand_made(), lock_critical_share=0.1).findings == []


def statement_locks(lock_ms: int, peer_ms: int) -> Dataset:
    """Ten ``SELECT … FOR UPDATE`` spans of ledger (one per trace, ``lock_ms`` each, all on the
    critical path: the wait and the statement in one duration) and ten other statements of
    ledger on the same database (``peer_ms`` each)."""

    def statement(i: int, name: str, ms: int, **kw: Any) -> dict[str, Any]:
        return {"time": START, "trace_id": f"t{i}", "span_id": f"{name}{i}", "service": "ledger",
                "kind": "client", "name": name, "db_system": "postgresql",
                "db_statement": f"{name} …", "duration_ns": ms * MS, **kw}  # fmt: skip

    locks = [statement(i, "lock", lock_ms, coordination_kind="lock_wait") for i in range(10)]
    peers = [statement(i, "select", peer_ms) for i in range(10)]
    # Connects (no query text) are not statements: however cheap, they change nothing.
    peers += [{**statement(i, "connect", 0), "db_statement": None} for i in range(10)]
    waits = [wait(f"t{i}", "ledger.accounts", lock_ms * MS, span_id=f"lock{i}", service="ledger")
             for i in range(10)]  # fmt: skip
    return dataset(
        traces=frame("traces", TRACES),
        spans=frame("spans", [*locks, *peers]),
        coordination=frame("coordination", waits),
    )


def test_statement_lock_waits_count_only_beyond_the_other_statements() -> None:
    # 400 ms of FOR UPDATE on the path (4.0 % of 10 045 ms); the other statements take 10 ms,
    # so 1 − 10/40 = 75 % of it is waiting: 300 ms, 2.99 %, still above 2 %: high.
    result = coordination.run(statement_locks(40, 10))
    row = result.tables["by_kind"].row(0, named=True)
    assert (row["critical_ns"], row["waited_ns"]) == (400 * MS, 300 * MS)
    assert row["critical_share"] == 300 / 10_045
    (finding,) = result.findings
    assert (finding.kind, finding.impact) == ("lock_contention", "high")
    assert finding.subject == {"service": "ledger", "resources": ["ledger.accounts"]}
    assert finding.gain_ns == 30 * MS  # t9's 40 ms, three quarters of it waiting


def test_an_uncontended_for_update_is_no_lock_contention() -> None:
    # The FOR UPDATE reads cost what the other statements cost (or less): no waiting at all,
    # however much payment time the statements themselves take.
    for peer_ms in (40, 50):
        result = coordination.run(statement_locks(40, peer_ms))
        assert result.tables["by_kind"].row(0, named=True)["waited_ns"] == 0
        assert result.findings == []


def commit(i: int, straggler: str, participants: int, blocked_ms: int, **kw: Any) -> dict[str, Any]:
    return {
        "time": START,
        "trace_id": f"t{i}",
        "resource": f"tx-{i}",
        "coordinator_service": "clearing",
        "participants": participants,
        "prepare_ns": (blocked_ms + 5) * MS,
        "commit_ns": 2 * MS,
        "straggler": straggler,
        "blocked_ns": blocked_ms * MS,
        "outcome": kw.get("outcome", "committed"),
    }


def straggling() -> list[dict[str, Any]]:
    """ledger-1 answers last in 11 of 12 two-participant transactions, blocking 10 … 20 ms
    (two aborted); ledger-0 in one (1 ms) and alone in three single-participant ones."""
    rows = [
        commit(i, "ledger-1", 2, 10 + i, outcome="aborted" if i < 2 else "committed")
        for i in range(11)
    ]
    rows.append(commit(11, "ledger-0", 2, 1))
    rows += [commit(12 + i, "ledger-0", 1, 0) for i in range(3)]
    return rows


def test_stragglers_table_and_finding() -> None:
    result = coordination.run(hand_made(commits=straggling()))
    rows = {r["straggler"]: r for r in result.tables["stragglers"].iter_rows(named=True)}
    slow = rows["ledger-1"]
    assert (slow["transactions"], slow["multi_participant"], slow["aborted"]) == (11, 11, 2)
    assert slow["straggler_share"] == 11 / 12
    # blocked 10 … 20 ms: nearest p50 rank 5 -> 15 ms, p99 rank round(9.9) = 10 -> 20 ms.
    assert (slow["blocked_p50_ns"], slow["blocked_p99_ns"]) == (15 * MS, 20 * MS)
    assert slow["prepare_p99_ns"] == 25 * MS
    assert (rows["ledger-0"]["transactions"], rows["ledger-0"]["multi_participant"]) == (4, 1)
    (finding,) = [f for f in result.findings if f.kind == "two_phase_commit_straggler"]
    assert (finding.impact, finding.subject, finding.gain_ns) == (
        "medium",
        {"participant": "ledger-1"},
        20 * MS,
    )
    assert finding.example_traces[0] == "t10"  # the longest block first
    # Strict enough and nobody qualifies.
    stricter = coordination.run(hand_made(commits=straggling()), straggler_share=0.95)
    assert not [f for f in stricter.findings if f.kind == "two_phase_commit_straggler"]


def test_empty_and_doctests() -> None:
    result = coordination.run(dataset())
    assert result.findings == []
    assert all(t.is_empty() for t in result.tables.values())
    failures, _ = doctest.testmod(coordination)
    assert failures == 0


def test_lock_contention_scenario_names_the_hot_accounts() -> None:
    data = simulated("lock-contention")
    injected = data.ground_truth["injected"][0]
    top = data.ground_truth["effect"]["top_resources"]
    high = [f for f in coordination.run(data.dataset).findings if f.impact == "high"]
    assert len(high) == 1
    finding = high[0]
    assert finding.kind == "lock_contention"
    assert finding.subject["service"] == injected["service"]
    assert set(finding.subject["resources"]) == set(injected["resources"])
    # The figures are the model's own: waits per hot account.
    waits = {r["resource"]: r["lock_waits"] for r in top}
    assert {r["resource"]: r["waits"] for r in finding.evidence["resources"]} == {
        r: waits[r] for r in injected["resources"]
    }
    assert finding.evidence["lock_wait_ns"] == data.ground_truth["effect"]["lock_wait_ns_total"]
    assert finding.gain_ns > 0


@pytest.mark.parametrize("scenario", ["baseline", "node-failure"])
def test_no_high_finding_without_contention(scenario: str) -> None:
    findings = coordination.run(simulated(scenario).dataset).findings
    assert [f for f in findings if f.impact == "high"] == []
