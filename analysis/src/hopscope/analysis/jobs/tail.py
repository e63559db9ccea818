"""Tail attribution: which attribute values are over-represented among slow or failed traces.

The method follows Elastic APM's latency and failed-transaction correlations (notes 1c),
re-derived here for whole traces:

1. Candidates. Per trace, the values its spans carry: the node of each service (a span's own
   ``node``, and the ``server.address`` of calls to that service, so a node that only timed out
   still counts), the database server of its db calls, ``region``, ``payment_method``,
   ``payment_currency``, ``lb_strategy``, ``db_role``, ``cache_hit`` and ``client_address``.
   A trace *has* a value when any of its spans has it. Fields with more than ``max_values``
   distinct values are skipped (identifiers, not causes), and so are values every trace has
   (nothing to compare against).
2. Slow traces. A trace is slow above the ``percentile``-th percentile of trace durations. Per
   value: the share of slow traces that have it against its share of all traces (``lift``), and
   a one-sided two-sample Kolmogorov–Smirnov test of the durations of traces with the value
   against those without, alternative "traces with the value are slower" (scipy's
   ``ks_2samp(with, without, alternative="less")``; Elastic uses the same side).
3. Failed traces (``root_error`` or ``error``). Per value: its failure rate against the rate of
   traces without it, a one-sided two-proportion z-test (pooled variance; Elastic's
   ``significant_terms`` p-value tests the same independence hypothesis).
4. Levels. The p-value maps to Elastic's impact breakpoints (p < 1e-6 high, < 0.001 medium,
   < 0.02 low) in the tables. Findings are capped at ``medium``: a correlation points at where
   to look, it is not a cause (the other jobs name causes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import polars as pl

from hopscope.analysis.expr import example_traces, percentile_ns
from hopscope.analysis.findings import Finding, Impact, JobResult
from hopscope.analysis.ids import TRACE_ID, TraceCodes
from hopscope.analysis.render import ms
from hopscope.analysis.schema import Dataset
from hopscope.analysis.stats import CONFIDENCE, proportion_z, wilson_interval

JOB: Final = "tail"
KIND: Final = "tail_attribute"

# Fields with more distinct values are identifiers (payment ids, addresses of a large client
# base): a value seen on a handful of traces cannot be told from noise, and the candidate count
# (hence the false-positive count) would explode.
MAX_VALUES: Final = 50
# Elastic's impact breakpoints on the p-value (notes 1c: -ln p = 13.816 / 6.908 / 3.912).
P_HIGH: Final = 1e-6
P_MEDIUM: Final = 1e-3
P_LOW: Final = 0.02
# A finding needs strong evidence *and* a practically relevant over-representation: with ~40
# candidates per run, p < 0.001 keeps the expected number of false findings per run near 0.04,
# and a lift of 1.5 (half as many again as chance) is what a person would act on.
FINDING_P: Final = P_MEDIUM
MEDIUM_LIFT: Final = 1.5
LOW_LIFT: Final = 1.2
# No fixed count of slow (or failed) traces: a finding needs the lift's confidence interval
# (Wilson's, on the value's event rate) to lie above 1, so a handful of coincidences does not
# pass but a value on 4 traces that were all slow does (reported with its wide interval).
# Findings per table: the strongest few; the tables keep the rest.
MAX_FINDINGS: Final = 5

# Single-valued span columns that are candidate fields as they are.
_PLAIN_FIELDS: Final = (
    "region",
    "payment_method",
    "payment_currency",
    "lb_strategy",
    "db_role",
    "cache_hit",
    "client_address",
)


# The span columns candidate_values reads.
_SPAN_COLUMNS: Final = (
    "trace_id", "service", "node", "kind", "peer_service", "server_address", "db_system",
    *_PLAIN_FIELDS,
)  # fmt: skip


def elastic_impact(p_value: float | None) -> Impact | None:
    """Elastic's impact level for a correlation's p-value (``None`` below ``low``).

    >>> elastic_impact(1e-7), elastic_impact(1e-4), elastic_impact(0.01), elastic_impact(0.5)
    ('high', 'medium', 'low', None)
    """
    if p_value is None:
        return None
    if p_value < P_HIGH:
        return "high"
    if p_value < P_MEDIUM:
        return "medium"
    if p_value < P_LOW:
        return "low"
    return None


def ks_less_p_value(statistic: float, n_with: int, n_without: int) -> float:
    """Asymptotic p-value of the one-sided two-sample KS statistic ``D = max(F_without -
    F_with)``: ``exp(-2 * n_e * D²)`` with ``n_e = n_with * n_without / (n_with + n_without)``
    (Smirnov's limit law).

    >>> round(ks_less_p_value(1.0, 3, 3), 4)  # exp(-3)
    0.0498
    """
    if n_with <= 0 or n_without <= 0:
        return 1.0
    effective = n_with * n_without / (n_with + n_without)
    return min(1.0, math.exp(-2.0 * effective * statistic * statistic))


def proportion_p_value(hits_a: int, n_a: int, hits_b: int, n_b: int) -> float:
    """One-sided two-proportion z-test (pooled variance): p-value of "rate a > rate b".

    Parameters:
        hits_a, n_a: events and trials of the group under test.
        hits_b, n_b: events and trials of the comparison group.

    Returns:
        The upper-tail normal probability of ``z``; 1.0 when either group is empty or no
        event happened at all (nothing to test).

    Examples:
        >>> round(proportion_p_value(30, 100, 10, 100), 6)  # z = 3.5355
        0.000203
    """
    z = proportion_z(hits_a, n_a, hits_b, n_b)
    return 1.0 if z is None else 0.5 * math.erfc(z / math.sqrt(2.0))


def _ks_gap(n: pl.Expr) -> pl.Expr:
    """``max(F_without - F_with)`` at and just below each member's duration, as a
    ``group_by`` aggregation over one candidate's members (see :func:`ks_statistic`).

    The members carry ``duration_ns`` and its ranks among all traces (``r_le``/``r_lt``);
    ``n``, the number of traces, is a column.
    """
    # The group's size as a column, one value per row: divided by a scalar, polars multiplies
    # by its reciprocal, which can move the last bit of the statistic (and of its p-value).
    k = pl.int_range(pl.len(), dtype=pl.Int64) * 0 + pl.len().cast(pl.Int64)
    # Ranks within the group: the aggregation sees one group's durations at a time.
    c_le = pl.col("duration_ns").rank("max").cast(pl.Int64)
    c_lt = pl.col("duration_ns").rank("min").cast(pl.Int64) - 1
    return pl.max_horizontal(
        (pl.col("r_le") - c_le) / (n - k) - c_le / k,
        (pl.col("r_lt") - c_lt) / (n - k) - c_lt / k,
    ).max()


def _ranked(traces: pl.LazyFrame) -> pl.LazyFrame:
    """``traces`` with ``r_le``/``r_lt``: how many traces are at most / below its duration."""
    return traces.with_columns(
        pl.col("duration_ns").rank("max").cast(pl.Int64).alias("r_le"),
        (pl.col("duration_ns").rank("min").cast(pl.Int64) - 1).alias("r_lt"),
    )


def ks_statistic(membership: pl.LazyFrame, traces: pl.LazyFrame) -> pl.LazyFrame:
    """One-sided two-sample KS statistic per candidate: ``max_x(F_without(x) - F_with(x))``.

    Parameters:
        membership: ``(field, value, trace_id)``, one row per trace that has the value.
        traces: ``(trace_id, duration_ns)`` of every trace (the union of both samples).

    Returns:
        ``(field, value, ks_statistic)``; 0 when traces with the value are never slower.

    Both empirical CDFs are step functions that only move at sample points. Between two
    consecutive durations of traces *with* the value, ``F_with`` is flat while ``F_without``
    grows, so the supremum is reached either at a member's duration (inclusive) or just before
    it (exclusive). With ``r≤``/``r<`` the counts of all traces at most / below a duration and
    ``c≤``/``c<`` the same among members, ``F_without = (r - c) / (n - k)``, ``F_with = c / k``:
    ranks, no cross join of candidates and traces. The member ranks are taken per candidate
    inside one ``group_by`` (a sort of each candidate's durations), not as windows over all
    members.

    Examples:
        >>> traces = pl.LazyFrame({"trace_id": list("abcdef"), "duration_ns": [1, 2, 3, 4, 5, 6]})
        >>> members = pl.LazyFrame({"field": ["f"] * 3, "value": ["v"] * 3,
        ...                         "trace_id": ["d", "e", "f"]})
        >>> ks_statistic(members, traces).collect().row(0)
        ('f', 'v', 1.0)
    """
    n = traces.select(pl.len().cast(pl.Int64).alias("n"))
    return (
        membership.join(_ranked(traces.select("trace_id", "duration_ns")), on="trace_id")
        .join(n, how="cross")
        .group_by("field", "value")
        .agg(pl.len().cast(pl.Int64).alias("k"), _ks_gap(pl.col("n")).alias("gap"))
        .join(n, how="cross")
        .filter(pl.col("k") < pl.col("n"))
        .select("field", "value", pl.col("gap").clip(lower_bound=0.0).alias("ks_statistic"))
    )


def _trace_frame(data: Dataset) -> pl.LazyFrame:
    """One row per trace with a duration: ``trace_id, duration_ns, failed``."""
    return (
        data.traces.filter(pl.col("duration_ns").is_not_null())
        .group_by("trace_id")
        .agg(
            pl.col("duration_ns").max(),
            (pl.col("root_error").fill_null(False) | pl.col("error").fill_null(False))
            .any()
            .alias("failed"),
        )
    )


def candidate_values(spans: pl.LazyFrame, *, max_values: int = MAX_VALUES) -> pl.LazyFrame:
    """The ``(trace_id, field, value)`` a trace has, one row each, for low-cardinality fields.

    Node fields are named ``"<service> node"``; database servers ``"db server"``. ``field``
    and ``value`` are ``Categorical``: the uniques, group-bys, joins and sorts over the
    candidates (millions of rows at 10M spans) hash and compare their integer codes, not
    the text; the tables give the text back (:func:`slow_table`, :func:`failed_table`).

    Examples:
        >>> spans = pl.LazyFrame({
        ...     "trace_id": ["t", "t"], "service": ["gateway", "gateway"],
        ...     "node": ["gateway-1", "gateway-1"], "kind": ["server", "client"],
        ...     "peer_service": [None, "payment"], "server_address": [None, "payment-2"],
        ...     "db_system": [None, None], "region": ["eu", "eu"],
        ...     "payment_method": ["card", None], "payment_currency": [None, None],
        ...     "lb_strategy": [None, "ip_hash"], "db_role": [None, None],
        ...     "cache_hit": [None, None], "client_address": [None, None]})
        >>> candidate_values(spans).sort("field").collect().rows()  # doctest: +NORMALIZE_WHITESPACE
        [('t', 'gateway node', 'gateway-1'), ('t', 'lb_strategy', 'ip_hash'),
         ('t', 'payment node', 'payment-2'), ('t', 'payment_method', 'card'),
         ('t', 'region', 'eu')]
    """

    # Spans usually come trace by trace, so most rows repeat their predecessor's (trace,
    # field, value): dropping those with a shift comparison (no hashing) shrinks each source
    # several times over before the hash-based unique. Exact in any row order. The text
    # left is made categorical once, so that the unique and everything after it hash codes.
    def distinct(frame: pl.LazyFrame, *columns: str) -> pl.LazyFrame:
        repeated = pl.all_horizontal(
            (pl.col(name) == pl.col(name).shift()).fill_null(False) for name in columns
        )
        text = [c for c in columns if c != TRACE_ID]
        return (
            frame.select(columns)
            .filter(~repeated)
            .with_columns(pl.col(text).cast(pl.Categorical))
            .unique()
        )

    # A node field comes from a span's own node and from the calls to it (the caller's view,
    # so attempts that never reached a server count); both name the field "<service> node".
    own_node = spans.filter(pl.col("node").is_not_null()).select(
        "trace_id", "service", pl.col("node").alias("value")
    )
    call_target = spans.filter(
        (pl.col("kind") == "client")
        & pl.col("peer_service").is_not_null()
        & pl.col("server_address").is_not_null()
    ).select(
        "trace_id",
        pl.col("peer_service").alias("service"),
        pl.col("server_address").alias("value"),
    )
    nodes = pl.concat(
        [
            distinct(own_node, "trace_id", "service", "value"),
            distinct(call_target, "trace_id", "service", "value"),
        ],
        how="vertical",
    )
    # Computed once: read by the join and by the field names (a plan read twice is computed
    # twice where its two readers meet in one join).
    nodes = nodes.unique().collect().lazy()
    # Each service's field name, made once per service and joined on the service's code.
    # String concatenation, not pl.format: polars 2.1's streaming engine panics formatting a
    # filtered column made of several chunks (what the Elasticsearch loader's pages give).
    fields = nodes.select(pl.col("service").unique()).with_columns(
        (pl.col("service").cast(pl.String) + " node").cast(pl.Categorical).alias("field")
    )
    nodes = nodes.join(fields, on="service", how="inner").select("trace_id", "field", "value")
    db_server = distinct(
        spans.filter(
            pl.col("db_system").is_not_null() & pl.col("server_address").is_not_null()
        ).select("trace_id", pl.col("server_address").alias("value")),
        "trace_id",
        "value",
    ).select("trace_id", pl.lit("db server").cast(pl.Categorical).alias("field"), "value")
    plain = [
        distinct(
            spans.filter(pl.col(name).is_not_null()).select(
                "trace_id", pl.col(name).cast(pl.String).alias("value")
            ),
            "trace_id",
            "value",
        ).select("trace_id", pl.lit(name).cast(pl.Categorical).alias("field"), "value")
        for name in _PLAIN_FIELDS
    ]
    # Each source is already unique, and no two share a field name (node fields end in
    # " node", none of the others does): the union needs no further unique. Computed once
    # for its two readers below.
    values = pl.concat([nodes, db_server, *plain], how="vertical").collect().lazy()
    sizes = (
        values.select("field", "value").unique().group_by("field").agg(pl.len().alias("distinct"))
    )
    return values.join(
        sizes.filter(pl.col("distinct") <= max_values).select("field"),
        on="field",
        how="semi",
        nulls_equal=True,
    )


def _with_p_values(frame: pl.DataFrame, p_values: Sequence[float]) -> pl.DataFrame:
    # A significant shift without over-representation is structure, not a lead: payments that
    # stop early (declined by risk) are fast and lack every value of the later steps, which
    # makes those values "significantly slower" at a lift of 1.0.
    levels = [
        elastic_impact(p) if lift is not None and lift >= LOW_LIFT else None
        for p, lift in zip(p_values, frame.get_column("lift"), strict=True)
    ]
    return frame.with_columns(
        pl.Series("p_value", p_values, dtype=pl.Float64),
        pl.Series("impact", levels, dtype=pl.String),
    )


def members_of(traces: pl.LazyFrame, values: pl.LazyFrame) -> pl.LazyFrame:
    """The traces that have each value: ``field, value, trace_id`` and the trace's
    ``duration_ns``, ``failed`` and duration ranks (``r_le``/``r_lt``, :func:`ks_statistic`).

    One join of the candidates with the traces, shared by both tables and the findings.
    """
    return values.join(_ranked(traces), on="trace_id", how="inner")


def ks_gaps(members: pl.LazyFrame, n: pl.LazyFrame) -> pl.LazyFrame:
    """``(field, value, gap)``: :func:`_ks_gap` of every candidate, from the candidate's
    distinct durations instead of ranks taken inside each group.

    Members with equal durations share ``r_le``/``r_lt`` (ranks among all traces) and their
    ``c_le``/``c_lt`` (among the candidate's members): ``c_le`` is the cumulative member count
    up to that duration in ascending order, ``c_lt`` the same minus its own count. So one
    group-by per (candidate, duration), one sort and a cumulative sum replace the two sorts
    per candidate that ``rank`` costs inside a group-by aggregation (at 10M spans 6.3 of the
    tail job's 8.6 CPU seconds, now 0.4). Same integer operands and the same divisions by a
    column, so the same floating-point gap (``tests/unit/test_analysis_tail.py``).

    Parameters:
        members: ``field, value, duration_ns, r_le, r_lt`` (:func:`members_of`).
        n: one row, ``n``: the number of traces.
    """
    candidate = ["field", "value"]
    k, c_le = pl.col("k"), pl.col("c_le")
    c_lt = c_le - pl.col("count")
    others = pl.col("n") - k
    return (
        members.group_by(*candidate, "duration_ns")
        .agg(
            pl.len().cast(pl.Int64).alias("count"),
            pl.col("r_le").first(),
            pl.col("r_lt").first(),
        )
        # Candidates in any order (their codes'), durations ascending within each.
        .sort(*(pl.col(c).to_physical() for c in candidate), "duration_ns")
        .with_columns(
            pl.col("count").cum_sum().over(candidate).alias("c_le"),
            pl.col("count").sum().over(candidate).alias("k"),
        )
        .join(n, how="cross")
        .group_by(candidate)
        .agg(
            pl.max_horizontal(
                (pl.col("r_le") - c_le) / others - c_le / k,
                (pl.col("r_lt") - c_lt) / others - c_lt / k,
            )
            .max()
            .alias("gap")
        )
    )


def value_counts(members: pl.LazyFrame, traces: pl.LazyFrame, threshold_ns: float) -> pl.LazyFrame:
    """Per candidate value: ``traces``, ``slow_traces`` (above ``threshold_ns``),
    ``failed_traces`` and ``gap`` (the KS supremum before clipping, :func:`ks_gaps`)."""
    n = traces.select(pl.len().cast(pl.Int64).alias("n"))
    counts = members.group_by("field", "value").agg(
        pl.len().alias("traces"),
        (pl.col("duration_ns") > threshold_ns).sum().alias("slow_traces"),
        pl.col("failed").sum().alias("failed_traces"),
    )
    return counts.join(ks_gaps(members, n), on=["field", "value"], how="left", nulls_equal=True)


def slow_table(traces: pl.LazyFrame, per_value: pl.LazyFrame, threshold_ns: float) -> pl.DataFrame:
    """The ``slow`` table: per candidate value, its share among slow traces and the KS test.

    Sorted by p-value, then lift (strongest evidence first).
    """
    totals = traces.select(
        pl.len().alias("n"), (pl.col("duration_ns") > threshold_ns).sum().alias("n_slow")
    )
    counts = (
        per_value.join(totals, how="cross")
        .filter(pl.col("traces") < pl.col("n"))
        .with_columns(
            (pl.col("slow_traces") / pl.col("n_slow")).fill_nan(0.0).alias("share_of_slow"),
            (pl.col("traces") / pl.col("n")).alias("share_of_all"),
            pl.col("gap").clip(lower_bound=0.0).fill_null(0.0).alias("ks_statistic"),
        )
        .with_columns((pl.col("share_of_slow") / pl.col("share_of_all")).alias("lift"))
        .collect()
    )
    p_values = [
        ks_less_p_value(d, k, n - k)
        for d, k, n in counts.select("ks_statistic", "traces", "n").iter_rows()
    ]
    return (
        _with_p_values(counts, p_values)
        .select(
            pl.col("field").cast(pl.String),
            pl.col("value").cast(pl.String),
            pl.col("traces").cast(pl.Int64),
            pl.col("slow_traces").cast(pl.Int64),
            "share_of_slow",
            "share_of_all",
            "lift",
            "ks_statistic",
            "p_value",
            "impact",
        )
        .sort(["p_value", "lift", "field", "value"], descending=[False, True, False, False])
    )


def failed_table(traces: pl.LazyFrame, per_value: pl.LazyFrame) -> pl.DataFrame:
    """The ``failed`` table: per candidate value, its failure rate against traces without it.

    ``lift`` is the failure rate over the overall rate (share among failed over share among
    all), the counterpart of the slow table's lift; sorted by p-value, then lift.
    """
    totals = traces.select(pl.len().alias("n"), pl.col("failed").sum().alias("n_failed"))
    counts = (
        per_value.join(totals, how="cross")
        .filter(pl.col("traces") < pl.col("n"))
        .with_columns(
            (pl.col("failed_traces") / pl.col("traces")).alias("failure_rate"),
            (
                (pl.col("n_failed") - pl.col("failed_traces")) / (pl.col("n") - pl.col("traces"))
            ).alias("baseline_rate"),
            (pl.col("n_failed") / pl.col("n")).alias("overall_rate"),
        )
        .with_columns(
            pl.when(pl.col("overall_rate") > 0)
            .then(pl.col("failure_rate") / pl.col("overall_rate"))
            .otherwise(None)
            .alias("lift")
        )
        .collect()
    )
    p_values = [
        proportion_p_value(f, k, total_failed - f, n - k)
        for f, k, total_failed, n in counts.select(
            "failed_traces", "traces", "n_failed", "n"
        ).iter_rows()
    ]
    return (
        _with_p_values(counts, p_values)
        .select(
            pl.col("field").cast(pl.String),
            pl.col("value").cast(pl.String),
            pl.col("traces").cast(pl.Int64),
            pl.col("failed_traces").cast(pl.Int64),
            "failure_rate",
            "baseline_rate",
            "lift",
            "p_value",
            "impact",
        )
        .sort(["p_value", "lift", "field", "value"], descending=[False, True, False, False],
              nulls_last=True)
    )  # fmt: skip


def lift_interval(lift: float, events: int, traces: int) -> tuple[float, float]:
    """The confidence interval of a lift (the value's event rate over the reference rate),
    from Wilson's interval of the value's rate ``events / traces``; the reference rate, taken
    over all the other traces, is the far better known of the two.

    >>> [round(x, 2) for x in lift_interval(4.0, 4, 20)]  # 4 of 20 slow, 5 % expected
    [1.61, 8.32]
    """
    if events <= 0 or traces <= 0:
        return 0.0, math.inf
    low, high = wilson_interval(events, traces, CONFIDENCE)
    scale = lift / (events / traces)
    return low * scale, high * scale


def _finding_level(p_value: float, lift: float | None, events: int, traces: int) -> Impact | None:
    if lift is None or p_value >= FINDING_P or lift_interval(lift, events, traces)[0] <= 1.0:
        return None
    if lift >= MEDIUM_LIFT:
        return "medium"
    if lift >= LOW_LIFT:
        return "low"
    return None


def _p99(durations: pl.LazyFrame) -> int | None:
    value = durations.select(percentile_ns("duration_ns", 0.99)).collect().item()
    return None if value is None else int(value)


def _recommendation(field: str, value: str, slow: bool) -> str:
    what = "slow" if slow else "failed"
    if field.endswith(" node") or field == "db server":
        where = (
            f"Look at {value} first: compare its CPU, connection pool and error logs with its "
            "peers' (the load-balance, failover and database jobs name the cause when it is "
            "theirs); drain it if it keeps standing out."
        )
    elif field == "cache_hit":
        where = (
            "Cache misses travel with these payments: check the cache job's hit ratio and miss "
            "penalty."
        )
    elif field == "db_role":
        where = (
            f"Payments touching the {value} database role are {what} more often: check the "
            "database job (reads on the primary, slow statements)."
        )
    elif field == "client_address":
        where = (
            f"Traffic from {value} stands out: check whether one client (an aggregator's NAT "
            "address) is pinned to one node by ip_hash, or rate-limit it."
        )
    else:
        where = (
            f"Payments with {field} = {value} are {what} more often than the rest: look for "
            "a dependency only they use (a currency conversion, a regional route)."
        )
    return f"{where} This is a correlation, not a proven cause."


def _members(members: pl.LazyFrame, field: str, value: str) -> pl.LazyFrame:
    return members.filter((pl.col("field") == field) & (pl.col("value") == value))


def _examples(
    members: pl.LazyFrame, field: str, value: str, codes: TraceCodes, *, slow: bool
) -> list[str]:
    rows = _members(members, field, value)
    if not slow:
        rows = rows.filter(pl.col("failed"))
    # Codes sort as the ids do, so the ties pick the same traces.
    ids = rows.select(example_traces("duration_ns")).collect().to_series()
    return codes.decode(ids.to_list())


def _findings(
    table: pl.DataFrame,
    traces: pl.LazyFrame,
    members: pl.LazyFrame,
    overall_p99: int | None,
    codes: TraceCodes,
    *,
    slow: bool,
    percentile: float,
) -> list[Finding]:
    events = "slow_traces" if slow else "failed_traces"
    findings: list[Finding] = []
    for row in table.iter_rows(named=True):
        if len(findings) >= MAX_FINDINGS:
            break
        level = _finding_level(row["p_value"], row["lift"], row[events], row["traces"])
        if level is None:
            continue
        field, value = row["field"], row["value"]
        with_value = _members(members, field, value).select("trace_id")
        without = _p99(traces.join(with_value, on="trace_id", how="anti"))
        # The p99 saved if the payments with the value behaved like the others.
        gain_ns = max(0, (overall_p99 or 0) - (without or 0)) if without is not None else 0
        evidence: dict[str, object] = {
            "field": field,
            "value": value,
            "traces": row["traces"],
            events: row[events],
            "lift": round(row["lift"], 3),
            "lift_interval": [
                round(x, 3) for x in lift_interval(row["lift"], row[events], row["traces"])
            ],
            "confidence": CONFIDENCE,
            "p_value": row["p_value"],
            "statistical_impact": row["impact"],
            "p99_ns": overall_p99,
            "p99_without_value_ns": without,
        }
        if slow:
            evidence |= {
                "percentile": percentile,
                "share_of_slow": round(row["share_of_slow"], 4),
                "share_of_all": round(row["share_of_all"], 4),
                "ks_statistic": round(row["ks_statistic"], 4),
            }
            title = (
                f"{field} = {value}: {row['share_of_slow']:.0%} of slow payments "
                f"vs {row['share_of_all']:.0%} of all"
            )
        else:
            evidence |= {
                "failure_rate": round(row["failure_rate"], 4),
                "baseline_rate": round(row["baseline_rate"], 4),
            }
            title = (
                f"{field} = {value}: {row['failure_rate']:.1%} of payments fail "
                f"vs {row['baseline_rate']:.1%} without it"
            )
        findings.append(
            Finding(
                job=JOB,
                kind=KIND,
                title=title,
                impact=level,
                gain_ns=gain_ns,
                subject={"field": field, "value": value, "signal": "slow" if slow else "failed"},
                evidence=evidence,
                recommendation=_recommendation(field, value, slow),
                gain=(
                    f"if payments with {field} = {value} behaved like the others, p99 would drop "
                    f"from {ms(overall_p99)} to {ms(without)} (saves {ms(gain_ns)})"
                ),
                example_traces=_examples(members, field, value, codes, slow=slow),
            )
        )
    return findings


def run(
    data: Dataset,
    *,
    percentile: float = 95.0,
    max_values: int = MAX_VALUES,
) -> JobResult:
    """Attribute values over-represented among slow and among failed traces.

    Parameters:
        data: the analysis window.
        percentile: traces above this percentile of duration are slow (0 < percentile < 100).
        max_values: fields with more distinct values are not candidates.

    Returns:
        Tables ``slow`` (field, value, traces, slow_traces, share_of_slow, share_of_all, lift,
        ks_statistic, p_value, impact) and ``failed`` (field, value, traces, failed_traces,
        failure_rate, baseline_rate, lift, p_value, impact); ``tail_attribute`` findings, at
        most ``medium``.

    Raises:
        ValueError: ``percentile`` outside (0, 100) or ``max_values`` below 1.
    """
    if not 0.0 < percentile < 100.0:
        raise ValueError(f"percentile must be in (0, 100), got {percentile}")
    if max_values < 1:
        raise ValueError(f"max_values must be >= 1, got {max_values}")
    # Step 1: traces, the values they have and their join, computed once (every table and
    # finding reads them). Trace ids are integer codes from here on (hashed and compared in
    # every unique and join below); example traces are decoded at the end.
    codes, (spans, traces) = TraceCodes.encoded(
        data.spans.select(_SPAN_COLUMNS).collect(), _trace_frame(data).collect()
    )
    traces_lazy = traces.lazy()
    members = members_of(
        traces_lazy, candidate_values(spans.lazy(), max_values=max_values)
    ).collect()
    members_lazy = members.lazy()
    threshold = traces.select(percentile_ns("duration_ns", percentile / 100.0)).item()
    counts = value_counts(members_lazy, traces_lazy, float(threshold or 0.0)).collect().lazy()
    if threshold is None:
        empty_slow = slow_table(traces_lazy, counts, 0.0).clear()
        return JobResult(
            JOB, {"slow": empty_slow, "failed": failed_table(traces_lazy, counts).clear()}
        )
    # Step 2 and 3: the two tables.
    slow = slow_table(traces_lazy, counts, float(threshold))
    failed = failed_table(traces_lazy, counts)
    # Step 4: findings, capped at medium.
    overall_p99 = _p99(traces_lazy)
    findings = _findings(
        slow, traces_lazy, members_lazy, overall_p99, codes, slow=True, percentile=percentile
    ) + _findings(
        failed, traces_lazy, members_lazy, overall_p99, codes, slow=False, percentile=percentile
    )
    return JobResult(JOB, {"slow": slow, "failed": failed}, findings)
