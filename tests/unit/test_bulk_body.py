"""The bulk body the Elasticsearch sink sends: orjson's bytes mean what the standard library's
would, document for document, for every simulator scenario's documents (spans, logs and every
derived kind) and for generated values (any text, nested maps and lists, integers past 64 bits).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hopscope.ingest.simulator import Scenario, SimulationConfig, parse_iso8601_ns, simulate
from hopscope.processors import core, sink
from hopscope.processors.decode import decode_logs, decode_spans
from hopscope.processors.documents import Document, log_document
from hopscope.processors.pipeline import documents_from_records
from hopscope.processors.records import LogRecord, SpanRecord
from hopscope.processors.sink import bulk_body


def _lines(body: bytes) -> list[Any]:
    assert body.endswith(b"\n")
    return [json.loads(line) for line in body[:-1].split(b"\n")]


def _both(documents: list[Document], monkeypatch: pytest.MonkeyPatch) -> tuple[bytes, bytes]:
    fast = bulk_body(documents)
    with monkeypatch.context() as patch:
        patch.setattr(sink, "FAST_JSON", False)
        slow = bulk_body(documents)
    return fast, slow


def _scenario_records(scenario: Scenario) -> tuple[list[SpanRecord], list[LogRecord]]:
    spans_out, logs_out = InMemorySpanExporter(), InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    config = SimulationConfig(start_ns=parse_iso8601_ns("2026-05-04T10:00:00Z"),
                              scenario=scenario, seed=3, traces=40)  # fmt: skip
    simulate(config, span_processors=[SimpleSpanProcessor(spans_out)],
             log_processors=[SimpleLogRecordProcessor(logs_out)])  # fmt: skip
    spans = decode_spans(encode_spans(spans_out.get_finished_spans()).SerializeToString())
    logs = decode_logs(encode_logs(logs_out.get_finished_logs()).SerializeToString())
    return spans, logs


def _documents(spans: list[SpanRecord], logs: list[LogRecord]) -> Iterator[Document]:
    yield from documents_from_records(spans, logs, prefix="p")
    yield from (log_document(log, "p") for log in logs)


def _scenario_documents(scenario: Scenario) -> Iterator[Document]:
    yield from _documents(*_scenario_records(scenario))


@pytest.mark.parametrize("scenario", list(Scenario), ids=lambda s: s.value)
def test_every_scenario_serializes_the_same_with_orjson_and_the_standard_library(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    documents = list(_scenario_documents(scenario))
    assert {d.kind for d in documents} >= {"spans", "logs", "traces"}
    fast, slow = _both(documents, monkeypatch)
    assert _lines(fast) == _lines(slow)
    assert len(_lines(fast)) == 2 * len(documents)


@pytest.mark.parametrize("scenario", list(Scenario), ids=lambda s: s.value)
def test_native_sources_are_sent_as_written_and_mean_what_the_bodies_do(
    scenario: Scenario,
) -> None:
    """The lines of documents the native core wrote (their ``source`` sent as it is) equal,
    line by line, the lines the sink writes of the Python core's documents (the tables'
    dicts) of the same records."""
    if core.native() is None:
        pytest.skip("the native core is not in use: no sources")
    records = _scenario_records(scenario)
    documents = list(_documents(*records))
    written = [d for d in documents if d.source is not None]
    assert {d.kind for d in written} >= {"spans", "hops", "traces"}
    core.select("python")
    try:
        tables = list(_documents(*records))
    finally:
        core.select("native")
    assert all(d.source is None for d in tables)
    lines, old = list(sink.bulk_lines(documents)), list(sink.bulk_lines(tables))
    assert [json.loads(line) for line in lines] == [json.loads(line) for line in old]
    sources = {d.source for d in written}
    assert sum(line in sources for line in lines) == len(written)


_scalars = (
    st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(min_value=-(2**70), max_value=2**70) | st.text()
)  # fmt: skip
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(bodies=st.lists(st.dictionaries(st.text(), _values, max_size=6), min_size=1, max_size=5),
       ids=st.text(min_size=1))  # fmt: skip
def test_any_json_value_serializes_the_same(bodies: list[dict[str, Any]], ids: str) -> None:
    documents = [Document("spans", "p-spans-2026.05.04", ids, body) for body in bodies]
    fast = bulk_body(documents)
    sink.FAST_JSON = False
    try:
        slow = bulk_body(documents)
    finally:
        sink.FAST_JSON = True
    assert _lines(fast) == _lines(slow)
    assert _lines(fast)[1::2] == bodies


@settings(max_examples=300, deadline=None)
@given(verb=st.sampled_from(["index", "delete"]), index=st.text(), doc_id=st.text())
def test_action_lines_mean_what_their_serialized_dicts_do(
    verb: str, index: str, doc_id: str
) -> None:
    """Formatted or serialized (quotes, backslashes, control characters, lone surrogates), an
    action line reads back as the action it stands for."""
    line = sink._action(verb, index, doc_id)
    expected = sink._dumps({verb: {"_index": index, "_id": doc_id}})
    assert json.loads(line.decode("utf-8", "surrogatepass")) == json.loads(
        expected.decode("utf-8", "surrogatepass")
    )
