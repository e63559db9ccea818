"""load_elasticsearch against the real node: what the processors' sink indexed reads back equal."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any, Literal

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from hopscope.analysis.loaders import (
    count_elasticsearch,
    dataset_from_records,
    load_elasticsearch,
)
from hopscope.analysis.schema import SCHEMAS
from hopscope.processors.records import LogRecord, SpanRecord
from hopscope.processors.sink import ElasticsearchSink
from tests.conftest import Services
from tests.unit.test_loaders_parquet import (
    assert_same_dataset,
    indexed_documents,
    simulated_records,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def records() -> tuple[list[SpanRecord], list[LogRecord]]:
    return simulated_records(traces=150)


def index(es: Any, prefix: str, spans: list[SpanRecord], logs: list[LogRecord]) -> int:
    """Templates and bulk writes exactly as the processors do; returns documents written."""
    sink = ElasticsearchSink(es, prefix)
    sink.install_templates()
    documents = indexed_documents(spans, logs, prefix)
    for first in range(0, len(documents), 1000):
        outcome = sink.write(documents[first : first + 1000])
        assert not outcome.rejected, outcome.rejected[:1]
    es.indices.refresh(index=f"{prefix}-*")
    return len(documents)


@pytest.mark.parametrize("fetch", ["source", "docvalues"])
def test_sliced_reads_equal_the_records(
    services: Services, es_client: Any, index_prefix: str,
    records: tuple[list[SpanRecord], list[LogRecord]], fetch: Literal["source", "docvalues"],
) -> None:  # fmt: skip
    spans, logs = records
    index(es_client, index_prefix, spans, logs)

    loaded = load_elasticsearch(services.es_url, index_prefix=index_prefix, slices=3,
                                fetch=fetch, progress=False)  # fmt: skip

    assert_same_dataset(loaded, dataset_from_records(spans, logs))
    counts = count_elasticsearch(es_client, index_prefix=index_prefix)
    assert counts["spans"] == len(spans)
    for kind, count in counts.items():
        assert getattr(loaded, kind).collect().height == count, kind
    assert counts["two_phase_commits"] > 0 and counts["failovers"] > 0
    traces = loaded.traces.collect()
    assert traces["critical_by_service"].list.len().min() >= 1  # read from _source


def test_one_slice_and_a_kind_subset(
    es_client: Any, index_prefix: str, records: tuple[list[SpanRecord], list[LogRecord]]
) -> None:
    spans, logs = records
    index(es_client, index_prefix, spans, logs)

    loaded = load_elasticsearch(es_client, index_prefix=index_prefix, slices=1,
                                kinds=["two_phase_commits", "hops"], progress=False)  # fmt: skip

    expected = dataset_from_records(spans, logs)
    for kind in ("two_phase_commits", "hops"):
        assert_frame_equal(getattr(loaded, kind).collect(), getattr(expected, kind).collect(),
                           check_row_order=False)  # fmt: skip
    assert loaded.spans.collect().height == 0 and loaded.coordination.collect().height == 0


def test_time_range_and_service_filters_are_applied(
    es_client: Any, index_prefix: str, records: tuple[list[SpanRecord], list[LogRecord]]
) -> None:
    spans, logs = records
    index(es_client, index_prefix, spans, logs)
    since = datetime(2026, 3, 2, 10, 59, 59, 500_000, tzinfo=UTC)
    until = datetime(2026, 3, 2, 11, 0, 0, 200_000)  # naive: UTC

    loaded = load_elasticsearch(es_client, index_prefix=index_prefix, since=since, until=until,
                                services=["payment", "ledger"], progress=False)  # fmt: skip

    everything = dataset_from_records(spans, logs)
    window = pl.col("time").is_between(since, until.replace(tzinfo=UTC), closed="left")
    for kind, service in (("spans", "service"), ("hops", "source_service"),
                          ("coordination", "service"), ("traces", "root_service")):  # fmt: skip
        expected = (
            getattr(everything, kind)
            .filter(window, pl.col(service).is_in(["payment", "ledger"]))
            .collect()
        )
        assert_frame_equal(getattr(loaded, kind).collect(), expected, check_row_order=False)
    assert 0 < loaded.spans.collect().height < len(spans) // 4
    counted = count_elasticsearch(es_client, index_prefix=index_prefix, since=since,
                                  until=until, services=["payment", "ledger"])  # fmt: skip
    assert counted["spans"] == loaded.spans.collect().height


def test_an_absent_prefix_gives_empty_frames(services: Services, index_prefix: str) -> None:
    loaded = load_elasticsearch(services.es_url, index_prefix=index_prefix, progress=False)
    for kind, schema in SCHEMAS.items():
        frame = getattr(loaded, kind).collect()
        assert frame.height == 0 and frame.columns == list(schema), kind
    assert set(count_elasticsearch(services.es_url, index_prefix=index_prefix).values()) == {0}


def test_a_source_that_does_not_fit_the_mapping_falls_back_to_docvalues(
    es_client: Any, index_prefix: str, records: tuple[list[SpanRecord], list[LogRecord]]
) -> None:
    spans, _ = records
    odd = dataclasses.replace(spans[0], span_id="00000000000000ff",
                              attributes={"db.system": ["postgresql", "mysql"]})  # fmt: skip
    index(es_client, index_prefix, [*spans, odd], [])

    loaded = load_elasticsearch(es_client, index_prefix=index_prefix, kinds=["spans"],
                                slices=2, progress=False).spans.collect()  # fmt: skip

    assert loaded.height == len(spans) + 1
    row = loaded.filter(pl.col("span_id") == "00000000000000ff")
    assert row["db_system"].to_list() == ["mysql"]  # a keyword list's docvalues are sorted
