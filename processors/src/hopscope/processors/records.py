"""Flat span and log records: what the processors decode OTLP into and derive from.

One record per span or log record, with the resource flattened in (``service``, ``node``) and
ids as lowercase hex, so records are hashable, comparable and cheap to turn into documents or
polars rows. Derivations (hops, failovers, coordination, critical path) are pure functions over
the records of one trace.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

# span.kind values, lowercase as in the Elasticsearch documents (docs/DESIGN.md §3).
INTERNAL: Final = "internal"
SERVER: Final = "server"
CLIENT: Final = "client"
PRODUCER: Final = "producer"
CONSUMER: Final = "consumer"

# Status codes.
UNSET: Final = "unset"
OK: Final = "ok"
ERROR: Final = "error"


@dataclass(frozen=True, slots=True)
class SpanEvent:
    """An event on a span (``hopscope.failover``, ``exception``...)."""

    name: str
    time_ns: int
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SpanLink:
    """A link to another span (messaging consumers may link to their producer)."""

    trace_id: str
    span_id: str
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """One span. Times are Unix nanoseconds as recorded (never rewritten for skew)."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str
    start_ns: int
    end_ns: int
    service: str
    node: str | None = None
    status: str = UNSET
    status_message: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    events: tuple[SpanEvent, ...] = ()
    links: tuple[SpanLink, ...] = ()
    resource: Mapping[str, Any] = field(default_factory=dict)
    # What the processor changed or noticed on the way in (reason codes of
    # :mod:`hopscope.processors.sanitize`), and the recorded times it had to replace.
    flags: tuple[str, ...] = ()
    original_start_ns: int | None = None
    original_end_ns: int | None = None

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def failed(self) -> bool:
        return self.status == ERROR


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One log record; ``trace_id``/``span_id`` are None outside a trace."""

    time_ns: int
    service: str
    node: str | None
    severity: str | None
    body: str
    trace_id: str | None = None
    span_id: str | None = None
    event_name: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    resource: Mapping[str, Any] = field(default_factory=dict)
    # As for spans: sanitization reason codes and the recorded time when it was replaced.
    flags: tuple[str, ...] = ()
    original_time_ns: int | None = None
