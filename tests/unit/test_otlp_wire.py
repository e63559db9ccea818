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
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)

from hopscope.ingest.otlp_wire import encode_screened, encode_trace_request
from hopscope.ingest.redaction import redact_export_request

# Card numbers as services leak them: bare, grouped, in text; and digit runs that are not.
pan_like = st.one_of(
    st.sampled_from(["4111111111111111", "4111 1111 1111 1111", "pan=5500-0000-0000-0004",
                     "card 378282246310005 declined", "1234567890123", "order 12345678901234"]),
    st.from_regex(r"[0-9][0-9 \-]{11,24}[0-9]", fullmatch=True),
)  # fmt: skip
scalars = st.one_of(
    st.text(max_size=30),
    pan_like,
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
)
values = st.one_of(scalars, st.lists(st.text(max_size=5), max_size=3),
                   st.lists(st.integers(0, 10**6), max_size=3))  # fmt: skip
attributes = st.dictionaries(st.text(min_size=1, max_size=12), values, max_size=6)


REMOTE_PARENT = NonRecordingSpan(
    SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
)


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
            # A span whose parent came over the wire (another service's client span).
            context = set_span_in_context(REMOTE_PARENT) if step.get("remote") else None
            with tracer.start_as_current_span(
                step["name"], context, kind=step["kind"], attributes=step["attrs"], links=links
            ) as span:
                if step["event"]:
                    span.add_event("hopscope.failover", {"from": "a", "to": "b"})
                status = step.get("status", "unset")
                if status == "ok":
                    span.set_status(Status(StatusCode.OK))
                elif status == "error":
                    span.set_status(Status(StatusCode.ERROR))
                elif status == "error-described":
                    span.set_status(Status(StatusCode.ERROR, step["name"] or "declined"))
    return list(exporter.get_finished_spans())


steps = st.fixed_dictionaries({
    "name": st.one_of(st.text(max_size=20), pan_like), "kind": st.sampled_from(list(SpanKind)),
    "attrs": attributes,
    "link": st.booleans(), "event": st.booleans(), "remote": st.booleans(),
    "status": st.sampled_from(["unset", "ok", "error", "error-described"]),
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
         "event": False},
        {"name": "b", "kind": SpanKind.CLIENT, "attrs": {"x": 1}, "link": False,
         "event": False},
    ])  # fmt: skip
    decoded = ExportTraceServiceRequest.FromString(encode_trace_request(spans))
    values = {
        span.name: span.attributes[0].value.WhichOneof("value")
        for rs in decoded.resource_spans for ss in rs.scope_spans for span in ss.spans
        if span.attributes
    }  # fmt: skip
    assert values == {"a": "bool_value", "b": "int_value"}


@settings(max_examples=200, deadline=None)
@given(st.lists(steps, max_size=6))
def test_a_message_screened_clean_needs_no_redaction(plan: list[dict[str, Any]]) -> None:
    """The exporter skips redaction of a message screened clean: redacting it anyway must
    change nothing, and the screened bytes are the message's bytes."""
    spans = record(plan)
    payload, suspect = encode_screened(spans)
    assert payload == encode_trace_request(spans)
    request = ExportTraceServiceRequest.FromString(payload)
    changed = redact_export_request(request)
    if not suspect:
        assert changed == 0


def test_a_cached_card_number_is_flagged_in_every_message() -> None:
    plan = [{"name": "Authorize", "kind": SpanKind.CLIENT, "link": False, "event": False,
             "attrs": {"card.note": "4111 1111 1111 1111"}}]  # fmt: skip
    for _ in range(3):  # the first encodes and caches the pair, the others reuse it
        payload, suspect = encode_screened(record(plan))
        assert suspect
        assert redact_export_request(ExportTraceServiceRequest.FromString(payload)) == 1


def test_a_card_number_in_the_resource_or_status_is_flagged() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource({"service.name": "pos", "note": "4111111111111111"})
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("plain") as span:
        span.set_status(Status(StatusCode.ERROR, "declined 5500 0000 0000 0004"))
    spans = exporter.get_finished_spans()
    for _ in range(2):  # the resource's screening is cached with its bytes
        assert encode_screened(spans)[1]
    clean = record([{"name": "Authorize", "kind": SpanKind.CLIENT, "link": False,
                     "event": False, "attrs": {"rpc.method": "Authorize"}}])  # fmt: skip
    assert not encode_screened(clean)[1]
