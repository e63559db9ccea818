"""Coordination: who waited on whom — lock waits, two-phase commits, consensus, queues.

A coordination delay (docs/DESIGN.md §3 "Coordination delay") is a span whose
``hopscope.coordination.kind`` is set: ``duration_ns`` is the wait, ``critical_ns`` the part of
it on the trace's critical path (what it cost the payment). Two-phase-commit transactions carry
their slowest prepare, the straggler participant (the last to answer prepare) and
``blocked_ns``, the coordinator's wait between the first and the last answer.

Percentiles follow :func:`hopscope.analysis.expr.percentile_ns` (an observed value).

Tables:

- ``by_kind``: coordination_kind, waits, total_ns, p50_ns, p99_ns, critical_ns, waited_ns
  (the part of ``critical_ns`` that is waiting: see "Statement lock waits" below),
  critical_share (``waited_ns / Σ trace durations``: the share of all payment time spent in
  this kind of wait on the critical path).
- ``by_resource``: coordination_kind, resource, service, waits, total_ns, p50_ns, p99_ns,
  max_ns, critical_ns, share_of_kind (of the kind's total wait), largest first per kind.
- ``stragglers``: per straggler participant: transactions, multi_participant (transactions
  with two or more participants, the only ones where "last" means something),
  straggler_share (of all multi-participant transactions), prepare_p99_ns, blocked_p50_ns,
  blocked_p99_ns, aborted.

Statement lock waits
    A lock wait inferred from a statement (``SELECT … FOR UPDATE``: a span with ``db.system``)
    lasts the wait *and* the statement's own work, which instrumentation cannot split. Its
    waiting part is estimated per service and database system: the share of the lock
    statements' mean duration beyond the mean of the same service's other statements on that
    database (spans with a query text: what a statement there costs uncontended, on the same
    hosts and pool; connects are not statements), 0 when the
    lock statements are no slower. Uncontended, a ``FOR UPDATE`` row read costs what the other
    reads cost and waits nothing; under contention its mean is many times theirs. A lock wait
    recorded apart (no ``db.system``, or no other statement to compare with) is waiting whole.

Findings:

- ``lock_contention`` (``high``): lock waits cost the payments (their waiting critical share
  reaches :data:`LOCK_CRITICAL_SHARE`) and concentrate on a few hot resources (each at least
  :data:`HOT_RESOURCE_SHARE` of the lock-wait time with :data:`MIN_HOT_WAITS` waits, together
  at least :data:`HOT_CONCENTRATION`). Lock waits that cost as much but are spread thin are
  ``medium``: the locking scheme as a whole, not one hot row.
- ``two_phase_commit_straggler`` (``medium``): one participant answers prepare last in most
  multi-participant transactions, and the coordinator waits for it long enough to matter.
"""

from __future__ import annotations

import math
from typing import Any, Final

import polars as pl

from hopscope.analysis.expr import EXAMPLE_TRACES, example_traces, percentile_ns, share
from hopscope.analysis.findings import Finding, Impact, JobResult
from hopscope.analysis.ids import join_on_ids
from hopscope.analysis.render import ms
from hopscope.analysis.schema import Dataset

JOB: Final = "coordination"

LOCK_WAIT: Final = "lock_wait"
ABORTED: Final = "aborted"
# 2 % of all payment time spent waiting for locks on the critical path is a cost users feel
# (at 200 ms per payment, 4 ms each); healthy row locking stays around 0.1 %.
LOCK_CRITICAL_SHARE: Final = 0.02
# A resource holding 5 % of all lock-wait time among hundreds of locked rows is hot.
HOT_RESOURCE_SHARE: Final = 0.05
# ... with at least three waits: contention needs waiters queueing, one long wait is an
# outlier, not a hot row.
MIN_HOT_WAITS: Final = 3
# The hot resources together hold half the lock-wait time: the fix is about them.
HOT_CONCENTRATION: Final = 0.5
# At most this many resources are named; more is not "a few hot rows".
MAX_HOT_RESOURCES: Final = 10
# The tail whose mean lock-wait critical-path time is the gain.
TAIL_FRACTION: Final = 0.01
# A participant last in 80 % of two-or-more-participant transactions is systematically slow:
# with two healthy participants each is last about half the time.
STRAGGLER_SHARE: Final = 0.8
# ... over at least this many such transactions.
MIN_STRAGGLER_TRANSACTIONS: Final = 10
# ... and the coordinator typically waits 5 ms for it after the others answered: below, the
# order of answers is noise of a millisecond.
STRAGGLER_BLOCKED_FLOOR_NS: Final = 5_000_000


def _q(column: str, q: float, name: str) -> pl.Expr:
    return percentile_ns(column, q).alias(name)


def _waited(coordination: pl.LazyFrame, spans: pl.LazyFrame) -> pl.LazyFrame:
    """Coordination delays with ``waited_ns``: their critical-path time times the waiting share
    of their kind, service and database system (module docstring, "Statement lock waits")."""
    statements = spans.filter(pl.col("db_system").is_not_null(), pl.col("kind") == "client")
    # Statements only: a connect or a pool checkout (no query text) costs next to nothing and
    # would make any statement look slow.
    peers = (
        statements.filter(
            pl.col("coordination_kind").is_null(), pl.col("db_statement").is_not_null()
        )
        .group_by("service", "db_system")
        .agg(pl.col("duration_ns").mean().alias("_peer_mean"))
    )
    # Each delay with its statement, if it is one: a left join on the two text ids, done on
    # one integer key of their hashes (the ids compared where keys meet).
    tagged = join_on_ids(
        coordination.collect(),
        statements.select("trace_id", "span_id", "db_system").collect(),
        on=["trace_id", "span_id"],
    ).lazy()
    waiting = (
        tagged.filter(pl.col("db_system").is_not_null())
        .group_by("coordination_kind", "service", "db_system")
        .agg(pl.col("duration_ns").mean().alias("_own_mean"))
        .join(peers, on=["service", "db_system"], how="inner")
        .select(
            "coordination_kind",
            "service",
            "db_system",
            (1 - pl.col("_peer_mean") / pl.col("_own_mean"))
            .clip(0.0, 1.0)
            .fill_nan(1.0)
            .alias("_waiting"),
        )
    )
    return (
        tagged.join(
            waiting,
            on=["coordination_kind", "service", "db_system"],
            how="left",
            nulls_equal=True,
        )
        .with_columns(
            (pl.col("critical_ns") * pl.col("_waiting").fill_null(1.0))
            .round()
            .cast(pl.Int64)
            .alias("waited_ns")
        )
        .drop("db_system", "_waiting")
    )


def _by_kind(coordination: pl.LazyFrame, traces_ns: pl.LazyFrame) -> pl.LazyFrame:
    return (
        coordination.group_by("coordination_kind")
        .agg(
            pl.len().alias("waits"),
            pl.col("duration_ns").sum().alias("total_ns"),
            _q("duration_ns", 0.5, "p50_ns"),
            _q("duration_ns", 0.99, "p99_ns"),
            pl.col("critical_ns").sum().alias("critical_ns"),
            pl.col("waited_ns").sum().alias("waited_ns"),
        )
        .join(traces_ns, how="cross")
        .with_columns(
            (pl.col("waited_ns") / pl.col("traces_ns")).alias("critical_share"),
        )
        .drop("traces_ns")
        .sort(["critical_ns", "coordination_kind"], descending=[True, False])
    )


def _by_resource(coordination: pl.LazyFrame) -> pl.LazyFrame:
    return (
        coordination.group_by("coordination_kind", "resource", "service")
        .agg(
            pl.len().alias("waits"),
            pl.col("duration_ns").sum().alias("total_ns"),
            _q("duration_ns", 0.5, "p50_ns"),
            _q("duration_ns", 0.99, "p99_ns"),
            pl.col("duration_ns").max().alias("max_ns"),
            pl.col("critical_ns").sum().alias("critical_ns"),
        )
        .with_columns(share("total_ns", over="coordination_kind").alias("share_of_kind"))
        .sort(["coordination_kind", "total_ns", "resource"], descending=[False, True, False])
    )


def _stragglers(commits: pl.LazyFrame) -> pl.LazyFrame:
    multi = pl.col("participants") >= 2
    return (
        commits.filter(pl.col("straggler").is_not_null())
        .group_by("straggler")
        .agg(
            pl.len().alias("transactions"),
            multi.sum().alias("multi_participant"),
            _q("prepare_ns", 0.99, "prepare_p99_ns"),
            percentile_ns(pl.col("blocked_ns").filter(multi), 0.5).alias("blocked_p50_ns"),
            percentile_ns(pl.col("blocked_ns").filter(multi), 0.99).alias("blocked_p99_ns"),
            (pl.col("outcome") == ABORTED).sum().alias("aborted"),
            example_traces("blocked_ns", where=multi).alias("examples"),
        )
        .with_columns(share("multi_participant").alias("straggler_share"))
        .sort(["multi_participant", "straggler"], descending=[True, False])
    )


def _lock_tail(coordination: pl.LazyFrame, traces: pl.LazyFrame) -> pl.LazyFrame:
    """Mean lock-wait critical ns per trace over the slowest :data:`TAIL_FRACTION` traces
    (traces without lock waits count 0), and how many traces that tail holds."""
    ranked = traces.filter(pl.col("duration_ns").is_not_null()).select("trace_id", "duration_ns")
    n = pl.len()
    tail = ranked.sort("duration_ns", "trace_id", descending=[True, False]).with_row_index("rank")
    per_trace = (
        coordination.filter(pl.col("coordination_kind") == LOCK_WAIT)
        .group_by("trace_id")
        .agg(pl.col("waited_ns").sum().alias("lock_ns"))
    )
    return (
        tail.with_columns((n * TAIL_FRACTION).round(9).ceil().cast(pl.UInt32).alias("k"))
        .filter(pl.col("rank") < pl.col("k"))
        .join(per_trace, on="trace_id", how="left")
        .select(
            pl.col("lock_ns").fill_null(0).mean().alias("tail_mean_ns"),
            pl.len().alias("tail_traces"),
        )
    )


def run(
    data: Dataset,
    *,
    lock_critical_share: float = LOCK_CRITICAL_SHARE,
    hot_resource_share: float = HOT_RESOURCE_SHARE,
    straggler_share: float = STRAGGLER_SHARE,
) -> JobResult:
    """Waits per coordination kind and resource, 2PC stragglers, and what to change.

    Parameters:
        data: the dataset; reads ``coordination``, ``two_phase_commits`` and ``traces``
            (durations, for critical shares and the tail).
        lock_critical_share: share of all trace time spent in lock waits on the critical path
            from which lock waits are a finding.
        hot_resource_share: share of the lock-wait time that makes one resource hot.
        straggler_share: share of multi-participant transactions a participant must finish
            last for a straggler finding.

    Returns:
        Tables ``by_kind``, ``by_resource``, ``stragglers`` and the findings (module docstring).

    Examples:
        >>> from hopscope.analysis.schema import empty
        >>> frames = {k: empty(k).lazy() for k in ("spans", "traces", "hops", "failovers",
        ...           "coordination", "two_phase_commits")}
        >>> result = run(Dataset(**frames))
        >>> result.findings, list(result.tables)
        ([], ['by_kind', 'by_resource', 'stragglers'])
    """
    traces_ns = data.traces.select(pl.col("duration_ns").sum().alias("traces_ns"))
    # Read by two of the plans below: computed once (collect_all computed it for each, 1.7
    # CPU-s apiece at 10M spans: a join of the delays with the statements on text ids).
    waited = _waited(data.coordination, data.spans).collect().lazy()
    by_kind, by_resource, stragglers, tail, examples = pl.collect_all(
        [
            _by_kind(waited, traces_ns),
            _by_resource(data.coordination),
            _stragglers(data.two_phase_commits),
            _lock_tail(waited, data.traces),
            _lock_examples(data.coordination),
        ]
    )
    findings = [
        *_lock_contention(
            by_kind, by_resource, tail, examples, lock_critical_share, hot_resource_share
        ),
        *_straggler(stragglers, straggler_share),
    ]
    return JobResult(
        job=JOB,
        tables={
            "by_kind": by_kind,
            "by_resource": by_resource,
            "stragglers": stragglers.drop("examples"),
        },
        findings=findings,
    )


def _lock_examples(coordination: pl.LazyFrame) -> pl.LazyFrame:
    """Per lock resource, the traces whose waits on it cost the most critical-path time."""
    return (
        coordination.filter(pl.col("coordination_kind") == LOCK_WAIT)
        .group_by("resource", "trace_id")
        .agg(pl.col("critical_ns").sum())
        .group_by("resource")
        .agg(example_traces("critical_ns"))
    )


def _lock_contention(
    by_kind: pl.DataFrame,
    by_resource: pl.DataFrame,
    tail: pl.DataFrame,
    examples: pl.DataFrame,
    critical_share_min: float,
    hot_share_min: float,
) -> list[Finding]:
    locks = by_kind.filter(pl.col("coordination_kind") == LOCK_WAIT)
    if locks.is_empty():
        return []
    kind = locks.row(0, named=True)
    critical_share = kind["critical_share"] or 0.0
    if critical_share < critical_share_min:
        return []
    hot = (
        by_resource.filter(
            pl.col("coordination_kind") == LOCK_WAIT,
            pl.col("share_of_kind") >= hot_share_min,
            pl.col("waits") >= MIN_HOT_WAITS,
        )
        .head(MAX_HOT_RESOURCES)
        .rows(named=True)
    )
    concentration = sum(r["share_of_kind"] for r in hot)
    concentrated = bool(hot) and concentration >= HOT_CONCENTRATION
    impact: Impact = "high" if concentrated else "medium"
    gain_ns = round(tail.item(0, "tail_mean_ns") or 0)
    named = hot if concentrated else []
    services = sorted({r["service"] for r in named if r["service"]})
    service = services[0] if len(services) == 1 else None
    if service is None and not named:
        top_services = by_resource.filter(pl.col("coordination_kind") == LOCK_WAIT)
        service = top_services.item(0, "service") if not top_services.is_empty() else None
    resources = [r["resource"] for r in named]
    example_map = dict(examples.iter_rows())
    # The hot resources' own examples, in the order of the resources, up to the usual count.
    picked: list[str] = []
    for resource in resources or [None]:
        for trace in example_map.get(resource, ()):
            if trace not in picked and len(picked) < EXAMPLE_TRACES:
                picked.append(trace)
    where = f" in {service}" if service else ""
    if concentrated:
        title = (
            f"lock contention{where} on {len(resources)} hot "
            f"resource{'s' if len(resources) > 1 else ''}: {concentration:.0%} of lock waits, "
            f"{critical_share:.1%} of payment time"
        )
        recommendation = (
            f"Lock waits{where} pile up on {', '.join(resources)}. Do not hold their row "
            "locks across the issuer call (or any remote call): take the lock after the "
            "authorisation returns and keep the transaction to the ledger update. Shorten "
            "transactions on these rows; for hot accounts use optimistic concurrency (version "
            "check and retry) or serialise their updates through a queue per account; split a "
            "hot row (sub-balances summed on read) so concurrent payments touch different rows."
        )
    else:
        title = (
            f"lock waits{where} cost {critical_share:.1%} of payment time, spread over many "
            "resources"
        )
        recommendation = (
            "Lock waits are on the critical path but not on a few rows: shorten transactions, "
            "take locks in a consistent order and late, avoid holding them across remote "
            "calls, and consider a weaker isolation level where the invariants allow."
        )
    return [
        Finding(
            job=JOB,
            kind="lock_contention",
            title=title,
            impact=impact,
            gain_ns=gain_ns,
            subject={"service": service, "resources": resources},
            evidence={
                "lock_waits": kind["waits"],
                "lock_wait_ns": kind["total_ns"],
                "critical_ns": kind["critical_ns"],
                "critical_share": critical_share,
                "hot_share": concentration if concentrated else None,
                "resources": [
                    {
                        "resource": r["resource"],
                        "waits": r["waits"],
                        "total_ns": r["total_ns"],
                        "p99_ns": r["p99_ns"],
                        "max_ns": r["max_ns"],
                        "share_of_kind": r["share_of_kind"],
                    }
                    for r in named
                ],
                "tail_mean_ns": gain_ns,
                "tail_traces": tail.item(0, "tail_traces"),
            },
            recommendation=recommendation,
            gain=(
                f"removing the lock waits' critical-path time saves {ms(gain_ns)} at p99 (their "
                f"mean over the slowest {TAIL_FRACTION:.0%} of payments)"
            ),
            example_traces=tuple(picked),
        )
    ]


def _straggler(stragglers: pl.DataFrame, share_min: float) -> list[Finding]:
    findings = []
    total_multi = int(stragglers.get_column("multi_participant").sum())
    if total_multi < MIN_STRAGGLER_TRANSACTIONS:
        return []
    for row in stragglers.iter_rows(named=True):
        share = row["straggler_share"]
        blocked_p50 = row["blocked_p50_ns"]
        if share is None or math.isnan(share) or share < share_min:
            continue
        if blocked_p50 is None or blocked_p50 < STRAGGLER_BLOCKED_FLOOR_NS:
            continue
        participant = row["straggler"]
        gain_ns = int(row["blocked_p99_ns"] or 0)
        evidence: dict[str, Any] = {
            "transactions": row["transactions"],
            "multi_participant": row["multi_participant"],
            "straggler_share": share,
            "prepare_p99_ns": row["prepare_p99_ns"],
            "blocked_p50_ns": blocked_p50,
            "blocked_p99_ns": row["blocked_p99_ns"],
            "aborted": row["aborted"],
        }
        findings.append(
            Finding(
                job=JOB,
                kind="two_phase_commit_straggler",
                title=(
                    f"2PC straggler {participant}: last to prepare in {share:.0%} of "
                    f"transactions, coordinator blocked {ms(blocked_p50)} at p50"
                ),
                impact="medium",
                gain_ns=gain_ns,
                subject={"participant": participant},
                evidence=evidence,
                recommendation=(
                    f"{participant} answers prepare last and the coordinator waits for it: "
                    "look at its prepare path (disk flush, replication, load), move it closer "
                    "to the coordinator, set a prepare timeout, and keep participants that are "
                    "not needed out of the transaction."
                ),
                gain=(
                    f"bringing {participant}'s prepare in line with the others saves up to "
                    f"{ms(gain_ns)} per transaction at p99 (the coordinator's blocked time)"
                ),
                example_traces=tuple(row["examples"]),
            )
        )
    return findings
