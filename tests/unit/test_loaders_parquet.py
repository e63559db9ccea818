"""load_parquet: the processors' archive read back equals the records it was written from."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from polars.testing import assert_frame_equal

from hopscope.analysis.errors import LoaderError
from hopscope.analysis.loaders import dataset_from_records, documents_from_records, load_parquet
from hopscope.analysis.schema import Dataset
from hopscope.core.settings import DEFAULT_INDEX_PREFIX
from hopscope.ingest.simulator import Scenario, SimulationConfig, parse_iso8601_ns, simulate
from hopscope.processors.archive import ParquetArchive
from hopscope.processors.decode import decode_logs, decode_spans
from hopscope.processors.documents import Document, log_document
from hopscope.processors.records import LogRecord, SpanRecord

# Starts just before an hour boundary, so the archive has two hourly partitions.
START = parse_iso8601_ns("2026-03-02T10:59:59Z")


def assert_same_dataset(actual: Dataset, expected: Dataset) -> None:
    """Every frame equal, row order aside (sorted on every non-list column)."""
    for field in dataclasses.fields(Dataset):
        left = getattr(actual, field.name).collect()
        right = getattr(expected, field.name).collect()
        keys = [n for n, t in right.schema.items() if not isinstance(t, pl.List)]
        assert left.height == right.height, field.name
        assert_frame_equal(left.sort(keys), right.sort(keys))


def simulated_records(traces: int = 120) -> tuple[list[SpanRecord], list[LogRecord]]:
    """The node-failure scenario's spans and logs, decoded as the processors decode them."""
    span_exporter, log_exporter = InMemorySpanExporter(), InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    config = SimulationConfig(start_ns=START, scenario=Scenario("node-failure"), seed=5,
                              run_id="loaders-parquet", traces=traces)  # fmt: skip
    simulate(
        config,
        span_processors=[SimpleSpanProcessor(span_exporter)],
        log_processors=[SimpleLogRecordProcessor(log_exporter)],
    )
    spans = decode_spans(encode_spans(span_exporter.get_finished_spans()).SerializeToString())
    logs = decode_logs(encode_logs(log_exporter.get_finished_logs()).SerializeToString())
    return spans, logs


@pytest.fixture(scope="module")
def records() -> tuple[list[SpanRecord], list[LogRecord]]:
    return simulated_records()


def indexed_documents(
    spans: list[SpanRecord], logs: list[LogRecord], prefix: str = DEFAULT_INDEX_PREFIX
) -> list[Document]:
    """Every document the processors write for these records, log documents included
    (documents_from_records leaves them out: in a file they only feed derivations)."""
    return [
        *documents_from_records(spans, logs, prefix=prefix),
        *(log_document(g, prefix) for g in logs),
    ]


def archive(root: Path, spans: list[SpanRecord], logs: list[LogRecord], batch: int = 300) -> int:
    """Write the documents in bulk-sized batches, as the processor does; return part files."""
    writer = ParquetArchive(root)
    documents = indexed_documents(spans, logs)
    for first in range(0, len(documents), batch):
        writer.write(documents[first : first + batch])
    return writer.files_written


def test_archive_reads_back_as_the_records(
    tmp_path: Path, records: tuple[list[SpanRecord], list[LogRecord]]
) -> None:
    spans, logs = records
    files = archive(tmp_path, spans, logs)
    assert files > 10  # many part files, with different attribute columns

    loaded = load_parquet(tmp_path, progress=False)

    expected = dataset_from_records(spans, logs)
    assert_same_dataset(loaded, expected)
    assert loaded.spans.collect().height == len(spans)
    assert loaded.failovers.collect().height > 0
    assert loaded.two_phase_commits.collect().height > 0
    assert loaded.spans.collect()["cache_hit"].drop_nulls().n_unique() == 2


def test_archive_columns_are_flat_text_attributes(
    tmp_path: Path, records: tuple[list[SpanRecord], list[LogRecord]]
) -> None:
    spans, logs = records
    archive(tmp_path, spans, logs, batch=100_000)
    frame = pl.read_parquet(next((tmp_path / "spans").glob("date=*/hour=10/*.parquet")))
    assert "attributes" not in frame.columns and "resource" not in frame.columns
    attribute_columns = [c for c in frame.columns if c.startswith(("attributes.", "resource."))]
    assert attribute_columns and all(frame[c].dtype == pl.String for c in attribute_columns)
    assert set(frame["attributes.hopscope.cache.hit"].drop_nulls()) == {"true", "false"}
    assert frame["event.duration"].dtype == pl.Int64


def test_a_record_archived_twice_is_read_once(
    tmp_path: Path, records: tuple[list[SpanRecord], list[LogRecord]]
) -> None:
    spans, logs = records
    archive(tmp_path, spans, logs)
    # A replay after a crash writes the same documents again, into new part files.
    documents = list(documents_from_records(spans, logs))
    ParquetArchive(tmp_path).write(documents[: len(documents) // 2])

    loaded = load_parquet(tmp_path, progress=False)

    assert loaded.spans.collect().height == len(spans)
    assert_same_dataset(loaded, dataset_from_records(spans, logs))


def test_a_record_written_twice_reads_as_its_newest_version(
    tmp_path: Path, records: tuple[list[SpanRecord], list[LogRecord]]
) -> None:
    # A trace derived early (idle timeout under load), then again after a late span: both
    # versions are durable, in two part files; Elasticsearch keeps the second, so must we.
    spans, logs = records
    trace_id = spans[0].trace_id
    summaries = [d for d in documents_from_records(spans, logs)
                 if d.kind == "traces" and d.id == trace_id]  # fmt: skip
    (final,) = summaries
    early = Document(final.kind, final.index, final.id, {**final.body, "event.duration": 1})
    writer = ParquetArchive(tmp_path)
    writer.write([early])
    writer.write([final])
    # Read back twice: the winner must not depend on part-file listing or hashing order.
    for _ in range(2):
        traces = load_parquet(tmp_path, progress=False).traces.collect()
        assert traces.height == 1
        assert traces["duration_ns"][0] == final.body["event.duration"]


def test_time_window_and_services_filter(
    tmp_path: Path, records: tuple[list[SpanRecord], list[LogRecord]]
) -> None:
    spans, logs = records
    archive(tmp_path, spans, logs)
    since = datetime(2026, 3, 2, 10, 59, 59, 500_000, tzinfo=UTC)
    until = datetime(2026, 3, 2, 11, 0, 0, 50_000, tzinfo=UTC)

    loaded = load_parquet(tmp_path, since=since, until=until, services=["payment"],
                          progress=False).collect()  # fmt: skip

    everything = dataset_from_records(spans, logs).collect()
    for kind, column in (("spans", "service"), ("hops", "source_service"),
                         ("coordination", "service")):  # fmt: skip
        expected = (
            getattr(everything, kind)
            .filter(
                pl.col("time").is_between(since, until, closed="left"), pl.col(column) == "payment"
            )
            .collect()
        )
        got = getattr(loaded, kind).collect()
        assert got.height == expected.height, kind
        assert_frame_equal(got, expected, check_row_order=False)
    assert loaded.spans.collect().height > 0
    # Hours wholly before the window are not even opened.
    before = load_parquet(tmp_path, until=datetime(2026, 3, 2, 10, 59), progress=False)
    assert before.spans.collect().height == 0


def test_missing_kinds_are_empty_and_a_missing_root_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "spans").mkdir()
    loaded = load_parquet(tmp_path, progress=False).collect()
    assert loaded.spans.collect().height == 0
    assert "trace_id" in loaded.traces.collect_schema()
    with pytest.raises(LoaderError, match="no such archive directory"):
        load_parquet(tmp_path / "absent", progress=False)


def test_deduplication_only_of_repeated_ids_equals_the_rule_over_every_row() -> None:
    """The rewrite of step 4 against the rule it replaced (a window over every row)."""
    import random

    from hopscope.analysis.loaders.parquet import _FILE, _ID, _deduplicated

    rng = random.Random(3)
    rows = [
        {_ID: f"id-{rng.randrange(300)}", _FILE: f"part-{rng.randrange(5):02d}", "v": k}
        for k in range(2000)
    ]
    frame = pl.LazyFrame(rows)
    before = (
        frame.filter(pl.col(_FILE) == pl.col(_FILE).max().over(_ID))
        .filter(pl.col(_ID).is_last_distinct())
        .drop(_FILE)
        .collect()
    )
    after = _deduplicated(frame).collect()
    assert after.height == len({r[_ID] for r in rows})
    assert_frame_equal(after.sort(_ID), before.sort(_ID))


def test_a_replayed_span_reads_as_its_newest_version(
    tmp_path: Path, records: tuple[list[SpanRecord], list[LogRecord]]
) -> None:
    # Spans are deduplicated on their trace and span ids (their _id is not read).
    spans, logs = records
    (final, *_) = [d for d in documents_from_records(spans, logs) if d.kind == "spans"]
    early = Document(final.kind, final.index, final.id, {**final.body, "event.duration": 1})
    writer = ParquetArchive(tmp_path)
    writer.write([early])
    writer.write([final])
    loaded = load_parquet(tmp_path, progress=False).spans.collect()
    assert loaded.height == 1
    assert loaded["duration_ns"][0] == final.body["event.duration"]


def test_deduplication_on_trace_and_span_ids_equals_the_rule_on_the_id() -> None:
    """``_id`` is in_trace(trace id, span id): deduplicating on the two columns keeps the
    same rows; a tombstone (or a missing column) sends a kind back to its ``_id``."""
    import random

    from hopscope.analysis.loaders.parquet import _FILE, _ID, _deduplicated, _key
    from hopscope.processors.archive import DELETED
    from hopscope.processors.schema import in_trace

    rng = random.Random(5)
    rows = []
    for k in range(3000):
        trace = rng.choice([None, "0af7", "0af8", "1b"])
        span = f"{rng.randrange(40):04x}"
        part = f"part-{rng.randrange(5):02d}"
        rows.append({_ID: in_trace(trace, span), "trace.id": trace, "span.id": span,
                     _FILE: part, "v": k})  # fmt: skip
    frame = pl.LazyFrame(rows)
    key = _key("spans", frame.collect_schema())
    assert key == ["trace.id", "span.id"]
    expected = _deduplicated(frame).collect().sort(_ID)
    actual = _deduplicated(frame.drop(_ID), key).collect()
    assert_frame_equal(actual.sort("v"), expected.drop(_ID).sort("v"))
    with_tombstones = frame.with_columns(pl.lit(None, pl.Boolean).alias(DELETED))
    assert _key("spans", with_tombstones.collect_schema()) == [_ID]
    assert _key("spans", frame.drop("span.id").collect_schema()) == [_ID]
    assert _key("traces", frame.collect_schema()) == [_ID]


def test_part_files_of_different_schemas_are_read_each_with_its_own(
    tmp_path: Path, records: tuple[list[SpanRecord], list[LogRecord]]
) -> None:
    """Files are grouped by the schema their footers carry: one whose column holds another
    type (or only nulls) is read with its own, and the column gets the common type."""
    spans, logs = records
    (first, *_) = [d for d in documents_from_records(spans, logs) if d.kind == "spans"]
    ParquetArchive(tmp_path).write([first])
    (written,) = tmp_path.glob("spans/*/*/part-*.parquet")
    frame = pl.read_parquet(written)
    other = frame.with_columns(
        pl.lit("f" * 16).alias("span.id"),
        pl.lit(8443, dtype=pl.Int64).alias("attributes.server.address"),
        pl.lit(None, dtype=pl.Null).alias("service.name"),
    )
    other.write_parquet(written.with_name("part-999999.parquet"))
    loaded = load_parquet(tmp_path, progress=False).spans.collect().sort("span_id")
    assert loaded["span_id"].to_list() == [first.body["span.id"], "f" * 16]
    assert loaded.schema["server_address"] == pl.String
    assert loaded["server_address"][1] == "8443"
    assert loaded["service"].to_list() == [first.body["service.name"], None]


def test_an_unreadable_part_file_is_named(
    tmp_path: Path, records: tuple[list[SpanRecord], list[LogRecord]]
) -> None:
    spans, logs = records
    archive(tmp_path, spans, logs)
    (written, *_) = sorted(tmp_path.glob("hops/*/*/part-*.parquet"))
    broken = written.with_name("part-999999.parquet")
    broken.write_bytes(b"PAR1 not a footer")
    with pytest.raises(LoaderError, match=re.escape(f"{broken}: not a readable Parquet part")):
        load_parquet(tmp_path, progress=False)
