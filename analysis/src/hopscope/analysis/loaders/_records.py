"""Records and documents in memory -> a :class:`~hopscope.analysis.schema.Dataset`.

The same conversion the processors apply before indexing (derive per trace, then
:mod:`hopscope.processors.documents`), so a dataset built here from decoded spans equals the one
read back from Elasticsearch or the Parquet archive. Used by the file loaders (an exported trace
without a cluster) and by tests.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import polars as pl

from hopscope.analysis.schema import Dataset
from hopscope.core.settings import DEFAULT_INDEX_PREFIX
from hopscope.processors import pipeline
from hopscope.processors.documents import Document
from hopscope.processors.records import LogRecord, SpanRecord

# Document kinds -> dataset frames; coordination documents split by their record type.
_NESTED = ("attributes", "resource")


def documents_from_records(
    spans: Iterable[SpanRecord],
    logs: Iterable[LogRecord] = (),
    *,
    prefix: str = DEFAULT_INDEX_PREFIX,
) -> Iterator[Document]:
    """Span documents and the derived documents of every trace, as the processors index them.

    Every trace is taken as complete; cluster-event logs outside a trace become failovers
    (the processors' pipeline: :func:`hopscope.processors.pipeline.documents_from_records`).
    """
    return pipeline.documents_from_records(spans, logs, prefix=prefix)


def flat_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """A document body with ``attributes``/``resource`` maps spread into dotted columns.

    >>> flat_body({"span.id": "a", "attributes": {"db.system": "postgresql"}})
    {'span.id': 'a', 'attributes.db.system': 'postgresql'}
    """
    row = {k: v for k, v in body.items() if k not in _NESTED}
    for nested in _NESTED:
        for key, value in (body.get(nested) or {}).items():
            row[f"{nested}.{key}"] = value
    return row


def frames_from_bodies(
    bodies: Mapping[str, Iterable[Mapping[str, Any]]],
) -> dict[str, pl.LazyFrame]:
    """Document bodies per document kind -> document-named frames per dataset kind."""
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for kind, kind_bodies in bodies.items():
        for body in kind_bodies:
            target = kind
            if kind == "coordination":
                target = "two_phase_commits" if body.get("hopscope.record") == "2pc" else kind
            rows[target].append(flat_body(body))
    return {
        kind: pl.DataFrame(kind_rows, infer_schema_length=None).lazy()
        for kind, kind_rows in rows.items()
        if kind_rows
    }


def dataset_from_documents(documents: Iterable[Document]) -> Dataset:
    """Documents (deduplicated on kind and id, last wins, as in Elasticsearch) -> a dataset."""
    latest: dict[tuple[str, str], Document] = {}
    for document in documents:
        latest[(document.kind, document.id)] = document
    bodies: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for document in latest.values():
        bodies[document.kind].append(document.body)
    return Dataset.from_documents(frames_from_bodies(bodies))


def dataset_from_records(spans: Iterable[SpanRecord], logs: Iterable[LogRecord] = ()) -> Dataset:
    """Decoded spans and logs -> derived records -> a dataset (the processors' path, in memory).

    Examples:
        >>> spans = [
        ...     SpanRecord("t", "c", None, "risk/Score", "client", 0, 100, "payment"),
        ...     SpanRecord("t", "s", "c", "risk/Score", "server", 10, 80, "risk"),
        ... ]
        >>> data = dataset_from_records(spans)
        >>> data.hops.select("source_service", "target_service", "network_ns").collect().row(0)
        ('payment', 'risk', 30)
    """
    return dataset_from_documents(documents_from_records(spans, logs))
