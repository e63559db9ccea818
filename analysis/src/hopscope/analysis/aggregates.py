"""Mergeable aggregates: per-edge and per-operation figures of a window too large to load.

A window's raw records do not fit in one process past some size (a month of a payment
platform). The figures most questions start from — calls, errors and latency percentiles per
edge, per operation, per failover path and per coordination kind — are sums and histograms,
which merge: computed per hour (or by Elasticsearch), they add up to the window's.

Tables (:data:`TABLES`; one row per key, nulls a key value of their own):

- ``edges`` (hops): ``source_service, target_service, operation, hop_kind``; histograms of
  ``client_ns``, ``server_ns``, ``network_ns``; counts of ``error`` and ``client_abandoned``.
- ``operations`` (spans): ``service, name``; ``duration_ns``; ``error``.
- ``failovers``: ``service, target_service, from_node, to_node, outcome``; ``detection_ns``,
  ``added_ns``.
- ``coordination`` (delays): ``service, coordination_kind``; ``duration_ns``, ``critical_ns``;
  ``error``.

A partial is two frames per table: ``counts`` (keys, ``calls``, ``<flag>_count``) and
``histogram`` (keys, ``metric``, ``bucket``, ``count``). Merging is a grouped sum of each.

Buckets are fixed and logarithmic (HDR-style, no state): value 0 is bucket 0, a positive
value ``v`` bucket ``1 + floor(ln v / ln GROWTH)``, a negative one the mirror image, so bucket
order is value order. A percentile follows the analysis' rule
(:func:`hopscope.analysis.expr.percentile_ns`: the observation at rank ``round(q · (n − 1))``)
on the merged counts, and reports that rank's bucket by its geometric midpoint: the exact
percentile lies in the bucket, so the figure is within ``sqrt(GROWTH) − 1`` (0.5 %) of it,
whatever the window's length. Counts and rates are exact.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import polars as pl

from hopscope.analysis.findings import JobResult
from hopscope.analysis.schema import Dataset

__all__ = [
    "GROWTH",
    "JOB",
    "QUANTILES",
    "RELATIVE_ERROR",
    "TABLES",
    "Partial",
    "Table",
    "bucket",
    "finish",
    "merge",
    "partial",
    "ranked",
    "tables",
]

# Adjacent bucket bounds differ by 1 %: 0.5 % error at the midpoint is below what a latency
# figure is read to (p99 = 412 ms vs 414 ms), and a metric spanning 1 µs to 100 s needs only
# ~1,900 buckets per key, so an hour's partial stays small next to the hour's records.
GROWTH: Final = 1.01
RELATIVE_ERROR: Final = math.sqrt(GROWTH) - 1.0
_LOG_GROWTH: Final = math.log(GROWTH)
# The job name of the aggregate tables (``hopscope analyze report --aggregates``).
JOB: Final = "aggregates"
# The percentiles of every table, as the hops job names them.
QUANTILES: Final = {"p50": 0.5, "p90": 0.9, "p99": 0.99, "p999": 0.999}


@dataclass(frozen=True)
class Table:
    """One aggregate table: the dataset kind it reads, its keys, histogrammed metrics (ns)
    and Boolean flags counted where set."""

    name: str
    kind: str
    keys: tuple[str, ...]
    metrics: tuple[str, ...]
    flags: tuple[str, ...]


TABLES: Final[tuple[Table, ...]] = (
    Table("edges", "hops", ("source_service", "target_service", "operation", "hop_kind"),
          ("client_ns", "server_ns", "network_ns"), ("error", "client_abandoned")),
    Table("operations", "spans", ("service", "name"), ("duration_ns",), ("error",)),
    Table("failovers", "failovers",
          ("service", "target_service", "from_node", "to_node", "outcome"),
          ("detection_ns", "added_ns"), ()),
    Table("coordination", "coordination", ("service", "coordination_kind"),
          ("duration_ns", "critical_ns"), ("error",)),
)  # fmt: skip
_BY_NAME: Final = {t.name: t for t in TABLES}


def bucket(value: str | pl.Expr) -> pl.Expr:
    """The fixed logarithmic bucket of an integer column (Int32; null stays null).

    >>> pl.DataFrame({"v": [0, 1, 100, 101, -100, None]}).select(bucket("v"))["v"].to_list()
    [0, 1, 463, 464, -463, None]
    """
    v = pl.col(value) if isinstance(value, str) else value
    magnitude = (v.abs().cast(pl.Float64).log() / _LOG_GROWTH).floor().cast(pl.Int32) + 1
    return (
        pl.when(v > 0)
        .then(magnitude)
        .when(v < 0)
        .then(-magnitude)
        .when(v == 0)
        .then(pl.lit(0, pl.Int32))
        .otherwise(pl.lit(None, pl.Int32))
    )


def _midpoint(index: pl.Expr) -> pl.Expr:
    """A bucket's representative value: its geometric midpoint, in whole ns."""
    magnitude = (pl.lit(GROWTH).pow(index.abs().cast(pl.Float64) - 0.5)).round().cast(pl.Int64)
    return pl.when(index == 0).then(0).otherwise(index.sign().cast(pl.Int64) * magnitude)


@dataclass(frozen=True)
class Partial:
    """The partial aggregates of one table: ``counts`` and ``histogram`` (see the module
    docstring); lazy, so a caller merges many before collecting."""

    table: str
    counts: pl.LazyFrame
    histogram: pl.LazyFrame


def _counts_schema(table: Table, keys: pl.Schema) -> dict[str, pl.DataType]:
    return {**{k: keys[k] for k in table.keys}, "calls": pl.Int64(),
            **{f"{f}_count": pl.Int64() for f in table.flags}}  # fmt: skip


def partial(data: Dataset, table: str) -> Partial:
    """The partial aggregates of ``table`` over the records of ``data``.

    Parameters:
        data: the records (one hour of the archive, a test's dataset...).
        table: a name of :data:`TABLES`.

    Returns:
        The :class:`Partial`, lazy.
    """
    spec = _BY_NAME[table]
    frame = getattr(data, spec.kind)
    counts = frame.group_by(spec.keys).agg(
        pl.len().cast(pl.Int64).alias("calls"),
        *(pl.col(f).fill_null(False).sum().cast(pl.Int64).alias(f"{f}_count") for f in spec.flags),
    )
    histogram = (
        frame.select(*spec.keys, *spec.metrics)
        .unpivot(index=list(spec.keys), on=list(spec.metrics), variable_name="metric")
        .filter(pl.col("value").is_not_null())
        .group_by(*spec.keys, "metric", bucket("value").alias("bucket"))
        .agg(pl.len().cast(pl.Int64).alias("count"))
    )
    return Partial(table, counts, histogram)


def merge(partials: Iterable[Partial]) -> Partial:
    """Partials of one table (hours of a window) summed into one, still lazy.

    Raises:
        ValueError: no partials, or partials of different tables.
    """
    items = list(partials)
    if not items or len({p.table for p in items}) != 1:
        raise ValueError("merge needs one or more partials of the same table")
    spec = _BY_NAME[items[0].table]
    sums = [pl.col("calls").sum(), *(pl.col(f"{f}_count").sum() for f in spec.flags)]
    counts = pl.concat([p.counts for p in items], how="vertical_relaxed")
    histogram = pl.concat([p.histogram for p in items], how="vertical_relaxed")
    return Partial(
        spec.name,
        counts.group_by(spec.keys).agg(sums),
        histogram.group_by(*spec.keys, "metric", "bucket").agg(pl.col("count").sum()),
    )


def _percentiles(spec: Table, histogram: pl.LazyFrame) -> pl.LazyFrame:
    """Per key: ``<metric stem>_<p>_ns`` from the merged histogram (nearest-rank rule)."""
    group = [*spec.keys, "metric"]
    ranked = histogram.sort([*group, "bucket"], nulls_last=True).with_columns(
        pl.col("count").cum_sum().over(group, order_by="bucket").alias("_cum"),
        pl.col("count").sum().over(group).alias("_n"),
    )
    picks = [
        # The first bucket whose cumulative count passes rank round(q · (n − 1)) (0-based;
        # rounded half up, as polars' nearest quantile does).
        _midpoint(
            pl.col("bucket").filter(pl.col("_cum") > ((pl.col("_n") - 1) * q + 0.5).floor()).first()
        ).alias(label)
        for label, q in QUANTILES.items()
    ]
    per_metric = ranked.group_by(group).agg(picks)
    out: pl.LazyFrame | None = None
    for metric in spec.metrics:
        stem = metric.removesuffix("_ns")
        one = per_metric.filter(pl.col("metric") == metric).select(
            *spec.keys, *(pl.col(label).alias(f"{stem}_{label}_ns") for label in QUANTILES)
        )
        out = one if out is None else out.join(one, on=list(spec.keys), how="full",
                                                coalesce=True, nulls_equal=True)  # fmt: skip
    assert out is not None
    return out


def finish(merged: Partial) -> pl.LazyFrame:
    """The table of a merged partial: keys, ``calls``, ``<flag>_rate`` per flag (``error_rate``,
    ``client_abandoned_rate``) and ``<flag>_count``, then the percentiles of each metric
    (``client_p50_ns`` ... ``network_p999_ns``), sorted by keys.
    """
    spec = _BY_NAME[merged.table]
    rates = [(pl.col(f"{f}_count") / pl.col("calls")).alias(f"{f}_rate") for f in spec.flags]
    percentiles = _percentiles(spec, merged.histogram)
    return (
        merged.counts.with_columns(rates)
        .join(percentiles, on=list(spec.keys), how="left", nulls_equal=True)
        .select(
            *spec.keys,
            "calls",
            *(c for f in spec.flags for c in (f"{f}_count", f"{f}_rate")),
            *(f"{m.removesuffix('_ns')}_{label}_ns" for m in spec.metrics for label in QUANTILES),
        )
        .sort(list(spec.keys), nulls_last=True)
    )


def tables(data: Dataset, names: Sequence[str] | None = None) -> dict[str, pl.DataFrame]:
    """Every aggregate table (or ``names``) of a loaded dataset, in one pass each.

    The reference the partial and Elasticsearch paths are tested against: the same buckets
    and rule over the same records give the same table, however the records were split.
    """
    wanted = [t.name for t in TABLES] if names is None else list(names)
    frames = [finish(merge([partial(data, name)])) for name in wanted]
    return dict(zip(wanted, pl.collect_all(frames), strict=True))


def ranked(tables: Mapping[str, pl.DataFrame]) -> JobResult:
    """The aggregate tables as a job result, each ranked by the p99 of its first metric
    (slowest first; ties and empty groups by keys): what a person reads first.

    The ranking is all that is left to polars when Elasticsearch or the partials aggregated.
    """
    out: dict[str, pl.DataFrame] = {}
    for name, frame in tables.items():
        spec = _BY_NAME[name]
        first = f"{spec.metrics[0].removesuffix('_ns')}_p99_ns"
        out[name] = frame.sort(
            [first, *spec.keys], descending=[True, *([False] * len(spec.keys))], nulls_last=True
        )
    return JobResult(JOB, out)
