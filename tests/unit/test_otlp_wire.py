"""The fast span encoder writes what the official OpenTelemetry encoder writes."""

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from hopscope.ingest.otlp_wire import encode_trace_request

scalars = st.one_of(
    st.text(max_size=30),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
)
values = st.one_of(scalars, st.lists(st.text(max_size=5), max_size=3),
                   st.lists(st.integers(0, 10**6), max_size=3))  # fmt: skip
attributes = st.dictionaries(st.text(min_size=1, max_size=12), values, max_size=6)


def record(plan: list[dict[str, Any]]) -> list[Any]:
    exporter = InMemorySpanExporter()
    providers = [
        TracerProvider(resource=Resource({"service.name": name, "service.instance.id": "n-1"}))
        for name in ("gateway", "risk")
    ]  # fmt: skip
    for provider in providers:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracers = [
        providers[0].get_tracer("a", "1.2"),
        providers[1].get_tracer("b", schema_url="https://x/1"),
    ]
    with tracers[0].start_as_current_span("root", kind=SpanKind.SERVER) as root:
        for i, step in enumerate(plan):
            tracer = tracers[i % 2]
            links = [Link(root.get_span_context(), {"why": "batch"})] if step["link"] else []
            with tracer.start_as_current_span(
                step["name"], kind=step["kind"], attributes=step["attrs"], links=links
            ) as span:
                if step["event"]:
                    span.add_event("hopscope.failover", {"from": "a", "to": "b"})
                if step["error"]:
                    span.set_status(Status(StatusCode.ERROR, step["name"]))
    return list(exporter.get_finished_spans())


steps = st.fixed_dictionaries({
    "name": st.text(max_size=20), "kind": st.sampled_from(list(SpanKind)), "attrs": attributes,
    "link": st.booleans(), "event": st.booleans(), "error": st.booleans(),
})  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(st.lists(steps, max_size=6))
def test_same_message_as_the_official_encoder(plan: list[dict[str, Any]]) -> None:
    spans = record(plan)
    ours = ExportTraceServiceRequest.FromString(encode_trace_request(spans))
    official = encode_spans(spans)
    assert ours == official


def test_cached_pairs_keep_bool_and_int_apart() -> None:
    spans = record([
        {"name": "a", "kind": SpanKind.CLIENT, "attrs": {"x": True}, "link": False,
         "event": False, "error": False},
        {"name": "b", "kind": SpanKind.CLIENT, "attrs": {"x": 1}, "link": False,
         "event": False, "error": False},
    ])  # fmt: skip
    decoded = ExportTraceServiceRequest.FromString(encode_trace_request(spans))
    values = {
        span.name: span.attributes[0].value.WhichOneof("value")
        for rs in decoded.resource_spans for ss in rs.scope_spans for span in ss.spans
        if span.attributes
    }  # fmt: skip
    assert values == {"a": "bool_value", "b": "int_value"}
