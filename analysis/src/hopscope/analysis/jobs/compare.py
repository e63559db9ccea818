"""Compare: an incident window against a baseline window, and the services that caused the change.

Not one of the per-window jobs (it reads two datasets): ``hopscope analyze compare`` and
``report --baseline-*`` call :func:`run`. Every figure is per window (``_baseline`` /
``_incident`` columns); durations in ns.

Attribution (why the callers that only waited are not blamed)
    The critical path of each trace (docs/DESIGN.md §3) splits its duration exactly into
    exclusive segments, each in one span and of one kind (self, network, coordination). A
    caller waiting on a slow callee gains no exclusive time: the callee's segments grow. So the
    change of the mean end-to-end duration is the sum of the changes of every *cause*'s mean
    exclusive time per payment, where a cause is

    - a service's **own time**: its self and coordination segments, plus the self segments of
      calls *to* it that have no server span (a database, an external issuer, a node that never
      answered: the caller's client span is the only record of the callee's time, so it is
      charged to the callee, not to the caller);
    - an edge's **wire**: the network segments of the caller's client span to a callee that
      has a server span (``client − server``: request and response legs and queueing).

    Separating the two gives CPU slowness and network delay different causes and
    recommendations. A wire is charged to the sender of the leg that grew (:func:`delayed_leg`:
    a caller whose requests leave late is the suspect, not the callee that answered on time,
    unless its requests to its other callees left on time: :func:`_one_path_only`), else to
    its callee. Waits inherit (:func:`_inherited_waits`): a service whose growth is
    mostly queue, pool or lock waiting under a callee that is itself a suspect drops a level.
    Errors are attributed the same way: a failed span none of whose children
    failed is where the error *originated* (a failed client span without a server span counts
    for its callee); the callers that propagated it are not blamed. Error logs (severity ERROR
    or worse, or an ``exception.type``) count per service.

Tables:

- ``suspects``: one row per cause (``cause`` = ``own_time`` / ``network`` / ``errors``,
  ``subject``, ``service``): the change, its interval, effect size, p-value, impact; most
  important first.
- ``services``: per service: own time per payment, originated error rate, error logs per
  payment, spans per second, each before and after, with their tests.
- ``operations``: per ``[service] operation``: spans, duration p50/p95/p99 and their ratios,
  Cliff's delta and Mann–Whitney p of the duration, self time p50, exclusive critical-path time
  per payment, error rate and its two-proportion p, throughput; ``status`` ``appeared`` /
  ``vanished`` / ``both``.
- ``edges``: per (source, target, operation, hop kind): calls, network and server p50/p95/p99
  (network tested as above), error rate, throughput, ``status``.

Findings:

- ``suspect_service_time`` / ``suspect_network`` / ``suspect_errors``: the suspects, subject
  ``{"service": ...}`` (plus ``"edge"`` for the wire, whose service is the callee). Impact by
  effect *and* evidence (see :func:`latency_impact`, :func:`error_impact`): ``high`` for a
  significant, at least medium-sized change; ``medium`` for a significant small one; ``low`` for
  a large change the sample is too small to confirm (reported with its interval, never
  dropped). Gain: the cause's p99 per payment before → after.
- ``appeared`` / ``vanished`` (``low``): operations and edges seen in one window only.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import polars as pl

from hopscope.analysis.expr import example_traces, percentile_ns
from hopscope.analysis.findings import IMPACTS, Finding, Impact, JobResult
from hopscope.analysis.render import ms
from hopscope.analysis.schema import Dataset
from hopscope.analysis.stats import (
    CONFIDENCE,
    LARGE_DELTA,
    MEDIUM_DELTA,
    SMALL_DELTA,
    cliffs_magnitude,
    mann_whitney_p,
    median_interval,
    normal_quantile,
    rank_test,
    rate_ratio_test,
    two_proportion_test,
    wilson_interval,
)

JOB: Final = "compare"
SUSPECT_KINDS: Final = (
    "suspect_service_time", "suspect_network", "suspect_errors", "suspect_call_volume",
)  # fmt: skip

# Evidence: with a few dozen causes per comparison, p < 0.001 keeps the expected number of
# chance suspects per comparison near 0.03; p < 0.01 still leaves a change worth naming.
P_STRONG: Final = 1e-3
P_WEAK: Final = 1e-2
# Materiality of a latency change, against the baseline's mean payment: under 5 % no one acts
# on it, from 10 % it is the incident.
MATERIAL_SHARE: Final = 0.05
HIGH_SHARE: Final = 0.10
# ... and never below this absolute change (sub-0.1 ms shifts are timer noise).
MATERIAL_NS: Final = 100_000
# A cause whose own time grew by half again, on strong evidence and a medium effect, is named
# even when it is a small part of the payment (a cache whose misses doubled a service's time).
OWN_RATIO: Final = 1.5
# Error-rate effect size: Cohen's h (0.2 small, 0.5 medium).
SMALL_H: Final = 0.2
LARGE_H: Final = 0.5
# Error logs per payment: at least this many more, and at least twice as many as before.
MATERIAL_LOGS_PER_TRACE: Final = 0.02
LOG_RATIO: Final = 2.0
# Findings for operations/edges seen in one window only: the largest few.
MAX_CHANGE_FINDINGS: Final = 5
# Severity texts at ERROR or above, across logging libraries (OTel, log4j, syslog, Go...).
ERROR_SEVERITIES: Final = frozenset(
    {"ERROR", "ERR", "FATAL", "CRITICAL", "CRIT", "SEVERE", "ALERT", "EMERGENCY", "EMERG",
     "PANIC"}
)  # fmt: skip

_OPERATION_SERVICE = r"^\[([^\]]*)\] "
# The ``services`` table's figures, per window and tested.
_SERVICE_FIGURES: Final = (
    "spans_per_s_baseline", "spans_per_s_incident", "error_rate_baseline",
    "error_rate_incident", "error_p_value", "error_logs_per_trace_baseline",
    "error_logs_per_trace_incident", "error_logs_p_value",
)  # fmt: skip
_EDGE: Final = ("source_service", "target_service", "operation", "hop_kind")
_DEMOTED: Final[dict[Impact, Impact]] = {"high": "medium", "medium": "low", "low": "low"}
# Which way a slower wire is slow: when one leg carries at least this share of the growth of
# both, the sender of that leg is charged (its egress: a delayed interface, sidecar or host).
LEG_SHARE: Final = 0.75
# More calls, not slower ones: the growth of the calls into a service splits into a count part
# (more calls per payment) and a latency part (slower calls), see call_volume_split.
# When one caller's count part carries at least half of it, more calls explain most of the
# growth: that caller is charged (a cache that stopped hitting, a loop, a new fan-out) and the
# callee drops a level. Half, not more: extra calls load the callee, so they come a little
# slower too (the lab's cache flush: 20 → 27 ms per rules query, 87 % from the count).
VOLUME_SHARE: Final = 0.5
# A stalled node: when the payments that failed over away from one node (more of them than in
# the baseline) carry at least half of a wire's or a service's growth, the node is charged (a
# frozen or stalled process: its callers time out on it, and the calls it had in flight come
# back late), not the wire.
NODE_SHARE: Final = 0.5
# ... and the node stands out: at least this many times the failed-over payments of any other
# node of its service (when every node times out, the cause is downstream of them all).
NODE_RATIO: Final = 3.0
# A caller's request leg to one callee grew while those to its other callees grew by less than
# this share of it: the delay is on that one path (see _one_path_only).
QUIET_LEG_SHARE: Final = 0.1
# A callee's growth under this share of a waiting service's cannot explain its waits (see
# _inherited_waits).
INHERIT_SHARE: Final = 0.05


@dataclass(frozen=True)
class Windows:
    """Sizes of the two windows: traces and seconds (exposures of the rates)."""

    traces_baseline: int
    traces_incident: int
    seconds_baseline: float
    seconds_incident: float
    mean_duration_baseline_ns: float


def is_error_log() -> pl.Expr:
    """A log record at ERROR or worse (any library's spelling, ``ERROR2`` too) or carrying an
    exception.

    >>> logs = pl.DataFrame({"severity": ["INFO", "error", "Severe", "WARN", None, "FATAL3"],
    ...                      "exception_type": [None, None, None, None, "IOError", None]})
    >>> logs.select(is_error_log()).to_series().to_list()
    [False, True, True, False, True, True]
    """
    level = pl.col("severity").str.to_uppercase().str.replace(r"\d+$", "")
    return (level.is_in(list(ERROR_SEVERITIES)).fill_null(False)) | pl.col(
        "exception_type"
    ).is_not_null()


def _tagged(incident: pl.LazyFrame, baseline: pl.LazyFrame) -> pl.LazyFrame:
    return pl.concat(
        [
            baseline.with_columns(incident=pl.lit(False)),
            incident.with_columns(incident=pl.lit(True)),
        ]
    )


def _per_window(frame: pl.DataFrame, by: Sequence[str], columns: Sequence[str]) -> pl.DataFrame:
    """Rows per (group, window) -> one row per group, ``<column>_baseline``/``_incident``."""
    parts = []
    for flag, suffix in ((False, "baseline"), (True, "incident")):
        part = frame.filter(pl.col("incident") == flag).select(
            *by, *(pl.col(c).alias(f"{c}_{suffix}") for c in columns)
        )
        parts.append(part)
    return parts[0].join(parts[1], on=list(by), how="full", coalesce=True, nulls_equal=True)


def _status(count: str) -> pl.Expr:
    before, after = (
        pl.col(f"{count}_baseline").fill_null(0),
        pl.col(f"{count}_incident").fill_null(0),
    )
    return (
        pl.when(before == 0)
        .then(pl.lit("appeared"))
        .when(after == 0)
        .then(pl.lit("vanished"))
        .otherwise(pl.lit("both"))
        .alias("status")
    )


def _ratio(name: str) -> pl.Expr:
    before, after = pl.col(f"{name}_baseline"), pl.col(f"{name}_incident")
    return pl.when(before > 0).then(after / before).alias(f"{name}_ratio")


def _window_frames(incident: Dataset, baseline: Dataset) -> list[pl.LazyFrame]:
    """Traces, their mean duration and the spans' extent in seconds: baseline, incident."""

    def figures(data: Dataset) -> pl.LazyFrame:
        traces = data.traces.select(
            pl.len().alias("traces"), pl.col("duration_ns").mean().alias("mean")
        )
        extent = data.spans.select(
            ((pl.col("time").max() - pl.col("time").min()).dt.total_nanoseconds() / 1e9).alias(
                "seconds"
            )
        )
        return pl.concat([traces, extent], how="horizontal")

    return [figures(baseline), figures(incident)]


def _windows(before: pl.DataFrame, after: pl.DataFrame) -> Windows:
    return Windows(
        traces_baseline=int(before.item(0, "traces")),
        traces_incident=int(after.item(0, "traces")),
        # A window holds at least a second: rates of a burst are not per nanosecond.
        seconds_baseline=max(float(before.item(0, "seconds") or 0.0), 1.0),
        seconds_incident=max(float(after.item(0, "seconds") or 0.0), 1.0),
        mean_duration_baseline_ns=float(before.item(0, "mean") or 0.0),
    )


def _self_time(spans: pl.LazyFrame) -> pl.LazyFrame:
    """Spans with ``self_ns``: duration minus the children's (at least 0: parallel children
    can cover more than their parent)."""
    children = spans.group_by("incident", "trace_id", "parent_id").agg(
        pl.col("duration_ns").sum().alias("_children_ns")
    )
    return spans.join(
        children,
        left_on=["incident", "trace_id", "span_id"],
        right_on=["incident", "trace_id", "parent_id"],
        how="left",
    ).with_columns(
        (pl.col("duration_ns") - pl.col("_children_ns").fill_null(0))
        .clip(lower_bound=0)
        .alias("self_ns")
    )


def _call_targets(hops: pl.LazyFrame) -> pl.LazyFrame:
    """(caller, client operation) -> the callee most of its calls went to."""
    return hops.group_by("source_service", "operation").agg(
        pl.col("target_service").drop_nulls().mode().sort().first().alias("target_service")
    )


def _causes(traces: pl.LazyFrame, hops: pl.LazyFrame) -> pl.LazyFrame:
    """Per window, trace and cause: its exclusive critical-path time (ns), by component.

    Columns: incident, trace_id, cause (``own_time``/``network``), subject (a service, or
    ``caller → callee``), service (the one charged: the callee for the wire), ``self_ns``,
    ``coordination_ns``, ``calls_ns`` (one-sided calls charged to the callee), ``ns`` (their
    sum).
    """
    operations = (
        traces.select("incident", "trace_id", "critical_by_operation")
        .explode("critical_by_operation")
        .unnest("critical_by_operation")
        .filter(pl.col("operation").is_not_null())
        .with_columns(
            pl.col("operation").str.extract(_OPERATION_SERVICE, 1).alias("caller"),
            pl.col("operation").str.replace(_OPERATION_SERVICE, "").alias("name"),
        )
        .join(
            _call_targets(hops),
            left_on=["caller", "name"],
            right_on=["source_service", "operation"],
            how="left",
        )
    )
    zero = pl.lit(0, pl.Int64)
    own = operations.select(
        "incident",
        "trace_id",
        pl.lit("own_time").alias("cause"),
        pl.col("caller").alias("subject"),
        pl.col("caller").alias("service"),
        pl.when(pl.col("target_service").is_null())
        .then("self_ns")
        .otherwise(zero)
        .alias("self_ns"),
        pl.col("coordination_ns"),
        zero.alias("calls_ns"),
        # A network segment without a known callee stays with the caller.
        pl.when(pl.col("target_service").is_null())
        .then("network_ns")
        .otherwise(zero)
        .alias("extra_ns"),
    )
    calls = operations.filter(pl.col("target_service").is_not_null()).select(
        "incident",
        "trace_id",
        pl.lit("own_time").alias("cause"),
        pl.col("target_service").alias("subject"),
        pl.col("target_service").alias("service"),
        zero.alias("self_ns"),
        zero.alias("coordination_ns"),
        pl.col("self_ns").alias("calls_ns"),
        zero.alias("extra_ns"),
    )
    wire = operations.filter(pl.col("target_service").is_not_null()).select(
        "incident",
        "trace_id",
        pl.lit("network").alias("cause"),
        pl.format("{} → {}", "caller", "target_service").alias("subject"),
        pl.col("target_service").alias("service"),
        zero.alias("self_ns"),
        zero.alias("coordination_ns"),
        zero.alias("calls_ns"),
        pl.col("network_ns").alias("extra_ns"),
    )
    parts = ("self_ns", "coordination_ns", "calls_ns", "extra_ns")
    return (
        pl.concat([own, calls, wire])
        .group_by("incident", "trace_id", "cause", "subject", "service")
        .agg(pl.col(p).fill_null(0).sum() for p in parts)
        .with_columns(pl.sum_horizontal(*parts).alias("ns"))
    )


def _zero_filled(causes: pl.LazyFrame, traces: pl.LazyFrame) -> pl.LazyFrame:
    """Every (cause, trace of its window) pair: a trace the cause is absent from adds 0 ns, so
    the means are per payment and sum to the mean end-to-end duration."""
    keys = causes.select("cause", "subject", "service").unique()
    return (
        keys.join(traces.select("incident", "trace_id"), how="cross")
        .join(
            causes.select("incident", "trace_id", "cause", "subject", "ns"),
            on=["incident", "trace_id", "cause", "subject"],
            how="left",
        )
        .with_columns(pl.col("ns").fill_null(0))
    )


def _mean_interval(
    before_mean: float, before_sd: float, n_before: int,
    after_mean: float, after_sd: float, n_after: int,
) -> tuple[float, float]:  # fmt: skip
    """The normal interval of a difference of means (Welch's standard error)."""
    if n_before <= 0 or n_after <= 0:
        return -math.inf, math.inf
    z = normal_quantile(0.5 + CONFIDENCE / 2)
    se = math.sqrt((before_sd**2) / n_before + (after_sd**2) / n_after)
    change = after_mean - before_mean
    return change - z * se, change + z * se


def latency_impact(
    change_ns: float, reference_ns: float, delta: float | None, p_value: float,
    before_ns: float = 0.0,
) -> Impact | None:  # fmt: skip
    """The level of a latency cause: its change per payment against the baseline's mean
    payment (``reference_ns``) and against its own baseline (``before_ns``), its effect size
    (Cliff's delta) and its evidence.

    - ``high``: p < :data:`P_STRONG`, delta ≥ :data:`MEDIUM_DELTA`, change ≥ 10 % of the mean;
    - ``medium``: p < :data:`P_WEAK`, delta ≥ :data:`SMALL_DELTA`, change ≥ 5 % of the mean;
      or p < :data:`P_STRONG`, delta ≥ :data:`MEDIUM_DELTA` and the cause's own time at least
      :data:`OWN_RATIO` times its baseline (a small part of the payment that clearly broke);
    - ``low``: a material change with a large delta that the sample cannot confirm (too few
      payments): reported with its interval rather than dropped;
    - None: not material, or a decrease.

    >>> latency_impact(40e6, 60e6, 0.99, 1e-9), latency_impact(5e6, 60e6, 0.2, 0.004)
    ('high', 'medium')
    >>> latency_impact(50e6, 60e6, 0.6, 0.1), latency_impact(0.5e6, 60e6, 0.9, 1e-9, 5e6)
    ('low', None)
    >>> latency_impact(1.3e6, 130e6, 0.44, 1e-40, before_ns=0.9e6)
    'medium'
    """
    if delta is None or change_ns < MATERIAL_NS:
        return None
    if (
        p_value < P_STRONG
        and delta >= MEDIUM_DELTA
        and change_ns < MATERIAL_SHARE * reference_ns
        and before_ns + change_ns >= OWN_RATIO * before_ns
    ):
        return "medium"
    if change_ns < MATERIAL_SHARE * reference_ns:
        return None
    if p_value < P_STRONG and delta >= MEDIUM_DELTA and change_ns >= HIGH_SHARE * reference_ns:
        return "high"
    if p_value < P_WEAK and delta >= SMALL_DELTA:
        return "medium"
    if delta >= LARGE_DELTA:
        return "low"
    return None


def cohens_h(after: float, before: float) -> float:
    """Cohen's h between two proportions: ``2·asin(√after) − 2·asin(√before)``.

    Proportions are clamped to [0, 1]: a service's error traces are counted by span time and
    the window's traces by root start, so under heavy retries (traces that begin before the
    window and fail inside it) the ratio can pass 1.

    >>> round(cohens_h(0.3, 0.1), 3)
    0.516
    >>> round(cohens_h(1.2, 0.0), 3)
    3.142
    """
    after, before = min(max(after, 0.0), 1.0), min(max(before, 0.0), 1.0)
    return 2 * math.asin(math.sqrt(after)) - 2 * math.asin(math.sqrt(before))


def error_impact(h: float, p_value: float) -> Impact | None:
    """The level of an error-rate increase by Cohen's ``h`` and its two-proportion p-value.

    >>> error_impact(0.46, 1e-5), error_impact(0.15, 0.004), error_impact(0.7, 0.2)
    ('high', 'medium', 'low')
    """
    if p_value < P_STRONG and h >= SMALL_H:
        return "high"
    if p_value < P_WEAK and h >= SMALL_H / 2:
        return "medium"
    if h >= LARGE_H:
        return "low"
    return None


def _log_impact(before: float, after: float, p_value: float) -> Impact | None:
    """Error logs per payment: logs say less than a failed span (a caller logs its callee's
    failure too), so at most ``high`` only when clearly more than one in ten payments log."""
    change = after - before
    if change < MATERIAL_LOGS_PER_TRACE or after < LOG_RATIO * before:
        return None
    if p_value < P_STRONG:
        return "high" if change >= 0.1 else "medium"
    if p_value < P_WEAK:
        return "medium"
    return "low" if change >= 0.1 else None


def _impact_rank(impact: Impact | None) -> int:
    return len(IMPACTS) if impact is None else IMPACTS.index(impact)


def _latency_frames(causes: pl.LazyFrame, traces: pl.LazyFrame) -> list[pl.LazyFrame]:
    """Per cause and window: mean, sd, p99 and example traces; its components; the U test."""
    filled = _zero_filled(causes, traces)
    key = ["cause", "subject", "service"]
    stats = filled.group_by(*key, "incident").agg(
        pl.col("ns").mean().alias("mean_ns"),
        pl.col("ns").std().fill_null(0.0).alias("sd_ns"),
        percentile_ns("ns", 0.99).alias("p99_ns"),
        (pl.col("ns") > 0).sum().cast(pl.Int64).alias("traces"),
        example_traces("ns", where=pl.col("ns") > 0).alias("examples"),
    )
    components = causes.group_by(*key, "incident").agg(
        pl.col("self_ns", "coordination_ns", "calls_ns", "extra_ns").sum()
    )
    tests = rank_test(filled.rename({"ns": "value"}), key)
    return [stats, components, tests]


@dataclass(frozen=True)
class _Suspect:
    cause: str
    subject: str
    service: str
    impact: Impact | None
    score: float
    finding: Finding | None
    row: dict[str, Any]


def _legs_frame(hops: pl.LazyFrame) -> pl.LazyFrame:
    """Per (caller, callee) and window: the mean request and response legs of the calls that
    have both (a client that gave up has neither)."""
    both = pl.col("request_leg_ns").is_not_null() & pl.col("response_leg_ns").is_not_null()
    return (
        hops.filter(both & pl.col("target_service").is_not_null())
        .group_by("source_service", "target_service", "incident")
        .agg(
            pl.len().cast(pl.Int64).alias("calls"),
            pl.col("request_leg_ns").mean(),
            pl.col("response_leg_ns").mean(),
        )
    )


def delayed_leg(request_ns: Sequence[float], response_ns: Sequence[float]) -> str | None:
    """The leg of a call that carries a wire's growth, from each leg's mean (before, after):
    ``"request"`` (caller → callee), ``"response"`` (callee → caller) or None (both, or
    neither, grew). A host's clock offset adds the same to a leg in both windows, so the growth
    of each leg is free of skew; a delay on a host's egress lengthens only the leg it sends.

    >>> delayed_leg([0.2e6, 200.3e6], [0.1e6, 0.2e6]), delayed_leg([5e6, 5e6], [1e6, 90e6])
    ('request', 'response')
    >>> delayed_leg([1e6, 50e6], [1e6, 60e6]) is None
    True
    """
    grew = [max(0.0, after - before) for before, after in (request_ns, response_ns)]
    total = sum(grew)
    if total <= 0:
        return None
    if grew[0] >= LEG_SHARE * total:
        return "request"
    if grew[1] >= LEG_SHARE * total:
        return "response"
    return None


def _node_frame(spans: pl.LazyFrame) -> pl.LazyFrame:
    """Per service, node and window: spans and their mean self time (where a suspect's change
    sits: one node, or all of them)."""
    return spans.group_by("service", "node", "incident").agg(
        pl.len().cast(pl.Int64).alias("spans"), pl.col("self_ns").mean().alias("self_ns_mean")
    )


def _nodes_changed(nodes: pl.DataFrame, service: str) -> list[dict[str, Any]]:
    """The service's nodes, the largest growth of mean self time per span first (at most 3)."""
    wide = _per_window(
        nodes.filter(pl.col("service") == service), ["node"], ["spans", "self_ns_mean"]
    ).with_columns(
        (pl.col("self_ns_mean_incident") - pl.col("self_ns_mean_baseline")).alias("change")
    )
    return [
        {"node": r["node"], "spans": [r["spans_baseline"] or 0, r["spans_incident"] or 0],
         "self_ns_mean": [None if r["self_ns_mean_baseline"] is None
                          else round(r["self_ns_mean_baseline"]),
                          None if r["self_ns_mean_incident"] is None
                          else round(r["self_ns_mean_incident"])]}
        for r in wide.sort("change", descending=True, nulls_last=True).head(3).iter_rows(
            named=True
        )
    ]  # fmt: skip


def _one_node(nodes: list[dict[str, Any]]) -> str | None:
    """The node carrying a service's growth when one stands out: its mean self time grew at
    least 3 times as much as the next node's (a skewed balancer, a sick host).

    >>> _one_node([{"node": "p-1", "self_ns_mean": [1, 40]},
    ...            {"node": "p-2", "self_ns_mean": [1, 2]}])
    'p-1'
    """
    growth = [
        (n["self_ns_mean"][1] or 0) - (n["self_ns_mean"][0] or 0)
        for n in nodes
        if n["node"] is not None
    ]
    if len(nodes) < 2 or len(growth) < 2 or growth[0] <= 0:
        return None
    return str(nodes[0]["node"]) if growth[0] >= 3 * max(growth[1], 0) else None


def _latency_suspects(
    stats: pl.DataFrame,
    components: pl.DataFrame,
    tests: pl.DataFrame,
    nodes: pl.DataFrame,
    legs: pl.DataFrame,
    windows: Windows,
) -> list[_Suspect]:
    key = ["cause", "subject", "service"]
    leg_means = {
        (r["source_service"], r["target_service"], r["incident"]): r
        for r in legs.iter_rows(named=True)
    }
    wide = _per_window(stats, key, ["mean_ns", "sd_ns", "p99_ns", "traces", "examples"]).join(
        tests, on=key, how="left"
    )
    parts = {(r["cause"], r["subject"], r["incident"]): r for r in components.iter_rows(named=True)}
    reference = max(windows.mean_duration_baseline_ns, 1.0)
    suspects = []
    for row in wide.iter_rows(named=True):
        before = row["mean_ns_baseline"] or 0.0
        after = row["mean_ns_incident"] or 0.0
        change = after - before
        p_value = mann_whitney_p(
            row["u"] or 0.0, row["n_incident"] or 0, row["n_baseline"] or 0, row["tie_term"] or 0
        )
        delta = row["cliffs_delta"]
        low, high = _mean_interval(
            before, row["sd_ns_baseline"] or 0.0, windows.traces_baseline,
            after, row["sd_ns_incident"] or 0.0, windows.traces_incident,
        )  # fmt: skip
        impact = latency_impact(change, reference, delta, p_value, before)
        evidence: dict[str, Any] = {
            "per_payment_ns": [round(before), round(after)],
            "change_ns": round(change),
            "change_interval_ns": [round(low), round(high)] if math.isfinite(low) else None,
            "confidence": CONFIDENCE,
            "share_of_baseline_payment": round(change / reference, 4),
            "p99_ns": [row["p99_ns_baseline"], row["p99_ns_incident"]],
            "cliffs_delta": None if delta is None else round(delta, 4),
            "effect": cliffs_magnitude(delta),
            "p_value": p_value,
            "traces": [row["traces_baseline"] or 0, row["traces_incident"] or 0],
            "window_traces": [windows.traces_baseline, windows.traces_incident],
        }
        if row["cause"] == "own_time":
            for part in ("self_ns", "coordination_ns", "calls_ns"):
                values = [
                    (parts.get((row["cause"], row["subject"], flag)) or {}).get(part) or 0
                    for flag in (False, True)
                ]
                evidence[f"{part}_per_payment"] = [
                    round(values[0] / max(windows.traces_baseline, 1)),
                    round(values[1] / max(windows.traces_incident, 1)),
                ]
            if impact is not None:
                evidence["nodes"] = _nodes_changed(nodes, row["service"])
        service = row["service"]
        if row["cause"] == "network":
            source, _, target = row["subject"].partition(" → ")
            means = [leg_means.get((source, target, flag)) or {} for flag in (False, True)]
            request = [float(m.get("request_leg_ns") or 0.0) for m in means]
            response = [float(m.get("response_leg_ns") or 0.0) for m in means]
            leg = delayed_leg(request, response) if all(means) else None
            evidence["request_leg_ns"] = [round(v) for v in request]
            evidence["response_leg_ns"] = [round(v) for v in response]
            evidence["delayed_leg"] = leg
            # The sender of the delayed leg: a caller whose requests leave late is the suspect,
            # not the callee that answered on time.
            service = source if leg == "request" else target
        evidence["baseline_example_traces"] = list(row["examples_baseline"] or [])
        table_row = {
            "cause": row["cause"],
            "subject": row["subject"],
            "service": service,
            "before_ns": round(before),
            "after_ns": round(after),
            "change_ns": round(change),
            "change_lo_ns": round(low) if math.isfinite(low) else None,
            "change_hi_ns": round(high) if math.isfinite(high) else None,
            "cliffs_delta": delta,
            "p_value": p_value,
            "impact": impact,
        }
        finding = None
        if impact is not None:
            finding = _latency_finding(row, evidence, impact, list(row["examples_incident"] or []))
        suspects.append(
            _Suspect(row["cause"], row["subject"], service, impact,
                     change / reference, finding, table_row)
        )  # fmt: skip
    return _one_path_only(suspects, leg_means)


def _one_path_only(
    suspects: list[_Suspect], leg_means: Mapping[tuple[str, str, bool], Mapping[str, Any]]
) -> list[_Suspect]:
    """A request leg grown on one wire of a caller whose requests to its other callees did
    not grow (each by under :data:`QUIET_LEG_SHARE` of this wire's growth): the caller sends on
    time to everyone else, so the delay sits on the path to the callee or at its door (a
    proxy, a load balancer, a sidecar, its listen queue), and the callee is the suspect. A
    caller whose requests leave late everywhere stays the suspect (its egress)."""

    def request_growth(source: str, target: str) -> float | None:
        before, after = (leg_means.get((source, target, flag)) for flag in (False, True))
        if not before or not after:
            return None
        return float(after["request_leg_ns"] or 0.0) - float(before["request_leg_ns"] or 0.0)

    callees: dict[str, set[str]] = {}
    for source, target, _ in leg_means:
        callees.setdefault(source, set()).add(target)
    out = []
    for suspect in suspects:
        finding = suspect.finding
        if finding is None or finding.evidence.get("delayed_leg") != "request":
            out.append(suspect)
            continue
        source, _, target = suspect.subject.partition(" → ")
        grown = request_growth(source, target) or 0.0
        others = {
            other: request_growth(source, other)
            for other in sorted(callees.get(source, set()) - {target})
        }
        quiet = [other for other, growth in others.items() if growth is not None]
        if (
            grown <= 0
            or not quiet
            or any((others[other] or 0.0) >= QUIET_LEG_SHARE * grown for other in quiet)
        ):
            out.append(suspect)
            continue
        out.append(dataclasses.replace(
            suspect, service=target, row={**suspect.row, "service": target},
            finding=dataclasses.replace(
                finding,
                subject={**finding.subject, "service": target},
                evidence={**finding.evidence, "delayed_at": "path", "quiet_wires_to": quiet},
                recommendation=(
                    f"Only {source}'s requests to {target} travel late: its requests to "
                    f"{', '.join(quiet)} did not slow, so {source} sends on time and the delay "
                    f"sits on the path to {target} or at its door. Look at what stands in "
                    f"front of {target} (a proxy, a load balancer, a sidecar, a firewall), "
                    f"its accept queue and connection limits, then the path (packet loss, "
                    "retransmits)."
                ),
            ),
        ))  # fmt: skip
    return out


def _latency_finding(
    row: Mapping[str, Any], evidence: dict[str, Any], impact: Impact, examples: list[str]
) -> Finding:
    before, after = evidence["per_payment_ns"]
    change = evidence["change_ns"]
    low_high = evidence["change_interval_ns"]
    interval = f" (95 % interval {ms(low_high[0])} … {ms(low_high[1])})" if low_high else ""
    p99_before, p99_after = evidence["p99_ns"]
    gain_ns = max(0, (p99_after or 0) - (p99_before or 0))
    delta = evidence["cliffs_delta"]
    stat = f"Cliff's δ {delta:+.2f}, p = {evidence['p_value']:.2g}"
    if row["cause"] == "network":
        source, _, target = row["subject"].partition(" → ")
        leg = evidence.get("delayed_leg")
        side = f", on the {leg} leg" if leg else ""
        title = f"{row['subject']}: network +{ms(change)} per payment{side} ({stat})"
        kind = "suspect_network"
        sender, receiver = (source, target) if leg == "request" else (target, source)
        subject = {"service": sender if leg else target, "edge": row["subject"],
                   "source_service": source, "target_service": target}  # fmt: skip
        if leg:
            before_leg, after_leg = evidence[f"{leg}_leg_ns"]
            recommendation = (
                f"The {leg} leg carries the growth ({ms(before_leg)} → {ms(after_leg)} per "
                f"call): what {sender} sends to {receiver} leaves or travels late, while the "
                f"other leg did not change. Look at {sender}'s side of the path first: its "
                "network interface and egress shaping, its sidecar or proxy, its host (node "
                "pressure, noisy neighbours), then the path itself (packet loss, retransmits); "
                f"compare {sender}'s traffic to its other peers."
            )
        else:
            recommendation = (
                f"The wire between {source} and {target} slowed while {target}'s own time did "
                "not: look at the network path, not the service — connection set-up and pool "
                "exhaustion (TLS handshakes, DNS), proxies or sidecars, zone placement, packet "
                f"loss and retransmits; compare {source}'s client and {target}'s server timings "
                "per node."
            )
    else:
        service = row["service"]
        title = f"{service}: own time +{ms(change)} per payment ({stat})"
        kind, subject = "suspect_service_time", {"service": service}
        coordination = evidence["coordination_ns_per_payment"]
        calls = evidence["calls_ns_per_payment"]
        if coordination[1] - coordination[0] >= max(change, 0) / 2:
            recommendation = (
                f"{service} waits longer on coordination (locks, consensus, queues): find the "
                "contended resource (the coordination job names it), shorten the critical "
                "section or move slow calls out of it."
            )
        elif calls[1] - calls[0] >= max(change, 0) / 2:
            recommendation = (
                f"Calls to {service} without an answering span (a database, an external "
                f"system or a node that stopped answering) take longer: check {service}'s "
                "health, its connection limits and timeouts; fail over or shed load."
            )
        else:
            recommendation = (
                f"{service}'s own processing slowed (its callers only waited): check its CPU "
                "saturation and throttling, GC pauses, thread and connection pools, and what "
                "was deployed or reconfigured; scale it out or roll back."
            )
    if kind == "suspect_service_time" and (node := _one_node(evidence.get("nodes") or [])):
        recommendation += f" The growth sits on {node}: compare it with its peers first."
    return Finding(
        job=JOB,
        kind=kind,
        title=title,
        impact=impact,
        gain_ns=gain_ns,
        subject=subject,
        evidence=evidence,
        recommendation=recommendation,
        gain=(
            f"restoring the baseline saves {ms(change)}{interval} per payment on average "
            f"({ms(before)} → {ms(after)}) and {ms(gain_ns)} of this cause's p99"
        ),
        example_traces=examples,
    )


def _origin_errors(spans: pl.LazyFrame, hops: pl.LazyFrame) -> pl.LazyFrame:
    """Failed spans none of whose children failed, charged to the service they name: the span's
    own, or the callee of a failed client call (the call failed at or because of the callee)."""
    failed = spans.filter(pl.col("error").fill_null(False))
    failed_children = failed.select("incident", "trace_id", pl.col("parent_id").alias("span_id"))
    callee = hops.select(
        "incident", "trace_id", pl.col("hop_id").alias("span_id"), "target_service"
    ).unique(subset=["incident", "trace_id", "span_id"])
    return (
        failed.join(failed_children, on=["incident", "trace_id", "span_id"], how="anti")
        .join(callee, on=["incident", "trace_id", "span_id"], how="left")
        .select(
            "incident",
            "trace_id",
            pl.coalesce("target_service", "service").alias("service"),
        )
        .unique()
    )


def _error_frames(
    spans: pl.LazyFrame, hops: pl.LazyFrame, logs: pl.LazyFrame
) -> list[pl.LazyFrame]:
    """Per service and window: originated error traces, error logs, spans; the calls made."""
    origins = _origin_errors(spans, hops)
    span_errors = origins.group_by("service", "incident").agg(
        pl.len().cast(pl.Int64).alias("error_traces"),
        example_traces(pl.lit(1), trace_id="trace_id").alias("examples"),
    )
    log_errors = (
        logs.filter(is_error_log())
        .group_by("service", "incident")
        .agg(
            pl.len().cast(pl.Int64).alias("error_logs"),
            example_traces(pl.lit(1)).alias("log_examples"),
        )
    )
    span_counts = spans.group_by("service", "incident").agg(pl.len().cast(pl.Int64).alias("spans"))
    calls = hops.select("source_service", "target_service").drop_nulls().unique()
    return [span_errors, log_errors, span_counts, calls]


def _error_suspects(
    errors: pl.DataFrame,
    logged: pl.DataFrame,
    counted: pl.DataFrame,
    edges: pl.DataFrame,
    windows: Windows,
) -> tuple[list[_Suspect], pl.DataFrame]:
    table = (
        _per_window(counted, ["service"], ["spans"])
        .join(_per_window(errors, ["service"], ["error_traces", "examples"]), on="service",
              how="full", coalesce=True)
        .join(_per_window(logged, ["service"], ["error_logs", "log_examples"]), on="service",
              how="full", coalesce=True)
        .sort("service")
    )  # fmt: skip
    n_before, n_after = max(windows.traces_baseline, 1), max(windows.traces_incident, 1)
    suspects = []
    rows = []
    log_based: set[str] = set()
    for row in table.iter_rows(named=True):
        e_before, e_after = row["error_traces_baseline"] or 0, row["error_traces_incident"] or 0
        l_before, l_after = row["error_logs_baseline"] or 0, row["error_logs_incident"] or 0
        rate_before, rate_after = e_before / n_before, e_after / n_after
        p_spans = two_proportion_test(e_after, n_after, e_before, n_before)
        h = cohens_h(rate_after, rate_before)
        p_logs = rate_ratio_test(l_after, n_after, l_before, n_before)
        span_impact = error_impact(h, p_spans) if rate_after > rate_before else None
        log_impact = _log_impact(l_before / n_before, l_after / n_after, p_logs)
        impact = min((span_impact, log_impact), key=_impact_rank)
        table_row = {
            "service": row["service"],
            "spans_per_s_baseline": (row["spans_baseline"] or 0) / windows.seconds_baseline,
            "spans_per_s_incident": (row["spans_incident"] or 0) / windows.seconds_incident,
            "error_rate_baseline": rate_before,
            "error_rate_incident": rate_after,
            "error_p_value": p_spans,
            "error_logs_per_trace_baseline": l_before / n_before,
            "error_logs_per_trace_incident": l_after / n_after,
            "error_logs_p_value": p_logs,
        }
        rows.append(table_row)
        if impact is None:
            continue
        service = row["service"]
        low, high = wilson_interval(e_after, n_after)
        evidence = {
            "error_rate": [round(rate_before, 4), round(rate_after, 4)],
            "error_rate_interval": [round(low, 4), round(high, 4)],
            "confidence": CONFIDENCE,
            "cohens_h": round(h, 4),
            "p_value": p_spans,
            "error_traces": [e_before, e_after],
            "error_logs_per_payment": [round(l_before / n_before, 4), round(l_after / n_after, 4)],
            "error_logs": [l_before, l_after],
            "error_logs_p_value": p_logs,
            "window_traces": [windows.traces_baseline, windows.traces_incident],
            "baseline_example_traces": list(
                row["examples_baseline"] or row["log_examples_baseline"] or []
            ),
        }
        if span_impact is not None and _impact_rank(span_impact) <= _impact_rank(log_impact):
            title = (
                f"{service}: errors start here in {rate_after:.1%} of payments "
                f"(was {rate_before:.1%}; p = {p_spans:.2g})"
            )
            score = rate_after - rate_before
        else:
            title = (
                f"{service}: {l_after / n_after:.2f} error logs per payment "
                f"(was {l_before / n_before:.2f}; p = {p_logs:.2g})"
            )
            score = (l_after / n_after - l_before / n_before) / 2  # weaker evidence than spans
            log_based.add(service)
        examples = list(row["examples_incident"] or row["log_examples_incident"] or [])
        finding = Finding(
            job=JOB,
            kind="suspect_errors",
            title=title,
            impact=impact,
            gain_ns=0,
            subject={"service": service},
            evidence=evidence,
            recommendation=(
                f"The errors originate in {service} (its callers only pass them on): read its "
                "error logs and the failed spans' error types in the example traces; roll back "
                "a recent change, or fail over away from the failing nodes or dependency."
            ),
            gain=(
                f"restoring {service}'s baseline error rate avoids about "
                f"{max(rate_after - rate_before, 0):.1%} failed payments"
            ),
            example_traces=examples,
        )
        suspects.append(
            _Suspect("errors", service, service, impact, score, finding,
                     {"cause": "errors", "subject": service, "service": service,
                      "before_ns": None, "after_ns": None, "change_ns": None,
                      "change_lo_ns": None, "change_hi_ns": None, "cliffs_delta": None,
                      "p_value": min(p_spans, p_logs), "impact": impact})
        )  # fmt: skip
    services = pl.DataFrame(
        rows, schema={"service": pl.String, **dict.fromkeys(_SERVICE_FIGURES, pl.Float64)}
    )
    return _deepest(suspects, log_based, edges), services


def _deepest(suspects: list[_Suspect], log_based: set[str], edges: pl.DataFrame) -> list[_Suspect]:
    """A caller logs its callee's failures too: a log-based suspect whose callee is a suspect
    as well drops one level (and half its score), so the deepest failing service leads."""
    suspected = {s.service for s in suspects}
    callees: dict[str, set[str]] = {}
    for source, target in edges.iter_rows():
        callees.setdefault(source, set()).add(target)
    out = []
    for suspect in suspects:
        below = sorted((callees.get(suspect.service, set()) & suspected) - {suspect.service})
        if suspect.service in log_based and below and suspect.finding is not None:
            impact = _DEMOTED[suspect.impact or "low"]
            finding = dataclasses.replace(
                suspect.finding,
                impact=impact,
                evidence={**suspect.finding.evidence, "callee_suspects": below},
                recommendation=(
                    f"Its callees ({', '.join(below)}) fail too, and callers log their callees' "
                    f"failures: look there first. {suspect.finding.recommendation}"
                ),
            )
            suspect = dataclasses.replace(
                suspect, impact=impact, score=suspect.score / 2, finding=finding,
                row={**suspect.row, "impact": impact},
            )  # fmt: skip
        out.append(suspect)
    return out


def _inherited_waits(suspects: list[_Suspect], edges: pl.DataFrame) -> list[_Suspect]:
    """A queue or pool in front of slow work fills when the work slows (Little's law): a
    service whose own-time growth is mostly coordination (queue, pool, lock waits) while a
    direct callee is itself a ``high``/``medium`` suspect inherited that growth. It drops one
    level (and half its score), so the callee leads. A callee whose growth is under
    :data:`INHERIT_SHARE` of the service's cannot have filled its queue (a lock held by
    someone else, not slower work below: the lab's lock contention, +177 ms of row-lock waits
    in the ledger over +3 ms in postgres)."""
    grown: dict[str, float] = {}
    for s in suspects:
        if s.impact in ("high", "medium") and s.finding is not None:
            change = float(s.finding.evidence.get("change_ns") or 0.0)
            grown[s.service] = max(grown.get(s.service, change), change)
    callees: dict[str, set[str]] = {}
    for source, target in edges.iter_rows():
        callees.setdefault(source, set()).add(target)
    out = []
    for suspect in suspects:
        finding = suspect.finding
        if suspect.cause != "own_time" or finding is None:
            out.append(suspect)
            continue
        floor = INHERIT_SHARE * float(finding.evidence["change_ns"])
        below = sorted(
            callee
            for callee in callees.get(suspect.service, set()) - {suspect.service}
            if callee in grown and grown[callee] >= floor
        )
        if not below:
            out.append(suspect)
            continue
        before, after = finding.evidence["coordination_ns_per_payment"]
        if after - before < finding.evidence["change_ns"] / 2:
            out.append(suspect)
            continue
        impact = _DEMOTED[suspect.impact or "low"]
        finding = dataclasses.replace(
            finding,
            impact=impact,
            evidence={**finding.evidence, "callee_suspects": below},
            recommendation=(
                f"Most of the growth is waiting (queues, pools, locks) while its callees "
                f"({', '.join(below)}) slowed or failed: work held longer downstream fills the "
                f"queue in front of it. Look at the callees first. {finding.recommendation}"
            ),
        )
        out.append(dataclasses.replace(
            suspect, impact=impact, score=suspect.score / 2, finding=finding,
            row={**suspect.row, "impact": impact},
        ))  # fmt: skip
    return out


def _volume_frames(spans: pl.LazyFrame, hops: pl.LazyFrame) -> list[pl.LazyFrame]:
    """Per (caller, callee) and window: the calls that did not fail and their summed client
    time; per service and window: its cache reads and hits (``hopscope.cache.hit``) and the
    cache it reads most."""
    answered = (
        ~pl.col("error").fill_null(False)
        & pl.col("client_ns").is_not_null()
        & pl.col("target_service").is_not_null()
        & (pl.col("source_service") != pl.col("target_service"))
    )
    calls = (
        hops.filter(answered)
        .group_by("source_service", "target_service", "incident")
        .agg(pl.len().cast(pl.Int64).alias("calls"), pl.col("client_ns").sum())
    )
    caches = (
        spans.filter(pl.col("cache_hit").is_not_null())
        .group_by("service", "incident")
        .agg(
            pl.len().cast(pl.Int64).alias("reads"),
            pl.col("cache_hit").sum().cast(pl.Int64).alias("hits"),
            pl.col("cache_name").drop_nulls().mode().sort().first().alias("cache"),
        )
    )
    return [calls, caches]


def call_volume_split(calls: Sequence[float], per_call_ns: Sequence[float]) -> tuple[float, float]:
    """The growth of a caller's call time per payment, ``n₁·d₁ − n₀·d₀`` (``n`` calls per
    payment, ``d`` mean time per call; before, after), split symmetrically into a count part
    ``(n₁ − n₀)·(d₀ + d₁)/2`` (more calls) and a latency part ``(d₁ − d₀)·(n₀ + n₁)/2``
    (slower calls). Symmetric, so that neither window's figures weigh more: a baseline with
    a handful of calls has a noisy ``d₀``.

    >>> call_volume_split([0.5, 3.0], [6e6, 6.5e6])  # 2.5 more calls of ~6 ms; 0.5 ms slower
    (15625000.0, 875000.0)
    >>> call_volume_split([1.0, 1.0], [5e6, 25e6])  # as many calls, each 20 ms slower
    (0.0, 20000000.0)
    """
    (before_n, after_n), (before_d, after_d) = calls, per_call_ns
    return (
        (after_n - before_n) * (before_d + after_d) / 2,
        (after_d - before_d) * (before_n + after_n) / 2,
    )


def _more_calls(
    suspects: list[_Suspect], volume: pl.DataFrame, caches: pl.DataFrame, windows: Windows
) -> list[_Suspect]:
    """More calls, not slower calls: a callee whose own time grew because a caller calls it
    more often per payment (at the same time per call) did not slow down; the caller changed
    (its cache stopped hitting, a loop, a new fan-out). When one caller's count part
    (:func:`call_volume_split`) carries :data:`VOLUME_SHARE` of the growth of all calls into
    a ``high``/``medium`` own-time suspect, that caller becomes a ``suspect_call_volume`` at
    the callee's level and score, and the callee drops one level (and half its score)."""
    n_before, n_after = max(windows.traces_baseline, 1), max(windows.traces_incident, 1)
    per_edge: dict[tuple[str, str], dict[bool, tuple[int, int]]] = {}
    for r in volume.iter_rows(named=True):
        edge = (r["source_service"], r["target_service"])
        per_edge.setdefault(edge, {})[r["incident"]] = (r["calls"], r["client_ns"] or 0)
    cache_reads = {(r["service"], r["incident"]): r for r in caches.iter_rows(named=True)}
    out = list(suspects)
    for index, suspect in enumerate(suspects):
        finding = suspect.finding
        if suspect.cause != "own_time" or finding is None or suspect.impact not in (
            "high", "medium",
        ):  # fmt: skip
            continue
        parts: dict[str, tuple[float, float, float, float, float, float]] = {}
        for (caller, callee), figures in per_edge.items():
            if callee != suspect.service:
                continue
            calls_before, ns_before = figures.get(False, (0, 0))
            calls_after, ns_after = figures.get(True, (0, 0))
            after_d = ns_after / calls_after if calls_after else 0.0
            before_d = ns_before / calls_before if calls_before else after_d
            n = (calls_before / n_before, calls_after / n_after)
            parts[caller] = (*n, before_d, after_d, *call_volume_split(n, (before_d, after_d)))
        growth = sum(p[4] + p[5] for p in parts.values())
        if growth <= 0:
            continue
        caller, (before_n, after_n, before_d, after_d, count_ns, latency_ns) = max(
            parts.items(), key=lambda item: (item[1][4], item[0])
        )
        if count_ns < VOLUME_SHARE * growth:
            continue
        callee = suspect.service
        evidence: dict[str, Any] = {
            "calls_per_payment": [round(before_n, 4), round(after_n, 4)],
            "per_call_ns": [round(before_d), round(after_d)],
            "count_part_ns": round(count_ns),
            "latency_part_ns": round(latency_ns),
            "callee": callee,
            "callee_change_ns": finding.evidence["change_ns"],
            "cliffs_delta": finding.evidence["cliffs_delta"],
            "p_value": finding.evidence["p_value"],
            "window_traces": [windows.traces_baseline, windows.traces_incident],
            "baseline_example_traces": finding.evidence.get("baseline_example_traces", []),
        }
        subject: dict[str, Any] = {"service": caller, "callee": callee,
                                   "edge": f"{caller} → {callee}"}  # fmt: skip
        reads = [cache_reads.get((caller, flag)) for flag in (False, True)]
        cache_note = ""
        if all(reads):
            ratios = [r["hits"] / r["reads"] for r in reads if r is not None]
            if ratios[1] < ratios[0]:
                cache = str((reads[1] or {}).get("cache") or "its cache")
                subject["cache"] = cache
                evidence["cache_hit_ratio"] = [round(ratios[0], 4), round(ratios[1], 4)]
                cache_note = (
                    f"; its cache {cache} serves {ratios[1]:.0%} of reads (was {ratios[0]:.0%})"
                )
        title = (
            f"{caller}: {before_n:.2g} → {after_n:.2g} calls to {callee} per payment "
            f"({ms(before_d)} → {ms(after_d)} each): +{ms(count_ns)} per payment from the "
            f"extra calls{cache_note}"
        )
        if "cache" in subject:
            recommendation = (
                f"Most of {callee}'s growth is extra calls: {caller} asks it more often "
                f"because its cache {subject['cache']} stopped serving (every miss reads "
                f"{callee}): check the cache's evictions, flushes and restarts, its memory "
                f"limit and TTLs, then warm it; {callee} only carries the misses."
            )
        else:
            recommendation = (
                f"Most of {callee}'s growth is extra calls: {caller} calls it more often per "
                "payment: look for a cache that stopped hitting, a retry or polling loop, a new "
                f"fan-out (N+1 queries) or a deployment of {caller}."
            )
        out.append(_Suspect(
            "call_volume", f"{caller} → {callee}", caller, suspect.impact, suspect.score,
            Finding(
                job=JOB, kind="suspect_call_volume", title=title, impact=suspect.impact,
                gain_ns=finding.gain_ns, subject=subject, evidence=evidence,
                recommendation=recommendation,
                gain=(
                    f"bringing {caller}'s calls to {callee} back to {before_n:.2g} per payment "
                    f"saves about {ms(count_ns)} per payment on average"
                ),
                example_traces=finding.example_traces,
            ),
            {**suspect.row, "cause": "call_volume", "subject": f"{caller} → {callee}",
             "service": caller, "before_ns": round(before_n * (before_d + after_d) / 2),
             "after_ns": round(after_n * (before_d + after_d) / 2), "change_ns": round(count_ns),
             "change_lo_ns": None, "change_hi_ns": None},
        ))  # fmt: skip
        impact = _DEMOTED[suspect.impact]
        out[index] = dataclasses.replace(
            suspect, impact=impact, score=suspect.score / 2,
            row={**suspect.row, "impact": impact},
            finding=dataclasses.replace(
                finding, impact=impact,
                evidence={**finding.evidence, "more_calls_from": caller},
                recommendation=(
                    f"More calls, not slower ones: {caller} calls {callee} {before_n:.2g} → "
                    f"{after_n:.2g} times per payment, and the extra calls carry most of the "
                    f"growth; look at {caller} first. {finding.recommendation}"
                ),
            ),
        )  # fmt: skip
    return out


def _failover_frames(
    causes: pl.LazyFrame, failovers: pl.LazyFrame, spans: pl.LazyFrame, hops: pl.LazyFrame
) -> list[pl.LazyFrame]:
    """Per window, service and node: the payments that failed over away from that node; per
    cause and node: the incident's exclusive time of the cause in those payments (``ns``) and
    how many they are (``traces``; for the ``errors`` cause, those where the service's errors
    originated)."""
    moved = (
        failovers.filter(pl.col("from_node").is_not_null())
        .select("incident", "trace_id", pl.col("target_service").alias("node_service"),
                "from_node")
        .unique()
    )  # fmt: skip
    per_node = moved.group_by("incident", "node_service", "from_node").agg(
        pl.col("trace_id").n_unique().cast(pl.Int64).alias("payments")
    )
    carried = (
        causes.filter(pl.col("incident"))
        .join(moved.filter(pl.col("incident")), on=["incident", "trace_id"])
        .group_by("cause", "subject", "node_service", "from_node")
        .agg(pl.col("ns").sum(), pl.col("trace_id").n_unique().cast(pl.Int64).alias("traces"))
    )
    failed = (
        _origin_errors(spans, hops)
        .filter(pl.col("incident"))
        .join(moved.filter(pl.col("incident")), on=["incident", "trace_id"])
        .group_by("service", "node_service", "from_node")
        .agg(pl.col("trace_id").n_unique().cast(pl.Int64).alias("traces"))
        .select(
            pl.lit("errors").alias("cause"), pl.col("service").alias("subject"),
            "node_service", "from_node", pl.lit(None, pl.Int64).alias("ns"), "traces",
        )
    )  # fmt: skip
    return [per_node, pl.concat([carried, failed])]


def _failed_over_nodes(
    suspects: list[_Suspect], per_node: pl.DataFrame, carried: pl.DataFrame, windows: Windows
) -> list[_Suspect]:
    """A stalled node, not its wires: a ``high``/``medium`` wire touching a service, or that
    service's own time or originated errors, whose growth sits for at least
    :data:`NODE_SHARE` in the payments that failed over away from one of its nodes (more such
    payments than in the baseline, p < :data:`P_WEAK`, and :data:`NODE_RATIO` times those of
    any other node of the service) is charged to that node: the finding names it first and its
    subject gets ``node`` (and the node's service). The part those payments carry is their
    excess over the baseline's mean per payment: ``(Σ ns − payments · before) / window
    payments`` (errors: the failed payments among them, less the baseline's rate)."""
    n_before, n_after = max(windows.traces_baseline, 1), max(windows.traces_incident, 1)
    moved = {(r["incident"], r["node_service"], r["from_node"]): r["payments"]
             for r in per_node.iter_rows(named=True)}  # fmt: skip
    out = []
    for suspect in suspects:
        finding = suspect.finding
        if (
            finding is None
            or suspect.cause not in ("network", "own_time", "errors")
            or suspect.impact not in ("high", "medium")
        ):
            out.append(suspect)
            continue
        touching = set(suspect.subject.split(" → "))
        if suspect.cause == "errors":  # failed payments, the baseline's rate expected
            before = finding.evidence["error_rate"][0]
            change = finding.evidence["error_traces"][1] / n_after - before
        else:
            before = finding.evidence["per_payment_ns"][0]
            change = finding.evidence["change_ns"]
        best: tuple[float, str, str, int] | None = None
        for r in carried.filter(cause=suspect.cause, subject=suspect.subject).iter_rows(named=True):
            service, node = r["node_service"], r["from_node"]
            if service not in touching:
                continue
            after_n = moved.get((True, service, node), 0)
            before_n = moved.get((False, service, node), 0)
            others = [n for (flag, s, other), n in moved.items()
                      if flag and s == service and other != node]  # fmt: skip
            if (
                after_n < NODE_RATIO * max(others, default=0)
                or (after_n / n_after <= before_n / n_before)
                or (two_proportion_test(after_n, n_after, before_n, n_before) >= P_WEAK)
            ):
                continue
            carried_ns = r["traces"] if suspect.cause == "errors" else r["ns"]
            share = (carried_ns - r["traces"] * before) / n_after / change if change > 0 else 0.0
            if share >= NODE_SHARE and (best is None or share > best[0]):
                best = (share, service, node, after_n)
        if best is None:
            out.append(suspect)
            continue
        share, service, node, payments = best
        evidence = {
            **finding.evidence,
            "stalled_node": node,
            "stalled_node_share": round(share, 4),
            "failed_over_payments": [moved.get((False, service, node), 0), payments],
        }
        out.append(dataclasses.replace(
            suspect, service=service, row={**suspect.row, "service": service},
            finding=dataclasses.replace(
                finding,
                title=(
                    f"{node} ({service}) stopped answering: {finding.title}; {share:.0%} of "
                    f"it in the {payments} payments that failed over away from {node}"
                ),
                subject={**finding.subject, "service": service, "node": node},
                evidence=evidence,
                recommendation=(
                    f"{node} stopped answering in time: its callers timed out and failed over "
                    f"({payments} payments), and the calls it had in flight came back late, "
                    f"which shows as wire and wait time around it. Check {node}'s process and "
                    "host (a pause, a freeze, swapping, a full disk, a hung thread pool); take "
                    "it out of the balancer until it answers its health checks, and shorten "
                    "the callers' timeouts to it."
                ),
            ),
        ))  # fmt: skip
    return out


def _operations(spans: pl.LazyFrame, traces: pl.LazyFrame) -> pl.LazyFrame:
    """Per ``[service] operation`` and window: latency, self time, errors, critical time."""
    keyed = spans.with_columns(pl.format("[{}] {}", "service", "name").alias("operation"))
    per = keyed.group_by("operation", "service", "incident").agg(
        pl.len().cast(pl.Int64).alias("spans"),
        *(percentile_ns("duration_ns", q).alias(f"{name}_ns")
          for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))),
        percentile_ns("self_ns", 0.5).alias("self_p50_ns"),
        pl.col("error").fill_null(False).sum().cast(pl.Int64).alias("errors"),
    )  # fmt: skip
    critical = (
        traces.select("incident", "critical_by_operation")
        .explode("critical_by_operation")
        .unnest("critical_by_operation")
        .group_by("operation", "incident")
        .agg(pl.col("exclusive_ns").sum().alias("_exclusive"))
    )
    return per.join(critical, on=["operation", "incident"], how="left")


def _operations_frames(spans: pl.LazyFrame, traces: pl.LazyFrame) -> list[pl.LazyFrame]:
    keyed = spans.with_columns(pl.format("[{}] {}", "service", "name").alias("operation"))
    return [
        _operations(spans, traces),
        rank_test(keyed.select("operation", "incident", value="duration_ns"), ["operation"]),
    ]


def _operations_table(per: pl.DataFrame, tests: pl.DataFrame, windows: Windows) -> pl.DataFrame:
    per = per.with_columns(
        (
            pl.col("_exclusive").fill_null(0)
            / pl.when(pl.col("incident"))
            .then(max(windows.traces_incident, 1))
            .otherwise(max(windows.traces_baseline, 1))
        ).alias("critical_ns_per_trace")
    )
    columns = ["spans", "p50_ns", "p95_ns", "p99_ns", "self_p50_ns", "errors",
               "critical_ns_per_trace"]  # fmt: skip
    wide = _per_window(per, ["operation", "service"], columns).join(
        tests, on="operation", how="left"
    )
    p_values = [
        mann_whitney_p(r["u"] or 0.0, r["n_incident"] or 0, r["n_baseline"] or 0,
                       r["tie_term"] or 0)
        for r in wide.iter_rows(named=True)
    ]  # fmt: skip
    error_p = [
        two_proportion_test(r["errors_incident"] or 0, r["spans_incident"] or 0,
                            r["errors_baseline"] or 0, r["spans_baseline"] or 0)
        for r in wide.iter_rows(named=True)
    ]  # fmt: skip
    return (
        wide.with_columns(
            pl.Series("duration_p_value", p_values, dtype=pl.Float64),
            pl.Series("error_p_value", error_p, dtype=pl.Float64),
            _status("spans"),
            *(_ratio(c) for c in ("p50_ns", "p95_ns", "p99_ns")),
            (pl.col("errors_baseline").fill_null(0) / pl.col("spans_baseline")).alias(
                "error_rate_baseline"
            ),
            (pl.col("errors_incident").fill_null(0) / pl.col("spans_incident")).alias(
                "error_rate_incident"
            ),
            (pl.col("spans_baseline").fill_null(0) / windows.seconds_baseline).alias(
                "per_s_baseline"
            ),
            (pl.col("spans_incident").fill_null(0) / windows.seconds_incident).alias(
                "per_s_incident"
            ),
        )
        .drop("u", "tie_term", "n_baseline", "n_incident")
        .sort("operation")
    )


def _edges_frames(hops: pl.LazyFrame) -> list[pl.LazyFrame]:
    per = hops.group_by(*_EDGE, "incident").agg(
        pl.len().cast(pl.Int64).alias("calls"),
        *(percentile_ns(side, q).alias(f"{side.removesuffix('_ns')}_{name}_ns")
          for side in ("network_ns", "server_ns")
          for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))),
        pl.col("error").fill_null(False).sum().cast(pl.Int64).alias("errors"),
        *median_interval("network_ns"),
    )  # fmt: skip
    tests = rank_test(hops.select(*_EDGE, "incident", value="network_ns"), list(_EDGE))
    return [per, tests]


def _edges_table(per_df: pl.DataFrame, tests_df: pl.DataFrame, windows: Windows) -> pl.DataFrame:
    columns = [c for c in per_df.columns if c not in (*_EDGE, "incident")]
    wide = _per_window(per_df, list(_EDGE), columns).join(
        tests_df, on=list(_EDGE), how="left", nulls_equal=True
    )
    p_values = [
        mann_whitney_p(r["u"] or 0.0, r["n_incident"] or 0, r["n_baseline"] or 0,
                       r["tie_term"] or 0)
        for r in wide.iter_rows(named=True)
    ]  # fmt: skip
    return (
        wide.with_columns(
            pl.Series("network_p_value", p_values, dtype=pl.Float64),
            _status("calls"),
            *(_ratio(f"network_{c}_ns") for c in ("p50", "p95", "p99")),
            (pl.col("calls_baseline").fill_null(0) / windows.seconds_baseline).alias(
                "per_s_baseline"
            ),
            (pl.col("calls_incident").fill_null(0) / windows.seconds_incident).alias(
                "per_s_incident"
            ),
        )
        .rename({"cliffs_delta": "network_cliffs_delta"})
        .drop("u", "tie_term", "n_baseline", "n_incident")
        .sort(*_EDGE, nulls_last=True)
    )


def _change_findings(operations: pl.DataFrame, edges: pl.DataFrame) -> list[Finding]:
    findings = []
    for status in ("appeared", "vanished"):
        column = "incident" if status == "appeared" else "baseline"
        ops = operations.filter(pl.col("status") == status).sort(f"spans_{column}", descending=True)
        for row in ops.head(MAX_CHANGE_FINDINGS).iter_rows(named=True):
            count = row[f"spans_{column}"]
            findings.append(
                Finding(
                    job=JOB, kind=status,
                    title=f"{row['operation']} {status} ({count} spans)",
                    impact="low", gain_ns=0,
                    subject={"service": row["service"], "operation": row["operation"]},
                    evidence={"spans": [row["spans_baseline"] or 0, row["spans_incident"] or 0]},
                    recommendation=(
                        "An operation seen in one window only: a deployment, a new code path "
                        "(fallbacks, retries) or a path that stopped being taken."
                    ),
                    gain="none by itself; it explains other changes",
                )
            )  # fmt: skip
        for row in (
            edges.filter(pl.col("status") == status)
            .sort(f"calls_{column}", descending=True)
            .head(MAX_CHANGE_FINDINGS)
            .iter_rows(named=True)
        ):
            edge = f"{row['source_service']} → {row['target_service']}"
            findings.append(
                Finding(
                    job=JOB, kind=status,
                    title=f"{edge} ({row['operation']}) {status} ({row[f'calls_{column}']} calls)",
                    impact="low", gain_ns=0,
                    subject={"service": row["target_service"], "edge": edge,
                             "operation": row["operation"]},
                    evidence={"calls": [row["calls_baseline"] or 0, row["calls_incident"] or 0]},
                    recommendation=(
                        "A call seen in one window only: a failover to another dependency, a "
                        "new caller, or calls that stopped."
                    ),
                    gain="none by itself; it explains other changes",
                )
            )  # fmt: skip
    return findings


def run(incident: Dataset, baseline: Dataset) -> JobResult:
    """Compare an incident window with a baseline window and rank the suspects.

    Parameters:
        incident: the records of the window under investigation.
        baseline: the records of a normal window (the same length just before, usually).

    Returns:
        Tables ``suspects``, ``services``, ``operations``, ``edges`` and the findings (module
        docstring): the suspects first, most important first, then what appeared or vanished.

    Examples:
        >>> from hopscope.analysis.loaders import dataset_from_records
        >>> from hopscope.processors.records import SpanRecord
        >>> def window(trace: str, risk_ns: int) -> Dataset:
        ...     return dataset_from_records([
        ...         SpanRecord(trace, "a", None, "pay", "server", 0, 10 + risk_ns + 2, "api"),
        ...         SpanRecord(trace, "b", "a", "risk/Score", "client", 5, 5 + risk_ns + 2, "api"),
        ...         SpanRecord(trace, "c", "b", "risk/Score", "server", 6, 6 + risk_ns, "risk"),
        ...     ])
        >>> result = run(window("t2", 900), window("t1", 100))
        >>> result.tables["suspects"].select("cause", "subject", "change_ns").row(0)
        ('own_time', 'risk', 800)
    """
    spans = _self_time(_tagged(incident.spans, baseline.spans))
    traces = _tagged(incident.traces, baseline.traces)
    hops = _tagged(incident.hops, baseline.hops)
    logs = _tagged(incident.logs, baseline.logs)
    failovers = _tagged(incident.failovers, baseline.failovers)
    # One collect for every query (polars shares their common inputs); the rest is per-row
    # arithmetic on small aggregated tables.
    (
        before, after, stats, components, tests, errors, logged, counted, calls,
        operation_stats, operation_tests, edge_stats, edge_tests, nodes, legs, volume, caches,
        moved, carried,
    ) = pl.collect_all([
        *_window_frames(incident, baseline),
        *_latency_frames(_causes(traces, hops), traces),
        *_error_frames(spans, hops, logs),
        *_operations_frames(spans, traces),
        *_edges_frames(hops),
        _node_frame(spans),
        _legs_frame(hops),
        *_volume_frames(spans, hops),
        *_failover_frames(_causes(traces, hops), failovers, spans, hops),
    ])  # fmt: skip
    windows = _windows(before, after)
    suspects = _more_calls(
        _latency_suspects(stats, components, tests, nodes, legs, windows), volume, caches, windows
    )
    error_suspects, services = _error_suspects(errors, logged, counted, calls, windows)
    ranked = sorted(
        _inherited_waits(
            _failed_over_nodes([*suspects, *error_suspects], moved, carried, windows), calls
        ),
        key=lambda s: (_impact_rank(s.impact), -s.score, s.cause, s.subject),
    )
    table = pl.DataFrame([s.row for s in ranked], infer_schema_length=None)
    if table.is_empty():
        table = pl.DataFrame(schema={"cause": pl.String, "subject": pl.String,
                                     "service": pl.String})  # fmt: skip
    own = pl.DataFrame(
        [
            {"service": s.subject, "own_ns_per_trace_baseline": s.row["before_ns"],
             "own_ns_per_trace_incident": s.row["after_ns"],
             "own_cliffs_delta": s.row["cliffs_delta"], "own_p_value": s.row["p_value"]}
            for s in suspects
            if s.cause == "own_time"
        ],
        schema={"service": pl.String, "own_ns_per_trace_baseline": pl.Int64,
                "own_ns_per_trace_incident": pl.Int64, "own_cliffs_delta": pl.Float64,
                "own_p_value": pl.Float64},
    )  # fmt: skip
    services = own.join(services, on="service", how="full", coalesce=True).sort("service")
    operations = _operations_table(operation_stats, operation_tests, windows)
    edges = _edges_table(edge_stats, edge_tests, windows)
    findings = [s.finding for s in ranked if s.finding is not None]
    return JobResult(
        job=JOB,
        tables={
            "suspects": table,
            "services": services,
            "operations": operations,
            "edges": edges,
        },
        findings=[*findings, *_change_findings(operations, edges)],
    )
