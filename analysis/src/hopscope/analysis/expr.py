"""The analysis vocabulary: percentiles, error rates, shares and example traces as expressions.

Every job states these four things, so each is defined once here and the jobs compose the
expressions into their own queries (column-wise, inside ``group_by().agg()`` or ``select``; no
row-wise Python).

Percentile rule
    :func:`percentile_ns` is polars' ``nearest`` quantile, cast to whole nanoseconds: the
    observed value at rank ``round(q · (n - 1))`` of the sorted column. Why ``nearest`` and not
    ``linear``:

    - a percentile is then a latency some request really had, which a person can look up
      (``p99 = 412 ms`` names a trace that took 412 ms), and it is the same value whichever
      numeric type the column has;
    - a threshold taken from it (the slow-trace cut of ``tail``) splits the data at an
      observed value, so "above the p95" never depends on how two neighbours are averaged.
      (``bottlenecks`` states its populations as counts, the fastest ``ceil(P/100 · N)``
      traces, not through a percentile value.)
    - over the small groups jobs often see (a dozen failovers, one node's requests in a
      five-minute bucket) ``linear`` invents a value between two observations, and the
      invented value moves when an unrelated request is added.

Example traces
    :func:`example_traces` picks :data:`EXAMPLE_TRACES` distinct trace ids, the costliest first
    by the measure the finding is about (network time for a slow hop, added time for a
    failover, critical-path wait for a lock...), ties by trace id so the choice is stable.
"""

from __future__ import annotations

from typing import Final

import polars as pl

__all__ = [
    "EXAMPLE_TRACES",
    "PERCENTILE_INTERPOLATION",
    "error_rate",
    "example_traces",
    "percentile_ns",
    "share",
]

# polars' quantile method of every percentile in the analysis (see the module docstring).
PERCENTILE_INTERPOLATION: Final = "nearest"
# Trace ids per finding: enough to see that the pattern is not one odd trace, few enough that
# a person opens all of them.
EXAMPLE_TRACES: Final = 3


def _col(column: str | pl.Expr) -> pl.Expr:
    return pl.col(column) if isinstance(column, str) else column


def percentile_ns(column: str | pl.Expr, q: float) -> pl.Expr:
    """The ``q`` quantile of a duration column, an observed value in whole nanoseconds.

    Nulls are skipped; an empty or all-null group gives null. The result keeps the input's
    name: alias it (``p99_ns``...).

    Parameters:
        column: a column name or an expression of durations (ns).
        q: the quantile, 0 ≤ q ≤ 1 (0.99 for p99).

    Returns:
        An Int64 expression (an aggregation: one value per group).

    Examples:
        >>> df = pl.DataFrame({"node": ["a"] * 4 + ["b"], "duration_ns": [10, 20, 30, 400, 7]})
        >>> df.group_by("node", maintain_order=True).agg(
        ...     percentile_ns("duration_ns", 0.5).alias("p50_ns"),
        ...     percentile_ns("duration_ns", 0.99).alias("p99_ns"),
        ... )
        shape: (2, 3)
        ┌──────┬────────┬────────┐
        │ node ┆ p50_ns ┆ p99_ns │
        │ ---  ┆ ---    ┆ ---    │
        │ str  ┆ i64    ┆ i64    │
        ╞══════╪════════╪════════╡
        │ a    ┆ 30     ┆ 400    │
        │ b    ┆ 7      ┆ 7      │
        └──────┴────────┴────────┘
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be in [0, 1], got {q}")
    return _col(column).quantile(q, PERCENTILE_INTERPOLATION).cast(pl.Int64)


def error_rate(column: str | pl.Expr = "error") -> pl.Expr:
    """The fraction of rows whose error flag is set; a missing flag counts as no error.

    Parameters:
        column: a Boolean column name or expression (default ``error``).

    Returns:
        A Float64 aggregation in [0, 1] (null for an empty group).

    Examples:
        >>> df = pl.DataFrame({"node": ["a", "a", "a", "b"], "error": [True, None, False, False]})
        >>> df.group_by("node", maintain_order=True).agg(error_rate()).rows()
        [('a', 0.3333333333333333), ('b', 0.0)]
    """
    return _col(column).fill_null(False).cast(pl.Float64).mean()


def share(column: str | pl.Expr, *, over: str | list[str] | None = None) -> pl.Expr:
    """Each row's part of the column's total (of its ``over`` group's total when given).

    Parameters:
        column: the parts (requests, nanoseconds...).
        over: the group columns whose total is the whole; None for the frame's total.

    Returns:
        A Float64 expression, one value per row, summing to 1 per group.

    Examples:
        >>> df = pl.DataFrame({"service": ["s", "s", "t"], "requests": [30, 10, 5]})
        >>> df.select(share("requests"), share("requests", over="service").alias("in_service"))
        shape: (3, 2)
        ┌──────────┬────────────┐
        │ requests ┆ in_service │
        │ ---      ┆ ---        │
        │ f64      ┆ f64        │
        ╞══════════╪════════════╡
        │ 0.666667 ┆ 0.75       │
        │ 0.222222 ┆ 0.25       │
        │ 0.111111 ┆ 1.0        │
        └──────────┴────────────┘
    """
    part = _col(column)
    total = part.sum() if over is None else part.sum().over(over)
    return part / total


def example_traces(
    by: str | pl.Expr,
    *,
    where: pl.Expr | None = None,
    trace_id: str = "trace_id",
    n: int = EXAMPLE_TRACES,
) -> pl.Expr:
    """The ``n`` distinct traces where ``by`` is largest, largest first, ties by trace id.

    Rows with a null ``by`` come last and null trace ids are skipped. Used as an aggregation
    (a list per group) or in ``select`` over a filtered frame.

    Parameters:
        by: the cost that makes a trace telling (a duration in ns, usually).
        where: only rows where this Boolean expression holds (e.g. failed ones).
        trace_id: the trace id column.
        n: how many (default :data:`EXAMPLE_TRACES`).

    Returns:
        An expression of at most ``n`` trace ids, named ``trace_id``.

    Examples:
        >>> df = pl.DataFrame({"edge": ["a→b"] * 5 + ["a→c"],
        ...                    "trace_id": ["t1", "t2", "t2", "t3", "t4", "t9"],
        ...                    "network_ns": [5, 9, 8, None, 9, 1]})
        >>> df.group_by("edge", maintain_order=True).agg(example_traces("network_ns")).rows()
        [('a→b', ['t2', 't4', 't1']), ('a→c', ['t9'])]
        >>> df.select(example_traces("network_ns", where=pl.col("network_ns") < 9)).rows()
        [('t2',), ('t1',), ('t9',)]
        >>> df.select(example_traces("network_ns", n=5)).to_series().to_list()
        ['t2', 't4', 't1', 't9', 't3']
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    ids, cost = pl.col(trace_id), _col(by)
    if where is not None:
        ids, cost = ids.filter(where), cost.filter(where)
    return (
        ids.sort_by([cost, ids], descending=[True, False], nulls_last=True)
        .drop_nulls()
        .unique(maintain_order=True)
        .head(n)
    )
