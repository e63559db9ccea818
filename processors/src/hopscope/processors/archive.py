"""The Parquet archive: the same records as Elasticsearch, as hourly Parquet files.

Written after Elasticsearch acknowledged the documents and before the offsets are committed, so
the archive holds only durable records; a replay after a crash may write a record twice (in two
part files), and readers keep the newest version of each ``_id`` (ids are deterministic; part
files are named in write order). A deletion (a derived record that a later derivation of its
trace no longer produces: a late span, see :mod:`hopscope.processors.assembly`) is archived as
a tombstone: a row of its ``_id`` and ``@timestamp`` (so in the deleted record's hour) with
:data:`DELETED` true, which readers treat as the newest version of that record: gone.

Layout: ``<dir>/<kind>/date=YYYY-MM-DD/hour=HH/part-<write ns>-<random>.parquet``, one part
file per kind and hour per bulk write. Columns:

- scalar fields: one column each, of the type the record schema gives them
  (:mod:`hopscope.processors.schema`: ``event.duration`` Int64, flags Boolean);
  ``@timestamp`` is a nanosecond UTC timestamp (parsed once here, so readers neither parse
  text nor lose Parquet's min/max statistics for time filters);
- the span and log ``attributes`` and ``resource`` maps: one column per key,
  ``attributes.<key>`` / ``resource.<key>``, always text (booleans ``"true"``/``"false"``,
  numbers as written, lists as JSON), so part files with different attribute sets or value
  types still scan together and a reader never parses JSON per row;
- lists: native Parquet lists of the schema's types (the per-operation and per-service
  critical path of trace summaries as lists of structs, which the batch analysis reads for
  every trace; services and reason codes as lists of text);
- other nested values (span events and links): JSON text;
- ``_deleted``: true on a tombstone (:data:`DELETED`), whose other columns are null but
  ``_id`` and ``@timestamp``;
- a column that is null in every row of a part file is left out (absent means null), so no
  part file carries a typeless column.

Part files of one kind therefore differ in their set of columns: read them with a schema
(``pl.scan_parquet(..., missing_columns="insert", extra_columns="ignore")``) or with
:func:`hopscope.analysis.loaders.load_parquet`.
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from hopscope.processors.documents import Document
from hopscope.processors.schema import JSON, MAP, TIME, index_fields, polars_dtype
from hopscope.processors.sink import WriteOutcome

_SCALARS = (str, int, float, bool)
# Maps spread into one text column per key (the keys are attribute names, never nested).
_SPREAD = ("attributes", "resource")
_STAMP_FORMAT = "%Y-%m-%dT%H:%M:%S%.fZ"  # what documents.timestamp writes
# The column that marks a tombstone row (module docstring); absent in part files without one.
DELETED: Final = "_deleted"


@functools.cache
def _column_types(kind: str) -> dict[str, Any]:
    """The Parquet column types of document ``kind``, from the record schema: scalars of their
    own type, lists (critical path, services, reason codes) native with their exact types
    (never inferred: an empty list alone would infer as a list of nulls). ``@timestamp`` is
    parsed from its text after the frame is built; nested values of no fixed shape are JSON."""
    return {
        name: polars_dtype(field.dtype)
        for name, field in index_fields(kind).items()
        # An encoded field's document value is the encoder's (text), not the record's type.
        if field.encode is None and field.dtype not in (TIME, JSON, MAP) and not field.in_map
    }


@functools.cache
def _native(kind: str) -> frozenset[str]:
    """The list-typed columns of ``kind``: written as Parquet lists, not as JSON text."""
    import polars as pl

    return frozenset(n for n, t in _column_types(kind).items() if isinstance(t, pl.List))


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _text(value: Any) -> str | None:
    """An attribute value as the text every part file agrees on."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):  # before int: bool is an int
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return _json(value)


def _row(document: Document) -> dict[str, Any]:
    native = _native(document.kind)
    row: dict[str, Any] = {"_id": document.id}
    if document.delete:  # a tombstone (module docstring)
        row[DELETED] = True
    for key, value in document.body.items():
        if key in _SPREAD and isinstance(value, Mapping):
            for inner, inner_value in value.items():
                row[f"{key}.{inner}"] = _text(inner_value)
        elif value is None or isinstance(value, _SCALARS) or key in native:
            row[key] = value
        else:
            row[key] = _json(value)
    return row


def _partition(document: Document) -> str:
    stamp = str(document.body.get("@timestamp") or "1970-01-01T00")
    return f"date={stamp[:10]}/hour={stamp[11:13]}"


class ParquetArchive:
    """Appends acknowledged documents to hourly Parquet part files under ``root``.

    A :class:`~hopscope.processors.sink.Sink`: the runtime writes it after Elasticsearch, with
    what Elasticsearch acknowledged. A failed file write (disk full) raises ``OSError``, which
    stops the processor with the batch uncommitted.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files_written = 0

    def setup(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        """Nothing stays open: every part file is complete once written."""

    def write(self, documents: Sequence[Document]) -> WriteOutcome:
        import polars as pl

        groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for document in documents:
            groups[(document.kind, _partition(document))].append(_row(document))
        for (kind, partition), rows in groups.items():
            directory = self.root / kind / partition
            directory.mkdir(parents=True, exist_ok=True)
            present = {key for row in rows for key in row}
            types = {k: v for k, v in _column_types(kind).items() if k in present}
            frame = pl.DataFrame(rows, schema_overrides=types, infer_schema_length=None)
            frame = frame.select(c.name for c in frame.iter_columns() if c.null_count() < c.len())
            if "@timestamp" in frame.columns:
                stamp = pl.col("@timestamp").str.strptime(pl.Datetime("ns", "UTC"), _STAMP_FORMAT)
                frame = frame.with_columns(stamp)
            # Named in write order (then a random suffix, for writers in other processes), so
            # a reader keeps the newest version of a record written twice.
            target = directory / f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:12]}.parquet"
            # Write then rename: a reader never sees a half-written file.
            partial = target.with_suffix(".parquet.partial")
            frame.write_parquet(partial, compression="zstd")
            partial.rename(target)
            self.files_written += 1
        return WriteOutcome(acknowledged=len(documents))
