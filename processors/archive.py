"""The Parquet archive: the same records as Elasticsearch, as hourly Parquet files.

Written after Elasticsearch acknowledged the documents and before the offsets are committed, so
the archive holds only durable records; a replay after a crash may write a record twice (in two
part files), and readers deduplicate on ``_id`` (ids are deterministic).

Layout: ``<dir>/<kind>/date=YYYY-MM-DD/hour=HH/part-<uuid>.parquet``, one part file per kind and
hour per bulk write. Scalar fields are columns of their own type; nested values (attributes,
events, per-operation maps) are JSON text, so every part of a kind has the same columns.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hopscope.processors.documents import Document

_SCALARS = (str, int, float, bool)


def _row(document: Document) -> dict[str, Any]:
    row: dict[str, Any] = {"_id": document.id}
    for key, value in document.body.items():
        if value is None or isinstance(value, _SCALARS):
            row[key] = value
        else:
            row[key] = json.dumps(value, sort_keys=True, default=str)
    return row


def _partition(document: Document) -> str:
    stamp = str(document.body.get("@timestamp") or "1970-01-01T00")
    return f"date={stamp[:10]}/hour={stamp[11:13]}"


class ParquetArchive:
    """Appends acknowledged documents to hourly Parquet part files under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files_written = 0

    def write(self, documents: Sequence[Document]) -> None:
        import polars as pl

        groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for document in documents:
            groups[(document.kind, _partition(document))].append(_row(document))
        for (kind, partition), rows in groups.items():
            directory = self.root / kind / partition
            directory.mkdir(parents=True, exist_ok=True)
            frame = pl.DataFrame(rows, infer_schema_length=None)
            target = directory / f"part-{uuid.uuid4().hex}.parquet"
            # Write then rename: a reader never sees a half-written file.
            partial = target.with_suffix(".parquet.partial")
            frame.write_parquet(partial, compression="zstd")
            partial.rename(target)
            self.files_written += 1
