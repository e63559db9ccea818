"""Pure parts of the processor: decoding, assembly, offset bookkeeping, documents, templates."""

import json

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from hopscope.processors.assembly import TraceAssembler, footprint
from hopscope.processors.checkpoint import OffsetTracker
from hopscope.processors.decode import decode_logs, decode_spans
from hopscope.processors.documents import log_document, span_document, timestamp
from hopscope.processors.errors import DecodeError
from hopscope.processors.records import SpanRecord
from hopscope.processors.templates import KINDS, index_name, index_template

TRACE = "5b8efff798038103d269b633813fc60c"


def _request(pan: str = "4111 1111 1111 1111") -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="gw")))
    rs.resource.attributes.append(
        KeyValue(key="service.instance.id", value=AnyValue(string_value="gw-1"))
    )
    span = rs.scope_spans.add().spans.add()
    span.trace_id, span.span_id = bytes.fromhex(TRACE), bytes.fromhex("eee19b7ec3c1b174")
    span.name, span.kind = "Authorize", 2
    span.start_time_unix_nano, span.end_time_unix_nano = 1_000, 5_000
    span.attributes.append(KeyValue(key="card", value=AnyValue(string_value=pan)))
    span.status.code = 2
    return request


def test_protobuf_and_json_decode_to_the_same_records() -> None:
    request = _request()
    from_proto = decode_spans(request.SerializeToString())
    as_json = {
        "resourceSpans": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "gw"}},
                {"key": "service.instance.id", "value": {"stringValue": "gw-1"}}]},
            "scopeSpans": [{"spans": [{
                "traceId": TRACE, "spanId": "eee19b7ec3c1b174", "name": "Authorize",
                "kind": 2, "startTimeUnixNano": "1000", "endTimeUnixNano": "5000",
                "attributes": [{"key": "card",
                                "value": {"stringValue": "4111 1111 1111 1111"}}],
                "status": {"code": 2}}]}],
        }]
    }  # fmt: skip
    from_json = decode_spans(json.dumps(as_json).encode())
    assert from_proto == from_json
    (span,) = from_proto
    assert (span.trace_id, span.kind, span.status, span.node) == (TRACE, "server", "error", "gw-1")
    assert span.attributes["card"] == "4111 11** **** 1111"  # masked on the way in


@pytest.mark.parametrize("payload", [b"", b"\x0a\xff\xff", b"{not json", b'{"resourceSpans": 3}'])
def test_garbage_is_a_decode_error(payload: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_spans(payload)


def test_wrong_id_sizes_are_refused() -> None:
    request = _request()
    request.resource_spans[0].scope_spans[0].spans[0].trace_id = b"\x01\x02"
    with pytest.raises(DecodeError, match="trace_id must be 16 bytes"):
        decode_spans(request.SerializeToString())


def test_logs_carry_event_name_from_field_or_attribute() -> None:
    request = ExportLogsServiceRequest()
    scope = request.resource_logs.add().scope_logs.add()
    first = scope.log_records.add()
    first.body.string_value, first.event_name, first.time_unix_nano = "x", "hopscope.failover", 7
    second = scope.log_records.add()
    second.body.string_value = "card 5500000000000004"
    second.attributes.append(
        KeyValue(key="event.name", value=AnyValue(string_value="hopscope.node_down"))
    )
    second.severity_number = 17
    records = decode_logs(request.SerializeToString())
    assert [r.event_name for r in records] == ["hopscope.failover", "hopscope.node_down"]
    assert records[1].body == "card 550000******0004" and records[1].severity == "ERROR"
    assert records[0].service == "unknown_service" and records[0].trace_id is None


def span(span_id: str, trace: str = TRACE, start: int = 0) -> SpanRecord:
    return SpanRecord(trace, span_id, None, "op", "server", start, start + 10, "svc")


def test_assembler_idle_bound_late_and_revoked() -> None:
    now = [0.0]
    assembler = TraceAssembler(trace_idle_s=5, max_open_spans=3, clock=lambda: now[0])
    assert assembler.add_spans([span("a"), span("b")], ("t", 0, 1)) == {TRACE}
    assembler.add_spans([span("b")], ("t", 0, 2))  # a duplicate span id keeps the first
    assert assembler.open_spans == 2 and assembler.due() == []
    now[0] = 6
    (flushed,) = assembler.due()
    assert flushed.complete and set(flushed.spans) == {"a", "b"}
    assert flushed.sources == {("t", 0, 1), ("t", 0, 2)}
    # A late span brings its trace back with all its earlier spans.
    assembler.add_spans([span("c")], ("t", 0, 3))
    assert assembler.late_spans == 1 and assembler.open_spans == 3
    # Over the memory bound: the oldest trace is flushed, incomplete.
    assembler.add_spans([span("x", trace="f" * 32)], ("t", 1, 0))
    (evicted,) = assembler.due()
    assert evicted.trace_id == TRACE and not evicted.complete
    assert assembler.drop_partitions({("t", 1)}) == 1 and assembler.open_traces == 0


def test_assembler_takes_the_footprints_the_caller_counted() -> None:
    spans = [span("a"), span("b")]
    counted, computed = TraceAssembler(), TraceAssembler()
    counted.add_spans(spans, ("t", 0, 1), [footprint(s) for s in spans])
    computed.add_spans(spans, ("t", 0, 1))
    assert counted.held_bytes == computed.held_bytes > 2 * footprint(spans[0])
    with pytest.raises(ValueError, match="one footprint a span: 1 for 2"):
        counted.add_spans(spans, ("t", 0, 2), [1])
    assert counted.held_bytes == computed.held_bytes  # nothing added on a mismatch


def test_offsets_commit_up_to_the_lowest_held_message() -> None:
    tracker = OffsetTracker()
    for offset in range(5):
        tracker.seen("t", 0, offset)
    tracker.hold("t", 0, 2)
    tracker.hold("t", 0, 3, count=2)
    assert tracker.committable() == {("t", 0): 2}
    tracker.committed({("t", 0): 2})
    tracker.release("t", 0, 2)
    tracker.release("t", 0, 3)
    assert tracker.committable() == {("t", 0): 3}
    tracker.committed({("t", 0): 3})
    tracker.release("t", 0, 3)
    assert tracker.committable() == {("t", 0): 5}
    with pytest.raises(ValueError, match="release without hold"):
        tracker.release("t", 0, 1)


def test_documents_have_deterministic_ids_and_daily_indices() -> None:
    record = span("eee19b7ec3c1b174", start=1_764_150_000_000_000_123)
    doc = span_document(record, "hopscope")
    assert doc.id == f"{TRACE}-eee19b7ec3c1b174"
    assert doc.index == "hopscope-spans-2025.11.26"
    assert doc.body["@timestamp"] == "2025-11-26T09:40:00.000000123Z"
    assert doc.body["event.duration"] == 10 and doc.body["span.kind"] == "server"
    (log,) = decode_logs(ExportLogsServiceRequest(resource_logs=[{"scope_logs": [{
        "log_records": [{"time_unix_nano": 5, "body": {"string_value": "hello"}}]}]}]
    ).SerializeToString())  # fmt: skip
    assert log_document(log, "p").id == log_document(log, "p").id
    assert timestamp(-5) == "1970-01-01T00:00:00.000000000Z"
    assert index_name("p", "hops", 0) == "p-hops-1970.01.01"


def test_templates_cover_every_kind_with_core_field_types_only() -> None:
    for kind in KINDS:
        template = index_template("hopscope", kind)
        assert template["index_patterns"] == [f"hopscope-{kind}-*"]
        text = json.dumps(template)
        # Types from modules the integ-test-zip lacks would fail the template install.
        assert "match_only_text" not in text and "wildcard" not in text
        properties = template["template"]["mappings"]["properties"]
        assert properties["@timestamp"] == {"type": "date_nanos"}
        assert properties["trace.id"] == {"type": "keyword"}
    with pytest.raises(ValueError, match="kind must be one of"):
        index_template("hopscope", "metrics")


def test_commit_never_falls_between_the_messages_of_a_written_trace() -> None:
    tracker = OffsetTracker()
    # Trace T spans messages 0 and 3; message 1 holds another, still open trace.
    tracker.hold("t", 0, 0)
    tracker.hold("t", 0, 1)
    tracker.hold("t", 0, 3)
    tracker.seen("t", 0, 2)
    tracker.release_trace({("t", 0, 0), ("t", 0, 3)})
    # Without the rule the commit would move to 1 (between T's two messages).
    assert tracker.committable().get(("t", 0), 0) == 0
    tracker.release("t", 0, 1)
    assert tracker.committable() == {("t", 0): 4}


def test_the_allocator_is_tuned_where_glibc_allows_it() -> None:
    import platform
    import sys

    from hopscope.processors.runtime import tune_allocator

    glibc = sys.platform == "linux" and platform.libc_ver()[0] == "glibc"
    assert tune_allocator() is glibc
