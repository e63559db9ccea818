"""Decode OTLP messages from Kafka into flat span and log records.

A message is ``ExportTraceServiceRequest`` / ``ExportLogsServiceRequest`` protobuf (what the
Collector's Kafka exporter writes as ``otlp_proto``) or the same as OTLP/JSON (``otlp_json``),
detected per message by its first byte. Card numbers are masked again on the way in: data from
other SDKs never went through hopscope's redaction.

Anything that is not a valid message raises :class:`DecodeError` with a reason that goes to the
dead-letter topic with the original bytes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError as ProtobufDecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from hopscope.ingest import conventions as c
from hopscope.ingest.redaction import mask_pans
from hopscope.processors.errors import DecodeError
from hopscope.processors.records import (
    CLIENT,
    CONSUMER,
    ERROR,
    INTERNAL,
    OK,
    PRODUCER,
    SERVER,
    UNSET,
    LogRecord,
    SpanEvent,
    SpanLink,
    SpanRecord,
)

_KINDS = {0: INTERNAL, 1: INTERNAL, 2: SERVER, 3: CLIENT, 4: PRODUCER, 5: CONSUMER}
_STATUS = {0: UNSET, 1: OK, 2: ERROR}
_SEVERITY_FROM_NUMBER = {1: "TRACE", 5: "DEBUG", 9: "INFO", 13: "WARN", 17: "ERROR", 21: "FATAL"}


def _value(value: Any) -> Any:
    """An OTLP AnyValue as a plain Python value, strings masked."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return mask_pans(value.string_value)
    if kind == "bool_value":
        return bool(value.bool_value)
    if kind == "int_value":
        return int(value.int_value)
    if kind == "double_value":
        return float(value.double_value)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return None


def _attributes(key_values: Iterable[Any]) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in key_values}


def _hex(raw: bytes, size: int, what: str) -> str:
    if len(raw) != size:
        raise DecodeError(f"{what} must be {size} bytes, got {len(raw)}")
    return raw.hex()


_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id",
                      "parent_span_id"})  # fmt: skip


def _hex_ids_to_base64(node: Any) -> Any:
    """OTLP/JSON writes ids as hex strings where protobuf's JSON mapping expects base64."""
    if isinstance(node, dict):
        return {
            key: _id_to_base64(value) if key in _ID_KEYS else _hex_ids_to_base64(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_hex_ids_to_base64(item) for item in node]
    return node


def _id_to_base64(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return base64.b64encode(bytes.fromhex(value)).decode()
    except ValueError:
        return value  # not hex: left for the parser to accept (base64) or reject


_OTLP_JSON_KEYS = {
    "traces": frozenset({"resourceSpans", "resource_spans"}),
    "logs": frozenset({"resourceLogs", "resource_logs"}),
}


def _parse(payload: bytes, message: Any, kind: str) -> Any:
    if not payload:
        raise DecodeError(f"empty {kind} message")
    if payload[:1] == b"{":  # OTLP/JSON (otlp_json encoding)
        try:
            document = json.loads(payload)
            if not isinstance(document, dict) or not set(document) & _OTLP_JSON_KEYS[kind]:
                # ignore_unknown_fields would turn any JSON (an application log line) into an
                # empty request: refuse what carries no OTLP content at all.
                raise DecodeError(f"JSON without OTLP {kind} content (no {kind} key)")
            json_format.ParseDict(_hex_ids_to_base64(document), message,
                                  ignore_unknown_fields=True)  # fmt: skip
        except (json_format.ParseError, UnicodeDecodeError, ValueError, TypeError) as error:
            raise DecodeError(f"invalid OTLP/JSON {kind}: {error}") from None
        return message
    try:
        message.ParseFromString(payload)
    except (ProtobufDecodeError, RuntimeError, ValueError) as error:
        raise DecodeError(f"invalid OTLP protobuf {kind}: {error}") from None
    return message


def _identity(key_values: Iterable[Any]) -> tuple[dict[str, Any], str, str | None]:
    """A resource's attributes, its service name and its node (``service.instance.id``)."""
    resource = _attributes(key_values)
    node = resource.get(c.SERVICE_INSTANCE_ID)
    service = str(resource.get(c.SERVICE_NAME) or "unknown_service")
    return resource, service, str(node) if node is not None else None


def decode_spans(payload: bytes) -> list[SpanRecord]:
    """Every span of one ``otlp_spans`` message, resource flattened in."""
    request = _parse(payload, ExportTraceServiceRequest(), "traces")
    records: list[SpanRecord] = []
    for resource_spans in request.resource_spans:
        resource, service, node = _identity(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                trace_id = _hex(span.trace_id, 16, "trace_id")
                records.append(
                    SpanRecord(
                        trace_id=trace_id,
                        span_id=_hex(span.span_id, 8, "span_id"),
                        parent_id=span.parent_span_id.hex() or None,
                        name=mask_pans(span.name),
                        kind=_KINDS.get(span.kind, INTERNAL),
                        start_ns=int(span.start_time_unix_nano),
                        end_ns=int(span.end_time_unix_nano),
                        service=service,
                        node=node,
                        status=_STATUS.get(span.status.code, UNSET),
                        status_message=mask_pans(span.status.message) or None,
                        attributes=_attributes(span.attributes),
                        events=tuple(
                            SpanEvent(e.name, int(e.time_unix_nano), _attributes(e.attributes))
                            for e in span.events
                        ),
                        links=tuple(
                            SpanLink(k.trace_id.hex(), k.span_id.hex(), _attributes(k.attributes))
                            for k in span.links
                        ),
                        resource=resource,
                    )
                )
    return records


def _body(value: Any) -> str:
    plain = _value(value)
    if plain is None:
        return ""
    return plain if isinstance(plain, str) else json.dumps(plain, sort_keys=True, default=str)


def decode_logs(payload: bytes) -> list[LogRecord]:
    """Every log record of one ``otlp_logs`` message, resource flattened in."""
    request = _parse(payload, ExportLogsServiceRequest(), "logs")
    records: list[LogRecord] = []
    for resource_logs in request.resource_logs:
        resource, service, node = _identity(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                attributes = _attributes(record.attributes)
                event_name = record.event_name or attributes.get(c.EVENT_NAME)
                severity = record.severity_text or _SEVERITY_FROM_NUMBER.get(
                    (record.severity_number - 1) // 4 * 4 + 1 if record.severity_number else 0
                )
                records.append(
                    LogRecord(
                        time_ns=int(record.time_unix_nano or record.observed_time_unix_nano),
                        service=service,
                        node=node,
                        severity=severity,
                        body=_body(record.body),
                        trace_id=record.trace_id.hex() or None,
                        span_id=record.span_id.hex() or None,
                        event_name=str(event_name) if event_name else None,
                        attributes=attributes,
                        resource=resource,
                    )
                )
    return records


_SCALARS = frozenset({str, int, float, bool, list, type(None)})


def flatten(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Nested attribute maps (kvlist values) as dotted keys, for documents."""
    flat: dict[str, Any] = {}
    for key, value in attributes.items():
        if type(value) is dict or (type(value) not in _SCALARS and isinstance(value, Mapping)):
            for inner, inner_value in flatten(value).items():
                flat[f"{key}.{inner}"] = inner_value
        else:
            flat[key] = value
    return flat
