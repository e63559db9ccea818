"""The demo's decoding: OTLP bytes of simulated traces -> span documents."""

from collections import defaultdict

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hopscope.demo import span_documents
from hopscope.ingest.otlp_wire import encode_trace_request
from hopscope.ingest.simulator import SimulationConfig, parse_iso8601_ns, simulate


def test_simulated_traces_become_span_documents() -> None:
    memory = InMemorySpanExporter()
    config = SimulationConfig(start_ns=parse_iso8601_ns("2026-01-05T10:00:00Z"), traces=5)
    result = simulate(config, span_processors=[SimpleSpanProcessor(memory)])
    by_trace = defaultdict(list)
    for span in memory.get_finished_spans():
        by_trace[format(span.context.trace_id, "032x")].append(span)
    assert len(by_trace) == 5

    docs = [d for spans in by_trace.values() for d in span_documents(encode_trace_request(spans))]
    assert len(docs) == result.spans
    ids = {d["span.id"] for d in docs}
    assert all(d["_id"] == f"{d['trace.id']}-{d['span.id']}" for d in docs)
    assert all(d["parent.id"] in ids for d in docs if d["parent.id"])
    roots = [d for d in docs if d["parent.id"] is None]
    assert len(roots) == 5 and {r["service.name"] for r in roots} == {"gateway"}
    assert {d["span.kind"] for d in docs} >= {"server", "client", "internal"}
    assert all(d["event.duration"] >= 0 for d in docs)
    assert all(d["@timestamp"].startswith("2026-01-05T10:00") for d in docs)
