"""The demo's OTLP round trip: SDK spans -> ExportTraceServiceRequest bytes -> documents."""

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from hopscope.demo import encode_trace, record_payment_traces, span_documents


def test_each_trace_round_trips_through_otlp_protobuf() -> None:
    traces = record_payment_traces(3)
    assert len(traces) == 3
    for trace_id, spans in traces.items():
        payload = encode_trace(spans)
        request = ExportTraceServiceRequest.FromString(payload)
        services = {
            attr.value.string_value
            for rs in request.resource_spans
            for attr in rs.resource.attributes
            if attr.key == "service.name"
        }
        assert services == {"payment-gateway", "risk", "ledger"}

        docs = list(span_documents(payload))
        assert len(docs) == len(spans) == 5
        assert {d["trace.id"] for d in docs} == {trace_id}
        assert all(d["_id"] == f"{trace_id}-{d['span.id']}" for d in docs)
        roots = [d for d in docs if d["parent.id"] is None]
        assert [r["span.name"] for r in roots] == ["POST /payments"]
        ids = {d["span.id"] for d in docs}
        assert all(d["parent.id"] in ids for d in docs if d["parent.id"])
        clients = [d for d in docs if d["span.kind"] == "client"]
        servers = [d for d in docs if d["span.kind"] == "server" and d["parent.id"]]
        # Every server span of a callee is the child of a gateway client span.
        assert {s["parent.id"] for s in servers} == {c["span.id"] for c in clients}
        assert all(d["event.duration"] > 0 for d in docs)
