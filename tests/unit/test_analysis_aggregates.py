"""Mergeable aggregates: hourly partials merge to the whole window's table, percentiles stay
within the bucket error of the exact ones, and the archive's partials equal the loaded path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from hopscope.analysis import aggregates
from hopscope.analysis.aggregates import QUANTILES, RELATIVE_ERROR, TABLES, finish, merge, partial
from hopscope.analysis.errors import LoaderError
from hopscope.analysis.expr import percentile_ns
from hopscope.analysis.loaders import build_partials, load_parquet, load_partials
from hopscope.analysis.loaders.partials import PARTIALS, parse_memory_limit
from hopscope.analysis.schema import Dataset
from tests.analysis_support import SCENARIOS, simulated
from tests.unit.test_loaders_parquet import archive, simulated_records


def _hours(data: Dataset) -> list[Dataset]:
    """``data`` split by the hour of each record's time (as the archive partitions it)."""
    frames = data.collect()
    names = [f for f in ("spans", "hops", "failovers", "coordination", "traces")]
    stamps = pl.concat([getattr(frames, n).select("time") for n in names]).collect()["time"]
    start = stamps.min()
    assert isinstance(start, datetime)
    first = start.replace(minute=0, second=0, microsecond=0)
    parts = []
    for k in range(3):
        lower, upper = first + timedelta(minutes=20 * k), first + timedelta(minutes=20 * (k + 1))
        if k == 2:
            upper = datetime.max.replace(tzinfo=UTC)
        parts.append(
            Dataset(**{n: getattr(frames, n).filter((pl.col("time") >= lower) &
                                                     (pl.col("time") < upper))
                       for n in ("spans", "traces", "hops", "failovers", "coordination",
                                 "two_phase_commits", "logs")})
        )  # fmt: skip
    return parts


@pytest.mark.parametrize("scenario", ["node-failure", "lock-contention"])
def test_merged_parts_equal_the_whole(scenario: str) -> None:
    data = simulated(scenario).dataset
    whole = aggregates.tables(data)
    parts = _hours(data)
    for table in TABLES:
        merged = finish(merge(partial(p, table.name) for p in parts)).collect()
        assert_frame_equal(merged, whole[table.name])


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_percentiles_within_the_bucket_error_of_the_exact_ones(scenario: str) -> None:
    data = simulated(scenario).dataset
    out = aggregates.tables(data)
    for table in TABLES:
        frame = getattr(data, table.kind)
        exact = (
            frame.group_by(table.keys)
            .agg(
                pl.len().alias("calls"),
                *(
                    percentile_ns(m, q).alias(f"{m.removesuffix('_ns')}_{label}_ns")
                    for m in table.metrics
                    for label, q in QUANTILES.items()
                ),
            )
            .collect()
        )
        joined = out[table.name].join(exact, on=list(table.keys), nulls_equal=True,
                                      suffix="_exact")  # fmt: skip
        assert joined.height == exact.height == out[table.name].height
        assert (joined["calls"] == joined["calls_exact"]).all()
        for m in table.metrics:
            for label in QUANTILES:
                name = f"{m.removesuffix('_ns')}_{label}_ns"
                pairs = joined.select(name, f"{name}_exact").rows()
                for approx, truth in pairs:
                    assert (approx is None) == (truth is None), (table.name, name)
                    if truth is not None:
                        assert abs(approx - truth) <= RELATIVE_ERROR * abs(truth) + 1, (
                            table.name, name, approx, truth,
                        )  # fmt: skip


def test_counts_and_rates_are_exact() -> None:
    data = simulated("node-failure").dataset
    edges = aggregates.tables(data, ["edges"])["edges"]
    expected = (
        data.hops.group_by("source_service", "target_service", "operation", "hop_kind")
        .agg(pl.len().alias("calls"), pl.col("error").fill_null(False).sum().alias("errors"))
        .collect()
    )
    joined = edges.join(expected, on=["source_service", "target_service", "operation",
                                      "hop_kind"], nulls_equal=True)  # fmt: skip
    assert joined.height == expected.height
    assert (joined["calls"] == joined["calls_right"]).all()
    assert (joined["error_count"] == joined["errors"]).all()


def test_archive_partials_equal_the_loaded_path(tmp_path: Path) -> None:
    spans, logs = simulated_records()
    archive(tmp_path, spans, logs)
    assert build_partials(tmp_path) == 2  # START is one second before an hour boundary
    assert build_partials(tmp_path) == 0  # up to date
    loaded = aggregates.tables(load_parquet(tmp_path, progress=False))
    for limit in (None, 1):  # one chunk, and one file per chunk
        merged = load_partials(tmp_path, memory_limit=limit)
        for name, table in loaded.items():
            assert_frame_equal(merged[name], table, check_dtypes=False)


def test_a_replayed_part_file_makes_its_hour_stale(tmp_path: Path) -> None:
    spans, logs = simulated_records()
    archive(tmp_path, spans, logs)
    build_partials(tmp_path)
    before = load_partials(tmp_path)
    archive(tmp_path, spans[:50], logs[:5])  # a replay writes some records twice
    assert build_partials(tmp_path) >= 1
    after = load_partials(tmp_path)
    for name, table in before.items():
        assert_frame_equal(after[name], table)
    assert all(len(list(d.glob("partial-*.parquet"))) == 1
               for d in (tmp_path / PARTIALS).glob("*/date=*/hour=*"))  # fmt: skip


def test_no_partials_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(LoaderError, match="no partial aggregates"):
        load_partials(tmp_path)


def test_memory_limit_parsing() -> None:
    assert parse_memory_limit("1.5GB") == int(1.5 * 2**30)
    assert parse_memory_limit("64MiB") == 64 * 2**20
    with pytest.raises(ValueError, match="512MB"):
        parse_memory_limit("lots")


def test_cli_report_from_the_archive_partials(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from hopscope.cli import app

    spans, logs = simulated_records()
    archive(tmp_path, spans, logs)
    runner = CliRunner()
    args = ["analyze", "report", "--aggregates", "--parquet", str(tmp_path)]
    done = runner.invoke(app, [*args, "--memory-limit", "64MB", "--json"])
    assert done.exit_code == 0, done.output
    tables = json.loads(done.stdout)["tables"]
    hops = load_parquet(tmp_path, kinds=["hops"], progress=False).hops.collect()
    assert sum(row["calls"] for row in tables["edges"]) == hops.height
    p99 = [row["client_p99_ns"] for row in tables["edges"]]
    assert p99 == sorted(p99, key=lambda v: -1 if v is None else v, reverse=True)
    bad = runner.invoke(app, [*args, "--memory-limit", "lots"])
    assert bad.exit_code == 2
    assert "512MB" in bad.output
    assert runner.invoke(app, [*args, "--baseline", "same-hour-yesterday"]).exit_code == 2
