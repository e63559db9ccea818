"""Records to Elasticsearch documents: flat ECS-style names, deterministic ids.

Domain records (:mod:`hopscope.processors.records`, :mod:`hopscope.processors.derive`) are not
documents; this module is the one converter between them. Ids are deterministic, so a replay
after a crash or a rebalance overwrites instead of duplicating:

- spans ``<trace id>-<span id>``; logs a content hash; hops the client span id; traces the
  trace id; failovers their failover id; coordination delays the span id; 2PC transactions
  ``2pc-<trace id>-<coordinator span id>-<resource>`` (the resource hashed when the id would
  pass Elasticsearch's 512 bytes).

What the processor sanitized (:mod:`hopscope.processors.sanitize`) is visible in the documents:
``hopscope.sanitized`` lists the reason codes of a span, a log record or a trace (its
anomalies), and a replaced time keeps its recorded value in ``hopscope.original.start_ns`` /
``end_ns`` (logs: ``time_ns``), as text, since a uint64 may not fit Elasticsearch's long.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from hopscope.processors.decode import flatten
from hopscope.processors.derive import DerivedRecords
from hopscope.processors.derive.critical_path import SEGMENT_KINDS, CriticalPath
from hopscope.processors.derive.failovers import Failover
from hopscope.processors.records import ERROR, LogRecord, SpanRecord
from hopscope.processors.templates import index_name


@dataclass(frozen=True, slots=True)
class Document:
    """One document to index: its kind (spans, logs, hops...), index, id and body."""

    kind: str
    index: str
    id: str
    body: dict[str, Any]


def timestamp(time_ns: int) -> str:
    """Nanosecond ISO 8601 in UTC, for ``date_nanos`` fields.

    >>> timestamp(1_764_150_000_123_456_789)
    '2025-11-26T09:40:00.123456789Z'
    """
    seconds, nanos = divmod(max(0, time_ns), 1_000_000_000)
    return f"{_second(seconds)}.{nanos:09d}Z"


@functools.lru_cache(maxsize=4096)
def _second(seconds: int) -> str:
    import datetime as dt

    return f"{dt.datetime.fromtimestamp(seconds, tz=dt.UTC):%Y-%m-%dT%H:%M:%S}"


def _outcome(failed: bool | None) -> str:
    if failed is None:
        return "unknown"
    return "failure" if failed else "success"


# Elasticsearch's long; a duration past it is garbage, but must not reject the document.
_LONG_MAX = 2**63 - 1
_MAX_ID_BYTES = 512


def _sanitized(body: dict[str, Any], flags: tuple[str, ...]) -> None:
    if flags:
        body["hopscope.sanitized"] = list(flags)


def span_document(span: SpanRecord, prefix: str) -> Document:
    """A span as its ``spans`` document (id ``<trace id>-<span id>``)."""
    body: dict[str, Any] = {
        "@timestamp": timestamp(span.start_ns),
        "trace.id": span.trace_id,
        "span.id": span.span_id,
        "parent.id": span.parent_id,
        "service.name": span.service,
        "service.node.name": span.node,
        "span.name": span.name,
        "span.kind": span.kind,
        "event.duration": min(_LONG_MAX, max(0, span.end_ns - span.start_ns)),
        "event.outcome": _outcome(span.status == ERROR),
        "span.status.message": span.status_message,
        "attributes": flatten(span.attributes),
        "resource": flatten(span.resource),
    }
    if span.events:
        body["span.events"] = [
            {"name": e.name, "time": timestamp(e.time_ns), "attributes": flatten(e.attributes)}
            for e in span.events
        ]
    if span.links:
        body["span.links"] = [{"trace.id": k.trace_id, "span.id": k.span_id} for k in span.links]
    _sanitized(body, span.flags)
    if span.original_start_ns is not None:
        body["hopscope.original.start_ns"] = str(span.original_start_ns)
        body["hopscope.original.end_ns"] = str(span.original_end_ns)
    return Document(
        "spans", index_name(prefix, "spans", span.start_ns), f"{span.trace_id}-{span.span_id}", body
    )


def log_document(log: LogRecord, prefix: str) -> Document:
    """A log record as its ``logs`` document (id: a hash of its content)."""
    body: dict[str, Any] = {
        "@timestamp": timestamp(log.time_ns),
        "trace.id": log.trace_id,
        "span.id": log.span_id,
        "service.name": log.service,
        "service.node.name": log.node,
        "log.level": log.severity,
        "message": log.body,
        "event.name": log.event_name,
        "attributes": flatten(log.attributes),
        "resource": flatten(log.resource),
    }
    _sanitized(body, log.flags)
    if log.original_time_ns is not None:
        body["hopscope.original.time_ns"] = str(log.original_time_ns)
    # Logs have no id of their own: the content is the identity (a replay is the same record).
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
    return Document("logs", index_name(prefix, "logs", log.time_ns), digest[:40], body)


_FIELD_KEYS: dict[tuple[type, str], tuple[tuple[str, str], ...]] = {}


def _field_keys(record_type: type, namespace: str) -> tuple[tuple[str, str], ...]:
    keys = _FIELD_KEYS.get((record_type, namespace))
    if keys is None:
        keys = tuple((f.name, f"{namespace}.{f.name}") for f in dataclasses.fields(record_type))
        _FIELD_KEYS[(record_type, namespace)] = keys
    return keys


def _fields(record: Any, namespace: str) -> dict[str, Any]:
    # Shallow on purpose: derived records hold scalars, tuples and flat maps, and
    # dataclasses.asdict's deep copy was the processor's single largest cost.
    return {
        key: _plain(getattr(record, name)) for name, key in _field_keys(type(record), namespace)
    }


def _plain(value: Any) -> Any:
    kind = type(value)
    if kind is str or kind is int or value is None or kind is bool or kind is float:
        return value  # the common case, without the slower ABC checks below
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value


def failover_document(failover: Failover, prefix: str) -> Document:
    return Document(
        "failovers", index_name(prefix, "failovers", failover.time_ns), failover.failover_id, {
            "@timestamp": timestamp(failover.time_ns), "trace.id": failover.trace_id,
            "span.id": failover.span_id, "service.name": failover.service,
            "event.outcome": failover.outcome, **_fields(failover, "hopscope.failover"),
        },
    )  # fmt: skip


def _critical_by_operation(path: CriticalPath) -> list[dict[str, Any]]:
    """One entry per ``[service] operation`` on the path: its exclusive time and its split."""
    entries: dict[str, dict[str, Any]] = {}
    for operation, total in path.by_operation.items():
        entries[operation] = {"operation": operation, "exclusive_ns": total}
        entries[operation].update({f"{kind}_ns": 0 for kind in SEGMENT_KINDS})
    for (operation, kind), ns in path.by_operation_kind.items():
        entries[operation][f"{kind}_ns"] += ns
    return list(entries.values())


def _two_phase_commit_id(trace_id: str, coordinator: str | None, resource: str | None) -> str:
    """``2pc-<trace>-<coordinator>-<resource>``; a resource that would make the id longer than
    Elasticsearch's 512 bytes is replaced by its hash (a cut could make two ids equal)."""
    doc_id = f"2pc-{trace_id}-{coordinator}-{resource}"
    if len(doc_id.encode()) <= _MAX_ID_BYTES:
        return doc_id
    digest = hashlib.sha256(str(resource).encode()).hexdigest()
    return f"2pc-{trace_id}-{coordinator}-sha256-{digest}"


def derived_documents(derived: DerivedRecords, prefix: str) -> Iterator[Document]:
    """The hops, failovers, coordination delays, 2PC transactions and summary of one trace."""
    summary = derived.summary
    for hop in derived.hops:
        yield Document("hops", index_name(prefix, "hops", hop.start_ns), hop.hop_id, {
            "@timestamp": timestamp(hop.start_ns), "trace.id": hop.trace_id,
            "span.id": hop.hop_id, "service.name": hop.source_service,
            "service.node.name": hop.source_node, "event.duration": hop.client_ns,
            "event.outcome": _outcome(hop.error), **_fields(hop, "hopscope.hop"),
        })  # fmt: skip
    for failover in derived.failovers:
        yield failover_document(failover, prefix)
    for delay in derived.coordination:
        yield Document(
            "coordination", index_name(prefix, "coordination", delay.start_ns), delay.span_id, {
                "@timestamp": timestamp(delay.start_ns), "trace.id": delay.trace_id,
                "span.id": delay.span_id, "service.name": delay.service,
                "service.node.name": delay.node, "event.duration": delay.duration_ns,
                "hopscope.record": "delay", **_fields(delay, "hopscope.coordination"),
            },
        )  # fmt: skip
    for commit in derived.two_phase_commits:
        yield Document(
            "coordination", index_name(prefix, "coordination", commit.start_ns),
            _two_phase_commit_id(commit.trace_id, commit.coordinator_span_id, commit.resource), {
                "@timestamp": timestamp(commit.start_ns), "trace.id": commit.trace_id,
                "span.id": commit.coordinator_span_id,
                "service.name": commit.coordinator_service,
                "event.duration": commit.prepare_ns, "hopscope.record": "2pc",
                **_fields(commit, "hopscope.two_phase_commit"),
            },
        )  # fmt: skip
    path = derived.critical_path
    body = {
        "@timestamp": timestamp(summary.start_ns), "trace.id": summary.trace_id,
        "span.id": summary.root_span_id, "service.name": summary.root_service,
        "event.duration": summary.duration_ns, "event.outcome": _outcome(summary.error),
        "payment.id": summary.payment_id, **_fields(summary, "hopscope.trace"),
        # Operation names are not field names: a list of pairs, kept in _source for analysis.
        "hopscope.trace.critical_by_operation": _critical_by_operation(path),
    }  # fmt: skip
    body.pop("hopscope.trace.critical_by_service", None)
    # One field name for every kind: the trace's anomalies are what was sanitized about it.
    _sanitized(body, tuple(body.pop("hopscope.trace.anomalies", ())))
    body["hopscope.trace.critical_by_service"] = [
        {"service": name, "exclusive_ns": ns} for name, ns in summary.critical_by_service.items()
    ]
    yield Document("traces", index_name(prefix, "traces", summary.start_ns), summary.trace_id, body)
