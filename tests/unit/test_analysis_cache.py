"""Cache job: hit ratio, miss penalty and time buckets on hand-made lookups; a hit-ratio drop
found with high impact (the cache-degradation scenario too), and no high finding elsewhere."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hopscope.analysis.jobs import cache
from hopscope.analysis.loaders import dataset_from_records
from hopscope.analysis.schema import Dataset
from hopscope.processors.records import SpanRecord
from tests.analysis_support import MS, SCENARIOS, START, simulated


def lookup(i: int, hit: bool | None) -> list[SpanRecord]:
    """risk/Score server span (1 ms on a hit, 5 ms on a miss) enclosing its cache lookup,
    one payment every 50 ms."""
    trace_id = f"{i:032x}"
    start = START + i * 50 * MS
    duration = MS if hit else 5 * MS
    attributes: dict[str, object] = {"hopscope.cache.name": "risk-profiles"}
    if hit is not None:
        attributes["hopscope.cache.hit"] = hit
    return [
        SpanRecord(trace_id, f"{i:08x}00000001", None, "risk/Score", "server", start,
                   start + duration, "risk", "risk-1"),
        SpanRecord(trace_id, f"{i:08x}00000002", f"{i:08x}00000001", "cache risk-profiles",
                   "internal", start + MS // 10, start + MS // 5, "risk", "risk-1",
                   attributes=attributes),
    ]  # fmt: skip


def build(hit: Callable[[int], bool | None], count: int = 180) -> Dataset:
    spans: list[SpanRecord] = []
    for i in range(count):
        spans += lookup(i, hit(i))
    return dataset_from_records(spans).collect()


def degrading(i: int) -> bool:
    """First third (i < 60): 9 in 10 hit; last third (i >= 120): 3 in 10; between: 1 in 2."""
    if i < 60:
        return i % 10 != 0
    if i >= 120:
        return i % 10 < 3
    return i % 2 == 0


def test_caches_table_and_miss_penalty() -> None:
    result = cache.run(build(degrading))
    row = result.tables["caches"].row(0, named=True)
    assert (row["service"], row["cache"], row["lookups"]) == ("risk", "risk-profiles", 180)
    assert (row["hits"], row["misses"]) == (54 + 30 + 18, 6 + 30 + 42)
    assert row["hit_ratio"] == pytest.approx(102 / 180)
    # The enclosing risk/Score span: 5 ms on a miss, 1 ms on a hit.
    assert row["miss_penalty_ns"] == 4 * MS
    assert row["hit_parent_ns"] == MS


def test_over_time_buckets() -> None:
    timeline = cache.run(build(degrading), buckets=20).tables["over_time"]
    assert timeline.columns == ["bucket", "service", "cache", "lookups", "hit_ratio"]
    assert timeline.height == 20
    assert int(timeline.get_column("lookups").sum()) == 180
    # 8.95 s of lookups in 20 buckets of 447.5 ms (+1 ns): the first holds i = 0..8, one miss.
    first = timeline.row(0, named=True)
    # The first bucket starts at the first lookup (0.1 ms into the first payment).
    assert timeline.get_column("bucket").dt.epoch("ns")[0] == START + MS // 10
    assert first["lookups"] == 9
    assert first["hit_ratio"] == pytest.approx(8 / 9)
    assert timeline.get_column("hit_ratio")[-1] < 0.5


def test_drop_with_a_costly_miss_is_high() -> None:
    (finding,) = cache.run(build(degrading)).findings
    assert finding.kind == "cache_degradation"
    assert finding.impact == "high"
    assert dict(finding.subject) == {"service": "risk", "cache": "risk-profiles"}
    assert finding.evidence["hit_ratio_before"] == 0.9
    assert finding.evidence["hit_ratio_after"] == 0.3
    assert (finding.evidence["lookups_before"], finding.evidence["lookups_after"]) == (60, 60)
    assert finding.evidence["p_value"] < 1e-6
    # 0.6 extra misses per payment (one lookup each) at 4 ms.
    assert finding.gain_ns == pytest.approx(2.4 * MS, abs=1)
    assert "Warm the cache" in finding.recommendation
    assert "stale-while-revalidate" in finding.recommendation
    assert len(finding.example_traces) == 3


def test_steady_high_ratio_is_quiet() -> None:
    result = cache.run(build(lambda i: i % 10 != 0))
    assert result.tables["caches"].row(0, named=True)["hit_ratio"] == 0.9
    assert result.findings == []


def test_steady_low_ratio_is_medium() -> None:
    (finding,) = cache.run(build(lambda i: i % 2 == 0)).findings
    assert (finding.kind, finding.impact) == ("low_hit_ratio", "medium")
    assert finding.evidence["hit_ratio"] == 0.5
    # (0.9 target - 0.5) misses avoided per payment at 4 ms.
    assert finding.gain_ns == pytest.approx(1.6 * MS, abs=1)


def test_unknown_outcomes_count_as_lookups_only() -> None:
    result = cache.run(build(lambda i: None if i % 3 == 0 else True, count=30))
    row = result.tables["caches"].row(0, named=True)
    assert (row["lookups"], row["hits"], row["hit_ratio"]) == (30, 20, 1.0)


def test_buckets_are_validated() -> None:
    with pytest.raises(ValueError, match="buckets"):
        cache.run(dataset_from_records([]), buckets=0)


def test_no_lookups_gives_empty_tables() -> None:
    result = cache.run(dataset_from_records([]))
    assert result.tables["caches"].is_empty()
    assert result.tables["over_time"].is_empty()
    assert result.findings == []


def test_cache_degradation_scenario_is_found() -> None:
    data = simulated("cache-degradation")
    truth = data.ground_truth["injected"][0]
    result = cache.run(data.dataset)
    high = [f for f in result.findings if f.impact == "high"]
    assert len(high) == 1
    finding = high[0]
    assert finding.kind == "cache_degradation"
    assert dict(finding.subject) == {"service": truth["service"], "cache": truth["cache"]}
    assert finding.evidence["hit_ratio_before"] == pytest.approx(
        truth["hit_ratio_before"], abs=0.06
    )
    assert finding.evidence["hit_ratio_after"] == pytest.approx(truth["hit_ratio_after"], abs=0.08)
    # A miss recomputes the profile (~3 ms) and reads a replica (~1.2 ms).
    assert 2 * MS < finding.evidence["miss_penalty_ns"] < 8 * MS
    assert finding.gain_ns > 0
    timeline = result.tables["over_time"]
    assert 15 <= timeline.height <= 20


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "cache-degradation"])
def test_no_high_finding_outside_cache_degradation(scenario: str) -> None:
    result = cache.run(simulated(scenario).dataset)
    assert [f.title for f in result.findings if f.impact == "high"] == []
    if scenario == "baseline":
        assert result.findings == []
