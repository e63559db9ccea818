"""Tail job: KS statistic and p-values against hand-computed values, the slow and failed tables
on hand-made traces, and no high finding in any simulated scenario."""

from __future__ import annotations

import math
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from hopscope.analysis.jobs import tail
from hopscope.analysis.loaders import dataset_from_records
from hopscope.analysis.schema import Dataset
from hopscope.processors.records import ERROR, SpanRecord
from tests.analysis_support import MS, SCENARIOS, START, simulated


def ks(with_value: list[int], without: list[int]) -> float:
    durations = with_value + without
    traces = pl.LazyFrame(
        {"trace_id": [f"t{i}" for i in range(len(durations))], "duration_ns": durations}
    )
    members = pl.LazyFrame(
        {
            "field": ["f"] * len(with_value),
            "value": ["v"] * len(with_value),
            "trace_id": [f"t{i}" for i in range(len(with_value))],
        }
    )
    row = tail.ks_statistic(members, traces).collect()
    assert row.height == 1
    return float(row.item(0, "ks_statistic"))


def test_ks_statistic_on_tiny_samples() -> None:
    # F_without - F_with at 1, 2, 3, 4, 5, 6, 7: 1/4, -1/12, 1/6, 5/12, 1/12, -1/4, 0.
    assert ks([2, 5, 6], [1, 3, 4, 7]) == pytest.approx(5 / 12)
    # Ties across the samples: at 2, F_with = 2/3 and F_without = 1/2; at 3, 2/3 and 1.
    assert ks([2, 2, 5], [2, 3]) == pytest.approx(1 / 3)
    # Traces with the value are all faster: no evidence they are slower.
    assert ks([1, 2], [3, 4]) == 0.0
    assert ks([3, 4], [1, 2]) == 1.0


@settings(max_examples=60, deadline=None)
@given(
    durations=st.lists(st.integers(1, 6), min_size=1, max_size=30),
    membership=st.lists(st.lists(st.booleans(), min_size=30, max_size=30), min_size=1,
                        max_size=4),
)  # fmt: skip
def test_value_counts_gap_equals_the_per_group_ranks(
    durations: list[int], membership: list[list[bool]]
) -> None:
    # ks_gaps (distinct durations, cumulative counts) against the reference _ks_gap (ranks
    # inside each group), bit for bit; few distinct durations, so ties everywhere.
    traces = pl.DataFrame(
        {"trace_id": [f"t{i:02d}" for i in range(len(durations))], "duration_ns": durations,
         "failed": [d % 2 == 0 for d in durations]}
    )  # fmt: skip
    values = pl.DataFrame(
        [
            ("f", f"v{number}", f"t{i:02d}")
            for number, flags in enumerate(membership)
            for i, has in enumerate(flags[: len(durations)])
            if has
        ],
        schema={"field": pl.String, "value": pl.String, "trace_id": pl.String},
        orient="row",
    )
    members = tail.members_of(traces.lazy(), values.lazy())
    n = traces.lazy().select(pl.len().cast(pl.Int64).alias("n"))
    reference = (
        members.join(n, how="cross")
        .group_by("field", "value")
        .agg(tail._ks_gap(pl.col("n")).alias("gap"))
        .sort("value")
        .collect()
    )
    gaps = tail.value_counts(members, traces.lazy(), 3.0).select("field", "value", "gap")
    # NaN where every trace has the value (k = n): the same in both, and filtered out later.
    assert_frame_equal(gaps.sort("value").collect(), reference, check_exact=True)


def test_p_values_match_hand_computed_values() -> None:
    effective = 3 * 4 / 7
    assert tail.ks_less_p_value(5 / 12, 3, 4) == pytest.approx(
        math.exp(-2 * effective * (5 / 12) ** 2)
    )
    assert tail.ks_less_p_value(0.5, 0, 4) == 1.0
    z = 0.2 / math.sqrt(0.2 * 0.8 * (1 / 100 + 1 / 100))
    assert tail.proportion_p_value(30, 100, 10, 100) == pytest.approx(
        0.5 * math.erfc(z / math.sqrt(2))
    )
    assert tail.proportion_p_value(0, 10, 0, 10) == 1.0  # no failure anywhere
    assert [tail.elastic_impact(p) for p in (1e-7, 5e-4, 0.01, 0.05)] == [
        "high",
        "medium",
        "low",
        None,
    ]


def trace(i: int, payment_node: str, duration_ms: int, *, failed: bool = False) -> list[SpanRecord]:
    """gateway (root, server) → gateway client → payment server on ``payment_node``."""
    trace_id = f"{i:032x}"
    start = START + i * 10 * MS
    end = start + duration_ms * MS
    status = ERROR if failed else "unset"
    resource = {"cloud.region": "eu-central-1"}
    return [
        SpanRecord(
            trace_id, f"{i:08x}00000001", None, "gateway/POST /v1/payments", "server", start,
            end, "gateway", "gateway-1", status=status,
            attributes={"client.address": f"10.0.0.{i}", "payment.currency": "EUR"},
            resource=resource,
        ),
        SpanRecord(
            trace_id, f"{i:08x}00000002", f"{i:08x}00000001", "payment/Authorize", "client",
            start + MS // 10, end - MS // 10, "gateway", "gateway-1", status=status,
            attributes={"peer.service": "payment", "server.address": payment_node},
            resource=resource,
        ),
        SpanRecord(
            trace_id, f"{i:08x}00000003", f"{i:08x}00000002", "payment/Authorize", "server",
            start + MS // 5, end - MS // 5, "payment", payment_node, status=status,
            resource=resource,
        ),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def hand_made() -> Dataset:
    """60 payments: payment-2's ten are the slowest, payment-3 fails 8 of its 20."""
    spans: list[SpanRecord] = []
    i = 0
    for k in range(30):  # payment-1: 10..39 ms
        spans += trace(i, "payment-1", 10 + k)
        i += 1
    for k in range(10):  # payment-2: 100..190 ms
        spans += trace(i, "payment-2", 100 + 10 * k)
        i += 1
    for k in range(20):  # payment-3: 20..39 ms, 8 failed
        spans += trace(i, "payment-3", 20 + k, failed=k < 8)
        i += 1
    return dataset_from_records(spans).collect()


def test_slow_table_and_finding(hand_made: Dataset) -> None:
    # Durations sorted: 50 below 40 ms, then payment-2's ten; the 83rd percentile (the observed
    # value at rank round(48.97) = 49) is 39 ms, so exactly payment-2's traces are slow.
    result = tail.run(hand_made, percentile=83)
    slow = result.tables["slow"]
    assert slow.columns[:10] == [
        "field", "value", "traces", "slow_traces", "share_of_slow", "share_of_all", "lift",
        "ks_statistic", "p_value", "impact",
    ]  # fmt: skip
    top = slow.row(0, named=True)
    assert (top["field"], top["value"], top["traces"], top["slow_traces"]) == (
        "payment node",
        "payment-2",
        10,
        10,
    )
    assert top["share_of_slow"] == 1.0
    assert top["share_of_all"] == pytest.approx(10 / 60)
    assert top["lift"] == pytest.approx(6.0)
    assert top["ks_statistic"] == 1.0
    assert top["p_value"] == pytest.approx(math.exp(-2 * (10 * 50 / 60)))
    assert top["impact"] == "high"  # Elastic's level of the p-value
    # Every trace has gateway-1 and the region: nothing to compare. Client addresses are one
    # per trace (60 > 50 distinct): skipped.
    assert set(slow.get_column("field")) == {"payment node"}
    slow_findings = [f for f in result.findings if f.subject["signal"] == "slow"]
    assert len(slow_findings) == 1
    finding = slow_findings[0]
    assert finding.kind == "tail_attribute"
    assert finding.impact == "medium"  # never high: a correlation, not a cause
    assert dict(finding.subject) == {
        "field": "payment node",
        "value": "payment-2",
        "signal": "slow",
    }
    # Overall p99 (rank round(58.41) = 58 of 0..59): 180 ms; without payment-2 (rank
    # round(48.51) = 49 of 50 durations 10..39, 20..39): 39 ms.
    assert finding.evidence["p99_ns"] == 180 * MS
    assert finding.evidence["p99_without_value_ns"] == 39 * MS
    assert finding.gain_ns == 141 * MS
    assert finding.example_traces[0] == f"{39:032x}"  # the slowest payment-2 trace


def test_failed_table_and_finding(hand_made: Dataset) -> None:
    result = tail.run(hand_made, percentile=83)
    failed = result.tables["failed"]
    top = failed.row(0, named=True)
    assert (top["field"], top["value"], top["traces"], top["failed_traces"]) == (
        "payment node",
        "payment-3",
        20,
        8,
    )
    assert top["failure_rate"] == pytest.approx(0.4)
    assert top["baseline_rate"] == 0.0
    assert top["lift"] == pytest.approx(0.4 / (8 / 60))
    z = 0.4 / math.sqrt((8 / 60) * (52 / 60) * (1 / 20 + 1 / 40))
    assert top["p_value"] == pytest.approx(0.5 * math.erfc(z / math.sqrt(2)))
    assert top["impact"] == "medium"
    findings = [f for f in result.findings if f.subject["signal"] == "failed"]
    assert [(f.subject["value"], f.impact) for f in findings] == [("payment-3", "medium")]
    assert findings[0].evidence["failure_rate"] == 0.4
    assert set(findings[0].example_traces) <= {f"{i:032x}" for i in range(40, 48)}


def test_max_values_skips_high_cardinality_fields(hand_made: Dataset) -> None:
    result = tail.run(hand_made, percentile=83, max_values=60)
    assert "client_address" in set(result.tables["slow"].get_column("field"))
    assert "client_address" not in set(tail.run(hand_made).tables["slow"].get_column("field"))


def test_invalid_options_are_rejected(hand_made: Dataset) -> None:
    with pytest.raises(ValueError, match="percentile"):
        tail.run(hand_made, percentile=100)
    with pytest.raises(ValueError, match="max_values"):
        tail.run(hand_made, max_values=0)


def test_empty_dataset_gives_empty_tables() -> None:
    result = tail.run(dataset_from_records([]))
    assert result.tables["slow"].is_empty()
    assert result.tables["failed"].is_empty()
    assert result.findings == ()


def findings_of(scenario: str) -> list[Any]:
    return list(tail.run(simulated(scenario).dataset).findings)


def test_node_failure_failures_point_at_the_dead_node() -> None:
    data = simulated("node-failure")
    dead = data.ground_truth["injected"][0]["node"]
    failed = [f for f in findings_of("node-failure") if f.subject["signal"] == "failed"]
    assert failed and failed[0].subject["value"] == dead
    assert failed[0].subject["field"] == "payment node"
    assert failed[0].impact == "medium"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_never_high_and_quiet_in_baseline(scenario: str) -> None:
    findings = findings_of(scenario)
    assert all(f.impact != "high" for f in findings)
    if scenario == "baseline":
        assert findings == []
