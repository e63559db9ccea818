"""OTLP requests built with the opentelemetry-proto classes, for the bad-input tests.

Values a test cannot express through the protobuf classes (invalid UTF-8) are written with a
same-length marker and patched into the serialized bytes afterwards: the length prefixes stay
valid, only the bytes become invalid UTF-8.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

# In a string, INVALID_MARKER is replaced by INVALID_BYTES (same length, no valid UTF-8).
INVALID_MARKER = "<<bad-utf8>>"
INVALID_BYTES = b"<<\xff\xfe\xc3(utf8>>"
assert len(INVALID_MARKER.encode()) == len(INVALID_BYTES)


def any_value(value: Any) -> AnyValue:
    """A Python value as an OTLP AnyValue (dicts as kvlists, lists as arrays)."""
    out = AnyValue()
    if isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, int):
        out.int_value = value
    elif isinstance(value, float):
        out.double_value = value
    elif isinstance(value, bytes):
        out.bytes_value = value
    elif isinstance(value, Mapping):
        out.kvlist_value.values.extend(key_values(value))
    elif isinstance(value, list | tuple):
        out.array_value.values.extend(any_value(v) for v in value)
    else:
        out.string_value = str(value)
    return out


def key_values(attributes: Mapping[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=key, value=any_value(value)) for key, value in attributes.items()]


def span_message(spec: Mapping[str, Any], trace_id: bytes) -> Span:
    """One Span from a spec: ``span_id``, ``parent`` (bytes or None), ``name``, ``kind``,
    ``start``, ``end`` (ns), ``attributes``, ``events`` ([(name, time, attributes)]),
    ``links`` ([(trace id, span id)]), ``status`` ((code, message))."""
    span = Span(trace_id=spec.get("trace_id", trace_id), span_id=spec["span_id"])
    span.parent_span_id = spec.get("parent") or b""
    span.name = spec.get("name", "work")
    span.kind = spec.get("kind", Span.SPAN_KIND_INTERNAL)
    span.start_time_unix_nano, span.end_time_unix_nano = spec["start"], spec["end"]
    span.attributes.extend(key_values(spec.get("attributes", {})))
    for name, time_ns, attributes in spec.get("events", ()):
        event = span.events.add()
        event.name, event.time_unix_nano = name, time_ns
        event.attributes.extend(key_values(attributes))
    for link_trace, link_span in spec.get("links", ()):
        link = span.links.add()
        link.trace_id, link.span_id = link_trace, link_span
    if "status" in spec:
        span.status.code, span.status.message = spec["status"]
    return span


def otlp_spans(
    trace_id: bytes,
    spans: Sequence[Mapping[str, Any]],
    *,
    service: str = "bad-input",
    resource: Mapping[str, Any] | None = None,
) -> bytes:
    """An ExportTraceServiceRequest of one resource and scope holding ``spans``."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    attributes = {"service.name": service, "service.instance.id": f"{service}-1"}
    resource_spans.resource.attributes.extend(key_values({**attributes, **(resource or {})}))
    scope = resource_spans.scope_spans.add()
    scope.scope.name = "tests"
    scope.spans.extend(span_message(spec, trace_id) for spec in spans)
    return patch_invalid_utf8(request.SerializeToString())


def otlp_logs(records: Sequence[Mapping[str, Any]], *, service: str = "bad-input") -> bytes:
    """An ExportLogsServiceRequest: each record ``time``, ``observed``, ``body``,
    ``trace_id``, ``span_id``, ``attributes``."""
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.extend(key_values({"service.name": service}))
    scope = resource_logs.scope_logs.add()
    for spec in records:
        record = scope.log_records.add()
        record.time_unix_nano = spec.get("time", 0)
        record.observed_time_unix_nano = spec.get("observed", 0)
        record.body.CopyFrom(any_value(spec.get("body", "a log line")))
        record.trace_id = spec.get("trace_id", b"")
        record.span_id = spec.get("span_id", b"")
        record.attributes.extend(key_values(spec.get("attributes", {})))
    return patch_invalid_utf8(request.SerializeToString())


def patch_invalid_utf8(payload: bytes) -> bytes:
    """Every :data:`INVALID_MARKER` in ``payload`` as :data:`INVALID_BYTES`."""
    return payload.replace(INVALID_MARKER.encode(), INVALID_BYTES)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def flood_spans(
    trace_ids: Sequence[bytes],
    *,
    start_ns: int,
    duration_ns: int = 1_000_000,
    parent: bytes | None = None,
    span_ids: Sequence[bytes] | None = None,
    parents: Sequence[bytes] | None = None,
    service: str = "flood",
) -> bytes:
    """One request with one span per trace id (or, with ``span_ids``, those spans of the first
    trace), written straight in the protobuf wire format: a million spans take about a second,
    where the protobuf classes take ten times longer. The result is what the classes would
    write.

    Each span is named ``flood``, of kind SERVER; its parent is ``parent``, or its entry in
    ``parents`` (one per span), or none."""
    has_parent = parent is not None or parents is not None
    template = Span(
        trace_id=b"T" * 16,
        span_id=b"S" * 8,
        parent_span_id=b"P" * 8 if has_parent else b"",
        name="flood",
        kind=Span.SPAN_KIND_SERVER,
        start_time_unix_nano=start_ns,
        end_time_unix_nano=start_ns + duration_ns,
    ).SerializeToString()
    # Field order in the wire format: trace id, span id, parent id, the rest.
    at_trace, at_span = template.index(b"T" * 16), template.index(b"S" * 8)
    at_parent = template.index(b"P" * 8) if has_parent else at_span + 8
    head, between = template[:at_trace], template[at_trace + 16 : at_span]
    middle = template[at_span + 8 : at_parent]
    tail = template[at_parent + 8 :] if has_parent else template[at_span + 8 :]
    length = _varint(len(template))
    if span_ids is None:
        pairs = [(trace_id, trace_id[:8]) for trace_id in trace_ids]
    else:
        pairs = [(trace_ids[0], span_id) for span_id in span_ids]
    parent_of = list(parents) if parents is not None else [parent or b""] * len(pairs)
    spans = b"".join(
        b"\x12" + length + head + trace_id + between + span_id + middle + parent_id + tail
        for (trace_id, span_id), parent_id in zip(pairs, parent_of, strict=True)
    )
    scope = _field(1, _field(1, b"tests"))  # ScopeSpans.scope = InstrumentationScope(name)
    resource = _field(1, b"".join(key_values_bytes({"service.name": service})))
    return _field(1, resource + _field(2, scope + spans))  # resource_spans[0]


def key_values_bytes(attributes: Mapping[str, Any]) -> list[bytes]:
    """Resource.attributes entries (field 1) in the wire format."""
    return [_field(1, kv.SerializeToString()) for kv in key_values(attributes)]
