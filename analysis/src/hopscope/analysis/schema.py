"""The analysis frames: one canonical polars schema per record kind, whatever the source.

Every loader (Elasticsearch, the Parquet archive, OTLP/Jaeger JSON files) ends in
:func:`normalize`: it takes a frame whose columns carry the *document* field names the
processors index (``trace.id``, ``hopscope.hop.client_ns``, ``attributes.db.system``...; see
:mod:`hopscope.processors.documents`) and returns the canonical columns below, in this order,
with these types. Missing columns become nulls, so a job never checks which source it reads.

Times are ``Datetime("ns", "UTC")``; durations are ``Int64`` nanoseconds (DESIGN.md §3).
Nested per-trace lists (critical path per operation and per service) are ``List(Struct)``; the
Parquet archive stores them as JSON text, Elasticsearch as lists of objects: both are accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Final

import polars as pl

TIME: Final = pl.Datetime("ns", "UTC")
NS: Final = pl.Int64()

CRITICAL_OPERATION: Final = pl.Struct(
    {
        "operation": pl.String,
        "exclusive_ns": NS,
        "self_ns": NS,
        "network_ns": NS,
        "coordination_ns": NS,
    }
)
CRITICAL_SERVICE: Final = pl.Struct({"service": pl.String, "exclusive_ns": NS})

# canonical column -> (document field, dtype). Spans carry the span attributes the jobs read,
# each as its own column (the Parquet archive writes attributes as ``attributes.<key>`` text).
SPANS: Final[Mapping[str, tuple[str, pl.DataType]]] = {
    "time": ("@timestamp", TIME),
    "trace_id": ("trace.id", pl.String()),
    "span_id": ("span.id", pl.String()),
    "parent_id": ("parent.id", pl.String()),
    "service": ("service.name", pl.String()),
    "node": ("service.node.name", pl.String()),
    "name": ("span.name", pl.String()),
    "kind": ("span.kind", pl.String()),
    "duration_ns": ("event.duration", NS),
    "error": ("event.outcome", pl.Boolean()),  # "failure" -> True
    "region": ("resource.cloud.region", pl.String()),
    "peer_service": ("attributes.peer.service", pl.String()),
    "server_address": ("attributes.server.address", pl.String()),
    "client_address": ("attributes.client.address", pl.String()),
    "error_type": ("attributes.error.type", pl.String()),
    "db_system": ("attributes.db.system", pl.String()),
    "db_operation": ("attributes.db.operation.name", pl.String()),
    "db_statement": ("attributes.db.query.text", pl.String()),
    "db_namespace": ("attributes.db.namespace", pl.String()),
    "db_role": ("attributes.hopscope.db.role", pl.String()),
    "cache_name": ("attributes.hopscope.cache.name", pl.String()),
    "cache_hit": ("attributes.hopscope.cache.hit", pl.Boolean()),
    "lb_strategy": ("attributes.hopscope.lb.strategy", pl.String()),
    "coordination_kind": ("attributes.hopscope.coordination.kind", pl.String()),
    "coordination_resource": ("attributes.hopscope.coordination.resource", pl.String()),
    "payment_id": ("attributes.payment.id", pl.String()),
    "payment_method": ("attributes.payment.method", pl.String()),
    "payment_currency": ("attributes.payment.currency", pl.String()),
}

TRACES: Final[Mapping[str, tuple[str, pl.DataType]]] = {
    "time": ("@timestamp", TIME),
    "trace_id": ("trace.id", pl.String()),
    "root_service": ("hopscope.trace.root_service", pl.String()),
    "root_operation": ("hopscope.trace.root_operation", pl.String()),
    "duration_ns": ("event.duration", NS),
    "span_count": ("hopscope.trace.span_count", NS),
    "error": ("hopscope.trace.error", pl.Boolean()),
    "root_error": ("hopscope.trace.root_error", pl.Boolean()),
    "complete": ("hopscope.trace.complete", pl.Boolean()),
    "failover_count": ("hopscope.trace.failover_count", NS),
    "retry_count": ("hopscope.trace.retry_count", NS),
    "hop_count": ("hopscope.trace.hop_count", NS),
    "payment_id": ("payment.id", pl.String()),
    "critical_by_operation": ("hopscope.trace.critical_by_operation", pl.List(CRITICAL_OPERATION)),
    "critical_by_service": ("hopscope.trace.critical_by_service", pl.List(CRITICAL_SERVICE)),
}

HOPS: Final[Mapping[str, tuple[str, pl.DataType]]] = {
    "time": ("@timestamp", TIME),
    "trace_id": ("trace.id", pl.String()),
    "hop_id": ("hopscope.hop.hop_id", pl.String()),
    "hop_kind": ("hopscope.hop.kind", pl.String()),
    "source_service": ("hopscope.hop.source_service", pl.String()),
    "source_node": ("hopscope.hop.source_node", pl.String()),
    "target_service": ("hopscope.hop.target_service", pl.String()),
    "target_node": ("hopscope.hop.target_node", pl.String()),
    "operation": ("hopscope.hop.operation", pl.String()),
    "client_ns": ("hopscope.hop.client_ns", NS),
    "server_ns": ("hopscope.hop.server_ns", NS),
    "network_ns": ("hopscope.hop.network_ns", NS),
    "queue_ns": ("hopscope.hop.queue_ns", NS),
    "clock_skew_suspected": ("hopscope.hop.clock_skew_suspected", pl.Boolean()),
    "error": ("hopscope.hop.error", pl.Boolean()),
    "attempt": ("hopscope.hop.attempt", NS),
}

FAILOVERS: Final[Mapping[str, tuple[str, pl.DataType]]] = {
    "time": ("@timestamp", TIME),
    "failover_id": ("hopscope.failover.failover_id", pl.String()),
    "trace_id": ("trace.id", pl.String()),
    "service": ("service.name", pl.String()),
    "target_service": ("hopscope.failover.target_service", pl.String()),
    "operation": ("hopscope.failover.operation", pl.String()),
    "from_node": ("hopscope.failover.from_node", pl.String()),
    "to_node": ("hopscope.failover.to_node", pl.String()),
    "reason": ("hopscope.failover.reason", pl.String()),
    "attempts": ("hopscope.failover.attempts", NS),
    "detection_ns": ("hopscope.failover.detection_ns", NS),
    "added_ns": ("hopscope.failover.added_ns", NS),
    "outcome": ("hopscope.failover.outcome", pl.String()),
    "source": ("hopscope.failover.source", pl.String()),
}

# Coordination documents of record "delay" (one per coordination span).
COORDINATION: Final[Mapping[str, tuple[str, pl.DataType]]] = {
    "time": ("@timestamp", TIME),
    "trace_id": ("trace.id", pl.String()),
    "span_id": ("span.id", pl.String()),
    "coordination_kind": ("hopscope.coordination.kind", pl.String()),
    "service": ("service.name", pl.String()),
    "node": ("service.node.name", pl.String()),
    "resource": ("hopscope.coordination.resource", pl.String()),
    "participant": ("hopscope.coordination.participant", pl.String()),
    "duration_ns": ("hopscope.coordination.duration_ns", NS),
    "critical_ns": ("hopscope.coordination.critical_ns", NS),
    "error": ("hopscope.coordination.error", pl.Boolean()),
}

# Coordination documents of record "2pc" (one per two-phase-commit transaction).
TWO_PHASE_COMMITS: Final[Mapping[str, tuple[str, pl.DataType]]] = {
    "time": ("@timestamp", TIME),
    "trace_id": ("trace.id", pl.String()),
    "resource": ("hopscope.two_phase_commit.resource", pl.String()),
    "coordinator_service": ("hopscope.two_phase_commit.coordinator_service", pl.String()),
    "participants": ("hopscope.two_phase_commit.participants", NS),
    "prepare_ns": ("hopscope.two_phase_commit.prepare_ns", NS),
    "commit_ns": ("hopscope.two_phase_commit.commit_ns", NS),
    "straggler": ("hopscope.two_phase_commit.straggler", pl.String()),
    "blocked_ns": ("hopscope.two_phase_commit.blocked_ns", NS),
    "outcome": ("hopscope.two_phase_commit.outcome", pl.String()),
}

SCHEMAS: Final[Mapping[str, Mapping[str, tuple[str, pl.DataType]]]] = {
    "spans": SPANS,
    "traces": TRACES,
    "hops": HOPS,
    "failovers": FAILOVERS,
    "coordination": COORDINATION,
    "two_phase_commits": TWO_PHASE_COMMITS,
}


def document_fields(kind: str) -> list[str]:
    """The document fields a loader must fetch for ``kind`` (for ES ``docvalue_fields``/_source).

    >>> document_fields("failovers")[:3]
    ['@timestamp', 'hopscope.failover.failover_id', 'trace.id']
    """
    return [source for source, _ in SCHEMAS[kind].values()]


def empty(kind: str) -> pl.DataFrame:
    """An empty frame of ``kind`` with the canonical columns."""
    return pl.DataFrame(schema={name: dtype for name, (_, dtype) in SCHEMAS[kind].items()})


def _column(
    name: str, source: str, dtype: pl.DataType, present: Mapping[str, pl.DataType]
) -> pl.Expr:
    if source not in present:
        return pl.lit(None, dtype=dtype).alias(name)
    col = pl.col(source)
    have = present[source]
    if source == "event.outcome":
        return (col.cast(pl.String) == "failure").alias(name)
    if dtype == TIME:
        if have == pl.String:
            return col.str.to_datetime(time_unit="ns", time_zone="UTC").alias(name)
        if isinstance(have, pl.Datetime):
            return col.dt.convert_time_zone("UTC").cast(TIME).alias(name)
        return col.cast(pl.Int64).cast(TIME).alias(name)  # Unix ns
    if isinstance(dtype, pl.List):
        if have == pl.String:  # JSON text (Parquet archive)
            return col.str.json_decode(dtype).alias(name)
        return col.cast(dtype).alias(name)
    if dtype == pl.Boolean and have == pl.String:
        return (
            col.str.to_lowercase()
            .replace_strict({"true": True, "false": False}, default=None, return_dtype=pl.Boolean)
            .alias(name)
        )
    return col.cast(dtype, strict=False).alias(name)


def normalize(kind: str, frame: pl.LazyFrame) -> pl.LazyFrame:
    """Document-named columns of ``kind`` -> the canonical columns of :data:`SCHEMAS`.

    Parameters:
        kind: ``spans``, ``traces``, ``hops``, ``failovers``, ``coordination`` or
            ``two_phase_commits``.
        frame: columns named as the document fields (extra columns are ignored).

    Returns:
        A lazy frame with exactly the canonical columns, in order.

    Examples:
        >>> raw = pl.LazyFrame({"@timestamp": ["2026-11-26T09:40:00.000000001Z"],
        ...                     "trace.id": ["ab"], "event.outcome": ["failure"]})
        >>> out = normalize("spans", raw).collect()
        >>> out.select("time", "trace_id", "error", "node").row(0)[1:]
        ('ab', True, None)
    """
    schema = SCHEMAS[kind]
    present = dict(frame.collect_schema())
    return frame.select(
        [_column(name, source, dtype, present) for name, (source, dtype) in schema.items()]
    )


@dataclass(frozen=True)
class Dataset:
    """The records of one analysis window, as canonical lazy frames (one per kind).

    Loaders build it; jobs read it. Frames may be empty (with their columns), never missing.
    """

    spans: pl.LazyFrame
    traces: pl.LazyFrame
    hops: pl.LazyFrame
    failovers: pl.LazyFrame
    coordination: pl.LazyFrame
    two_phase_commits: pl.LazyFrame

    @classmethod
    def from_documents(cls, frames: Mapping[str, pl.LazyFrame]) -> Dataset:
        """Normalize document-named frames per kind; kinds not given are empty."""
        return cls(
            **{
                f.name: normalize(f.name, frames[f.name])
                if f.name in frames
                else empty(f.name).lazy()
                for f in fields(cls)
            }
        )

    def collect(self) -> Dataset:
        """All frames computed once (jobs then share them), still as lazy frames."""
        collected = pl.collect_all([getattr(self, f.name) for f in fields(self)])
        # One chunk per column: loaders concatenate pages and part files, and some string
        # kernels of polars 2.1's streaming engine mishandle filtered multi-chunk columns.
        return Dataset(*(frame.rechunk().lazy() for frame in collected))
