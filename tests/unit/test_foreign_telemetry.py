"""Other people's telemetry through the shared decoder and derivations: kinds inferred from
cross-service links, errors from other exporters' conventions, ids that are not hex."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hopscope.processors import sanitize as s
from hopscope.processors.decode import decode_spans
from hopscope.processors.derive import derive_all, derive_hops
from hopscope.processors.records import CLIENT, ERROR, INTERNAL, OK, SERVER, UNSET, SpanEvent
from hopscope.processors.records import SpanRecord as Span

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
MS = 1_000_000
START = 1_772_445_600_000_000_000  # 2026-03-02T10:00:00Z


def otlp(*services: tuple[str, list[dict[str, Any]]]) -> bytes:
    """An OTLP/JSON traces request: one resource per (service, spans)."""
    return json.dumps({
        "resourceSpans": [
            {
                "resource": {"attributes": [
                    {"key": "service.name", "value": {"stringValue": name}}
                ]},
                "scopeSpans": [{"spans": spans}],
            }
            for name, spans in services
        ]
    }).encode()  # fmt: skip


def otlp_span(
    span_id: str, parent: str | None, start: int, end: int, **extra: Any
) -> dict[str, Any]:
    span = {
        "traceId": TRACE,
        "spanId": span_id,
        "name": "GET /pay",
        "startTimeUnixNano": str(START + start),
        "endTimeUnixNano": str(START + end),
    }
    if parent:
        span["parentSpanId"] = parent
    return span | extra


def test_a_kindless_parent_and_child_across_services_make_a_hop() -> None:
    payload = otlp(
        ("gateway", [otlp_span("00000000000000a1", None, 0, 10 * MS)]),
        ("payment", [otlp_span("00000000000000b2", "00000000000000a1", 1 * MS, 8 * MS)]),
    )
    spans = decode_spans(payload)
    assert all(sp.kind == INTERNAL and s.KIND_UNSPECIFIED in sp.flags for sp in spans)
    (hop,) = derive_hops(spans)
    assert (hop.source_service, hop.target_service) == ("gateway", "payment")
    assert (hop.client_ns, hop.server_ns, hop.network_ns) == (10 * MS, 7 * MS, 3 * MS)
    # The critical path charges the wire to the network, as for recorded kinds.
    assert derive_all(spans).summary.critical_by_kind["network"] == 3 * MS


def test_kinds_are_inferred_only_across_services_and_only_when_unspecified() -> None:
    kindless = (s.KIND_UNSPECIFIED,)
    root = Span("t", "a", None, "pay", INTERNAL, 0, 100, "gateway", flags=kindless)
    same_service = Span("t", "b", "a", "validate", INTERNAL, 1, 5, "gateway", flags=kindless)
    # An explicit INTERNAL parent (no flag) is not turned into a client.
    explicit = Span("t", "c", None, "job", INTERNAL, 0, 100, "batch")
    callee = Span("t", "d", "c", "work", INTERNAL, 1, 50, "worker", flags=kindless)
    assert derive_hops([root, same_service, explicit, callee]) == []
    # One span per service and request (a → b → c): b is the server of a's call; its own
    # call out is not paired (it cannot be both).
    a = Span("t", "a", None, "pay", INTERNAL, 0, 100, "gateway", flags=kindless)
    b = Span("t", "b", "a", "pay", INTERNAL, 10, 90, "payment", flags=kindless)
    c = Span("t", "c", "b", "score", INTERNAL, 20, 80, "risk", flags=kindless)
    hops = derive_hops([c, b, a])
    assert [(h.source_service, h.target_service) for h in hops] == [("gateway", "payment")]
    # Recorded kinds are never overridden.
    client = Span("t", "x", None, "pay", CLIENT, 0, 100, "gateway")
    server = Span("t", "y", "x", "pay", SERVER, 10, 90, "payment", flags=kindless)
    assert len(derive_hops([client, server])) == 1


@pytest.mark.parametrize(
    ("attributes", "events", "reason"),
    [
        ([{"key": "error", "value": {"boolValue": True}}], [], "error=true"),
        ([{"key": "error", "value": {"stringValue": "true"}}], [], "error=true"),
        ([{"key": "http.response.status_code", "value": {"intValue": "503"}}], [],
         "http.response.status_code 503"),
        ([{"key": "http.status_code", "value": {"stringValue": "500"}}], [],
         "http.status_code 500"),
        ([{"key": "rpc.grpc.status_code", "value": {"intValue": "14"}}], [],
         "rpc.grpc.status_code 14"),
        ([], [{"name": "exception", "timeUnixNano": str(START), "attributes": [
            {"key": "exception.type", "value": {"stringValue": "TimeoutError"}}]}],
         "exception TimeoutError"),
    ],
)  # fmt: skip
def test_each_error_convention_sets_the_error_status(
    attributes: list[Any], events: list[Any], reason: str
) -> None:
    span = otlp_span("00000000000000a1", None, 0, MS, attributes=attributes, events=events)
    (decoded,) = decode_spans(otlp(("gateway", [span])))
    assert (decoded.status, decoded.status_message, decoded.failed) == (ERROR, reason, True)
    assert s.STATUS_INFERRED in decoded.flags


@pytest.mark.parametrize(
    "attributes",
    [
        [{"key": "http.response.status_code", "value": {"intValue": "404"}}],
        [{"key": "rpc.grpc.status_code", "value": {"intValue": "0"}}],
        [{"key": "error", "value": {"boolValue": False}}],
    ],
)
def test_no_error_convention_leaves_the_status_unset(attributes: list[Any]) -> None:
    span = otlp_span("00000000000000a1", None, 0, MS, attributes=attributes)
    (decoded,) = decode_spans(otlp(("gateway", [span])))
    assert decoded.status == UNSET and s.STATUS_INFERRED not in decoded.flags


def test_an_explicit_status_is_kept() -> None:
    attributes = [{"key": "http.response.status_code", "value": {"intValue": "503"}}]
    ok = otlp_span("00000000000000a1", None, 0, MS, attributes=attributes, status={"code": 1})
    failed = otlp_span("00000000000000a2", None, 0, MS, status={"code": 2, "message": "boom"})
    decoded = decode_spans(otlp(("gateway", [ok, failed])))
    assert [(d.status, d.status_message) for d in decoded] == [(OK, None), (ERROR, "boom")]


def test_non_hex_ids_are_hashed_the_same_everywhere_and_short_hex_is_padded() -> None:
    payload = otlp(
        ("gateway", [otlp_span("G", None, 0, 10 * MS, kind=3) | {"traceId": "trace-1"}]),
        ("payment", [otlp_span("s-2", "G", MS, 8 * MS, kind=2) | {"traceId": "trace-1"}]),
        ("risk", [otlp_span("1f", None, 0, MS) | {"traceId": "a3ce929d0e0e4736"}]),
    )
    client, server, short = decode_spans(payload)
    assert len(client.span_id) == 16 and len(client.trace_id) == 32
    assert server.parent_id == client.span_id and server.trace_id == client.trace_id
    assert s.ID_HASHED in client.flags
    assert (short.span_id, short.trace_id) == ("000000000000001f", "0" * 16 + "a3ce929d0e0e4736")
    assert len(derive_hops([client, server])) == 1
    # Base64 ids of the right length (older exporters) are still read as such.
    b64 = otlp_span("AAAAAAAAAKE=", None, 0, MS) | {"traceId": "S/kvNXezTaajzpKdDg5HNg=="}
    (decoded,) = decode_spans(otlp(("gateway", [b64])))
    assert (decoded.span_id, decoded.trace_id) == ("00000000000000a1", TRACE)


def test_exception_event_on_a_hand_made_record_is_not_reread() -> None:
    # The conventions are read at decoding; records built in code keep their status.
    span = Span("t", "a", None, "pay", INTERNAL, 0, 1, "gateway",
                events=(SpanEvent("exception", 0),))  # fmt: skip
    assert not span.failed
