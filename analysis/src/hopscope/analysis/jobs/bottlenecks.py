"""Bottlenecks: where the critical-path time goes, per service and operation (CRISP-style).

Every trace summary carries its critical path as exclusive times per ``[service] operation``
(docs/DESIGN.md §3 "Critical path"; the ``critical_by_operation`` column), split into ``self``,
``network`` and ``coordination`` time. This job aggregates them the way CRISP does
(``crisp/metrics/percentile_calculator.py``; notes/algorithms.md §1a):

1. Sort the traces by duration (ties: trace id, so the cut is deterministic).
2. For each percentile P, keep the fastest ``ceil(P/100 · N)`` traces: "the p99 population" is
   every trace up to and including the p99 latency, so the slowest 1 % do not swamp the shares.
3. An operation's share at P is ``Σ its exclusive ns / Σ the traces' durations`` over that
   population; likewise its self, network and coordination shares. Per service, the same
   with the operations grouped by the service in brackets. Shares at one percentile sum to 1
   over the operations (and over the services), because a trace's exclusive times tile it.

Tables:

- ``by_service``: service, percentile (``"p50"``…), share, self_share, network_share,
  coordination_share.
- ``by_operation``: operation, service, percentile, share, self_share, network_share,
  coordination_share.
- ``operations``: operation, service, traces (how many critical paths list it),
  exclusive_ns_total, exclusive_ns_mean, exclusive_ns_p99 (over the traces that list it;
  :func:`~hopscope.analysis.expr.percentile_ns`, an observed value), share (of all traces'
  time), tail_mean_ns (mean exclusive ns over the slowest 1 % of traces, those without it
  counting 0).

Findings (``critical_operation``): the operations with the largest p99 share. They state a
structural fact — where the time goes when nothing is broken — so they are ``medium`` at most.
The gain is the operation's mean exclusive time over the slowest 1 % of traces: what the p99
payment would save if the operation's critical-path time were removed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

import polars as pl

from hopscope.analysis.expr import example_traces, percentile_ns
from hopscope.analysis.findings import Finding, Impact, JobResult
from hopscope.analysis.render import ms
from hopscope.analysis.schema import Dataset

JOB: Final = "bottlenecks"

# CRISP's default windows (notes/algorithms.md §1a).
PERCENTILES: Final[tuple[float, ...]] = (50.0, 95.0, 99.0)
# The tail whose mean critical-path time is the expected gain ("saves Y ms at p99").
TAIL_FRACTION: Final = 0.01
# How many operations become findings: the top few explain most of a payment's latency; a
# longer list repeats what the ``by_operation`` table already shows.
TOP_OPERATIONS: Final = 3
# Below 5 % of the p99 critical path an operation is not worth a person's attention.
MIN_FINDING_SHARE: Final = 0.05
# From a quarter of the p99 critical path on, an operation shapes the payment's latency:
# worth planning work on (``medium``); below, it is noted (``low``). Never ``high``: these
# operations are slow by design (an issuer call), not broken.
MEDIUM_SHARE: Final = 0.25

# "[service] name" -> service; the processors build operation keys this way.
_SERVICE_PATTERN: Final = r"^\[([^\]]*)\]"
_PARTS: Final = ("self", "network", "coordination")


def percentile_label(percentile: float) -> str:
    """``99.0`` -> ``"p99"``, ``99.9`` -> ``"p99.9"``.

    >>> percentile_label(50), percentile_label(99.9)
    ('p50', 'p99.9')
    """
    return f"p{percentile:g}"


def population(percentile: float, traces: int) -> int:
    """How many of ``traces`` (fastest first) make the population of ``percentile``.

    ``ceil(P/100 · N)``, rounded first so float noise (``0.95 · 600 = 569.99…``) cannot move
    the cut by one trace.

    >>> population(50, 4), population(95, 4), population(99, 600), population(99.9, 600)
    (2, 4, 594, 600)
    """
    return math.ceil(round(percentile * traces / 100, 9))


def service_of(operation: pl.Expr) -> pl.Expr:
    """The service in brackets of ``"[service] operation"`` (null when there is none)."""
    return operation.str.extract(_SERVICE_PATTERN, 1)


def _ranked(data: Dataset, root_operation: str | None) -> pl.DataFrame:
    """Traces with a critical path, in input order, with their ``rank`` (0-based, fastest
    first; ties: trace id) and two grouping keys: ``trace_key`` and ``path_key``, the least
    rank among the traces with the same trace id (and duration) — equal exactly when those
    are, and cheaper to group by than strings.

    The rank is the inverse of the permutation that sorts the keys: sorting the frame itself
    would move every critical-path list, the bulk of the data.
    """
    traces = data.traces.filter(
        pl.col("duration_ns") > 0, pl.col("critical_by_operation").is_not_null()
    )
    if root_operation is not None:
        traces = traces.filter(pl.col("root_operation") == root_operation)
    rank = pl.arg_sort_by("duration_ns", "trace_id", maintain_order=True).arg_sort()
    return (
        traces.select("trace_id", "duration_ns", "critical_by_operation")
        .with_columns(rank.alias("rank"))
        .with_columns(pl.col("rank").min().over("trace_id").alias("trace_key"))
        .with_columns(pl.col("rank").min().over("trace_key", "duration_ns").alias("path_key"))
        .collect()
    )


def _exploded(traces: pl.LazyFrame) -> pl.LazyFrame:
    """One row per (trace, operation on its critical path).

    The operation is categorical: every later grouping is by operation, and grouping millions
    of rows by integer codes is several times faster than hashing the strings each time. The
    service is derived per operation once the rows are aggregated (it is a function of it).
    """
    return (
        traces.explode("critical_by_operation")
        .unnest("critical_by_operation")
        .filter(pl.col("operation").is_not_null())
        .with_columns(
            pl.col("operation").cast(pl.Categorical),
            *(pl.col(c).fill_null(0) for c in ("exclusive_ns", *(f"{p}_ns" for p in _PARTS))),
        )
    )


def _shares(sums: pl.LazyFrame, totals: pl.LazyFrame, keys: Sequence[str]) -> pl.LazyFrame:
    """Exclusive (and self/network/coordination) ns per ``keys`` over the population total.

    ``sums`` holds the ns per (percentile, operation, service); integer sums add up exactly,
    so summing them again per service equals summing the rows.
    """
    grouped = sums.group_by("order", "percentile", *keys).agg(
        pl.col("exclusive_ns").sum(), *(pl.col(f"{p}_ns").sum() for p in _PARTS)
    )
    total = pl.col("population_ns")
    return (
        grouped.join(totals, on="order")
        .select(
            *keys,
            "percentile",
            (pl.col("exclusive_ns") / total).alias("share"),
            *((pl.col(f"{p}_ns") / total).alias(f"{p}_share") for p in _PARTS),
            "order",
        )
        .sort(["order", "share", *keys], descending=[False, True, *(False for _ in keys)])
        .drop("order")
    )


def _operations(exploded: pl.LazyFrame, all_ns: int, k: int) -> pl.LazyFrame:
    """Absolute exclusive times per operation over all traces, and the tail mean."""
    return (
        exploded.group_by("operation")
        .agg(
            pl.col("trace_key").n_unique().alias("traces"),
            pl.col("exclusive_ns").sum().alias("exclusive_ns_total"),
            pl.col("exclusive_ns").mean().alias("exclusive_ns_mean"),
            percentile_ns("exclusive_ns", 0.99).alias("exclusive_ns_p99"),
            (pl.col("exclusive_ns").filter(pl.col("tail")).sum() / max(k, 1)).alias("tail_mean_ns"),
        )
        .select(
            pl.col("operation").cast(pl.String),
            service_of(pl.col("operation").cast(pl.String)).alias("service"),
            "traces",
            "exclusive_ns_total",
            "exclusive_ns_mean",
            "exclusive_ns_p99",
            "tail_mean_ns",
            (pl.col("exclusive_ns_total") / max(all_ns, 1)).alias("share"),
        )
        .sort(["exclusive_ns_total", "operation"], descending=[True, False])
    )


def _dominant(exploded: pl.LazyFrame, ranked: pl.LazyFrame) -> pl.LazyFrame:
    """Per trace, the operation with the most exclusive time (ties: the smaller name).

    The most exclusive time per trace first (integer keys), then the smallest name among the
    few rows that reach it: no per-trace sort of millions of rows.
    """
    top = exploded.filter(pl.col("exclusive_ns") == pl.col("exclusive_ns").max().over("path_key"))
    return (
        top.group_by("path_key")
        .agg(pl.col("operation").cast(pl.String).min())
        .join(
            ranked.filter(pl.col("rank") == pl.col("path_key")).select(
                "path_key", "trace_id", "duration_ns"
            ),
            on="path_key",
        )
        .select("trace_id", "duration_ns", "operation")
    )


def run(
    data: Dataset,
    *,
    percentiles: Sequence[float] = PERCENTILES,
    top: int = TOP_OPERATIONS,
    root_operation: str | None = None,
) -> JobResult:
    """Critical-path shares per service and operation at each percentile, and the top ones.

    Parameters:
        data: the dataset; reads ``traces`` (``duration_ns``, ``critical_by_operation``).
        percentiles: the populations (fastest ``ceil(P/100 · N)`` traces); the findings use
            99 when given, else the largest.
        top: how many operations may become ``critical_operation`` findings.
        root_operation: only traces whose root operation is this (an endpoint, as CRISP's
            top-down view), e.g. ``"gateway/POST /v1/payments"``.

    Returns:
        Tables ``by_service``, ``by_operation``, ``operations`` and the findings (module
        docstring).

    Examples:
        >>> from hopscope.analysis.loaders import dataset_from_records
        >>> from hopscope.processors.records import SpanRecord
        >>> spans = [
        ...     SpanRecord("t", "r", None, "pay", "server", 0, 100, "gw"),
        ...     SpanRecord("t", "a", "r", "score", "internal", 10, 70, "risk"),
        ... ]
        >>> result = run(dataset_from_records(spans))
        >>> result.tables["by_service"].filter(percentile="p99").select("service", "share").rows()
        [('risk', 0.6), ('gw', 0.4)]
    """
    if not percentiles or any(not 0 < p <= 100 for p in percentiles):
        raise ValueError(f"percentiles must lie in (0, 100], got {list(percentiles)}")
    ranked = _ranked(data, root_operation)
    n = ranked.height
    ordered = sorted(set(percentiles))
    cuts = [population(p, n) for p in ordered]
    tail_k = math.ceil(round(TAIL_FRACTION * n, 9))
    # Step 2 without copying rows per percentile: population i is the ranks below cuts[i],
    # and the cuts grow with i. A trace's ``slice`` counts the cuts at or below its rank, so
    # population i is slices 0…i: sums over it are prefix sums of per-slice sums, and the
    # exploded rows are aggregated once whatever the number of percentiles.
    lazy = ranked.lazy().with_columns(
        pl.sum_horizontal(*(pl.col("rank") >= cut for cut in cuts)).cast(pl.Int64).alias("slice"),
        (pl.col("rank") >= n - tail_k).alias("tail"),
    )
    orders = pl.LazyFrame(
        {"order": list(range(len(ordered))), "percentile": [percentile_label(p) for p in ordered]},
        schema={"order": pl.Int64, "percentile": pl.String},
    )

    def populations(per_slice: pl.LazyFrame) -> pl.LazyFrame:
        """Per-slice rows, repeated for each percentile whose population holds the slice."""
        return per_slice.join(orders, how="cross").filter(pl.col("slice") <= pl.col("order"))

    totals = (
        populations(lazy.group_by("slice").agg(pl.col("duration_ns").sum().alias("population_ns")))
        .group_by("order")
        .agg(pl.col("population_ns").sum())
    )
    # One explosion, materialised once: every table below aggregates these rows.
    exploded = _exploded(
        lazy.select("rank", "trace_key", "path_key", "slice", "tail", "critical_by_operation")
    ).collect()
    parts = ("exclusive_ns", *(f"{p}_ns" for p in _PARTS))
    sums = (
        populations(
            # One integer key per (operation, slice): grouping by two columns encodes every
            # row first, several times slower on millions of rows.
            exploded.lazy()
            .group_by(
                (
                    pl.col("operation").to_physical().cast(pl.Int64) * (len(cuts) + 1)
                    + pl.col("slice")
                ).alias("operation_slice")
            )
            .agg(
                pl.col("slice").first(),
                pl.col("operation").first(),
                *(pl.col(c).sum() for c in parts),
            )
            .drop("operation_slice")
        )
        .with_columns(pl.col("operation").cast(pl.String))
        .with_columns(service_of(pl.col("operation")).alias("service"))
    )
    # Step 3: shares per operation and per service.
    # Operations that never held the path (a 2PC span its statements cover) would swamp the
    # table: the path lists one per transaction id.
    by_operation = _shares(sums, totals, ("operation", "service")).filter(pl.col("share") > 0)
    by_service = _shares(sums, totals, ("service",))

    all_ns = int(ranked.get_column("duration_ns").sum())
    operations = _operations(exploded.lazy(), all_ns, tail_k)
    dominant = _dominant(exploded.lazy(), ranked.lazy())

    by_service_df, by_operation_df, operations_df, dominant_df = pl.collect_all(
        [by_service, by_operation, operations, dominant]
    )
    label = percentile_label(99.0 if 99.0 in ordered else ordered[-1])
    findings = _findings(by_operation_df, operations_df, dominant_df, label, top)
    return JobResult(
        job=JOB,
        tables={
            "by_service": by_service_df,
            "by_operation": by_operation_df,
            "operations": operations_df,
        },
        findings=findings,
    )


def _recommendation(operation: str, service: str | None, parts: dict[str, float]) -> str:
    """What to change, in the terms of the time's dominant kind."""
    kind = max(_PARTS, key=lambda p: parts[p])
    where = f"in {service}" if service else ""
    if kind == "network":
        return (
            f"{operation} spends its critical-path time on the wire and in queues between "
            "client and server: keep the call inside one zone, reuse connections (keep-alive, "
            "no per-call TLS handshake) and check proxies or load balancers on the path."
        )
    if kind == "coordination":
        return (
            f"{operation} spends its critical-path time waiting on coordination {where}: "
            "shorten what is held while waiting (locks, transactions), take it off the "
            "payment's synchronous path where correctness allows, or batch the round trips."
        )
    return (
        f"{operation} is the service's own work (or an uninstrumented callee) {where}: "
        "profile it, cache what it computes, run independent calls in parallel, or set a "
        "deadline so its tail cannot hold the payment."
    )


def _findings(
    by_operation: pl.DataFrame,
    operations: pl.DataFrame,
    dominant: pl.DataFrame,
    label: str,
    top: int,
) -> list[Finding]:
    at = by_operation.filter(pl.col("percentile") == label)
    candidates = at.filter(pl.col("share") >= MIN_FINDING_SHARE).head(top)
    if candidates.is_empty():
        return []
    shares = by_operation.filter(pl.col("operation").is_in(candidates["operation"].implode()))
    stats = {row["operation"]: row for row in operations.iter_rows(named=True)}
    examples = (
        dominant.filter(pl.col("operation").is_in(candidates["operation"].implode()))
        .group_by("operation")
        .agg(example_traces("duration_ns"))
    )
    example_ids = dict(examples.iter_rows())
    findings = []
    for row in candidates.iter_rows(named=True):
        operation, service, share = row["operation"], row["service"], row["share"]
        op = stats[operation]
        gain_ns = round(op["tail_mean_ns"])
        parts = {p: row[f"{p}_share"] for p in _PARTS}
        impact: Impact = "medium" if share >= MEDIUM_SHARE else "low"
        by_percentile = {
            r["percentile"]: r["share"]
            for r in shares.filter(pl.col("operation") == operation).iter_rows(named=True)
        }
        evidence: dict[str, Any] = {
            "percentile": label,
            "share": share,
            "shares": by_percentile,
            "self_share": parts["self"],
            "network_share": parts["network"],
            "coordination_share": parts["coordination"],
            "traces": op["traces"],
            "exclusive_ns_mean": round(op["exclusive_ns_mean"]),
            "exclusive_ns_p99": op["exclusive_ns_p99"],
            "tail_mean_ns": gain_ns,
        }
        findings.append(
            Finding(
                job=JOB,
                kind="critical_operation",
                title=f"{operation}: {share:.0%} of the {label} critical path",
                impact=impact,
                gain_ns=gain_ns,
                subject={"service": service, "operation": operation},
                evidence=evidence,
                recommendation=_recommendation(operation, service, parts),
                gain=(
                    f"removing {operation}'s critical-path time saves {ms(gain_ns)} at p99 "
                    f"(its mean over the slowest {TAIL_FRACTION:.0%} of traces)"
                ),
                example_traces=tuple(example_ids.get(operation, ())),
            )
        )
    return findings
