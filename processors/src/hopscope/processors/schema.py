"""The record schema: one declarative table per record kind, the only statement of its fields.

Every field a document carries is one :class:`Field` row: the record attribute(s) it is made
from, its document name, its Elasticsearch type, its polars dtype name and, when the analysis
reads it, its analysis column. Everything else is derived from these tables:

- the documents (:mod:`hopscope.processors.documents`): a row's value, encoded;
- the explicit index-template mappings (:mod:`hopscope.processors.templates`); dynamic
  templates remain only for the open ``attributes.*`` / ``resource.*`` maps;
- the Kibana field list (:mod:`hopscope.dashboards.kibana.fields`);
- the Parquet column types (:mod:`hopscope.processors.archive`);
- the analysis columns (:mod:`hopscope.analysis.schema`), read by every loader, and the
  in-memory path records -> polars (:mod:`hopscope.analysis.loaders._records`).

Adding a field to a derived record is one dataclass field plus one row here; a unit test
fails when a record field has no row or a row names no record field
(``tests/unit/test_schema_roundtrip.py``).

Values: a row's *value* is the plain Python value read from the record (``get``, else the
attribute ``source``); the document holds ``encode(value)`` (ISO 8601 text for timestamps,
``"failure"``/``"success"`` for outcomes, text for uint64 originals), the analysis column the
value itself, typed by ``dtype``. Document names that start with ``attributes.`` or
``resource.`` are keys inside those maps: columns the analysis reads out of them, never
separate document fields.

This module imports neither polars nor Elasticsearch: the dtypes are names, resolved by
:func:`polars_dtype` when polars is there.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from hopscope.processors.decode import flatten
from hopscope.processors.derive.coordination import CoordinationDelay, TwoPhaseCommit
from hopscope.processors.derive.critical_path import SEGMENT_KINDS, CriticalPath
from hopscope.processors.derive.failovers import Failover
from hopscope.processors.derive.hops import Hop
from hopscope.processors.derive.summary import TraceSummary
from hopscope.processors.records import ERROR, LogRecord, SpanRecord

if TYPE_CHECKING:
    import polars as pl

# -- Elasticsearch types ---------------------------------------------------------------------
KEYWORD: Final = "keyword"
TEXT: Final = "text"
LONG: Final = "long"
BOOLEAN: Final = "boolean"
DATE_NANOS: Final = "date_nanos"
# Kept in _source only (``enabled: false``): nested values the analysis reads whole and
# nobody searches. Not searchable, so not in Kibana's field list.
STORED: Final = "object"
# The open attribute maps: ``subobjects: false`` objects typed by the dynamic templates.
OPEN_MAP: Final = "open_map"
# A key inside an open map: typed by the dynamic templates, no explicit mapping.
DYNAMIC: Final = "dynamic"

# -- polars dtype names (resolved by polars_dtype) -------------------------------------------
STRING: Final = "String"
INT64: Final = "Int64"
BOOL: Final = "Boolean"
TIME: Final = "Datetime"  # nanoseconds, UTC
STRINGS: Final = "List(String)"
# Nested values without a fixed shape (span events and links): JSON text in Parquet.
JSON: Final = "Json"
MAP: Final = "Map"  # attributes/resource: one column per key (see archive.py)
CRITICAL_OPERATIONS: Final = "List(CriticalOperation)"
CRITICAL_SERVICES: Final = "List(CriticalService)"

# The struct shapes of the per-trace critical-path lists.
CRITICAL_OPERATION_FIELDS: Final = (
    ("operation", STRING),
    ("exclusive_ns", INT64),
    *((f"{kind}_ns", INT64) for kind in SEGMENT_KINDS),
)
CRITICAL_SERVICE_FIELDS: Final = (("service", STRING), ("exclusive_ns", INT64))

MAPS: Final = ("attributes", "resource")

# -- what Elasticsearch indexes, per document name --------------------------------------------
# Every mapped scalar keeps its doc values (the analysis loader's docvalues reads, aggregations,
# sorting, Kibana's charts); only the fields queries select by keep the inverted index as well:
# the loaders' window, service and trace filters (analysis/loaders/elasticsearch.py `_query`,
# pushdown.py), the coordination / 2PC split, Kibana's filters by outcome and its trace links,
# and the payment id of a trace (how a payment is looked up).
# Elasticsearch answers a term or range query on a field with doc values only by reading the
# doc values of the documents the other clauses (the time range) selected: slower than an
# inverted index, still right, and what an occasional Kibana filter on a duration needs.
# (Text fields have no doc values; they keep their index: full-text search is their purpose.)
FILTERED: Final = frozenset({
    "@timestamp", "trace.id", "service.name", "service.node.name", "span.name",
    "event.outcome", "log.level", "hopscope.record", "hopscope.trace.payment_id",
})  # fmt: skip

# Copies of another field of the same document (its trace id, its start as @timestamp, its
# span id as span.id) that no loader, analysis column, dashboard, alert or Kibana link reads:
# in _source only (neither indexed nor doc values), so Elasticsearch spends nothing on them and
# Kibana does not list them; the field they copy is the one to query.
COPIES: Final = frozenset({
    "hopscope.hop.trace_id", "hopscope.hop.start_ns",
    "hopscope.trace.trace_id", "hopscope.trace.root_span_id", "hopscope.trace.start_ns",
    "hopscope.failover.trace_id", "hopscope.failover.span_id", "hopscope.failover.time_ns",
    "hopscope.coordination.trace_id", "hopscope.coordination.start_ns",
    "hopscope.two_phase_commit.trace_id", "hopscope.two_phase_commit.coordinator_span_id",
    "hopscope.two_phase_commit.start_ns",
})  # fmt: skip


def timestamp(time_ns: int) -> str:
    """Nanosecond ISO 8601 in UTC, for ``date_nanos`` fields (times before 1970 are 1970).

    >>> timestamp(1_764_150_000_123_456_789)
    '2025-11-26T09:40:00.123456789Z'
    """
    seconds, nanos = divmod(max(0, time_ns), 1_000_000_000)
    return f"{_second(seconds)}.{nanos:09d}Z"


@functools.lru_cache(maxsize=4096)
def _second(seconds: int) -> str:
    return f"{dt.datetime.fromtimestamp(seconds, tz=dt.UTC):%Y-%m-%dT%H:%M:%S}"


def outcome(failed: bool | None) -> str:
    """ECS ``event.outcome`` of a failed flag."""
    if failed is None:
        return "unknown"
    return "failure" if failed else "success"


# Elasticsearch's long; a duration past it is garbage, but must not reject the document.
LONG_MAX: Final = 2**63 - 1
_MAX_ID_BYTES: Final = 512


def in_trace(trace_id: str | None, local_id: str) -> str:
    """``<trace id>-<local id>``: the document id of a record named by an id local to a trace.

    Span ids are unique only within their trace, so two traces (two simulator runs, two SDKs
    with a weak generator) can share one; an id without the trace would make the later record
    overwrite the earlier. A record outside any trace (a cluster event's failover) keeps its own
    id, a content hash. Both parts are derived from the input, so a replay writes the same ids.

    >>> in_trace("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    '4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7'
    >>> in_trace(None, "log-5f1c")
    'log-5f1c'
    """
    return local_id if trace_id is None else f"{trace_id}-{local_id}"


@dataclass(frozen=True, slots=True)
class Field:
    """One document field of a record kind.

    Attributes:
        document: the field's name in the document (and the Parquet column).
        es: its Elasticsearch type (``STORED``: in ``_source`` only, not searchable).
        dtype: the polars dtype name of its value: the analysis column's type, and the
            Parquet column's unless ``encode`` makes the document value text.
        source: the record attributes it is made from (dotted for nested records); the
            coverage test reads these. Empty for a constant.
        column: the analysis column it becomes, or None when only Kibana searches it.
        get: record -> value, when the value is not simply the one ``source`` attribute.
        encode: value -> document value, when they differ (timestamps, outcomes).
        omit_empty: leave the field out of the document when its value is None or empty.
    """

    document: str
    es: str
    dtype: str
    source: tuple[str, ...]
    column: str | None = None
    get: Callable[[Any], Any] | None = None
    encode: Callable[[Any], Any] | None = None
    omit_empty: bool = False

    @property
    def searchable(self) -> bool:
        """Whether Elasticsearch can search it (a stored-only object or copy cannot)."""
        return self.es not in (STORED, OPEN_MAP) and self.document not in COPIES

    @property
    def filtered(self) -> bool:
        """Whether queries select by it, so it keeps an inverted index (``FILTERED``)."""
        return self.document in FILTERED or self.es == TEXT

    @property
    def in_map(self) -> bool:
        """A key inside ``attributes``/``resource``, not a document field of its own."""
        head, _, key = self.document.partition(".")
        return head in MAPS and bool(key)

    def value(self, record: Any) -> Any:
        """The plain value of this field for ``record`` (before ``encode``)."""
        if self.get is not None:
            return self.get(record)
        return operator.attrgetter(self.source[0])(record)


def row(
    document: str,
    es: str,
    dtype: str,
    source: str | tuple[str, ...],
    *,
    column: str | None = None,
    get: Callable[[Any], Any] | None = None,
    encode: Callable[[Any], Any] | None = None,
    omit_empty: bool = False,
) -> Field:
    """A :class:`Field`; ``source`` may be one attribute name."""
    sources = (source,) if isinstance(source, str) else source
    return Field(document, es, dtype, sources, column, get, encode, omit_empty)


# Where each derived record's own fields live in its documents (``hopscope.hop.<field>``).
NAMESPACES: Final = (
    "hopscope.hop", "hopscope.trace", "hopscope.failover", "hopscope.coordination",
    "hopscope.two_phase_commit",
)  # fmt: skip


def _own(namespace: str) -> Callable[..., Field]:
    """Rows for a record's own fields under ``namespace`` (``hopscope.hop.<field>``)."""
    if namespace not in NAMESPACES:
        raise ValueError(f"namespace must be one of {NAMESPACES}, got {namespace!r}")

    def own(name: str, es: str, dtype: str, **options: Any) -> Field:
        source = options.pop("source", name)
        return row(f"{namespace}.{name}", es, dtype, source, **options)

    return own


def _attribute(map_name: str, key: str, column: str, dtype: str = STRING) -> Field:
    """An analysis column read from one key of the ``attributes``/``resource`` map."""
    return row(f"{map_name}.{key}", DYNAMIC, dtype, map_name, column=column)


@dataclass(frozen=True, slots=True)
class TraceRecord:
    """What a ``traces`` document is made of: the summary and the critical path of a trace."""

    summary: TraceSummary
    critical_path: CriticalPath


@dataclass(frozen=True)
class Table:
    """The fields of one record kind and how its documents are named and placed.

    Attributes:
        kind: the record kind, also the analysis frame's name.
        index: the document kind (index ``<prefix>-<index>-YYYY.MM.DD``); the 2PC records
            share the ``coordination`` indices with the coordination delays.
        record: the type of the records this table reads.
        fields: the rows, in document order; analysis columns follow this order.
        id: record -> document id (deterministic, so replays overwrite).
        time_ns: record -> the instant that chooses its daily index.
        covers: (attribute path, dataclass) pairs whose every field must have a row.
    """

    kind: str
    index: str
    record: type
    fields: tuple[Field, ...]
    id: Callable[[Any], str]
    time_ns: Callable[[Any], int]
    covers: tuple[tuple[str, type], ...] = ()

    def columns(self) -> list[Field]:
        """The rows the analysis reads, in column order."""
        return [f for f in self.fields if f.column is not None]

    def document_fields(self) -> list[Field]:
        """The rows that are document fields of their own (not keys inside a map)."""
        return [f for f in self.fields if not f.in_map]

    @functools.cached_property
    def _writers(self) -> tuple[tuple[str, Callable[[Any], Any], Any, bool], ...]:
        writers = []
        for f in self.document_fields():
            getter = f.get or operator.attrgetter(f.source[0])
            writers.append((f.document, getter, f.encode, f.omit_empty))
        return tuple(writers)

    def body(self, record: Any) -> dict[str, Any]:
        """The document body of ``record``: every document field, encoded."""
        body: dict[str, Any] = {}
        for name, getter, encode, omit_empty in self._writers:
            value = getter(record)
            if omit_empty and (value is None or value == () or value == []):
                continue
            body[name] = _plain(value) if encode is None else encode(value)
        return body


def _plain(value: Any) -> Any:
    """A record value as JSON-ready: tuples to lists, mappings to dicts."""
    kind = type(value)
    if kind is str or kind is int or value is None or kind is bool or kind is float:
        return value  # the common case, without the slower ABC checks below
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value


def _duration(span: SpanRecord) -> int:
    return min(LONG_MAX, max(0, span.end_ns - span.start_ns))


def _events(span: SpanRecord) -> list[dict[str, Any]]:
    return [
        {"name": e.name, "time": timestamp(e.time_ns), "attributes": flatten(e.attributes)}
        for e in span.events
    ]


def _links(span: SpanRecord) -> list[dict[str, Any]]:
    return [{"trace.id": k.trace_id, "span.id": k.span_id} for k in span.links]


def _text(value: int | None) -> str | None:
    # A uint64 may not fit Elasticsearch's long: the recorded times are kept as text.
    return None if value is None else str(value)


def _envelope_time(time_field: str) -> Field:
    return row("@timestamp", DATE_NANOS, TIME, time_field, column="time", encode=timestamp)


SPANS: Final = Table(
    "spans", "spans", SpanRecord,
    (
        _envelope_time("start_ns"),
        row("trace.id", KEYWORD, STRING, "trace_id", column="trace_id"),
        row("span.id", KEYWORD, STRING, "span_id", column="span_id"),
        row("parent.id", KEYWORD, STRING, "parent_id", column="parent_id"),
        row("service.name", KEYWORD, STRING, "service", column="service"),
        row("service.node.name", KEYWORD, STRING, "node", column="node"),
        row("span.name", KEYWORD, STRING, "name", column="name"),
        row("span.kind", KEYWORD, STRING, "kind", column="kind"),
        row("event.duration", LONG, INT64, ("start_ns", "end_ns"), column="duration_ns",
            get=_duration),
        row("event.outcome", KEYWORD, BOOL, "status", column="error",
            get=lambda s: s.status == ERROR, encode=outcome),
        row("span.status.message", TEXT, STRING, "status_message"),
        row("attributes", OPEN_MAP, MAP, "attributes", get=lambda s: flatten(s.attributes)),
        row("resource", OPEN_MAP, MAP, "resource", get=lambda s: flatten(s.resource)),
        row("span.events", STORED, JSON, "events", get=_events, omit_empty=True),
        row("span.links", STORED, JSON, "links", get=_links, omit_empty=True),
        # What the processor sanitized (reason codes of hopscope.processors.sanitize).
        row("hopscope.sanitized", KEYWORD, STRINGS, "flags", omit_empty=True),
        row("hopscope.original.start_ns", KEYWORD, STRING, "original_start_ns", encode=_text,
            omit_empty=True),
        row("hopscope.original.end_ns", KEYWORD, STRING, "original_end_ns", encode=_text,
            omit_empty=True),
        # The span attributes the analysis jobs read, one column each.
        _attribute("resource", "cloud.region", "region"),
        _attribute("attributes", "peer.service", "peer_service"),
        _attribute("attributes", "server.address", "server_address"),
        _attribute("attributes", "hopscope.peer.node", "peer_node"),
        _attribute("attributes", "client.address", "client_address"),
        _attribute("attributes", "error.type", "error_type"),
        _attribute("attributes", "db.system", "db_system"),
        _attribute("attributes", "db.operation.name", "db_operation"),
        _attribute("attributes", "db.query.text", "db_statement"),
        _attribute("attributes", "db.namespace", "db_namespace"),
        _attribute("attributes", "hopscope.db.role", "db_role"),
        _attribute("attributes", "hopscope.cache.name", "cache_name"),
        _attribute("attributes", "hopscope.cache.hit", "cache_hit", BOOL),
        _attribute("attributes", "hopscope.lb.strategy", "lb_strategy"),
        _attribute("attributes", "hopscope.coordination.kind", "coordination_kind"),
        _attribute("attributes", "hopscope.coordination.resource", "coordination_resource"),
        _attribute("attributes", "payment.id", "payment_id"),
        _attribute("attributes", "payment.method", "payment_method"),
        _attribute("attributes", "payment.currency", "payment_currency"),
    ),
    id=lambda s: in_trace(s.trace_id, s.span_id),
    time_ns=operator.attrgetter("start_ns"),
)  # fmt: skip

LOGS: Final = Table(
    "logs", "logs", LogRecord,
    (
        _envelope_time("time_ns"),
        row("trace.id", KEYWORD, STRING, "trace_id", column="trace_id"),
        row("span.id", KEYWORD, STRING, "span_id", column="span_id"),
        row("service.name", KEYWORD, STRING, "service", column="service"),
        row("service.node.name", KEYWORD, STRING, "node", column="node"),
        row("log.level", KEYWORD, STRING, "severity", column="severity"),
        row("message", TEXT, STRING, "body"),
        row("event.name", KEYWORD, STRING, "event_name", column="event_name"),
        row("attributes", OPEN_MAP, MAP, "attributes", get=lambda g: flatten(g.attributes)),
        row("resource", OPEN_MAP, MAP, "resource", get=lambda g: flatten(g.resource)),
        row("hopscope.sanitized", KEYWORD, STRINGS, "flags", omit_empty=True),
        row("hopscope.original.time_ns", KEYWORD, STRING, "original_time_ns", encode=_text,
            omit_empty=True),
        # The log attributes the analysis reads: an exception recorded as a log is an error
        # whatever its severity says.
        _attribute("attributes", "exception.type", "exception_type"),
    ),
    # Logs have no id of their own: log_document hashes the body (content is identity), which
    # needs the body built first; no other path needs a log's id.
    id=lambda g: "",
    time_ns=operator.attrgetter("time_ns"),
)  # fmt: skip

_hop = _own("hopscope.hop")
HOPS: Final = Table(
    "hops", "hops", Hop,
    (
        _envelope_time("start_ns"),
        row("trace.id", KEYWORD, STRING, "trace_id", column="trace_id"),
        row("span.id", KEYWORD, STRING, "hop_id"),
        row("service.name", KEYWORD, STRING, "source_service"),
        row("service.node.name", KEYWORD, STRING, "source_node"),
        row("event.duration", LONG, INT64, "client_ns"),
        row("event.outcome", KEYWORD, BOOL, "error", encode=outcome),
        _hop("trace_id", KEYWORD, STRING),
        _hop("hop_id", KEYWORD, STRING, column="hop_id"),
        _hop("kind", KEYWORD, STRING, column="hop_kind"),
        _hop("source_service", KEYWORD, STRING, column="source_service"),
        _hop("source_node", KEYWORD, STRING, column="source_node"),
        _hop("target_service", KEYWORD, STRING, column="target_service"),
        _hop("target_node", KEYWORD, STRING, column="target_node"),
        _hop("operation", KEYWORD, STRING, column="operation"),
        _hop("start_ns", LONG, INT64),
        _hop("client_ns", LONG, INT64, column="client_ns"),
        _hop("server_ns", LONG, INT64, column="server_ns"),
        _hop("network_ns", LONG, INT64, column="network_ns"),
        _hop("request_leg_ns", LONG, INT64, column="request_leg_ns"),
        _hop("response_leg_ns", LONG, INT64, column="response_leg_ns"),
        _hop("clock_skew_suspected", BOOLEAN, BOOL, column="clock_skew_suspected"),
        _hop("adjusted_request_leg_ns", LONG, INT64, column="adjusted_request_leg_ns"),
        _hop("adjusted_response_leg_ns", LONG, INT64, column="adjusted_response_leg_ns"),
        _hop("queue_ns", LONG, INT64, column="queue_ns"),
        _hop("error", BOOLEAN, BOOL, column="error"),
        _hop("attempt", LONG, INT64, column="attempt"),
        _hop("server_span_id", KEYWORD, STRING),
        _hop("client_abandoned", BOOLEAN, BOOL, column="client_abandoned"),
    ),
    id=lambda h: in_trace(h.trace_id, h.hop_id),
    time_ns=operator.attrgetter("start_ns"),
)  # fmt: skip

_failover = _own("hopscope.failover")
FAILOVERS: Final = Table(
    "failovers", "failovers", Failover,
    (
        _envelope_time("time_ns"),
        row("trace.id", KEYWORD, STRING, "trace_id", column="trace_id"),
        row("span.id", KEYWORD, STRING, "span_id"),
        row("service.name", KEYWORD, STRING, "service", column="service"),
        row("event.outcome", KEYWORD, STRING, "outcome"),
        _failover("failover_id", KEYWORD, STRING, column="failover_id"),
        _failover("trace_id", KEYWORD, STRING),
        _failover("parent_span_id", KEYWORD, STRING),
        _failover("span_id", KEYWORD, STRING),
        _failover("time_ns", LONG, INT64),
        _failover("service", KEYWORD, STRING),
        _failover("target_service", KEYWORD, STRING, column="target_service"),
        _failover("operation", KEYWORD, STRING, column="operation"),
        _failover("from_node", KEYWORD, STRING, column="from_node"),
        _failover("to_node", KEYWORD, STRING, column="to_node"),
        _failover("reason", KEYWORD, STRING, column="reason"),
        _failover("attempts", LONG, INT64, column="attempts"),
        _failover("detection_ns", LONG, INT64, column="detection_ns"),
        _failover("added_ns", LONG, INT64, column="added_ns"),
        _failover("outcome", KEYWORD, STRING, column="outcome"),
        _failover("source", KEYWORD, STRING, column="source"),
    ),
    id=lambda f: in_trace(f.trace_id, f.failover_id),
    time_ns=operator.attrgetter("time_ns"),
)  # fmt: skip

# "delay" or "2pc": which record a coordination document holds (they share the indices).
RECORD_FIELD: Final = "hopscope.record"

_delay = _own("hopscope.coordination")
COORDINATION: Final = Table(
    "coordination", "coordination", CoordinationDelay,
    (
        _envelope_time("start_ns"),
        row("trace.id", KEYWORD, STRING, "trace_id", column="trace_id"),
        row("span.id", KEYWORD, STRING, "span_id", column="span_id"),
        row("service.name", KEYWORD, STRING, "service", column="service"),
        row("service.node.name", KEYWORD, STRING, "node", column="node"),
        row("event.duration", LONG, INT64, "duration_ns"),
        row(RECORD_FIELD, KEYWORD, STRING, (), get=lambda _: "delay"),
        _delay("trace_id", KEYWORD, STRING),
        _delay("span_id", KEYWORD, STRING),
        _delay("parent_span_id", KEYWORD, STRING),
        _delay("name", KEYWORD, STRING),
        _delay("kind", KEYWORD, STRING, column="coordination_kind"),
        _delay("service", KEYWORD, STRING),
        _delay("node", KEYWORD, STRING),
        _delay("resource", KEYWORD, STRING, column="resource"),
        _delay("participant", KEYWORD, STRING, column="participant"),
        _delay("start_ns", LONG, INT64),
        _delay("duration_ns", LONG, INT64, column="duration_ns"),
        _delay("critical_ns", LONG, INT64, column="critical_ns"),
        _delay("error", BOOLEAN, BOOL, column="error"),
    ),
    id=lambda d: in_trace(d.trace_id, d.span_id),
    time_ns=operator.attrgetter("start_ns"),
)  # fmt: skip


def two_phase_commit_id(commit: TwoPhaseCommit) -> str:
    """``2pc-<trace>-<coordinator>-<resource>``; a resource that would make the id longer than
    Elasticsearch's 512 bytes is replaced by its hash (a cut could make two ids equal)."""
    trace_id, coordinator, resource = commit.trace_id, commit.coordinator_span_id, commit.resource
    doc_id = f"2pc-{trace_id}-{coordinator}-{resource}"
    if len(doc_id.encode()) <= _MAX_ID_BYTES:
        return doc_id
    digest = hashlib.sha256(str(resource).encode()).hexdigest()
    return f"2pc-{trace_id}-{coordinator}-sha256-{digest}"


_2pc = _own("hopscope.two_phase_commit")
TWO_PHASE_COMMITS: Final = Table(
    "two_phase_commits", "coordination", TwoPhaseCommit,
    (
        _envelope_time("start_ns"),
        row("trace.id", KEYWORD, STRING, "trace_id", column="trace_id"),
        row("span.id", KEYWORD, STRING, "coordinator_span_id"),
        row("service.name", KEYWORD, STRING, "coordinator_service"),
        row("event.duration", LONG, INT64, "prepare_ns"),
        row(RECORD_FIELD, KEYWORD, STRING, (), get=lambda _: "2pc"),
        _2pc("trace_id", KEYWORD, STRING),
        _2pc("resource", KEYWORD, STRING, column="resource"),
        _2pc("coordinator_span_id", KEYWORD, STRING),
        _2pc("coordinator_service", KEYWORD, STRING, column="coordinator_service"),
        _2pc("start_ns", LONG, INT64),
        _2pc("participants", LONG, INT64, column="participants"),
        _2pc("participant_names", KEYWORD, STRINGS),
        _2pc("prepare_ns", LONG, INT64, column="prepare_ns"),
        _2pc("commit_ns", LONG, INT64, column="commit_ns"),
        _2pc("straggler", KEYWORD, STRING, column="straggler"),
        _2pc("blocked_ns", LONG, INT64, column="blocked_ns"),
        _2pc("outcome", KEYWORD, STRING, column="outcome"),
    ),
    id=two_phase_commit_id,
    time_ns=operator.attrgetter("start_ns"),
)  # fmt: skip


def _critical_by_operation(record: TraceRecord) -> list[dict[str, Any]]:
    """One entry per ``[service] operation`` on the path: its exclusive time and its split.

    Operation names are not field names, so a list of entries, kept in ``_source``.
    """
    path = record.critical_path
    entries: dict[str, dict[str, Any]] = {}
    for operation, total in path.by_operation.items():
        entries[operation] = {"operation": operation, "exclusive_ns": total}
        entries[operation].update(_NO_KIND_NS)
    for (operation, kind), ns in path.by_operation_kind.items():
        entries[operation][_KIND_NS[kind]] += ns
    return list(entries.values())


# The split's entry names, made once (a trace document has an entry per operation on the path).
_KIND_NS: Final = {kind: f"{kind}_ns" for kind in SEGMENT_KINDS}
_NO_KIND_NS: Final = dict.fromkeys(_KIND_NS.values(), 0)


def _critical_by_service(record: TraceRecord) -> list[dict[str, Any]]:
    by_service = record.summary.critical_by_service
    return [{"service": name, "exclusive_ns": ns} for name, ns in by_service.items()]


def _critical_kind(kind: str) -> Field:
    """One flat field per critical-path segment kind (the kinds are fixed by design)."""
    return row(
        f"hopscope.trace.critical_by_kind.{kind}", LONG, INT64, "summary.critical_by_kind",
        column=f"critical_{kind}_ns", get=lambda t: t.summary.critical_by_kind.get(kind, 0),
    )  # fmt: skip


_trace = _own("hopscope.trace")
TRACES: Final = Table(
    "traces", "traces", TraceRecord,
    (
        _envelope_time("summary.start_ns"),
        row("trace.id", KEYWORD, STRING, "summary.trace_id", column="trace_id"),
        row("span.id", KEYWORD, STRING, "summary.root_span_id"),
        row("service.name", KEYWORD, STRING, "summary.root_service"),
        row("event.duration", LONG, INT64, "summary.duration_ns", column="duration_ns"),
        row("event.outcome", KEYWORD, BOOL, "summary.error", encode=outcome),
        row("payment.id", KEYWORD, STRING, "summary.payment_id", column="payment_id"),
        _trace("trace_id", KEYWORD, STRING, source="summary.trace_id"),
        _trace("root_span_id", KEYWORD, STRING, source="summary.root_span_id"),
        _trace("root_service", KEYWORD, STRING, source="summary.root_service",
               column="root_service"),
        _trace("root_operation", KEYWORD, STRING, source="summary.root_operation",
               column="root_operation"),
        _trace("start_ns", LONG, INT64, source="summary.start_ns"),
        _trace("duration_ns", LONG, INT64, source="summary.duration_ns"),
        _trace("extent_ns", LONG, INT64, source="summary.extent_ns"),
        _trace("span_count", LONG, INT64, source="summary.span_count", column="span_count"),
        _trace("services", KEYWORD, STRINGS, source="summary.services"),
        _trace("error", BOOLEAN, BOOL, source="summary.error", column="error"),
        _trace("root_error", BOOLEAN, BOOL, source="summary.root_error", column="root_error"),
        _trace("complete", BOOLEAN, BOOL, source="summary.complete", column="complete"),
        *(_critical_kind(kind) for kind in SEGMENT_KINDS),
        _trace("failover_count", LONG, INT64, source="summary.failover_count",
               column="failover_count"),
        _trace("retry_count", LONG, INT64, source="summary.retry_count", column="retry_count"),
        _trace("hop_count", LONG, INT64, source="summary.hop_count", column="hop_count"),
        _trace("payment_id", KEYWORD, STRING, source="summary.payment_id"),
        # One field name for every kind: a trace's anomalies are what was sanitized about it.
        row("hopscope.sanitized", KEYWORD, STRINGS, "summary.anomalies", omit_empty=True),
        _trace("critical_by_operation", STORED, CRITICAL_OPERATIONS,
               source=("critical_path.by_operation", "critical_path.by_operation_kind"),
               column="critical_by_operation", get=_critical_by_operation),
        _trace("critical_by_service", STORED, CRITICAL_SERVICES,
               source="summary.critical_by_service", column="critical_by_service",
               get=_critical_by_service),
    ),
    id=operator.attrgetter("summary.trace_id"),
    time_ns=operator.attrgetter("summary.start_ns"),
    covers=(("summary", TraceSummary),),
)  # fmt: skip

TABLES: Final[Mapping[str, Table]] = {
    table.kind: table
    for table in (SPANS, LOGS, HOPS, FAILOVERS, COORDINATION, TWO_PHASE_COMMITS, TRACES)
}
# The document kinds (one index pattern and template each), in index order.
INDEX_KINDS: Final = ("spans", "logs", "hops", "traces", "failovers", "coordination")
# The record kinds the analysis reads, in Dataset order.
ANALYSIS_KINDS: Final = (
    "spans", "traces", "hops", "failovers", "coordination", "two_phase_commits"
)  # fmt: skip


def tables_of(index: str) -> list[Table]:
    """The tables whose documents go to the ``index`` kind (coordination: delays and 2PC)."""
    return [table for table in TABLES.values() if table.index == index]


def index_fields(index: str) -> dict[str, Field]:
    """Every document field of the ``index`` kind, by document name (first table wins)."""
    found: dict[str, Field] = {}
    for table in tables_of(index):
        for f in table.fields:
            found.setdefault(f.document, f)
    return found


def polars_dtype(name: str) -> pl.DataType:
    """The polars dtype of a dtype name of these tables (imports polars).

    >>> polars_dtype(CRITICAL_SERVICES)
    List(Struct({'service': String, 'exclusive_ns': Int64}))
    """
    import polars as pl

    def struct(fields: Sequence[tuple[str, str]]) -> pl.Struct:
        return pl.Struct({name: polars_dtype(dtype) for name, dtype in fields})

    named: dict[str, Callable[[], pl.DataType]] = {
        STRING: pl.String,
        INT64: pl.Int64,
        BOOL: pl.Boolean,
        TIME: lambda: pl.Datetime("ns", "UTC"),
        STRINGS: lambda: pl.List(pl.String()),
        JSON: pl.String,
        CRITICAL_OPERATIONS: lambda: pl.List(struct(CRITICAL_OPERATION_FIELDS)),
        CRITICAL_SERVICES: lambda: pl.List(struct(CRITICAL_SERVICE_FIELDS)),
    }
    if name not in named:
        raise ValueError(f"no polars dtype for {name!r}; known: {sorted(named)}")
    return named[name]()


__all__ = [
    "ANALYSIS_KINDS",
    "INDEX_KINDS",
    "RECORD_FIELD",
    "TABLES",
    "Field",
    "Table",
    "TraceRecord",
    "index_fields",
    "polars_dtype",
    "tables_of",
    "timestamp",
]
