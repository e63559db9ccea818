"""Failovers: which node callers gave up on, where they went instead, and what it cost.

A failover (docs/DESIGN.md §3 "Failover") is a call that failed on one node (error or timeout) and
was retried on another; the processors also read explicit ``hopscope.failover`` span events and
cluster-event logs. ``detection_ns`` runs from the first failed attempt to the first attempt on
the new node, ``added_ns`` from the first attempt to the final one: the latency the payment paid
for the broken node.

Percentiles follow :func:`hopscope.analysis.expr.percentile_ns` (an observed value).

Tables:

- ``failovers``: one row per failover, by time (time, trace_id, service, target_service,
  operation, from_node, to_node, reason, attempts, detection_ns, added_ns, outcome, source).
- ``by_node``: per (from_node, target_service, reason): failovers, to_nodes (sorted list),
  detection/added p50 and p99, payments (distinct traces), first_time, last_time.
- ``timeline``: failovers per time bucket and from_node, zero buckets included, over the
  window of the dataset's traces (else of the failovers).

- ``downstream``: per place where failed attempts' errors started below the node the caller
  gave up on (see "Downstream failures"): failovers, from_nodes, payments, unrecovered.

Findings (``node_failure``): a node that callers failed over from, ``high`` from
:data:`HIGH_FAILOVERS` failovers on, else ``medium``. The evidence adds, from the hops, the
failed calls to the node that never got an answer (one-sided hops with an error: connect
timeouts) and their duration — the timeout the callers waited out.

Downstream failures (``dependency_failure``): a node answers with an error when something it
calls failed (its database, a service below it), and its caller fails over to another node
that calls the same thing. The origin of a failover is the end of the error chain under its
failed attempts: among the trace's failed hops that began between the first failed attempt
and the failover, the one whose callee's service made no failed call itself (the latest such).
When it is not the node given up on, the failover started downstream. A node most of whose
failovers (:data:`DOWNSTREAM_SHARE`) started downstream gets no ``node_failure``: the origin
gets a ``dependency_failure`` instead, ``high`` from :data:`HIGH_FAILOVERS` failovers on,
naming the calling service and the failing callee (a database, a cache or a service).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import polars as pl

from hopscope.analysis.expr import example_traces, percentile_ns
from hopscope.analysis.findings import Finding, Impact, JobResult
from hopscope.analysis.render import ms
from hopscope.analysis.schema import Dataset

JOB: Final = "failovers"

# Buckets over the window for the timeline (about 20: a node's failure and ejection show as a
# burst, its return as the burst's end).
TARGET_BUCKETS: Final = 20
# Three failovers from one node within a window are no blip: callers kept finding it dead.
# Fewer are noted as ``medium`` (a single timeout, a deploy's restart).
HIGH_FAILOVERS: Final = 3
# A node at least this share of whose failovers started downstream did not fail itself.
DOWNSTREAM_SHARE: Final = 0.5
_ORIGIN: Final = ("origin_kind", "origin_source", "origin_service", "origin_node")

_COLUMNS: Final = (
    "time",
    "trace_id",
    "service",
    "target_service",
    "operation",
    "from_node",
    "to_node",
    "reason",
    "attempts",
    "detection_ns",
    "added_ns",
    "outcome",
    "source",
)


def bucket_ns(start: datetime | None, end: datetime | None, buckets: int = TARGET_BUCKETS) -> int:
    """A bucket width giving ``buckets`` buckets over the window, rounded up to two
    significant digits (one second for an empty window).

    >>> from datetime import datetime, timedelta
    >>> t = datetime(2026, 3, 2, 10)
    >>> bucket_ns(t, t + timedelta(seconds=6.2)), bucket_ns(None, None)
    (310000000, 1000000000)
    """
    if start is None or end is None or end <= start:
        return 1_000_000_000
    delta = end - start
    span_ns = (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1_000
    target = max(-(-span_ns // buckets), 1)
    unit = int(10 ** max(len(str(target)) - 2, 0))
    return -(-target // unit) * unit


def _quantile(column: str, q: float, name: str) -> pl.Expr:
    return percentile_ns(column, q).alias(name)


def _by_node(failovers: pl.LazyFrame) -> pl.LazyFrame:
    return (
        failovers.group_by("from_node", "target_service", "reason")
        .agg(
            pl.len().alias("failovers"),
            pl.col("to_node").drop_nulls().unique().sort().alias("to_nodes"),
            _quantile("detection_ns", 0.5, "detection_p50_ns"),
            _quantile("detection_ns", 0.99, "detection_p99_ns"),
            _quantile("added_ns", 0.5, "added_p50_ns"),
            _quantile("added_ns", 0.99, "added_p99_ns"),
            pl.col("trace_id").drop_nulls().n_unique().alias("payments"),
            pl.col("time").min().alias("first_time"),
            pl.col("time").max().alias("last_time"),
        )
        .sort(
            ["failovers", "from_node", "target_service", "reason"],
            descending=[True, False, False, False],
        )
    )


def _timeline(
    failovers: pl.LazyFrame, start: datetime | None, end: datetime | None, every_ns: int
) -> pl.LazyFrame:
    """Failovers per ``[t, t + every)`` bucket (aligned on multiples of the width) and node,
    every bucket of the window present (zero when nothing failed over)."""
    counts = (
        failovers.filter(pl.col("time").is_not_null())
        .select(pl.col("time").dt.truncate(f"{every_ns}ns").alias("bucket"), "from_node")
        .group_by("bucket", "from_node")
        .agg(pl.len().alias("failovers"))
    )
    if start is None or end is None:
        return counts.sort("bucket", "from_node")
    grid = pl.LazyFrame().select(
        pl.datetime_range(
            pl.lit(start).cast(pl.Datetime("ns", "UTC")).dt.truncate(f"{every_ns}ns"),
            pl.lit(end).cast(pl.Datetime("ns", "UTC")),
            interval=f"{every_ns}ns",
            time_unit="ns",
            time_zone="UTC",
        ).alias("bucket")
    )
    nodes = failovers.select("from_node").unique()
    return (
        grid.join(nodes, how="cross")
        .join(counts, on=["bucket", "from_node"], how="full", coalesce=True)
        .with_columns(pl.col("failovers").fill_null(0))
        .sort("bucket", "from_node")
    )


def _per_node(failovers: pl.LazyFrame, hops: pl.LazyFrame) -> pl.LazyFrame:
    """Per (service, node) failed over from: what the finding needs, in one frame."""
    unanswered = (
        hops.filter(pl.col("server_ns").is_null(), pl.col("error").fill_null(False))
        .group_by(pl.col("target_service").alias("service"), pl.col("target_node").alias("node"))
        .agg(
            pl.len().alias("timeouts"),
            _quantile("client_ns", 0.5, "timeout_p50_ns"),
        )
    )
    to_counts = failovers.group_by("target_service", "from_node", "to_node").agg(
        pl.len().alias("n")
    )
    to_nodes = (
        to_counts.filter(pl.col("to_node").is_not_null())
        .sort("to_node")
        .group_by("target_service", "from_node")
        .agg(pl.struct(pl.col("to_node").alias("node"), pl.col("n")).alias("to"))
    )
    return (
        failovers.group_by("target_service", "from_node")
        .agg(
            pl.len().alias("failovers"),
            _quantile("detection_ns", 0.5, "detection_p50_ns"),
            _quantile("detection_ns", 0.99, "detection_p99_ns"),
            _quantile("added_ns", 0.5, "added_p50_ns"),
            _quantile("added_ns", 0.99, "added_p99_ns"),
            pl.col("trace_id").drop_nulls().n_unique().alias("payments"),
            pl.col("time").min().alias("first_time"),
            pl.col("time").max().alias("last_time"),
            pl.col("reason").drop_nulls().unique().sort().alias("reasons"),
            (pl.col("outcome") == "failed").sum().alias("unrecovered"),
            example_traces("added_ns").alias("examples"),
        )
        .join(to_nodes, on=["target_service", "from_node"], how="left")
        .join(
            unanswered,
            left_on=["target_service", "from_node"],
            right_on=["service", "node"],
            how="left",
        )
        .with_columns(pl.col("timeouts").fill_null(0))
        .sort(["failovers", "from_node"], descending=[True, False])
    )


def _origins(failovers: pl.LazyFrame, hops: pl.LazyFrame) -> pl.LazyFrame:
    """Per failover (trace_id, failover_id): where its failed attempts' errors started (the
    module docstring's rule), as ``origin_*`` columns, and ``downstream``: not at the node
    given up on."""
    attempts = failovers.select(
        "trace_id",
        "failover_id",
        "from_node",
        "time",
        (pl.col("time") - pl.duration(nanoseconds=pl.col("detection_ns").fill_null(0))).alias(
            "since"
        ),
    )
    failed = hops.filter(pl.col("error").fill_null(False)).select(
        "trace_id",
        pl.col("time").alias("hop_time"),
        pl.col("hop_kind").alias("origin_kind"),
        pl.col("source_service").alias("origin_source"),
        pl.col("target_service").alias("origin_service"),
        pl.col("target_node").alias("origin_node"),
    )
    chain = attempts.join(failed, on="trace_id").filter(
        pl.col("hop_time") >= pl.col("since"), pl.col("hop_time") < pl.col("time")
    )
    # By service, not node: the hops' source nodes stay unread (jobs.UNREAD), and a failed
    # call's callee service making a failed call of its own is what continues the chain.
    callers = chain.select(
        "trace_id", "failover_id", pl.col("origin_source").alias("origin_service")
    ).unique()
    return (
        chain.join(callers, on=["trace_id", "failover_id", "origin_service"], how="anti")
        .sort("hop_time")
        .group_by("trace_id", "failover_id")
        .last()
        .select(
            "trace_id",
            "failover_id",
            *_ORIGIN,
            (pl.col("origin_node").fill_null("") != pl.col("from_node")).alias("downstream"),
        )
    )


def _downstream(failovers: pl.LazyFrame, hops: pl.LazyFrame) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """The failovers with their origin, and per origin of downstream ones: failovers,
    from_nodes, payments, unrecovered, first and last time."""
    located = failovers.join(
        _origins(failovers, hops), on=["trace_id", "failover_id"], how="left"
    ).with_columns(pl.col("downstream").fill_null(False))
    per_origin = (
        located.filter("downstream")
        .group_by(*_ORIGIN, "target_service")
        .agg(
            pl.len().alias("failovers"),
            pl.col("from_node").drop_nulls().unique().sort().alias("from_nodes"),
            pl.col("trace_id").drop_nulls().n_unique().alias("payments"),
            (pl.col("outcome") == "failed").sum().alias("unrecovered"),
            _quantile("added_ns", 0.99, "added_p99_ns"),
            pl.col("time").min().alias("first_time"),
            pl.col("time").max().alias("last_time"),
            example_traces("added_ns").alias("examples"),
        )
        .sort(["failovers", *_ORIGIN], descending=[True, False, False, False, False])
    )
    return located, per_origin


def run(
    data: Dataset, *, bucket: int | None = None, high_failovers: int = HIGH_FAILOVERS
) -> JobResult:
    """Failovers one by one, per node, over time, and the nodes callers gave up on.

    Parameters:
        data: the dataset; reads ``failovers``, ``hops`` (unanswered calls) and ``traces``
            (the window).
        bucket: width of the timeline buckets in ns; by default about
            :data:`TARGET_BUCKETS` buckets over the window.
        high_failovers: failovers from one node that make its finding ``high``.

    Returns:
        Tables ``failovers``, ``by_node``, ``timeline`` and the ``node_failure`` findings.

    Examples:
        >>> from hopscope.analysis.schema import empty
        >>> frames = {k: empty(k).lazy() for k in ("spans", "traces", "hops", "failovers",
        ...           "coordination", "two_phase_commits")}
        >>> result = run(Dataset(**frames))
        >>> result.findings, result.tables["by_node"].height
        ([], 0)
    """
    if bucket is not None and bucket <= 0:
        raise ValueError(f"bucket must be a positive width in ns, got {bucket}")
    failovers = data.failovers
    window = data.traces.select(
        pl.col("time").min().alias("start"), pl.col("time").max().alias("end")
    ).collect()
    start, end = window.row(0)
    if start is None:
        start, end = (
            failovers.select(pl.col("time").min().alias("start"), pl.col("time").max().alias("end"))
            .collect()
            .row(0)
        )
    every = bucket or bucket_ns(start, end)
    located, per_origin = _downstream(failovers, data.hops)
    shares = located.group_by("target_service", "from_node").agg(
        pl.col("downstream").mean().alias("downstream_share")
    )
    table, by_node, timeline, per_node, downstream = pl.collect_all(
        [
            failovers.select(*_COLUMNS).sort("time", "trace_id"),
            _by_node(failovers),
            _timeline(failovers, start, end, every),
            _per_node(failovers, data.hops).join(
                shares, on=["target_service", "from_node"], how="left"
            ),
            per_origin,
        ]
    )
    own = [
        _finding(row, high_failovers)
        for row in per_node.iter_rows(named=True)
        if (row["downstream_share"] or 0.0) < DOWNSTREAM_SHARE
    ]
    moved = {row["from_node"] for row in per_node.iter_rows(named=True)} - {
        finding.subject["node"] for finding in own
    }
    below = [
        _dependency_finding(row, high_failovers)
        for row in downstream.iter_rows(named=True)
        if set(row["from_nodes"]) & moved
    ]
    return JobResult(
        job=JOB,
        tables={
            "failovers": table,
            "by_node": by_node,
            "timeline": timeline,
            "downstream": downstream.drop("examples"),
        },
        findings=[*own, *below],
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _finding(row: dict[str, Any], high_failovers: int) -> Finding:
    service, node, count = row["target_service"], row["from_node"], row["failovers"]
    to = {entry["node"]: entry["n"] for entry in row["to"] or ()}
    impact: Impact = "high" if count >= high_failovers else "medium"
    added_p99 = row["added_p99_ns"] or 0
    timeout = row["timeout_p50_ns"]
    waited = f" waited {ms(timeout)} per unanswered call (the connect timeout);" if timeout else ""
    evidence: dict[str, Any] = {
        "failovers": count,
        "to_nodes": to,
        "first_time": _iso(row["first_time"]),
        "last_time": _iso(row["last_time"]),
        "detection_p50_ns": row["detection_p50_ns"],
        "detection_p99_ns": row["detection_p99_ns"],
        "added_p50_ns": row["added_p50_ns"],
        "added_p99_ns": row["added_p99_ns"],
        "payments": row["payments"],
        "reasons": row["reasons"],
        "unrecovered": row["unrecovered"],
        "unanswered_calls": row["timeouts"],
        "unanswered_call_p50_ns": timeout,
    }
    return Finding(
        job=JOB,
        kind="node_failure",
        title=(
            f"{node} ({service}) failed: {count} failovers to "
            f"{', '.join(to) or 'other nodes'}, +{ms(added_p99)} at p99"
        ),
        impact=impact,
        gain_ns=int(added_p99),
        subject={"service": service, "node": node},
        evidence=evidence,
        recommendation=(
            f"Take {node} out of the {service} pool before requests time out on it: callers"
            f"{waited} detection took {ms(row['detection_p50_ns'])} at p50. Add active health "
            "checks and passive outlier ejection (eject after consecutive connect failures) "
            "in the load balancer, set the connect timeout well below 250 ms (a healthy "
            "connect takes about a millisecond), fail over on the first connect failure "
            "instead of retrying the same node, and prefer least-connections balancing so a "
            "stalled node stops receiving new requests."
        ),
        gain=(
            f"failing over before the timeout removes up to {ms(added_p99)} at p99 from the "
            f"{row['payments']} affected payments"
        ),
        example_traces=tuple(row["examples"]),
    )


def _dependency_finding(row: dict[str, Any], high_failovers: int) -> Finding:
    """The failovers that started below the nodes given up on, charged where they started: a
    database or cache call (``db`` hop) to the service that made it and its callee, a
    service's call to the callee."""
    count, nodes = row["failovers"], row["from_nodes"]
    caller, callee, node = row["origin_source"], row["origin_service"], row["origin_node"]
    where = f"{callee} ({node})" if node else str(callee)
    owner = caller if row["origin_kind"] == "db" else callee
    unrecovered = row["unrecovered"]
    lost = f", {unrecovered} payments failed all the same" if unrecovered else ""
    return Finding(
        job=JOB,
        kind="dependency_failure",
        title=(
            f"{caller} → {where} failed: {count} failovers between {row['target_service']} "
            f"nodes ({', '.join(nodes)}) started there{lost}"
        ),
        impact="high" if count >= high_failovers else "medium",
        gain_ns=int(row["added_p99_ns"] or 0),
        subject={
            "service": owner,
            "source_service": caller,
            "target_service": callee,
            "node": node,
        },
        evidence={
            "failovers": count,
            "from_nodes": nodes,
            "payments": row["payments"],
            "unrecovered": unrecovered,
            "added_p99_ns": row["added_p99_ns"],
            "first_time": _iso(row["first_time"]),
            "last_time": _iso(row["last_time"]),
            "hop_kind": row["origin_kind"],
        },
        recommendation=(
            f"The {row['target_service']} nodes were healthy: they answered with errors because "
            f"their calls to {where} failed, and retrying on another "
            f"{row['target_service']} node reached the same {callee}. Look at {where} between "
            f"{_iso(row['first_time'])} and {_iso(row['last_time'])} (a restart, a switchover, "
            f"a full connection pool); in {caller}, retry a broken connection once on a fresh "
            "one (a pool's pre-ping or retry on disconnect) so a dependency's restart does not "
            "reach the payment, and do not count these errors against the nodes in the load "
            "balancer's outlier detection."
        ),
        gain=(
            f"retrying on a fresh connection in {caller} keeps these {row['payments']} "
            "payments from failing over"
        ),
        example_traces=tuple(row["examples"]),
    )
