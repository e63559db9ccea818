"""Records and documents in memory -> a :class:`~hopscope.analysis.schema.Dataset`.

Two paths, equal by construction and by test (``tests/unit/test_schema_roundtrip.py``):

- records -> polars (:func:`dataset_from_records`): the processors' derivations per trace
  (:func:`hopscope.processors.pipeline.derive_gathered`), then
  each analysis column read straight from the records by its row of
  :mod:`hopscope.processors.schema`; used by the file loaders (an exported trace without a
  cluster);
- documents -> polars (:func:`dataset_from_documents`): the documents the processors index,
  normalized as the Elasticsearch and Parquet loaders normalize them; used by tests.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import polars as pl

from hopscope.analysis.schema import Dataset
from hopscope.processors import pipeline
from hopscope.processors import schema as record_schema
from hopscope.processors.decode import flatten
from hopscope.processors.documents import Document
from hopscope.processors.records import LogRecord, SpanRecord
from hopscope.processors.schema import Table, TraceRecord, polars_dtype

# Document kinds -> dataset frames; coordination documents split by their record type.
_NESTED = ("attributes", "resource")


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


def _attribute(dtype: str, value: Any) -> Any:
    """An attribute value as the column value the document path gives it (polars' casts)."""
    if value is None:
        return None
    if dtype == record_schema.BOOL:
        if isinstance(value, bool | int):
            return bool(value)
        if isinstance(value, str):
            return {"true": True, "false": False}.get(value.lower())
        return None
    if isinstance(value, bool):  # before int: bool is an int
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None


def frame_from_records(table: Table, records: Sequence[Any]) -> pl.DataFrame:
    """Records of one kind -> its canonical analysis frame, straight from the schema's rows.

    Each analysis column is the row's value read from the record, typed by the row's dtype
    (times: Unix ns from 1970 on, as the documents write them); attribute columns are keys
    of the record's flattened ``attributes``/``resource``.

    >>> from hopscope.processors.schema import HOPS
    >>> frame_from_records(HOPS, []).width == len(HOPS.columns())
    True
    """
    maps = {
        name: [flatten(getattr(r, name)) for r in records]
        for name in {f.document.partition(".")[0] for f in table.columns() if f.in_map}
    }
    columns = []
    for f in table.columns():
        dtype = polars_dtype(f.dtype)
        if f.in_map:
            head, _, key = f.document.partition(".")
            values = [_attribute(f.dtype, flat.get(key)) for flat in maps[head]]
        else:
            values = [f.value(r) for r in records]
        if f.dtype == record_schema.TIME:
            stamps = pl.Series(f.column, values, dtype=pl.Int64()).clip(lower_bound=0)
            columns.append(stamps.cast(dtype))
        else:
            columns.append(pl.Series(f.column, values, dtype=dtype))
    return pl.DataFrame(columns)


def records_by_kind(
    spans: Iterable[SpanRecord], logs: Iterable[LogRecord] = ()
) -> dict[str, list[Any]]:
    """Spans and the derived records of every trace, per analysis kind, as the processors
    derive them (:func:`hopscope.processors.pipeline.derive_gathered`), deduplicated on their
    document id (last wins, as in Elasticsearch)."""
    traces, standalone = pipeline.derive_gathered(spans, logs)
    found: dict[str, dict[str, Any]] = {kind: {} for kind in record_schema.ANALYSIS_KINDS}

    def add(kind: str, records: Iterable[Any]) -> None:
        table, seen = record_schema.TABLES[kind], found[kind]
        for record in records:
            seen[table.id(record)] = record

    add("failovers", standalone)
    for trace in traces:
        derived = trace.records
        add("spans", trace.spans)
        add("hops", derived.hops)
        add("failovers", derived.failovers)
        add("coordination", derived.coordination)
        add("two_phase_commits", derived.two_phase_commits)
        add("traces", [TraceRecord(derived.summary, derived.critical_path)])
    return {kind: list(records.values()) for kind, records in found.items()}


def dataset_from_records(spans: Iterable[SpanRecord], logs: Iterable[LogRecord] = ()) -> Dataset:
    """Decoded spans and logs -> derived records -> a dataset (the processors' derivations, in
    memory), records -> polars directly: no documents are built.

    Examples:
        >>> spans = [
        ...     SpanRecord("t", "c", None, "risk/Score", "client", 0, 100, "payment"),
        ...     SpanRecord("t", "s", "c", "risk/Score", "server", 10, 80, "risk"),
        ... ]
        >>> data = dataset_from_records(spans)
        >>> data.hops.select("source_service", "target_service", "network_ns").collect().row(0)
        ('payment', 'risk', 30)
    """
    logs = list(logs)
    records = records_by_kind(spans, logs)
    return Dataset(
        **{
            kind: frame_from_records(record_schema.TABLES[kind], records[kind]).lazy()
            for kind in record_schema.ANALYSIS_KINDS
        },
        logs=frame_from_records(record_schema.LOGS, logs).lazy(),
    )
