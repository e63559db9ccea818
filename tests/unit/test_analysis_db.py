"""Database job: statement figures and reads per role on hand-made db calls; reads on a primary
with replicas found (the lagging replica named), the slow-replica scenario found with high
impact, and no high finding anywhere else."""

from __future__ import annotations

import itertools

import polars as pl
import pytest

from hopscope.analysis.jobs import database
from hopscope.analysis.loaders import dataset_from_records
from hopscope.analysis.schema import Dataset
from hopscope.processors.records import SpanRecord
from tests.analysis_support import MS, SCENARIOS, START, simulated

BALANCE = "SELECT balance FROM accounts WHERE id = ?"
UPDATE = "UPDATE accounts SET balance = balance - ? WHERE id = ?"

_ids = itertools.count()


def call(
    at_ms: int,
    address: str,
    duration_ms: float,
    *,
    statement: str = BALANCE,
    operation: str = "SELECT",
    role: str = "replica",
    service: str = "payment",
) -> SpanRecord:
    """One db client span in a trace of its own."""
    n = next(_ids)
    start = START + at_ms * MS
    return SpanRecord(
        f"{n:032x}", f"{n:016x}", None, f"{operation} ledger", "client", start,
        start + int(duration_ms * MS), service, f"{service}-1",
        attributes={"db.system": "postgresql", "db.operation.name": operation,
                    "db.query.text": statement, "hopscope.db.role": role,
                    "server.address": address, "db.namespace": "ledger"},
    )  # fmt: skip


def data_of(spans: list[SpanRecord]) -> Dataset:
    return dataset_from_records(spans).collect()


def shards_with_primary_reads(*, replica_2_until_ms: int | None = None) -> list[SpanRecord]:
    """ledger-1 reads on both replicas; ledger-0 on replica-1, replica-2 only until
    ``replica_2_until_ms`` (never when None), the rest on the primary."""
    spans = []
    for k in range(40):
        at = k * 100
        spans.append(call(at, f"ledger-1-replica-{1 + k % 2}", 1))
        spans.append(call(at, "ledger-0-replica-1", 1))
        if replica_2_until_ms is not None and at < replica_2_until_ms:
            spans.append(call(at, "ledger-0-replica-2", 1))
        else:
            spans.append(call(at, "ledger-0-primary", 3, role="primary"))
    return spans


def test_statement_reads_and_target_tables() -> None:
    spans = [call(k, "db-replica-1", d) for k, d in enumerate((1, 2, 3, 4))]
    spans += [call(10 + k, "db-primary", 6, statement=UPDATE, operation="UPDATE",
                   role="primary", service="clearing") for k in range(2)]  # fmt: skip
    result = database.run(data_of(spans))
    statements = result.tables["statements"]
    assert statements.select(
        "db_system", "service", "db_operation", "statement", "calls", "total_ns"
    ).rows() == [
        ("postgresql", "clearing", "UPDATE", UPDATE, 2, 12 * MS),
        ("postgresql", "payment", "SELECT", BALANCE, 4, 10 * MS),
    ]
    assert statements.get_column("share").to_list() == pytest.approx([12 / 22, 10 / 22])
    # Observed percentiles of 1, 2, 3, 4 ms: p50 at rank round(1.5) = 2 → 3 ms, p99 at rank
    # round(2.97) = 3 → 4 ms.
    payment = statements.row(1, named=True)
    assert payment["p50_ns"] == 3_000_000
    assert payment["p99_ns"] == 4_000_000
    reads = result.tables["reads_by_role"]
    assert reads.select("service", "statement", "role", "calls").rows() == [
        ("payment", BALANCE, "replica", 4)
    ]
    targets = result.tables["targets"]
    assert targets.select("server_address", "role", "calls", "reads", "shard").rows() == [
        ("db-primary", "primary", 2, 0, "db"),
        ("db-replica-1", "replica", 4, 4, "db"),
    ]
    # Small statements with a 4 ms p99: nothing to report.
    assert result.findings == []


def test_reads_on_primary_name_the_replica_that_never_gets_reads() -> None:
    result = database.run(data_of(shards_with_primary_reads()))
    (finding,) = result.findings
    assert finding.kind == "replica_lag"
    assert finding.impact == "high"
    assert dict(finding.subject) == {
        "shard": "ledger-0",
        "primary": "ledger-0-primary",
        "replica": "ledger-0-replica-2",
        "service": "payment",  # whose reads went to the primary
    }
    evidence = finding.evidence
    assert (evidence["reads_on_primary"], evidence["reads_on_replicas"]) == (40, 40)
    assert evidence["primary_read_share"] == 0.5
    assert (evidence["primary_read_p99_ns"], evidence["replica_read_p99_ns"]) == (3 * MS, MS)
    assert evidence["lagging_seen_as"] == "no reads"
    # 2 ms more per read at p99, one such read per payment.
    assert finding.gain_ns == 2 * MS
    assert "replica" in finding.recommendation and "bounded-staleness" in finding.recommendation
    reads = result.tables["reads_by_role"]
    assert reads.select("role", "calls").rows() == [("primary", 40), ("replica", 80)]


def test_replica_whose_reads_stop_is_named() -> None:
    result = database.run(data_of(shards_with_primary_reads(replica_2_until_ms=1_000)))
    (finding,) = result.findings
    assert finding.kind == "replica_lag"
    assert finding.subject["replica"] == "ledger-0-replica-2"
    assert finding.evidence["lagging_seen_as"] == "reads stopped"
    assert finding.evidence["reads_on_primary"] == 30


def test_reads_on_a_primary_without_replicas_are_no_finding() -> None:
    spans = [call(k * 10, "ledger-0-primary", 2, role="primary") for k in range(50)]
    assert database.run(data_of(spans)).findings == []


def test_few_primary_reads_are_no_finding() -> None:
    spans = [call(k * 10, "ledger-0-replica-1", 1) for k in range(100)]
    spans += [call(k * 10, "ledger-0-primary", 2, role="primary") for k in range(5)]
    assert database.run(data_of(spans)).findings == []


def test_a_statement_with_a_heavy_tail_is_a_medium_slow_statement() -> None:
    # 30 calls at 2 ms and one at 200 ms: p99 far above five times the median.
    spans = [call(k, "ledger-0-replica-1", 2) for k in range(30)]
    spans.append(call(40, "ledger-0-replica-1", 200))
    (finding,) = database.run(data_of(spans)).findings
    assert finding.kind == "slow_statement"
    assert finding.impact == "medium"
    assert finding.subject["statement"] == BALANCE
    p99 = 200 * MS  # the observed value at rank round(29.7) = 30 of 0..30
    assert finding.evidence["p99_ns"] == p99
    assert finding.gain_ns == p99 - 2 * MS
    assert "index" in finding.recommendation


def test_slow_replica_scenario_is_found() -> None:
    data = simulated("slow-replica")
    truth = data.ground_truth["injected"][0]
    result = database.run(data.dataset)
    high = [f for f in result.findings if f.impact == "high"]
    assert len(high) == 1
    finding = high[0]
    assert finding.kind == "replica_lag"
    assert dict(finding.subject) == {
        "shard": truth["shard"],
        "primary": truth["primary"],
        "replica": truth["replica"],
        "service": "payment",
    }
    effect = data.ground_truth["effect"]
    assert finding.evidence["reads_on_primary"] == effect["reads_on_primary"]
    assert finding.evidence["reads_on_primary"] == effect["redirected_reads"]
    assert finding.gain_ns > 0
    reads = result.tables["reads_by_role"].filter(pl.col("role") == "primary")
    assert int(reads.get_column("calls").sum()) == effect["reads_on_primary"]


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "slow-replica"])
def test_no_high_finding_outside_slow_replica(scenario: str) -> None:
    result = database.run(simulated(scenario).dataset)
    assert [f.title for f in result.findings if f.impact == "high"] == []
    if scenario == "baseline":
        assert result.findings == []
