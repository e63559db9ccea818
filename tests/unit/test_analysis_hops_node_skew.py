"""The per-node skew table (hops._node_skew) equals the formulation it replaced, which grouped
every two-sided hop by node and trace before grouping by node."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from hopscope.analysis.expr import example_traces
from hopscope.analysis.jobs import hops
from hopscope.analysis.jobs.hops import clock_offset, material_skew
from tests.analysis_support import SCENARIOS, simulated


def _former(frame: pl.LazyFrame, floor_ns: int, share: float) -> pl.LazyFrame:
    two_sided = frame.filter(pl.col("server_ns").is_not_null()).with_columns(
        clock_offset(), material_skew(floor_ns, share)
    )
    material = pl.col("material_skew").fill_null(False)
    roles = [
        two_sided.select(
            pl.col(f"{role}_service").alias("service"),
            pl.col(f"{role}_node").alias("node"),
            (material & (pl.col("clock_offset_ns") * sign > 0)).alias("ahead"),
            (material & (pl.col("clock_offset_ns") * sign < 0)).alias("behind"),
            (pl.col("clock_offset_ns") * sign).alias("offset"),
            pl.col("trace_id"),
        )
        for role, sign in (("source", -1), ("target", 1))
    ]
    per_trace = (
        pl.concat(roles)
        .filter(pl.col("node").is_not_null())
        .group_by("service", "node", "trace_id")
        .agg(
            pl.len().alias("hops"),
            pl.col("ahead").sum(),
            pl.col("behind").sum(),
            pl.col("offset").filter(pl.col("ahead") | pl.col("behind")),
        )
    )
    ahead, behind = pl.col("ahead"), pl.col("behind")
    return (
        per_trace.group_by("service", "node")
        .agg(
            pl.col("hops").sum(),
            ahead.sum(),
            behind.sum(),
            pl.col("offset")
            .list.explode(keep_nulls=False, empty_as_null=False)
            .median()
            .alias("offset_p50_ns"),
            example_traces(pl.max_horizontal(ahead, behind), where=(ahead + behind) > 0).alias(
                "examples"
            ),
        )
        .with_columns(pl.max_horizontal("ahead", "behind").alias("skewed_hops"))
        .with_columns((pl.col("skewed_hops") / pl.col("hops")).alias("share"))
        .select("service", "node", "hops", "skewed_hops", "share", "offset_p50_ns", "examples")
        .sort("service", "node")
    )


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("floor_ns", [hops.SKEW_FLOOR_NS, 0])
def test_node_skew_equals_the_former_formulation(scenario: str, floor_ns: int) -> None:
    frame = simulated(scenario).dataset.hops
    share = hops.SKEW_NETWORK_SHARE if floor_ns else 0.0
    expected = _former(frame, floor_ns, share).collect()
    actual = hops._node_skew(frame, floor_ns, share).collect()
    assert expected.height > 0
    assert_frame_equal(actual, expected)
