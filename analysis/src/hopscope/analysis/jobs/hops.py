"""Hops: latency per edge (caller → callee), split into client, server and network time.

A hop is one call from one service to another (docs/DESIGN.md §3 "Hop"): ``client_ns`` is the
caller's span, ``server_ns`` the callee's, ``network_ns = client_ns − server_ns`` the wire and
queueing time between them — free of clock skew, since each duration is read on one clock.
One-sided hops (a database, an external issuer, a node that never answered) have no server
span, so their server and network figures are null. A hop whose caller gave up before the
callee finished (``client_abandoned``) has no network figure either: it counts as a timeout.

Clock skew is measured per two-sided RPC hop as the NTP estimate of the callee's clock offset
against the caller's, ``(request_leg − response_leg) / 2``. It is *material* when the hop's
timestamps disagree (``clock_skew_suspected``), the offset is above :data:`SKEW_FLOOR_NS` and
above :data:`SKEW_NETWORK_SHARE` of the hop's network time: a quarter-millisecond gap from
timestamps truncated to the millisecond is a note in the tables, not a finding.

Percentiles follow :func:`hopscope.analysis.expr.percentile_ns`: the observed value at rank
``round(q · (n − 1))`` of the sorted values, so every figure is a real hop's duration in ns.

Tables:

- ``edges``: one row per (source_service, target_service, operation, hop_kind): calls,
  traces, error_rate, ``{client,server,network}_{p50,p90,p99,p999}_ns``, clock_skew_share
  (share of the two-sided hops whose timestamps disagree; null for one-sided edges),
  clock_offset_p50_ns (median offset of those hops), clock_skew_material_share (share of the
  two-sided hops whose skew is material), clock_skew_note (a note when timestamps disagree:
  material or not, and by how much), timeouts (hops whose caller gave up) and timeout_rate.
- ``edges_over_time``: per time bucket and edge (source, target, operation): calls and the
  network/server/client p99.
- ``nodes``: per callee node (target_service, target_node): calls, network_p50_ns,
  server_p50_ns, clock_skew_share.

Findings:

- ``slow_edge``: an RPC edge whose typical network time is abnormal against the
  other RPC edges of the window — its network p50 at least :data:`SLOW_EDGE_RATIO` times the
  median of the other edges' network p50, and :data:`SLOW_EDGE_FLOOR_NS` above it. Edges
  share the data centre, so their wire time is alike; one edge far above the rest points at
  its path (zone placement, a proxy, connection set-up), not at the callee, whose server time
  is reported beside it. No edge is too small to judge: ``high`` when the lower end of its
  p50's distribution-free 95 % interval (:func:`hopscope.analysis.stats.median_interval`) is
  slow too, ``medium`` when only the p50 is (too few calls to bound it), the interval in the
  evidence either way.
- ``client_timeout`` (``medium``): an edge on which at least :data:`TIMEOUT_RATE` of the calls
  were given up by the caller while the callee went on working (``client_abandoned``): a
  timeout shorter than the callee's latency, the typical payment incident.
- ``clock_skew`` (``medium``, ranked after every other finding: it costs no latency): a node
  most of whose two-sided hops have a *material* skew, in the same direction (its clock ahead
  of, or behind, its peers' consistently). Its timestamps are off; durations, and so
  ``network_ns``, stay valid.
"""

from __future__ import annotations

import statistics
from datetime import datetime
from typing import Any, Final

import polars as pl

from hopscope.analysis.expr import error_rate, example_traces, percentile_ns
from hopscope.analysis.findings import Finding, JobResult
from hopscope.analysis.ids import group_key
from hopscope.analysis.render import ms
from hopscope.analysis.schema import Dataset
from hopscope.analysis.stats import CONFIDENCE, median_coverage, median_interval

JOB: Final = "hops"

# Column suffix -> quantile.
QUANTILES: Final = {"p50": 0.5, "p90": 0.9, "p99": 0.99, "p999": 0.999}
# Buckets over the window for ``edges_over_time``: enough to see a change start, few enough
# that each bucket still holds a useful p99 at a few hundred payments per second.
TARGET_BUCKETS: Final = 20
# The RPC kind of hop: the only one with both sides, so with a network time.
RPC: Final = "rpc"
# An edge's network p50 at 5× the other edges' median is no jitter: per-call network time in
# one data centre varies by tens of percent, not by factors.
SLOW_EDGE_RATIO: Final = 5.0
# ... and at least 5 ms above it: below that a ratio on sub-millisecond figures (a loopback
# edge beside cross-host ones) is not worth acting on.
SLOW_EDGE_FLOOR_NS: Final = 5_000_000
# "Typical" needs at least two other edges; with one, its median is that edge alone.
MIN_REFERENCE_EDGES: Final = 2
# A node whose hops are *mostly* skewed has a clock problem; a few skewed hops are the
# ordinary jitter of NTP-synchronised hosts on sub-millisecond legs.
CLOCK_SKEW_SHARE: Final = 0.5
# ... over at least this many two-sided hops.
MIN_NODE_HOPS: Final = 10
# A clock offset below 1 ms is within what NTP keeps hosts to and what millisecond timestamps
# can fake (a server start truncated by up to 1 ms): not worth a finding.
SKEW_FLOOR_NS: Final = 1_000_000
# ... and the offset must exceed this share of the hop's network time: only then does it turn
# a leg negative on its own (each leg is about half the network time).
SKEW_NETWORK_SHARE: Final = 0.5
# An edge on which 1 % of the calls time out is failing payments that the callee still
# processes (double work, possibly double charges on retry): worth a finding.
TIMEOUT_RATE: Final = 0.01

_EDGE: Final = ("source_service", "target_service", "operation", "hop_kind")


def _edge_subject(edge: dict[str, Any]) -> dict[str, Any]:
    """What an edge finding names: caller, callee, operation and hop kind."""
    return {
        "source_service": edge["source_service"],
        "target_service": edge["target_service"],
        "operation": edge["operation"],
        "hop_kind": edge["hop_kind"],
    }


def bucket_ns(start: datetime | None, end: datetime | None, buckets: int = TARGET_BUCKETS) -> int:
    """A bucket width giving ``buckets`` buckets over the window, rounded up to two
    significant digits so the axis stays readable (310 ms, not 310.071 ms).

    >>> from datetime import datetime, timedelta
    >>> t = datetime(2026, 3, 2, 10)
    >>> bucket_ns(t, t + timedelta(seconds=6.2)), bucket_ns(t, t + timedelta(hours=1))
    (310000000, 180000000000)
    >>> bucket_ns(None, None)
    1000000000
    """
    if start is None or end is None or end <= start:
        return 1_000_000_000  # one second: a sane width for an empty or instant window
    delta = end - start
    span_ns = (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1_000
    target = max(-(-span_ns // buckets), 1)
    unit = int(10 ** max(len(str(target)) - 2, 0))
    return -(-target // unit) * unit


def skew_share(flag: pl.Expr) -> pl.Expr:
    """Share of the two-sided hops (server span present) whose clocks disagree.

    One-sided hops get a null flag, which the mean skips: the same share as filtering them
    out, but computed column-wise, without a filter per group (slow on millions of hops).
    """
    return pl.when(pl.col("server_ns").is_not_null()).then(flag.cast(pl.Float64)).mean()


def clock_offset() -> pl.Expr:
    """The callee's clock offset against the caller's, per hop (ns; positive: the callee's
    clock is ahead), the NTP estimate ``(request_leg − response_leg) / 2``; null without both
    legs (one-sided hops, callers that gave up)."""
    return ((pl.col("request_leg_ns") - pl.col("response_leg_ns")) // 2).alias("clock_offset_ns")


def material_skew(floor_ns: int = SKEW_FLOOR_NS, share: float = SKEW_NETWORK_SHARE) -> pl.Expr:
    """Whether a hop's skew is material (module docstring): suspected, its offset above
    ``floor_ns`` and above ``share`` of its network time. Null for one-sided hops."""
    offset = clock_offset().abs()
    return (
        pl.when(pl.col("server_ns").is_not_null())
        .then(
            pl.col("clock_skew_suspected").fill_null(False)
            & (offset > floor_ns).fill_null(False)
            & (offset > share * pl.col("network_ns").abs()).fill_null(False)
        )
        .alias("material_skew")
    )


def _skew_note(share: pl.Expr, material: pl.Expr, offset: pl.Expr) -> pl.Expr:
    """A note for the edges table: why a skew share is (not) a finding."""
    offset_ms = (offset.abs() / 1e6).round(2).cast(pl.String)
    return (
        pl.when(share.is_null() | (share == 0))
        .then(None)
        .when(material > 0)
        .then(pl.concat_str(pl.lit("material: clocks ~"), offset_ms, pl.lit(" ms apart")))
        .otherwise(
            pl.concat_str(
                pl.lit("not material: clocks ~"),
                offset_ms,
                pl.lit(" ms apart (coarse timestamps or NTP jitter)"),
            )
        )
    )


def _quantiles(column: str, suffixes: tuple[str, ...]) -> list[pl.Expr]:
    return [percentile_ns(f"{column}_ns", QUANTILES[s]).alias(f"{column}_{s}_ns") for s in suffixes]


def _edges(hops: pl.LazyFrame, floor_ns: int, share: float) -> pl.LazyFrame:
    suffixes = tuple(QUANTILES)
    # Traces per edge counted on the ids' hashes where exact (hopscope.analysis.ids).
    traces = group_key(hops)
    skewed = pl.col("clock_skew_suspected").fill_null(False)
    abandoned = pl.col("client_abandoned").fill_null(False)
    return (
        hops.with_columns(clock_offset(), material_skew(floor_ns, share))
        .group_by(*_EDGE)
        .agg(
            pl.len().alias("calls"),
            traces.n_unique().alias("traces"),
            error_rate("error").alias("error_rate"),
            *_quantiles("client", suffixes),
            *_quantiles("server", suffixes),
            *_quantiles("network", suffixes),
            skew_share(pl.col("clock_skew_suspected")).alias("clock_skew_share"),
            pl.col("clock_offset_ns")
            .filter(skewed)
            .median()
            .round()
            .cast(pl.Int64)
            .alias("clock_offset_p50_ns"),
            pl.col("material_skew").cast(pl.Float64).mean().alias("clock_skew_material_share"),
            abandoned.sum().cast(pl.UInt32).alias("timeouts"),
            abandoned.cast(pl.Float64).mean().alias("timeout_rate"),
        )
        .with_columns(
            _skew_note(
                pl.col("clock_skew_share"),
                pl.col("clock_skew_material_share"),
                pl.col("clock_offset_p50_ns"),
            ).alias("clock_skew_note")
        )
        .select(
            *_EDGE,
            "calls",
            "traces",
            "error_rate",
            *(f"{part}_{q}_ns" for part in ("client", "server", "network") for q in suffixes),
            "clock_skew_share",
            "clock_offset_p50_ns",
            "clock_skew_material_share",
            "clock_skew_note",
            "timeouts",
            "timeout_rate",
        )
        .sort(_EDGE)
    )


def _edges_over_time(hops: pl.LazyFrame, every_ns: int) -> pl.LazyFrame:
    """Per bucket ``[t, t + every)`` (aligned on multiples of the width) and edge.

    Truncating the time to the width gives the same buckets as ``group_by_dynamic`` without
    sorting millions of rows by edge and time first; only non-empty buckets appear, as there.
    """
    keys = ("source_service", "target_service", "operation")
    return (
        hops.filter(pl.col("time").is_not_null())
        .group_by(pl.col("time").dt.truncate(f"{every_ns}ns").alias("bucket"), *keys)
        .agg(
            pl.len().alias("calls"),
            *_quantiles("network", ("p99",)),
            *_quantiles("server", ("p99",)),
            *_quantiles("client", ("p99",)),
        )
        .select("bucket", *keys, "calls", "network_p99_ns", "server_p99_ns", "client_p99_ns")
        .sort("bucket", *keys)
    )


def _nodes(hops: pl.LazyFrame) -> pl.LazyFrame:
    return (
        hops.group_by("target_service", "target_node")
        .agg(
            pl.len().alias("calls"),
            *_quantiles("network", ("p50",)),
            *_quantiles("server", ("p50",)),
            skew_share(pl.col("clock_skew_suspected")).alias("clock_skew_share"),
        )
        .sort("target_service", "target_node")
    )


def _node_skew(hops: pl.LazyFrame, floor_ns: int, share: float) -> pl.LazyFrame:
    """Material skew per node over its two-sided hops in either role (caller or callee).

    A node with a wrong clock disagrees with every peer, whichever side it is on, and always in
    the same direction; a correct node shares a skewed hop with the wrong one only on its calls
    to (or from) it. ``skewed_hops`` counts the material skews in the node's dominant direction
    (its own offset: the hop's as callee, the opposite as caller).
    """
    two_sided = hops.filter(pl.col("server_ns").is_not_null()).with_columns(
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
    # Per node over every hop; per node and trace only over the skewed hops (a few), which
    # alone can make a trace telling: the traces with the most skewed hops are the examples.
    # (A group per node and trace over every hop hashed millions of text trace ids.)
    rows = pl.concat(roles).filter(pl.col("node").is_not_null())
    ahead, behind = pl.col("ahead"), pl.col("behind")
    examples = (
        rows.filter(ahead | behind)
        .group_by("service", "node", "trace_id")
        .agg(ahead.sum(), behind.sum())
        .group_by("service", "node")
        .agg(example_traces(pl.max_horizontal(ahead, behind)).alias("examples"))
    )
    return (
        rows.group_by("service", "node")
        .agg(
            pl.len().alias("hops"),
            ahead.sum(),
            behind.sum(),
            pl.col("offset").filter(ahead | behind).median().alias("offset_p50_ns"),
        )
        .join(examples, on=["service", "node"], how="left", nulls_equal=True)
        .with_columns(pl.col("examples").fill_null(pl.lit([], dtype=pl.List(pl.String))))
        .with_columns(pl.max_horizontal("ahead", "behind").alias("skewed_hops"))
        .with_columns((pl.col("skewed_hops") / pl.col("hops")).alias("share"))
        .select("service", "node", "hops", "skewed_hops", "share", "offset_p50_ns", "examples")
        .sort("service", "node")
    )


def run(
    data: Dataset,
    *,
    bucket: int | None = None,
    slow_edge_ratio: float = SLOW_EDGE_RATIO,
    slow_edge_floor_ns: int = SLOW_EDGE_FLOOR_NS,
    confidence: float = CONFIDENCE,
    clock_skew_share: float = CLOCK_SKEW_SHARE,
    skew_floor_ns: int = SKEW_FLOOR_NS,
    skew_network_share: float = SKEW_NETWORK_SHARE,
    timeout_rate: float = TIMEOUT_RATE,
) -> JobResult:
    """Per-edge and per-node hop latency, its course over time, slow edges and skewed clocks.

    Parameters:
        data: the dataset; reads ``hops``.
        bucket: width of the ``edges_over_time`` buckets in ns; by default a round width
            giving about :data:`TARGET_BUCKETS` buckets over the hops' window.
        slow_edge_ratio: network p50 against the other RPC edges' median that makes an edge
            slow.
        slow_edge_floor_ns: the least excess network p50 (ns) that makes an edge slow.
        confidence: the level of the p50 interval that makes a slow edge ``high``.
        clock_skew_share: share of a node's two-sided hops with a material skew in one
            direction that makes a ``clock_skew`` finding.
        skew_floor_ns: the least clock offset (ns) of a material skew.
        skew_network_share: the least clock offset of a material skew, as a share of the
            hop's network time.
        timeout_rate: the least share of an edge's calls given up by the caller that makes a
            ``client_timeout`` finding.

    Returns:
        Tables ``edges``, ``edges_over_time``, ``nodes`` and the findings (module docstring).

    Examples:
        >>> from hopscope.analysis.loaders import dataset_from_records
        >>> from hopscope.processors.records import SpanRecord
        >>> spans = [
        ...     SpanRecord("t", "c", None, "risk/Score", "client", 0, 100, "payment"),
        ...     SpanRecord("t", "s", "c", "risk/Score", "server", 10, 80, "risk"),
        ... ]
        >>> edges = run(dataset_from_records(spans)).tables["edges"]
        >>> edges.select("source_service", "target_service", "calls", "network_p50_ns").row(0)
        ('payment', 'risk', 1, 30)
    """
    if bucket is not None and bucket <= 0:
        raise ValueError(f"bucket must be a positive width in ns, got {bucket}")
    hops = data.hops
    if bucket is None:
        window = hops.select(pl.col("time").min().alias("start"), pl.col("time").max().alias("end"))
        start, end = window.collect().row(0)
        bucket = bucket_ns(start, end)
    edges, over_time, nodes, node_skew = pl.collect_all([
        _edges(hops, skew_floor_ns, skew_network_share),
        _edges_over_time(hops, bucket),
        _nodes(hops),
        _node_skew(hops, skew_floor_ns, skew_network_share),
    ])  # fmt: skip
    findings = [
        *_slow_edges(hops, edges, slow_edge_ratio, slow_edge_floor_ns, confidence),
        *_timeouts(hops, edges, timeout_rate),
        *_clock_skew(node_skew, clock_skew_share),
    ]
    return JobResult(
        job=JOB,
        tables={"edges": edges, "edges_over_time": over_time, "nodes": nodes},
        findings=findings,
    )


def _slow_edges(
    hops: pl.LazyFrame, edges: pl.DataFrame, ratio: float, floor_ns: int, confidence: float
) -> list[Finding]:
    """Edges far above the other RPC edges' typical network time (one row per edge: small)."""
    rpc = edges.filter(
        pl.col("hop_kind") == RPC,
        pl.col("network_p50_ns").is_not_null(),
    ).rows(named=True)
    slow: list[tuple[dict[str, Any], int, int]] = []
    for i, edge in enumerate(rpc):
        others = [e for j, e in enumerate(rpc) if j != i]
        if len(others) < MIN_REFERENCE_EDGES:
            continue
        typical_p50 = round(statistics.median(e["network_p50_ns"] for e in others))
        typical_p99 = round(statistics.median(e["network_p99_ns"] or 0 for e in others))
        p50 = edge["network_p50_ns"]
        if p50 >= ratio * typical_p50 and p50 - typical_p50 >= floor_ns:
            slow.append((edge, typical_p50, typical_p99))
    if not slow:
        return []
    examples = _slowest_hops(hops, [edge for edge, _, _ in slow])
    bounds = _p50_intervals(hops, [edge for edge, _, _ in slow], confidence)
    findings = []
    for edge, typical_p50, typical_p99 in slow:
        source, target, operation = (
            edge["source_service"],
            edge["target_service"],
            edge["operation"],
        )
        low, high, measured = bounds[(source, target, operation)]
        coverage = median_coverage(measured, confidence)
        # The whole interval slow, at the asked confidence: the edge is slow, not unlucky.
        bounded = (
            coverage >= confidence
            and low >= ratio * typical_p50
            and (low - typical_p50 >= floor_ns)
        )
        excess_p99 = max((edge["network_p99_ns"] or 0) - typical_p99, 0)
        calls_per_trace = edge["calls"] / max(edge["traces"], 1)
        gain_ns = round(excess_p99 * calls_per_trace)
        excess_p50 = edge["network_p50_ns"] - typical_p50
        findings.append(
            Finding(
                job=JOB,
                kind="slow_edge",
                title=f"{source} → {target}: +{ms(excess_p50)} network per call ({operation})",
                impact="high" if bounded else "medium",
                gain_ns=gain_ns,
                subject=_edge_subject(edge),
                evidence={
                    "calls": edge["calls"],
                    "traces": edge["traces"],
                    "calls_per_trace": calls_per_trace,
                    "network_p50_ns": edge["network_p50_ns"],
                    "network_p99_ns": edge["network_p99_ns"],
                    "typical_network_p50_ns": typical_p50,
                    "typical_network_p99_ns": typical_p99,
                    "network_p50_ratio": edge["network_p50_ns"] / max(typical_p50, 1),
                    "network_p50_interval_ns": [low, high],
                    "network_p50_interval_coverage": round(coverage, 4),
                    "server_p50_ns": edge["server_p50_ns"],
                    "client_p50_ns": edge["client_p50_ns"],
                    "error_rate": edge["error_rate"],
                },
                recommendation=(
                    f"The time is lost between {source} and {target}, not in {target} (its "
                    f"server p50 is {ms(edge['server_p50_ns'])}): check the network path of "
                    "this edge — both sides in the same zone, no extra proxy, sidecar or load "
                    "balancer hop, connections reused (keep-alive, no TLS handshake per call), "
                    "no retransmits or MTU trouble on the link."
                ),
                gain=(
                    f"bringing {source} → {target} back to the typical edge's network time "
                    f"saves {ms(gain_ns)} at p99 ({ms(excess_p99)} per call × "
                    f"{calls_per_trace:.2g} calls per payment)"
                ),
                example_traces=tuple(examples.get((source, target, operation), ())),
            )
        )
    return findings


def _p50_intervals(
    hops: pl.LazyFrame, edges: list[dict[str, Any]], confidence: float
) -> dict[tuple[str, str, str], tuple[int, int, int]]:
    """Each edge's network p50 interval and the number of hops it rests on."""
    keys = ("source_service", "target_service", "operation")
    wanted = pl.DataFrame([{k: e[k] for k in keys} for e in edges]).lazy()
    rows = (
        hops.filter(pl.col("hop_kind") == RPC)
        .join(wanted, on=list(keys), how="semi")
        .group_by(*keys)
        .agg(*median_interval("network_ns", confidence), pl.col("network_ns").count().alias("n"))
        .collect()
    )
    return {
        (r["source_service"], r["target_service"], r["operation"]): (
            r["network_ns_lo"],
            r["network_ns_hi"],
            r["n"],
        )
        for r in rows.iter_rows(named=True)
    }


def _slowest_hops(
    hops: pl.LazyFrame, edges: list[dict[str, Any]]
) -> dict[tuple[str, str, str], list[str]]:
    """Traces of each edge's slowest hops by network time (one query for all edges)."""
    keys = ("source_service", "target_service", "operation")
    wanted = pl.DataFrame([{k: e[k] for k in keys} for e in edges]).lazy()
    rows = (
        hops.filter(pl.col("hop_kind") == RPC)
        .join(wanted, on=keys)
        .group_by(*keys, maintain_order=True)
        .agg(example_traces("network_ns"))
        .collect()
    )
    return {(r[0], r[1], r[2]): r[3] for r in rows.iter_rows()}


def _timeouts(hops: pl.LazyFrame, edges: pl.DataFrame, rate: float) -> list[Finding]:
    """Edges whose callers give up on a share of the calls (one row per edge: small)."""
    flagged = edges.filter(pl.col("timeouts") > 0, pl.col("timeout_rate") >= rate)
    if flagged.is_empty():
        return []
    abandoned = (
        hops.filter(pl.col("client_abandoned").fill_null(False))
        .group_by(*_EDGE)
        .agg(
            percentile_ns("client_ns", 0.5).alias("waited_p50_ns"),
            percentile_ns("server_ns", 0.5).alias("server_p50_ns"),
            example_traces("server_ns").alias("examples"),
        )
        .collect()
    )
    by_edge = {tuple(r[k] for k in _EDGE): r for r in abandoned.iter_rows(named=True)}
    findings = []
    for edge in flagged.iter_rows(named=True):
        key = tuple(edge[k] for k in _EDGE)
        source, target, operation = key[0], key[1], key[2]
        found = by_edge.get(key, {})
        waited, served = found.get("waited_p50_ns") or 0, found.get("server_p50_ns") or 0
        findings.append(
            Finding(
                job=JOB,
                kind="client_timeout",
                title=f"{source} → {target}: {edge['timeouts']} calls given up by the caller "
                f"({edge['timeout_rate']:.0%}, {operation})",
                impact="medium",
                gain_ns=waited,
                subject=_edge_subject(edge),
                evidence={
                    "calls": edge["calls"],
                    "timeouts": edge["timeouts"],
                    "timeout_rate": edge["timeout_rate"],
                    "waited_p50_ns": waited,
                    "abandoned_server_p50_ns": served,
                    "server_p50_ns": edge["server_p50_ns"],
                },
                recommendation=(
                    f"{source} stops waiting after about {ms(waited)} while {target} goes on "
                    f"for {ms(served)}: find why {target} is slow on these calls (its own "
                    "time, its dependencies), and make the deadline travel with the request "
                    "(gRPC deadlines, a timeout header) so the callee stops work nobody waits "
                    "for; check retries of given-up calls are idempotent."
                ),
                gain=(
                    f"each given-up call costs its payment the {ms(waited)} the caller waited "
                    "before failing or retrying"
                ),
                example_traces=tuple(found.get("examples") or ()),
            )
        )
    return findings


def _clock_skew(node_skew: pl.DataFrame, share: float) -> list[Finding]:
    flagged = node_skew.filter(pl.col("hops") >= MIN_NODE_HOPS, pl.col("share") >= share)
    return [
        Finding(
            job=JOB,
            kind="clock_skew",
            title=f"{row['node']} ({row['service']}): clock off, "
            f"{row['share']:.0%} of its hops skewed",
            impact="medium",
            gain_ns=0,
            subject={"service": row["service"], "node": row["node"]},
            evidence={
                "hops": row["hops"],
                "skewed_hops": row["skewed_hops"],
                "share": row["share"],
                "offset_p50_ns": row["offset_p50_ns"],
            },
            recommendation=(
                f"Synchronise {row['node']}'s clock: check that NTP/chrony runs and reaches its "
                "servers (chronyc tracking / chronyc sources), and alert on clock offset. Its "
                "span timestamps are shifted, so timelines and request/response legs are off; "
                "durations, and so network_ns, stay valid."
            ),
            gain=(
                "no latency gain: correct timestamps make trace timelines and the "
                "request/response split of network time trustworthy again"
            ),
            example_traces=tuple(row["examples"]),
        )
        for row in flagged.iter_rows(named=True)
    ]
