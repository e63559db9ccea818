"""Bottlenecks job: CRISP-style critical-path shares checked against hand-computed traces, the
exclusive-time identity on random traces, and the simulated baseline."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hopscope.analysis.jobs import bottlenecks
from hopscope.analysis.loaders import dataset_from_records
from hopscope.analysis.schema import Dataset
from hopscope.ingest import conventions as c
from hopscope.processors.records import CLIENT, INTERNAL, SERVER, SpanRecord
from tests.analysis_support import simulated

PAY = "[gw] pay"
NET = "[gw] risk/Score"
RISK = "[risk] risk/Score"
LOCK = "[gw] lock_wait"


def payment(trace: str, duration: int, client: int, server: int, lock: int) -> list[SpanRecord]:
    """A root ``pay`` on gw [0, duration) calling risk (client [10, 10+client), its server
    [11, 11+server) inside) and then waiting ``lock`` for a lock.

    Critical path, by hand: the root's last-finishing child is the lock wait, before it the
    client, inside the client its server. Exclusive times: lock wait ``lock`` (coordination),
    client ``client − server`` (network), server ``server`` (self), root the rest (self).
    """
    lock_start = 20 + client
    return [
        SpanRecord(trace, f"{trace}r", None, "pay", SERVER, 0, duration, "gw", "gw-1"),
        SpanRecord(trace, f"{trace}c", f"{trace}r", "risk/Score", CLIENT, 10, 10 + client, "gw"),
        SpanRecord(trace, f"{trace}s", f"{trace}c", "risk/Score", SERVER, 11, 11 + server, "risk"),
        SpanRecord(
            trace,
            f"{trace}l",
            f"{trace}r",
            "lock_wait",
            INTERNAL,
            lock_start,
            lock_start + lock,
            "gw",
            attributes={c.COORDINATION_KIND: c.LOCK_WAIT, c.COORDINATION_RESOURCE: "row:1"},
        ),
    ]


# trace: (duration, client, server, lock) -> exclusive pay / net / risk / lock
#   t1: (100,   30,  20,  10) ->  60 /  10 /  20 /  10
#   t2: (200,   60,  50,  40) -> 100 /  10 /  50 /  40
#   t3: (300,  100,  80, 100) -> 100 /  20 /  80 / 100
#   t4: (1000, 500, 400, 300) -> 200 / 100 / 400 / 300
TRACES = {
    "t1": (100, 30, 20, 10),
    "t2": (200, 60, 50, 40),
    "t3": (300, 100, 80, 100),
    "t4": (1000, 500, 400, 300),
}


@pytest.fixture(scope="module")
def four() -> Dataset:
    spans = [s for trace, args in TRACES.items() for s in payment(trace, *args)]
    return dataset_from_records(spans).collect()


def shares(table: pl.DataFrame, key: str, percentile: str) -> dict[str, tuple[float, ...]]:
    rows = table.filter(pl.col("percentile") == percentile)
    return {
        r[key]: (r["share"], r["self_share"], r["network_share"], r["coordination_share"])
        for r in rows.iter_rows(named=True)
    }


def test_operation_shares_per_percentile(four: Dataset) -> None:
    result = bottlenecks.run(four)
    by_operation = result.tables["by_operation"]
    # p50: ceil(0.5 · 4) = 2 fastest traces (t1, t2), Σ durations 300.
    #   pay 60+100 = 160, net 10+10 = 20, risk 20+50 = 70, lock 10+40 = 50.
    assert shares(by_operation, "operation", "p50") == {
        PAY: (160 / 300, 160 / 300, 0.0, 0.0),
        NET: (20 / 300, 0.0, 20 / 300, 0.0),
        RISK: (70 / 300, 70 / 300, 0.0, 0.0),
        LOCK: (50 / 300, 0.0, 0.0, 50 / 300),
    }
    # p95: ceil(3.8) = 4 and p99: ceil(3.96) = 4 -> all traces, Σ 1600.
    #   pay 460, net 140, risk 550, lock 450.
    everything = {
        PAY: (460 / 1600, 460 / 1600, 0.0, 0.0),
        NET: (140 / 1600, 0.0, 140 / 1600, 0.0),
        RISK: (550 / 1600, 550 / 1600, 0.0, 0.0),
        LOCK: (450 / 1600, 0.0, 0.0, 450 / 1600),
    }
    assert shares(by_operation, "operation", "p95") == everything
    assert shares(by_operation, "operation", "p99") == everything
    # Largest share first within a percentile, percentiles in order.
    assert by_operation["percentile"].to_list() == ["p50"] * 4 + ["p95"] * 4 + ["p99"] * 4
    assert by_operation.filter(percentile="p99")["operation"].to_list() == [RISK, PAY, LOCK, NET]
    assert dict(zip(by_operation["operation"], by_operation["service"], strict=True)) == {
        PAY: "gw",
        NET: "gw",
        RISK: "risk",
        LOCK: "gw",
    }


def test_other_percentiles_cut_the_population(four: Dataset) -> None:
    table = bottlenecks.run(four, percentiles=(25, 75)).tables["by_operation"]
    # p25: ceil(1) = 1 trace (t1, 100 ns); p75: ceil(3) = 3 traces (t1..t3, 600 ns).
    assert {k: v[0] for k, v in shares(table, "operation", "p25").items()} == {
        PAY: 60 / 100,
        NET: 10 / 100,
        RISK: 20 / 100,
        LOCK: 10 / 100,
    }
    assert {k: v[0] for k, v in shares(table, "operation", "p75").items()} == {
        PAY: 260 / 600,
        NET: 40 / 600,
        RISK: 150 / 600,
        LOCK: 150 / 600,
    }


def test_service_shares_group_the_operations(four: Dataset) -> None:
    by_service = bottlenecks.run(four).tables["by_service"]
    # gw = pay + net + lock: p50 160 + 20 + 50 = 230 of 300; risk 70.
    assert shares(by_service, "service", "p50") == {
        "gw": (230 / 300, 160 / 300, 20 / 300, 50 / 300),
        "risk": (70 / 300, 70 / 300, 0.0, 0.0),
    }
    # p99 (all four): gw 460 + 140 + 450 = 1050 of 1600; risk 550.
    assert shares(by_service, "service", "p99") == {
        "gw": (1050 / 1600, 460 / 1600, 140 / 1600, 450 / 1600),
        "risk": (550 / 1600, 550 / 1600, 0.0, 0.0),
    }
    for percentile in ("p50", "p95", "p99"):
        total = by_service.filter(percentile=percentile)["share"].sum()
        assert total == pytest.approx(1.0)


def test_absolute_exclusive_times(four: Dataset) -> None:
    operations = bottlenecks.run(four).tables["operations"]
    rows = {r["operation"]: r for r in operations.iter_rows(named=True)}
    risk = rows[RISK]
    # risk: 20, 50, 80, 400 -> total 550, mean 137.5; p99 (nearest) = rank round(0.99·3) = 3.
    assert (risk["traces"], risk["exclusive_ns_total"]) == (4, 550)
    assert risk["exclusive_ns_mean"] == 137.5
    assert risk["exclusive_ns_p99"] == 400
    # Slowest 1 % = ceil(0.04) = 1 trace (t4): its exclusive times are the tail means.
    assert {op: r["tail_mean_ns"] for op, r in rows.items()} == {
        PAY: 200,
        NET: 100,
        RISK: 400,
        LOCK: 300,
    }
    assert sum(r["exclusive_ns_total"] for r in rows.values()) == 1600
    assert operations["operation"].to_list() == [RISK, PAY, LOCK, NET]


def test_findings_name_the_top_operations_at_p99(four: Dataset) -> None:
    findings = bottlenecks.run(four).findings
    # p99 shares: risk 0.344, pay 0.288, lock 0.281 (all >= 0.25: medium), net 0.0875 (4th).
    assert [(f.kind, f.subject["operation"], f.impact) for f in findings] == [
        ("critical_operation", RISK, "medium"),
        ("critical_operation", PAY, "medium"),
        ("critical_operation", LOCK, "medium"),
    ]
    risk, pay, lock = findings
    assert (risk.gain_ns, pay.gain_ns, lock.gain_ns) == (400, 200, 300)
    assert risk.subject == {"service": "risk", "operation": RISK}
    assert risk.evidence["shares"] == {"p50": 70 / 300, "p95": 550 / 1600, "p99": 550 / 1600}
    # Dominant operation per trace: t1 pay (60), t2 pay (100), t3 pay = lock = 100 (tie: the
    # smaller name, the lock wait), t4 risk (400); slowest first.
    assert list(risk.example_traces) == ["t4"]
    assert list(pay.example_traces) == ["t2", "t1"]
    assert list(lock.example_traces) == ["t3"]
    assert "at p99" in risk.gain
    four_top = bottlenecks.run(four, top=4).findings
    assert [f.impact for f in four_top] == ["medium", "medium", "medium", "low"]


def test_root_operation_filter_and_empty(four: Dataset) -> None:
    none = bottlenecks.run(four, root_operation="gw/refund")
    assert none.findings == []
    assert all(table.is_empty() for table in none.tables.values())
    assert none.tables["by_service"].columns == [
        "service",
        "percentile",
        "share",
        "self_share",
        "network_share",
        "coordination_share",
    ]
    with pytest.raises(ValueError, match="percentiles"):
        bottlenecks.run(four, percentiles=(0,))


@st.composite
def random_trace(draw: st.DrawFn) -> list[SpanRecord]:
    """A root and up to 12 spans hung under random earlier spans, anywhere inside the root."""
    duration = draw(st.integers(1, 10_000))
    spans = [SpanRecord("h", "s0", None, "root", SERVER, 0, duration, "svc0")]
    for i in range(1, draw(st.integers(0, 12)) + 1):
        parent = spans[draw(st.integers(0, i - 1))]
        start = draw(st.integers(0, duration))
        end = draw(st.integers(start, duration))
        kind = draw(st.sampled_from([INTERNAL, CLIENT, SERVER]))
        service = draw(st.sampled_from(["svc0", "svc1", "svc2"]))
        name = draw(st.sampled_from(["a", "b", "lock"]))
        attrs = {c.COORDINATION_KIND: c.LOCK_WAIT} if name == "lock" else {}
        spans.append(
            SpanRecord(
                "h", f"s{i}", parent.span_id, name, kind, start, end, service, attributes=attrs
            )
        )
    return spans


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_trace())
def test_exclusive_times_of_one_trace_sum_to_its_duration(spans: list[SpanRecord]) -> None:
    result = bottlenecks.run(dataset_from_records(spans))
    duration = spans[0].duration_ns
    operations = result.tables["operations"]
    assert operations["exclusive_ns_total"].sum() == duration
    if duration:
        for percentile in ("p50", "p95", "p99"):
            by_service = result.tables["by_service"].filter(percentile=percentile)
            assert by_service["share"].sum() == pytest.approx(1.0)


def test_simulated_baseline_has_no_high_finding() -> None:
    result = bottlenecks.run(simulated("baseline").dataset)
    assert result.findings
    assert all(f.impact != "high" for f in result.findings)
    # The issuer call dominates a healthy payment's critical path.
    assert result.findings[0].subject["operation"] == "[bank-adapter] issuer/authorize"
    assert result.findings[0].gain_ns > 0
