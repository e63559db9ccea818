"""The Parquet archive: the same records as Elasticsearch, as hourly Parquet files.

Written after Elasticsearch acknowledged the documents and before the offsets are committed, so
the archive holds only durable records; a replay after a crash may write a record twice (in two
part files), and readers deduplicate on ``_id`` (ids are deterministic).

Layout: ``<dir>/<kind>/date=YYYY-MM-DD/hour=HH/part-<uuid>.parquet``, one part file per kind and
hour per bulk write. Columns:

- scalar fields: one column each, of their own type (``event.duration`` Int64, flags
  Boolean); ``@timestamp`` is a nanosecond UTC timestamp (parsed once here, so readers neither
  parse text nor lose Parquet's min/max statistics for time filters);
- the span and log ``attributes`` and ``resource`` maps: one column per key,
  ``attributes.<key>`` / ``resource.<key>``, always text (booleans ``"true"``/``"false"``,
  numbers as written, lists as JSON), so part files with different attribute sets or value
  types still scan together and a reader never parses JSON per row;
- the per-operation and per-service critical path of trace summaries: native lists of structs
  (the batch analysis reads them for every trace);
- other nested values (span events and links): JSON text;
- a column that is null in every row of a part file is left out (absent means null), so no
  part file carries a typeless column.

Part files of one kind therefore differ in their set of columns: read them with a schema
(``pl.scan_parquet(..., missing_columns="insert", extra_columns="ignore")``) or with
:func:`hopscope.analysis.loaders.load_parquet`.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hopscope.processors.documents import Document
from hopscope.processors.sink import WriteOutcome

_SCALARS = (str, int, float, bool)
# Maps spread into one text column per key (the keys are attribute names, never nested).
_SPREAD = ("attributes", "resource")
_STAMP_FORMAT = "%Y-%m-%dT%H:%M:%S%.fZ"  # what documents.timestamp writes


def _native_lists() -> dict[str, Any]:
    """Nested fields kept as Parquet lists, with their exact types (never inferred: an empty
    list alone would infer as a list of nulls)."""
    import polars as pl

    ns = pl.Int64()
    operation = pl.Struct({"operation": pl.String(), "exclusive_ns": ns, "self_ns": ns,
                           "network_ns": ns, "coordination_ns": ns})  # fmt: skip
    service = pl.Struct({"service": pl.String(), "exclusive_ns": ns})
    return {
        "hopscope.trace.critical_by_operation": pl.List(operation),
        "hopscope.trace.critical_by_service": pl.List(service),
    }


_NATIVE = frozenset(("hopscope.trace.critical_by_operation", "hopscope.trace.critical_by_service"))


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
    row: dict[str, Any] = {"_id": document.id}
    for key, value in document.body.items():
        if key in _SPREAD and isinstance(value, Mapping):
            for inner, inner_value in value.items():
                row[f"{key}.{inner}"] = _text(inner_value)
        elif value is None or isinstance(value, _SCALARS) or key in _NATIVE:
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
            lists = {k: v for k, v in _native_lists().items() if any(k in row for row in rows)}
            frame = pl.DataFrame(rows, schema_overrides=lists, infer_schema_length=None)
            frame = frame.select(c.name for c in frame.iter_columns() if c.null_count() < c.len())
            if "@timestamp" in frame.columns:
                stamp = pl.col("@timestamp").str.strptime(pl.Datetime("ns", "UTC"), _STAMP_FORMAT)
                frame = frame.with_columns(stamp)
            target = directory / f"part-{uuid.uuid4().hex}.parquet"
            # Write then rename: a reader never sees a half-written file.
            partial = target.with_suffix(".parquet.partial")
            frame.write_parquet(partial, compression="zstd")
            partial.rename(target)
            self.files_written += 1
        return WriteOutcome(acknowledged=len(documents))
