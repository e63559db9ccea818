"""Database calls: the statements that take the time, and reads that land on the primary.

Input: spans with ``db_system`` (CLIENT spans of the services; the database nodes themselves are
usually not instrumented, so ``server_address`` names the database node and ``db_role`` its
role, ``primary`` or ``replica``; ``peer_node``, the node an endpoint map names, wins over the
address). A locking read (``SELECT … FOR UPDATE``/``FOR SHARE``) is not a read: it belongs to a
write transaction on the primary. ``db_statement`` is already stripped of literal values, so
equal text is the same normalised statement.

- ``statements``: per (db_system, service, db_operation, statement): calls, p50/p99, total time
  and its share of all database time.
- ``reads_by_role``: reads (``db_operation`` SELECT, or a statement starting with SELECT) per
  service, statement and role.
- ``targets``: per database node (``server_address``) and role: calls, p50/p99, and its reads.

Replication groups ("shards"): a node named ``<shard>-primary`` or ``<shard>-replica-<n>``
belongs to ``<shard>`` (the convention of the ledger in docs/DESIGN.md's payment network); other
names fall back to the call's ``db_namespace``, then to the node itself.

Findings:

- ``replica_lag`` / ``reads_on_primary`` (``high``): a shard's primary serves reads although
  replicas of the same shard serve the same statements. A read router sends reads to the
  primary when a replica is too stale (or down); when the lagging replica can be named it is
  ``replica_lag``: a replica of the shard that received no reads in the last part of the window
  while the primary did, or a replica index the other shards have that this shard's traffic
  never reached. Otherwise the finding is ``reads_on_primary``. Subject: ``shard``,
  ``primary``, ``replica`` when named, and ``service``: the service whose reads went to the
  primary (most of them).
- ``slow_statement`` (``low``/``medium``; ``high`` only for a typical call slower than
  :data:`ABNORMAL_P50_NS`): the statements that take most of the database time, with an
  index/query recommendation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import polars as pl

from hopscope.analysis.expr import example_traces, percentile_ns, share
from hopscope.analysis.findings import Finding, Impact, JobResult
from hopscope.analysis.ids import group_key
from hopscope.analysis.render import ms
from hopscope.analysis.schema import Dataset

JOB: Final = "db"
PRIMARY: Final = "primary"
REPLICA: Final = "replica"

# Reads on the primary worth a finding: enough of them to exclude a one-off (a read-your-writes
# read right after a write) and a tenth of the shard's reads on the statements replicas serve:
# a router working as designed sends none there.
MIN_PRIMARY_READS: Final = 20
MIN_PRIMARY_READ_SHARE: Final = 0.1
# A replica "stopped" receiving reads when it got none in the last third of the window while
# the primary served reads then (a third holds enough reads per replica to notice absence).
SILENT_TAIL_FRACTION: Final = 1 / 3
# slow_statement: the few statements with the largest total time, each at least this share of
# all database time (smaller ones are not where the time goes).
TOP_STATEMENTS: Final = 3
MIN_STATEMENT_SHARE: Final = 0.2
MIN_STATEMENT_CALLS: Final = 20
# A statement whose p99 stays under 10 ms is not where a payment's p99 (hundreds of ms, an
# issuer call included) goes: no finding, however large its share of database time.
MIN_STATEMENT_P99_NS: Final = 10_000_000
# A p99 five times the median is not a healthy OLTP statement's variance (disk, plan or lock
# trouble): medium. A typical call of half a second is abnormal for a payment path: high.
TAIL_RATIO_MEDIUM: Final = 5.0
ABNORMAL_P50_NS: Final = 500_000_000

_ROLE_SUFFIX: Final = r"-(primary|replica)(-\d+)?$"


# A locking read (``SELECT … FOR UPDATE``/``FOR SHARE``) belongs to a write transaction: it
# must run on the primary, so it is not a read a replica could serve.
_LOCKING_READ: Final = r"\bFOR\s+(NO\s+KEY\s+|KEY\s+)?(UPDATE|SHARE)\b"


def _is_read() -> pl.Expr:
    # The operation's first word: the SQLAlchemy instrumentation records the span name
    # ("SELECT ledger", verb and namespace) as db.operation.name.
    operation = pl.col("db_operation").str.to_uppercase().str.split(" ").list.first()
    statement = pl.col("db_statement").str.strip_chars_start().str.to_uppercase()
    select = (operation == "SELECT") | (operation.is_null() & statement.str.starts_with("SELECT"))
    return (select & ~statement.str.contains(_LOCKING_READ).fill_null(False)).fill_null(False)


def _shard() -> pl.Expr:
    address = pl.col("server_address")
    return (
        pl.when(address.str.contains(_ROLE_SUFFIX))
        .then(address.str.replace(_ROLE_SUFFIX, ""))
        .otherwise(pl.coalesce(pl.col("db_namespace"), address))
        .alias("shard")
    )


# The columns the tables and findings read (the others would only be copied along).
_CALL_COLUMNS: Final = (
    "time",
    "trace_id",
    "service",
    "db_system",
    "db_operation",
    "db_statement",
    "db_role",
    "duration_ns",
)


def db_calls(spans: pl.LazyFrame) -> pl.LazyFrame:
    """Database call spans with ``read`` (bool) and ``shard`` columns."""
    # Only the columns the tables and findings read: the other span columns would be copied
    # along with every call.
    return (
        spans.filter(pl.col("db_system").is_not_null())
        .select(
            *_CALL_COLUMNS,
            "db_namespace",
            # The node's name from the endpoint map where the call records only an address.
            pl.coalesce("peer_node", "server_address").alias("server_address"),
        )
        .with_columns(_is_read().fill_null(False).alias("read"), _shard())
        .drop("db_namespace")
    )


def _latency(column: str = "duration_ns") -> list[pl.Expr]:
    return [
        percentile_ns(column, 0.5).alias("p50_ns"),
        percentile_ns(column, 0.99).alias("p99_ns"),
    ]


def statement_table(calls: pl.LazyFrame) -> pl.LazyFrame:
    """The ``statements`` table, largest total time first."""
    # Traces per statement counted on the ids' hashes where exact (hopscope.analysis.ids).
    traces = group_key(calls)
    return (
        calls.group_by("db_system", "service", "db_operation", "db_statement")
        .agg(pl.len().cast(pl.Int64).alias("calls"), *_latency(), pl.col("duration_ns").sum()
             .alias("total_ns"), traces.n_unique().alias("traces"))
        .with_columns(share("total_ns").alias("share"))
        .rename({"db_statement": "statement"})
        .select("db_system", "service", "db_operation", "statement", "calls", "p50_ns",
                "p99_ns", "total_ns", "share", "traces")
        .sort(["total_ns", "statement"], descending=[True, False])
    )  # fmt: skip


def reads_by_role_table(calls: pl.LazyFrame) -> pl.LazyFrame:
    """The ``reads_by_role`` table: reads per service, statement and role."""
    return (
        calls.filter(pl.col("read"))
        .group_by("service", "db_statement", "db_role")
        .agg(pl.len().cast(pl.Int64).alias("calls"), *_latency())
        .rename({"db_statement": "statement", "db_role": "role"})
        .sort(["service", "statement", "role"], nulls_last=True)
    )


def target_table(calls: pl.LazyFrame) -> pl.LazyFrame:
    """The ``targets`` table: per database node and role, all calls and the reads."""
    return (
        calls.group_by("server_address", "db_role")
        .agg(
            pl.len().cast(pl.Int64).alias("calls"),
            *_latency(),
            pl.col("read").sum().cast(pl.Int64).alias("reads"),
            percentile_ns(pl.col("duration_ns").filter(pl.col("read")), 0.99)
            .alias("read_p99_ns"),
            pl.col("shard").first(),
        )
        .rename({"db_role": "role"})
        .sort(["server_address", "role"], nulls_last=True)
    )  # fmt: skip


def _replica_index(address: str, shard: str) -> str | None:
    """``ledger-0-replica-2`` in shard ``ledger-0`` → ``replica-2`` (None off-convention)."""
    prefix = f"{shard}-"
    if address.startswith(prefix) and address[len(prefix) :].startswith(REPLICA):
        return address[len(prefix) :]
    return None


def lagging_replicas(calls: pl.DataFrame, shard: str) -> tuple[list[str], str]:
    """Replicas of ``shard`` that look stale, and how that was seen.

    Either replicas that served reads but none in the last :data:`SILENT_TAIL_FRACTION` of the
    window while the primary served reads then ("reads stopped"), or, when no replica stopped,
    replica indexes that other shards have and this shard never received reads on ("no reads").
    """
    reads = calls.filter(pl.col("read"))
    start, end = calls.get_column("time").min(), calls.get_column("time").max()
    if start is None or end is None:
        return [], ""
    tail_from = end - (end - start) * SILENT_TAIL_FRACTION  # type: ignore[operator]
    mine = reads.filter(pl.col("shard") == shard)
    primary_late = mine.filter(
        (pl.col("db_role") == PRIMARY) & (pl.col("time") >= tail_from)
    ).height
    last_read = (
        mine.filter(pl.col("db_role") == REPLICA)
        .group_by("server_address")
        .agg(pl.col("time").max().alias("last"))
    )
    stopped = sorted(
        last_read.filter(pl.col("last") < tail_from).get_column("server_address").to_list()
    )
    if stopped and primary_late:
        return stopped, "reads stopped"
    replicas = reads.filter(pl.col("db_role") == REPLICA).select("server_address", "shard")
    seen_here = {
        index
        for address in replicas.filter(pl.col("shard") == shard).get_column("server_address")
        if (index := _replica_index(address, shard)) is not None
    }
    elsewhere = {
        index
        for address, other in replicas.filter(pl.col("shard") != shard).iter_rows()
        if (index := _replica_index(address, other)) is not None
    }
    missing = sorted(f"{shard}-{index}" for index in elsewhere - seen_here)
    return missing, "no reads" if missing else ""


def _read_examples(calls: pl.DataFrame, shard: str) -> list[str]:
    ids = (
        calls.filter(pl.col("read") & (pl.col("shard") == shard) & (pl.col("db_role") == PRIMARY))
        .select(example_traces("duration_ns"))
        .to_series()
    )
    return ids.to_list()


def primary_read_findings(calls: pl.DataFrame) -> list[Finding]:
    """``replica_lag`` / ``reads_on_primary`` findings, one per shard whose primary serves
    reads of statements its replicas also serve."""
    reads = calls.filter(pl.col("read") & pl.col("db_role").is_in([PRIMARY, REPLICA]))
    # Statements the shard's replicas serve: reads of them on the primary had a replica to go to.
    served = reads.filter(pl.col("db_role") == REPLICA).select("shard", "db_statement").unique()
    comparable = reads.join(served, on=["shard", "db_statement"], how="semi")
    per_shard = (
        comparable.group_by("shard")
        .agg(
            (pl.col("db_role") == PRIMARY).sum().alias("primary_reads"),
            (pl.col("db_role") == REPLICA).sum().alias("replica_reads"),
            pl.col("server_address").filter(pl.col("db_role") == PRIMARY).mode().first()
            .alias("primary"),
            percentile_ns(pl.col("duration_ns").filter(pl.col("db_role") == PRIMARY), 0.99)
            .alias("primary_p99"),
            percentile_ns(pl.col("duration_ns").filter(pl.col("db_role") == REPLICA), 0.99)
            .alias("replica_p99"),
            percentile_ns(pl.col("duration_ns").filter(pl.col("db_role") == PRIMARY), 0.5)
            .alias("primary_p50"),
            percentile_ns(pl.col("duration_ns").filter(pl.col("db_role") == REPLICA), 0.5)
            .alias("replica_p50"),
            pl.col("trace_id").filter(pl.col("db_role") == PRIMARY).n_unique()
            .alias("primary_traces"),
            pl.col("db_statement").filter(pl.col("db_role") == PRIMARY).unique().sort()
            .alias("statements"),
            pl.col("service").filter(pl.col("db_role") == PRIMARY).mode().sort().first()
            .alias("reader"),
        )
        .with_columns(
            (pl.col("primary_reads") / (pl.col("primary_reads") + pl.col("replica_reads")))
            .alias("primary_share")
        )
        .filter(
            (pl.col("primary_reads") >= MIN_PRIMARY_READS)
            & (pl.col("primary_share") >= MIN_PRIMARY_READ_SHARE)
        )
        .sort("shard")
    )  # fmt: skip
    findings = []
    for row in per_shard.iter_rows(named=True):
        findings.append(_primary_read_finding(row, calls))
    return findings


def _primary_read_finding(row: Mapping[str, Any], calls: pl.DataFrame) -> Finding:
    shard, primary = row["shard"], row["primary"]
    lagging, how = lagging_replicas(calls, shard)
    replica = lagging[0] if len(lagging) == 1 else None
    reads_per_trace = row["primary_reads"] / max(1, row["primary_traces"])
    # A read on the primary instead of a replica costs the difference of their tails, once per
    # such read in the payment.
    delta = max(0.0, (row["primary_p99"] or 0.0) - (row["replica_p99"] or 0.0))
    gain_ns = int(delta * reads_per_trace)
    subject: dict[str, Any] = {"shard": shard, "primary": primary}
    if row["reader"] is not None:
        # The service whose reads moved: where the payment feels the primary's longer reads.
        subject["service"] = row["reader"]
    if replica is not None:
        subject["replica"] = replica
    kind = "replica_lag" if replica is not None else "reads_on_primary"
    if replica is not None:
        title = (
            f"{shard}: {replica} is skipped, {row['primary_reads']} reads went to "
            f"{primary} ({row['primary_share']:.0%} of the shard's reads)"
        )
        seen = "stopped receiving reads" if how == "reads stopped" else "received no reads"
        cause = (
            f"{replica} {seen} while its peers served the same statements: the read router "
            "skips it, most likely because its replication lag exceeds the router's staleness"
            " bound."
        )
    else:
        title = (
            f"{shard}: {row['primary_reads']} reads on the primary {primary} although its "
            f"replicas serve the same statements ({row['primary_share']:.0%} of its reads)"
        )
        cause = "Reads reach the primary although replicas of the shard serve the same statements."
    recommendation = (
        f"{cause} Fix replication on the lagging replica (replay lag, long queries holding "
        "WAL replay, network), and keep reads on healthy replicas: route them to the other "
        f"replicas of {shard} rather than the primary, allow bounded-staleness reads where "
        f"the payment tolerates them, or add a replica so losing one does not load {primary}, "
        "which also takes every write."
    )
    return Finding(
        job=JOB,
        kind=kind,
        title=title,
        impact="high",
        gain_ns=gain_ns,
        subject=subject,
        evidence={
            "reads_on_primary": row["primary_reads"],
            "reads_on_replicas": row["replica_reads"],
            "primary_read_share": round(row["primary_share"], 4),
            "primary_read_p50_ns": _int(row["primary_p50"]),
            "primary_read_p99_ns": _int(row["primary_p99"]),
            "replica_read_p50_ns": _int(row["replica_p50"]),
            "replica_read_p99_ns": _int(row["replica_p99"]),
            "reads_on_primary_per_trace": round(reads_per_trace, 3),
            "statements": list(row["statements"]),
            "lagging_replicas": lagging,
            "lagging_seen_as": how or None,
        },
        recommendation=recommendation,
        gain=(
            f"serving these reads from a healthy replica saves ~{ms(delta)} per read at p99 "
            f"({reads_per_trace:.1f} per affected payment): ~{ms(gain_ns)}, and takes "
            f"{row['primary_reads']} reads off the primary"
        ),
        example_traces=_read_examples(calls, shard),
    )


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def _statement_advice(operation: str | None) -> str:
    op = (operation or "").upper()
    if op == "SELECT":
        return (
            "Check its plan (EXPLAIN ANALYZE): an index on the filtered and joined columns, a "
            "covering index for the selected ones, or caching the result removes most of it."
        )
    if op in ("UPDATE", "DELETE", "INSERT"):
        return (
            "Check that its WHERE clause uses an index (a scan locks and rewrites more rows), "
            "batch small writes, and look for lock waits on the same rows."
        )
    if op in ("COMMIT", "PREPARE", "ROLLBACK"):
        return (
            "Commit latency is the WAL flush: faster log storage, group commit "
            "(commit_delay), or fewer participants per transaction."
        )
    return "Check its plan and whether an index or fewer calls per payment would serve."


def slow_statement_findings(statements: pl.DataFrame, calls: pl.DataFrame) -> list[Finding]:
    """``slow_statement`` findings for the statements with the most total time."""
    findings = []
    for row in statements.head(TOP_STATEMENTS).iter_rows(named=True):
        p50, p99 = row["p50_ns"] or 0, row["p99_ns"] or 0
        if (
            row["share"] < MIN_STATEMENT_SHARE
            or row["calls"] < MIN_STATEMENT_CALLS
            or p99 < MIN_STATEMENT_P99_NS
        ):
            continue
        impact: Impact = "low"
        if p50 >= ABNORMAL_P50_NS:
            impact = "high"
        elif p50 > 0 and p99 >= TAIL_RATIO_MEDIUM * p50:
            impact = "medium"
        calls_per_trace = row["calls"] / max(1, row["traces"])
        # Bringing the statement's tail down to its median, for each of its calls in a payment.
        gain_ns = int(max(0, p99 - p50) * calls_per_trace)
        statement = row["statement"]
        examples = (
            calls.filter(
                (pl.col("db_statement") == statement) & (pl.col("service") == row["service"])
            )
            .select(example_traces("duration_ns"))
            .to_series()
            .to_list()
        )
        findings.append(
            Finding(
                job=JOB,
                kind="slow_statement",
                title=(
                    f"{row['service']}: {statement} takes {row['share']:.0%} of database time "
                    f"({row['calls']} calls, p99 {ms(p99)})"
                ),
                impact=impact,
                gain_ns=gain_ns,
                subject={
                    "service": row["service"],
                    "db_system": row["db_system"],
                    "statement": statement,
                },
                evidence={
                    "calls": row["calls"],
                    "p50_ns": p50,
                    "p99_ns": p99,
                    "total_ns": row["total_ns"],
                    "share": round(row["share"], 4),
                    "calls_per_trace": round(calls_per_trace, 3),
                },
                recommendation=_statement_advice(row["db_operation"]),
                gain=(
                    f"bringing its p99 ({ms(p99)}) to its median ({ms(p50)}) saves ~{ms(gain_ns)} "
                    f"per payment that runs it ({calls_per_trace:.1f} calls each)"
                ),
                example_traces=examples,
            )
        )
    return findings


def run(data: Dataset) -> JobResult:
    """Database statements, reads per role and per node, and their findings.

    Parameters:
        data: the analysis window.

    Returns:
        Tables ``statements`` (db_system, service, db_operation, statement, calls, p50_ns,
        p99_ns, total_ns, share, traces), ``reads_by_role`` (service, statement, role, calls,
        p50_ns, p99_ns) and ``targets`` (server_address, role, calls, p50_ns, p99_ns, reads,
        read_p99_ns, shard); findings ``replica_lag`` / ``reads_on_primary`` and
        ``slow_statement``.
    """
    calls = db_calls(data.spans).collect()
    lazy = calls.lazy()
    statements, reads, targets = pl.collect_all(
        [statement_table(lazy), reads_by_role_table(lazy), target_table(lazy)]
    )
    findings = primary_read_findings(calls) + slow_statement_findings(statements, calls)
    return JobResult(
        JOB,
        {"statements": statements, "reads_by_role": reads, "targets": targets},
        findings,
    )
