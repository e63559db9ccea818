"""Records to Elasticsearch documents: flat ECS-style names, deterministic ids.

Domain records (:mod:`hopscope.processors.records`, :mod:`hopscope.processors.derive`) are not
documents; this module is the one converter between them, and every field it writes is a row
of :mod:`hopscope.processors.schema` (the tables say the names, types and encodings; this
module only places the documents). Ids are deterministic, so a replay after a crash or a
rebalance overwrites instead of duplicating:

- spans ``<trace id>-<span id>``; logs a content hash; hops the client span id; traces the
  trace id; failovers their failover id; coordination delays the span id; 2PC transactions
  ``2pc-<trace id>-<coordinator span id>-<resource>`` (the resource hashed when the id would
  pass Elasticsearch's 512 bytes).

What the processor sanitized (:mod:`hopscope.processors.sanitize`) is visible in the documents:
``hopscope.sanitized`` lists the reason codes of a span, a log record or a trace (its
anomalies), and a replaced time keeps its recorded value in ``hopscope.original.start_ns`` /
``end_ns`` (logs: ``time_ns``), as text, since a uint64 may not fit Elasticsearch's long.

A :class:`Document` may also stand for a deletion (:func:`deletion`): the derived document of
an earlier derivation of a trace that its new derivation no longer produces (a late span
reopened the trace, see :mod:`hopscope.processors.assembly`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import orjson

from hopscope.processors import core, schema
from hopscope.processors.derive import DerivedRecords
from hopscope.processors.derive.failovers import Failover
from hopscope.processors.records import LogRecord, SpanRecord
from hopscope.processors.schema import Table, TraceRecord, timestamp
from hopscope.processors.templates import index_name

__all__ = [
    "Document",
    "deletion",
    "derived_documents",
    "failover_document",
    "log_document",
    "span_document",
    "timestamp",
]


class Document:
    """One document to index: its kind (spans, logs, hops...), index, id and body.

    ``delete``: the document at ``index`` and ``id`` is to be deleted instead (``body`` is
    empty); made by :func:`deletion`. A deletion of a document that is not there succeeds.

    ``source``: the body as the compact JSON the bulk request carries, when the native core
    wrote it (:mod:`hopscope.processors.core`); ``body`` is then parsed from it when first
    read, and :func:`~hopscope.processors.sink.bulk_lines` sends it as it is. Documents of
    either kind with equal bodies are equal.

    Not a dataclass: one is made for about every span and twice as many documents, and a plain
    slotted class costs less to make (~0.24 µs against a frozen dataclass's ~0.78); treat it as
    immutable all the same.

    >>> doc = Document("spans", "s-1", "t-1", source=b'{"@timestamp":"2026-05-04T1","n":1}')
    >>> doc.stamp, doc.body
    ('2026-05-04T1', {'@timestamp': '2026-05-04T1', 'n': 1})
    """

    __slots__ = ("_body", "delete", "id", "index", "kind", "source")

    def __init__(
        self, kind: str, index: str, id: str, body: dict[str, Any] | None = None,
        delete: bool = False, *, source: bytes | None = None,
    ) -> None:  # fmt: skip
        self.kind = kind
        self.index = index
        self.id = id
        self._body = body
        self.delete = delete
        self.source = source

    @property
    def body(self) -> dict[str, Any]:
        """The body as a dict (parsed from ``source`` on first read when there is one)."""
        body = self._body
        if body is None:
            body = self._body = {} if self.source is None else orjson.loads(self.source)
        return body

    @property
    def stamp(self) -> str:
        """The body's ``@timestamp``, "" without one; read off ``source`` without parsing it
        (the native core writes ``@timestamp`` first)."""
        source = self.source
        if self._body is None and source is not None and source.startswith(_STAMP):
            return source[len(_STAMP) : source.index(b'"', len(_STAMP))].decode()
        return str(self.body.get("@timestamp", ""))

    @property
    def key(self) -> tuple[str, str, str]:
        """``(kind, index, id)``: where the document lives."""
        return self.kind, self.index, self.id

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Document):
            return NotImplemented
        return (self.key, self.delete, self.body) == (other.key, other.delete, other.body)

    __hash__ = None  # type: ignore[assignment]  # a dict body: as unhashable as the dataclass was

    def __repr__(self) -> str:
        return (
            f"Document(kind={self.kind!r}, index={self.index!r}, id={self.id!r}, "
            f"body={self.body!r}, delete={self.delete!r})"
        )


# How the native core's sources begin (``Document.stamp``).
_STAMP = b'{"@timestamp":"'


def deletion(kind: str, index: str, doc_id: str, timestamp: str = "") -> Document:
    """The deletion of the ``kind`` document ``doc_id`` in ``index``; ``timestamp``: that
    document's ``@timestamp``, which places the deletion in the archive's hour of it (the
    body carries it, nothing else).

    >>> gone = deletion("coordination", "hopscope-coordination-2026.05.04", "2pc-t-None-tx-1",
    ...                 "2026-05-04T10:00:00.000000000Z")
    >>> gone.key, gone.delete, gone.body
    (('coordination', 'hopscope-coordination-2026.05.04', '2pc-t-None-tx-1'), True, \
{'@timestamp': '2026-05-04T10:00:00.000000000Z'})
    """
    return Document(
        kind, index, doc_id, {"@timestamp": timestamp} if timestamp else {}, delete=True
    )


def _document(table: Table, record: Any, prefix: str) -> Document:
    return Document(
        table.index,
        index_name(prefix, table.index, table.time_ns(record)),
        table.id(record),
        table.body(record),
    )


def _native(kind: str, parts: tuple[str, str, bytes]) -> Document:
    """The document the native core handed back as ``(index, id, source)``."""
    index, doc_id, source = parts
    return Document(kind, index, doc_id, source=source)


def span_document(span: SpanRecord, prefix: str) -> Document:
    """A span as its ``spans`` document (id ``<trace id>-<span id>``).

    The native core writes it when it is in use (:mod:`hopscope.processors.core`), its body as
    the JSON the bulk request carries (``Document.source``); the table
    (:data:`~hopscope.processors.schema.SPANS`) is the specification, and writes what the native
    core hands back.
    """
    native = core.native()
    if native is not None:
        parts = native.span_document(span, prefix)
        if parts is not None:
            index, doc_id, source = parts
            return Document("spans", index, doc_id, source=source)
    return _document(schema.SPANS, span, prefix)


def log_document(log: LogRecord, prefix: str) -> Document:
    """A log record as its ``logs`` document (id: a hash of its content).

    The native core writes the index and the body when it is in use, the body as a dict (the
    id hashes it as the standard library writes it); the table
    (:data:`~hopscope.processors.schema.LOGS`) is the specification.
    """
    native = core.native()
    parts = None if native is None else native.log_document(log, prefix)
    if parts is not None:
        index, body = parts
    else:
        index, body = index_name(prefix, "logs", log.time_ns), schema.LOGS.body(log)
    # Logs have no id of their own: the content is the identity (a replay is the same record).
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
    return Document("logs", index, digest[:40], body)


def failover_document(failover: Failover, prefix: str) -> Document:
    """A failover as its ``failovers`` document (id: the failover id)."""
    return _document(schema.FAILOVERS, failover, prefix)


def derived_documents(derived: DerivedRecords, prefix: str) -> Iterator[Document]:
    """The hops, failovers, coordination delays, 2PC transactions and summary of one trace."""
    # Hops (about one a span), coordination delays and the trace's summary are written by the
    # native core when it is in use, as JSON sources as spans are; the tables are the
    # specification.
    native = core.native()
    for hop in derived.hops:
        parts = None if native is None else native.hop_document(hop, prefix)
        yield _document(schema.HOPS, hop, prefix) if parts is None else _native("hops", parts)
    for failover in derived.failovers:
        yield _document(schema.FAILOVERS, failover, prefix)
    for delay in derived.coordination:
        parts = None if native is None else native.coordination_document(delay, prefix)
        yield (
            _document(schema.COORDINATION, delay, prefix)
            if parts is None
            else _native("coordination", parts)
        )
    for commit in derived.two_phase_commits:
        yield _document(schema.TWO_PHASE_COMMITS, commit, prefix)
    summary, path = derived.summary, derived.critical_path
    parts = None if native is None else native.trace_document(summary, path, prefix)
    yield (
        _document(schema.TRACES, TraceRecord(summary, path), prefix)
        if parts is None
        else _native("traces", parts)
    )
