"""The analysis frames: one canonical polars schema per record kind, whatever the source.

The columns are read from the record schema (:mod:`hopscope.processors.schema`): every row
with an analysis column, in table order, with its dtype. Nothing here names a field by hand.

Every loader (Elasticsearch, the Parquet archive, OTLP/Jaeger JSON files) ends in
:func:`normalize`: it takes a frame whose columns carry the *document* field names the
processors index (``trace.id``, ``hopscope.hop.client_ns``, ``attributes.db.system``...; see
:mod:`hopscope.processors.documents`) and returns the canonical columns below, in this order,
with these types. Missing columns become nulls, so a job never checks which source it reads.

Times are ``Datetime("ns", "UTC")``; durations are ``Int64`` nanoseconds (docs/DESIGN.md §3).
Nested per-trace lists (critical path per operation and per service) are ``List(Struct)``; the
Parquet archive stores them as native lists (JSON text in older part files), Elasticsearch as
lists of objects: all are accepted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Final

import polars as pl

from hopscope.processors import schema as record_schema
from hopscope.processors.schema import polars_dtype

TIME: Final = pl.Datetime("ns", "UTC")  # the dtype of record_schema.TIME
NS: Final = pl.Int64()
# Log records: a kind of their own beside the derived ones, read by the window comparison
# (error logs per service); loaders that do not read logs leave the frame empty.
LOGS: Final = "logs"


def _inner(name: str) -> pl.DataType:
    dtype = polars_dtype(name)
    assert isinstance(dtype, pl.List)
    return dtype.inner  # type: ignore[return-value]


CRITICAL_OPERATION: Final = _inner(record_schema.CRITICAL_OPERATIONS)
CRITICAL_SERVICE: Final = _inner(record_schema.CRITICAL_SERVICES)


def _schema(kind: str) -> Mapping[str, tuple[str, pl.DataType]]:
    """canonical column -> (document field, dtype), from the record schema's table."""
    return {
        f.column: (f.document, polars_dtype(f.dtype))
        for f in record_schema.TABLES[kind].columns()
        if f.column is not None
    }


# Per dataset kind, in Dataset order. Spans carry the span attributes the jobs read, each as
# its own column (the Parquet archive writes attributes as ``attributes.<key>`` text).
SCHEMAS: Final[Mapping[str, Mapping[str, tuple[str, pl.DataType]]]] = {
    kind: _schema(kind) for kind in (*record_schema.ANALYSIS_KINDS, LOGS)
}
TRACES: Final = SCHEMAS["traces"]


def _service_column(kind: str) -> str | None:
    """The analysis column holding what the documents of ``kind`` carry as ``service.name``
    (the record attribute behind both)."""
    fields_ = record_schema.TABLES[kind].fields
    source = next((f.source for f in fields_ if f.document == "service.name"), None)
    return next((f.column for f in fields_ if f.column and f.source == source), None)


def document_fields(kind: str) -> list[str]:
    """The document fields a loader must fetch for ``kind`` (for ES ``docvalue_fields``/_source).

    >>> document_fields("failovers")[:3]
    ['@timestamp', 'trace.id', 'service.name']
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
        kind: ``spans``, ``traces``, ``hops``, ``failovers``, ``coordination``,
            ``two_phase_commits`` or ``logs``.
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
    # Last and optional: a dataset built without logs has an empty frame of them.
    logs: pl.LazyFrame = field(default_factory=lambda: empty(LOGS).lazy())

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

    def between(self, start: datetime | None, end: datetime | None) -> Dataset:
        """The records of the traces that started in ``[start, end)`` (None: unbounded), and
        the records outside any trace whose own time is in it.

        A trace belongs to one window whole (by its start), so a comparison never splits one.

        Examples:
            >>> from datetime import UTC, datetime
            >>> t = lambda s: datetime(2026, 1, 1, 0, 0, s, tzinfo=UTC)
            >>> data = Dataset.from_documents({
            ...     "traces": pl.LazyFrame({"@timestamp": [t(1), t(5)], "trace.id": ["a", "b"]}),
            ...     "spans": pl.LazyFrame({"@timestamp": [t(1), t(6), t(7)],
            ...                            "trace.id": ["a", "b", "b"]}),
            ...     "logs": pl.LazyFrame({"@timestamp": [t(2), t(6)], "trace.id": [None, "a"]}),
            ... })
            >>> part = data.between(t(0), t(5))
            >>> [part.spans.collect().height, part.logs.collect().height]
            [1, 2]
        """
        when = pl.lit(True)
        if start is not None:
            when = when & (pl.col("time") >= start)
        if end is not None:
            when = when & (pl.col("time") < end)
        ids = self.traces.filter(when).select("trace_id").unique()

        def part(frame: pl.LazyFrame) -> pl.LazyFrame:
            in_trace = frame.filter(pl.col("trace_id").is_not_null()).join(
                ids, on="trace_id", how="semi"
            )
            return pl.concat([in_trace, frame.filter(pl.col("trace_id").is_null() & when)])

        return Dataset(
            **{f.name: (self.traces.filter(when) if f.name == "traces" else
                        part(getattr(self, f.name))) for f in fields(self)}
        )  # fmt: skip

    def of_services(self, services: Sequence[str]) -> Dataset:
        """The records whose ``service.name`` is one of ``services``, as the Elasticsearch and
        Parquet loaders select them (spans and logs: their service; hops: the source service;
        traces: the root service; 2PC: the coordinator).

        >>> data = Dataset.from_documents({"spans": pl.LazyFrame(
        ...     {"trace.id": ["a", "a"], "service.name": ["gateway", "risk"]})})
        >>> data.of_services(["risk"]).spans.collect()["service"].to_list()
        ['risk']
        """
        wanted = list(services)

        def part(kind: str) -> pl.LazyFrame:
            frame: pl.LazyFrame = getattr(self, kind)
            column = _service_column(kind)
            return frame if column is None else frame.filter(pl.col(column).is_in(wanted))

        return Dataset(**{f.name: part(f.name) for f in fields(self)})

    def collect(self, unread: Mapping[str, Sequence[str]] | None = None) -> Dataset:
        """All frames computed once (jobs then share them), still as lazy frames.

        Parameters:
            unread: per kind, columns nobody will read: they come out null (of their type)
                and are not loaded (a Parquet scan skips them).

        >>> data = Dataset.from_documents({"spans": pl.LazyFrame({"trace.id": ["a"],
        ...                                                       "payment.id": ["p"]})})
        >>> spans = data.collect({"spans": ["payment_id"]}).spans.collect()
        >>> spans.select("trace_id", "payment_id").row(0), spans.width == len(SCHEMAS["spans"])
        (('a', None), True)
        """
        frames = []
        for f in fields(self):
            frame: pl.LazyFrame = getattr(self, f.name)
            skipped = [c for c in (unread or {}).get(f.name, ()) if c in SCHEMAS[f.name]]
            if skipped:
                dtypes = frame.collect_schema()
                frame = frame.with_columns(pl.lit(None, dtype=dtypes[c]).alias(c) for c in skipped)
            frames.append(frame)
        # The in-memory engine: all kinds' plans together (hundreds of part-file scans each,
        # then the repeated-id rule, which sorts a whole column) ran 0.3-0.8 s faster at 10M
        # spans than on the streaming engine, with the same peak memory (docs/SCALING.md,
        # "Raw path, sixth round").
        collected = pl.collect_all(frames, engine="in-memory")
        # Kept in the chunks the loaders give (one per part file or page), not rechunked: a
        # rechunk copies every text column's 16-byte views and buffers (at 10M spans 3-4 GB,
        # a third of the report's peak memory and most of its system time, the kernel zeroing
        # fresh pages). The jobs avoid the polars 2.1 streaming kernel that mishandled
        # filtered multi-chunk text (pl.format; tail.candidate_values).
        return Dataset(*(frame.lazy() for frame in collected))
