"""Caches: hit ratio per cache, its course over the window, and what a miss costs.

Input: cache lookup spans (``cache_name`` set; ``cache_hit`` true/false, lookups without a
known outcome count as lookups but not in the ratio).

- ``caches``: per service and cache: lookups, hits, hit_ratio and the miss penalty.
- ``over_time``: the hit ratio per time bucket (:func:`over_time`).

Miss penalty: the mean duration of the operation that *encloses* the lookup (its parent span,
usually the server span of the request that needed the entry) when the lookup missed, minus
the same when it hit. The parent, not the trace: the trace's duration carries every other
call's variance (an issuer's heavy tail dwarfs a few milliseconds of recomputation), while
the parent holds the lookup and whatever the miss triggers (recomputing the entry, the database
read behind it). Lookups whose parent is not in the data are left out of the penalty.

Findings:

- ``cache_degradation`` (``high``): the hit ratio fell clearly between the first and the last
  third of the window (a deploy flushed the cache, an eviction storm, keys that stopped
  matching) and misses cost latency; ``medium`` for a smaller or costless drop.
- ``low_hit_ratio`` (``medium``): a steadily low hit ratio whose misses cost latency.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import polars as pl

from hopscope.analysis.expr import example_traces
from hopscope.analysis.findings import Finding, Impact, JobResult
from hopscope.analysis.ids import LEFT_ROW, RIGHT_ROW, id_pairs
from hopscope.analysis.jobs.tail import proportion_p_value
from hopscope.analysis.render import ms
from hopscope.analysis.schema import Dataset

JOB: Final = "cache"

# The window is compared as thirds: a fault a third in leaves a clean before and after, and
# a third holds enough lookups for a ratio at the rates payments run.
THIRDS: Final = 3
# A drop of 20 points (0.92 → 0.72) doubles-to-quadruples the misses of a healthy cache: high.
# 10 points is worth planning for; smaller moves are ordinary churn.
HIGH_DROP: Final = 0.20
MEDIUM_DROP: Final = 0.10
# Evidence for the drop (one-sided two-proportion test, before > after): the same breakpoints
# as Elastic's impact levels (notes 1c).
HIGH_DROP_P: Final = 1e-6
MEDIUM_DROP_P: Final = 1e-3
# Lookups per third below which a ratio is too coarse to compare.
MIN_LOOKUPS_PER_THIRD: Final = 30
# A miss must cost this much to matter for a payment: a microsecond-scale recomputation is
# no reason to act, a millisecond per miss on a hot path is.
MIN_MISS_PENALTY_NS: Final = 1_000_000
# A cache that steadily serves fewer than four in five lookups is mis-sized or mis-keyed (a
# profile cache for returning cards should serve most of them).
LOW_HIT_RATIO: Final = 0.8
TARGET_HIT_RATIO: Final = 0.9
MIN_LOOKUPS: Final = 50


def lookups(spans: pl.LazyFrame) -> pl.DataFrame:
    """Cache lookup spans with the duration of their enclosing (parent) span.

    Columns: time, trace_id, service, cache, hit, duration_ns, parent_ns.
    """
    found = (
        spans.filter(pl.col("cache_name").is_not_null())
        .select(
            "time",
            "trace_id",
            "parent_id",
            "service",
            pl.col("cache_name").alias("cache"),
            pl.col("cache_hit").alias("hit"),
            "duration_ns",
        )
        .collect()
    )
    # Only the spans that enclose a lookup: a one-column filter on the lookups' parent ids
    # first (cheap, and it drops almost every span), then the exact (trace, span) match on
    # one integer key of the two ids' hashes, the ids compared where keys meet (id_pairs; a
    # semi join, a unique and a left join on the two text columns hashed them three times).
    parent_ids = found.get_column("parent_id").drop_nulls().unique().implode()
    parents = (
        spans.select("trace_id", "span_id", pl.col("duration_ns").alias("parent_ns"))
        .filter(pl.col("span_id").is_in(parent_ids))
        .collect()
    )
    pairs = id_pairs(found, parents, ["trace_id", "parent_id"], ["trace_id", "span_id"])
    # One parent per lookup (a span is archived once per id; the first if not).
    pairs = pairs.filter(pl.col(LEFT_ROW).is_first_distinct())
    parent_ns = pairs.select(
        LEFT_ROW, parents.get_column("parent_ns").gather(pairs.get_column(RIGHT_ROW))
    )
    return (
        found.with_row_index(LEFT_ROW)
        .join(parent_ns, on=LEFT_ROW, how="left", maintain_order="left")
        .drop(LEFT_ROW, "parent_id")
    )


def cache_table(found: pl.LazyFrame) -> pl.LazyFrame:
    """The ``caches`` table: per service and cache, the ratio and the miss penalty."""
    # Unknown outcomes (null) are neither.
    hit, miss = pl.col("hit").fill_null(False), (~pl.col("hit")).fill_null(False)
    return (
        found.group_by("service", "cache")
        .agg(
            pl.len().cast(pl.Int64).alias("lookups"),
            hit.sum().cast(pl.Int64).alias("hits"),
            miss.sum().cast(pl.Int64).alias("misses"),
            (
                pl.col("parent_ns").filter(miss).mean() - pl.col("parent_ns").filter(hit).mean()
            ).alias("miss_penalty_ns"),
            pl.col("parent_ns").filter(hit).mean().alias("hit_parent_ns"),
            pl.col("trace_id").n_unique().cast(pl.Int64).alias("traces"),
        )
        .with_columns(
            (pl.col("hits") / (pl.col("hits") + pl.col("misses"))).alias("hit_ratio"),
            pl.col("miss_penalty_ns").round(0).cast(pl.Int64),
            pl.col("hit_parent_ns").round(0).cast(pl.Int64),
        )
        .select(
            "service",
            "cache",
            "lookups",
            "hits",
            "hit_ratio",
            "miss_penalty_ns",
            "misses",
            "hit_parent_ns",
            "traces",
        )
        .sort("service", "cache")
    )


def over_time(found: pl.LazyFrame, every_ns: int) -> pl.LazyFrame:
    """The ``over_time`` table: lookups and hit ratio per service, cache and time bucket.

    Buckets are ``every_ns`` wide and half-open, ``[bucket, bucket + every_ns)``, labelled by
    their start; the first bucket of each cache starts at its first lookup
    (``group_by_dynamic`` with ``start_by="datapoint"``, which needs the lookups sorted by time
    within each cache: sorted here). Buckets without lookups are absent.
    """
    return (
        found.sort("service", "cache", "time")
        .group_by_dynamic(
            "time",
            every=f"{every_ns}ns",
            group_by=["service", "cache"],
            start_by="datapoint",
            closed="left",
            label="left",
        )
        .agg(
            pl.len().cast(pl.Int64).alias("lookups"),
            (pl.col("hit").fill_null(False).sum() / pl.col("hit").is_not_null().sum()).alias(
                "hit_ratio"
            ),
        )
        .rename({"time": "bucket"})
        .select("bucket", "service", "cache", "lookups", "hit_ratio")
        .sort("service", "cache", "bucket")
    )


def thirds(found: pl.LazyFrame) -> pl.LazyFrame:
    """Hits and known outcomes per service and cache in the first and the last third of its
    lookups' time span: hits_before, known_before, hits_after, known_after."""
    start = pl.col("time").min().over("service", "cache")
    span = pl.col("time").max().over("service", "cache") - start
    known = pl.col("hit").is_not_null()
    return (
        found.with_columns(
            (pl.col("time") < start + span / THIRDS).alias("before"),
            (pl.col("time") >= start + span * (THIRDS - 1) / THIRDS).alias("after"),
        )
        .group_by("service", "cache")
        .agg(
            (pl.col("hit") & pl.col("before")).sum().cast(pl.Int64).alias("hits_before"),
            (known & pl.col("before")).sum().cast(pl.Int64).alias("known_before"),
            (pl.col("hit") & pl.col("after")).sum().cast(pl.Int64).alias("hits_after"),
            (known & pl.col("after")).sum().cast(pl.Int64).alias("known_after"),
        )
    )


def _examples(found: pl.DataFrame, service: str, cache: str) -> list[str]:
    ids = (
        found.filter((pl.col("service") == service) & (pl.col("cache") == cache) & ~pl.col("hit"))
        .select(example_traces("parent_ns"))
        .to_series()
    )
    return ids.to_list()


_ADVICE: Final = (
    "Warm the cache after deploys and restarts (preload the hot keys before taking traffic), "
    "coalesce concurrent misses for one key into one recomputation, serve stale entries while "
    "revalidating (stale-while-revalidate) or lengthen the TTL, and check the cache's size and "
    "eviction rate against its working set."
)


def _drop_finding(row: Mapping[str, Any], found: pl.DataFrame) -> Finding | None:
    if row["known_before"] < MIN_LOOKUPS_PER_THIRD or row["known_after"] < MIN_LOOKUPS_PER_THIRD:
        return None
    before = row["hits_before"] / row["known_before"]
    after = row["hits_after"] / row["known_after"]
    drop = before - after
    p_value = proportion_p_value(
        row["hits_before"], row["known_before"], row["hits_after"], row["known_after"]
    )
    penalty = row["miss_penalty_ns"]
    costly = penalty is not None and penalty >= MIN_MISS_PENALTY_NS
    impact: Impact
    if drop >= HIGH_DROP and p_value < HIGH_DROP_P and costly:
        impact = "high"
    elif drop >= MEDIUM_DROP and p_value < MEDIUM_DROP_P:
        impact = "medium"
    else:
        return None
    service, cache = row["service"], row["cache"]
    lookups_per_trace = row["lookups"] / max(1, row["traces"])
    extra_misses = drop * lookups_per_trace
    gain_ns = int(max(0, penalty or 0) * extra_misses)
    return Finding(
        job=JOB,
        kind="cache_degradation",
        title=(
            f"{service}: {cache} hit ratio fell from {before:.0%} to {after:.0%}; "
            f"a miss costs {ms(penalty)}"
        ),
        impact=impact,
        gain_ns=gain_ns,
        subject={"service": service, "cache": cache},
        evidence={
            "hit_ratio_before": round(before, 4),
            "hit_ratio_after": round(after, 4),
            "lookups_before": row["known_before"],
            "lookups_after": row["known_after"],
            "p_value": p_value,
            "miss_penalty_ns": penalty,
            "hit_parent_ns": row["hit_parent_ns"],
            "lookups_per_trace": round(lookups_per_trace, 3),
            "hit_ratio": row["hit_ratio"],
        },
        recommendation=(
            f"The {cache} cache in {service} lost its hit ratio during the window "
            f"({before:.0%} in the first third, {after:.0%} in the last): "
            "typically a flush by a deploy or restart, an eviction storm, or keys that stopped "
            f"matching. {_ADVICE}"
        ),
        gain=(
            f"restoring the {before:.0%} hit ratio avoids {extra_misses:.2f} misses per payment "
            f"at {ms(penalty)} each: ~{ms(gain_ns)}"
        ),
        example_traces=_examples(found, service, cache),
    )


def _low_ratio_finding(row: Mapping[str, Any], found: pl.DataFrame) -> Finding | None:
    ratio, penalty = row["hit_ratio"], row["miss_penalty_ns"]
    if (
        ratio is None
        or ratio >= LOW_HIT_RATIO
        or row["lookups"] < MIN_LOOKUPS
        or penalty is None
        or penalty < MIN_MISS_PENALTY_NS
    ):
        return None
    service, cache = row["service"], row["cache"]
    lookups_per_trace = row["lookups"] / max(1, row["traces"])
    avoidable = (TARGET_HIT_RATIO - ratio) * lookups_per_trace
    gain_ns = int(penalty * avoidable)
    return Finding(
        job=JOB,
        kind="low_hit_ratio",
        title=f"{service}: {cache} serves only {ratio:.0%} of lookups; a miss costs {ms(penalty)}",
        impact="medium",
        gain_ns=gain_ns,
        subject={"service": service, "cache": cache},
        evidence={
            "hit_ratio": round(ratio, 4),
            "lookups": row["lookups"],
            "miss_penalty_ns": penalty,
            "lookups_per_trace": round(lookups_per_trace, 3),
        },
        recommendation=(
            f"The {cache} cache in {service} misses steadily. Check its size against the working "
            "set (evictions), its TTL against how often entries change, and its keys (a "
            f"per-request component in the key defeats it). {_ADVICE}"
        ),
        gain=(
            f"a {TARGET_HIT_RATIO:.0%} hit ratio avoids {avoidable:.2f} misses per payment at "
            f"{ms(penalty)} each: ~{ms(gain_ns)}"
        ),
        example_traces=_examples(found, service, cache),
    )


def run(data: Dataset, *, buckets: int = 20) -> JobResult:
    """Hit ratio, its course over time and the miss penalty of every cache.

    Parameters:
        data: the analysis window.
        buckets: how many time buckets the window is cut into for ``over_time``.

    Returns:
        Tables ``caches`` (service, cache, lookups, hits, hit_ratio, miss_penalty_ns, misses,
        hit_parent_ns, traces) and ``over_time`` (bucket, service, cache, lookups, hit_ratio);
        findings ``cache_degradation`` and ``low_hit_ratio``.

    Raises:
        ValueError: ``buckets`` below 1.
    """
    if buckets < 1:
        raise ValueError(f"buckets must be >= 1, got {buckets}")
    found = lookups(data.spans)
    window = found.select((pl.col("time").max() - pl.col("time").min()).dt.total_nanoseconds())
    span_ns = window.item() or 0
    # +1: the last lookup falls inside the last half-open bucket.
    every_ns = max(1, -(-(span_ns + 1) // buckets))
    lazy = found.lazy()
    caches, timeline, halves = pl.collect_all(
        [cache_table(lazy), over_time(lazy, every_ns), thirds(lazy)]
    )
    findings: list[Finding] = []
    for row in caches.join(halves, on=["service", "cache"], how="left").iter_rows(named=True):
        finding = _drop_finding(row, found) or _low_ratio_finding(row, found)
        if finding is not None:
            findings.append(finding)
    return JobResult(JOB, {"caches": caches, "over_time": timeline}, findings)
