"""Decode OTLP messages from Kafka into flat span and log records.

A message is ``ExportTraceServiceRequest`` / ``ExportLogsServiceRequest`` protobuf (what the
Collector's Kafka exporter writes as ``otlp_proto``) or the same as OTLP/JSON (``otlp_json``),
detected per message by its first byte. Card numbers are masked again on the way in: data from
other SDKs never went through hopscope's redaction. Every value is covered (resource, span,
event, link and log attributes, log bodies of every shape, arrays and maps recursively), and so
are span and event names, status messages and log event names; strings and bytes are masked in
place, a number that is a card number becomes its masked text
(:func:`hopscope.ingest.redaction.mask_pan_number`).

Bad input has the outcomes tabulated in :mod:`hopscope.processors.sanitize`:

- a message that is no OTLP at all (random or truncated bytes, JSON without OTLP content, no
  record in it) raises :class:`DecodeError`, whose text is the dead-letter reason for the
  original bytes;
- a span whose trace or span id is unusable is rejected alone (:class:`RejectedSpan`, a
  one-span request to dead-letter); the rest of its message is decoded;
- everything else is decoded within :class:`~hopscope.processors.sanitize.Limits`, and what had
  to be changed is listed in the record's ``flags``.

Invalid UTF-8 in a protobuf string fails the whole parse in the protobuf runtime; such a message
is parsed again with a copy of the OTLP schema whose strings are bytes (the wire format is the
same), so only the records holding a bad string are flagged, none is lost.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from google.protobuf import json_format
from google.protobuf.message import DecodeError as ProtobufDecodeError
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from hopscope.ingest import conventions as c
from hopscope.ingest.redaction import mask_pan_bytes, mask_pan_number, mask_pans
from hopscope.processors import core
from hopscope.processors import sanitize as s
from hopscope.processors.errors import DecodeError
from hopscope.processors.foreign import error_status, hex_id
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
from hopscope.processors.sanitize import DEFAULT_LIMITS, Limits

# Kind 0 (UNSPECIFIED) reads as internal, flagged: the derivations may infer it.
_KINDS = {0: INTERNAL, 1: INTERNAL, 2: SERVER, 3: CLIENT, 4: PRODUCER, 5: CONSUMER}
_STATUS = {0: UNSET, 1: OK, 2: ERROR}
_SEVERITY_FROM_NUMBER = {1: "TRACE", 5: "DEBUG", 9: "INFO", 13: "WARN", 17: "ERROR", 21: "FATAL"}
_ZERO_TRACE: Final = bytes(16)
_ZERO_SPAN: Final = bytes(8)
# A non-finite double attribute as text, in JSON's own spelling of these numbers.
_NON_FINITE: Final = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}

# Every attribute costs this many characters of a span's text budget besides its key and
# value, so that thousands of tiny attributes cannot pass for free.
_ENTRY_COST: Final = 64
# A card number is at most 19 digits and 18 separators of up to 3 characters (%20): masking
# this much past a cut sees whole every card number the cut could split.
_MASK_SLACK: Final = 80
# Attributes the derivations read: kept past the attribute-count limit.
_KEPT_KEYS: Final = frozenset({
    c.SERVICE_NAME, c.SERVICE_INSTANCE_ID, c.PEER_SERVICE, c.SERVER_ADDRESS, c.RPC_SERVICE,
    c.RPC_METHOD, c.HTTP_RESEND_COUNT, c.ERROR_TYPE, c.DB_SYSTEM, c.MESSAGING_SYSTEM,
    c.MESSAGING_DESTINATION, c.PAYMENT_ID, c.COORDINATION_KIND, c.COORDINATION_RESOURCE,
    c.COORDINATION_PARTICIPANT, c.EVENT_NAME, c.FAILOVER_FROM, c.FAILOVER_TO,
    c.FAILOVER_REASON,
})  # fmt: skip


@dataclass(frozen=True, slots=True)
class RejectedSpan:
    """A span that cannot be indexed, with the dead-letter reason and a one-span
    ``ExportTraceServiceRequest`` (its resource and scope included) to dead-letter."""

    reason: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class DecodedSpans:
    """What one ``otlp_spans`` message holds: its usable spans and its rejected ones."""

    spans: list[SpanRecord] = field(default_factory=list)
    rejected: list[RejectedSpan] = field(default_factory=list)


class _Budget:
    """What one record may still hold (characters of text) and what was changed in it."""

    __slots__ = ("chars", "flags", "lenient", "limits")

    def __init__(self, limits: Limits, flags: Iterable[str] = (), lenient: bool = False) -> None:
        self.limits = limits
        self.chars = limits.max_attribute_chars
        self.flags: set[str] = set(flags)
        self.lenient = lenient  # strings come as bytes (see _lenient_classes)

    def record_flags(self) -> tuple[str, ...]:
        """The flags as a record holds them: sorted, so equal records compare equal."""
        return tuple(sorted(self.flags)) if self.flags else ()


def _text(raw: Any, budget: _Budget) -> str:
    """A protobuf string field as text: ``str`` as parsed, or the lenient parse's bytes."""
    if raw.__class__ is str:
        return str(raw)  # already str: the call is free of a copy
    try:
        return bytes(raw).decode()
    except UnicodeDecodeError:
        budget.flags.add(s.INVALID_UTF8)
        return bytes(raw).decode(errors="replace")


def _string(raw: Any, budget: _Budget, limit: int) -> str:
    """A string masked (card numbers) and cut to ``limit`` characters."""
    text = _text(raw, budget)
    if len(text) <= limit:
        return mask_pans(text)
    budget.flags.add(s.VALUE_TRUNCATED)
    # Masking only the head keeps a 1 MiB value cheap; see _MASK_SLACK for the margin.
    return mask_pans(text[: limit + _MASK_SLACK])[:limit]


def _key(raw: Any, budget: _Budget) -> str:
    key = _text(raw, budget)
    if len(key) > budget.limits.max_key_chars:
        budget.flags.add(s.VALUE_TRUNCATED)
        key = key[: budget.limits.max_key_chars]
    if not key or key.isspace():  # Elasticsearch refuses empty and blank field names
        budget.flags.add(s.INVALID_KEY)
        return s.BLANK_KEY
    return key


def _value(value: Any, budget: _Budget, depth: int = 0) -> Any:
    """An OTLP AnyValue as a plain Python value within the budget, card numbers masked in
    every shape: strings and bytes in place, a number that is one as its masked text
    (:func:`~hopscope.ingest.redaction.mask_pan_number`)."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        text = value.string_value
        limit = budget.limits.max_value_chars
        if text.__class__ is str and len(text) <= limit:
            text = mask_pans(text)
        else:
            text = _string(text, budget, limit)
        budget.chars -= len(text)
        return text
    if kind == "bool_value":
        return bool(value.bool_value)
    if kind == "int_value":
        return mask_pan_number(int(value.int_value))
    if kind == "double_value":
        number = float(value.double_value)
        if number - number != 0.0:
            # NaN and ±Infinity are no JSON: Elasticsearch would refuse the whole document.
            # Their text keeps what was sent, and the document is indexed.
            budget.flags.add(s.NON_FINITE_NUMBER)
            return _NON_FINITE[repr(number)]
        return mask_pan_number(number)
    if kind == "bytes_value":
        raw = value.bytes_value
        most = budget.limits.max_value_chars * 3 // 4  # base64 grows by a third
        if len(raw) > most:
            budget.flags.add(s.VALUE_TRUNCATED)
            raw = mask_pan_bytes(raw[: most + _MASK_SLACK])[:most]
        else:
            raw = mask_pan_bytes(raw)
        encoded = base64.b64encode(raw).decode()
        budget.chars -= len(encoded)
        return encoded
    if kind not in ("array_value", "kvlist_value"):
        return None
    if depth >= budget.limits.max_depth:
        budget.flags.add(s.VALUE_TRUNCATED)
        return s.ELLIPSIS
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values, budget, depth + 1)
    items = []
    for item in value.array_value.values:
        if budget.chars <= 0:
            budget.flags.add(s.VALUE_TRUNCATED)
            break
        budget.chars -= _ENTRY_COST // 4
        items.append(_value(item, budget, depth + 1))
    return items


# Attribute keys already known to be valid field names: the same few hundred keys recur in
# every span, and a set comparison in C is cheaper than checking each key again. Bounded: a
# flood of distinct keys (a mapping explosion) only empties it now and then.
# Per ``max_key_chars``, since what is valid depends on it.
_GOOD_KEYS: dict[int, set[str]] = {}
_GOOD_KEYS_MAX: Final = 50_000


def _attributes(key_values: Any, budget: _Budget, depth: int = 0) -> dict[str, Any]:
    """Key-values as a dict: at most ``max_attributes`` keys (plus the ones the derivations
    read) while the budget lasts; the rest dropped with a flag."""
    limits = budget.limits
    if len(key_values) <= limits.max_attributes and not budget.lenient:
        # The common case, checked after the fact (this runs for every span).
        before = budget.chars
        out = {kv.key: _value(kv.value, budget, depth) for kv in key_values}
        if not out:
            return out
        budget.chars -= sum(map(len, out)) + len(out) * _ENTRY_COST
        good = _GOOD_KEYS.get(limits.max_key_chars)
        if budget.chars > 0 and ((good and out.keys() <= good) or _valid_keys(out, limits)):
            return out
        budget.chars = before
    return _checked_attributes(key_values, budget, depth)


def _valid_keys(keys: Mapping[str, Any], limits: Limits) -> bool:
    """Whether every key is a usable field name (remembering the ones that are)."""
    good = [k for k in keys if 0 < len(k) <= limits.max_key_chars and not k.isspace()]
    known = _GOOD_KEYS.setdefault(limits.max_key_chars, set())
    if len(known) + len(good) > _GOOD_KEYS_MAX:
        known.clear()
    known.update(good)
    return len(good) == len(keys)


def _checked_attributes(key_values: Iterable[Any], budget: _Budget, depth: int) -> dict[str, Any]:
    """:func:`_attributes`, one key at a time (too many keys, bad keys, budget exhausted)."""
    out: dict[str, Any] = {}
    cap = budget.limits.max_attributes
    for kv in key_values:
        if (len(out) >= cap or budget.chars <= 0) and kv.key not in _KEPT_KEYS:
            budget.flags.add(s.ATTRIBUTES_DROPPED)
            continue
        key = _key(kv.key, budget)
        out[key] = _value(kv.value, budget, depth)
        budget.chars -= len(key) + _ENTRY_COST
    return out


def _id_problem(raw: bytes, zero: bytes, what: str) -> str | None:
    """Why an id cannot identify a span (None when it can)."""
    if len(raw) != len(zero):
        return f"{what} must be {len(zero)} bytes, got {len(raw)}"
    if raw == zero:
        return f"{what} is all zeros (invalid)"
    return None


def _optional_id(raw: bytes, zero: bytes, budget: _Budget, flag: str) -> str | None:
    """A parent or log id: None when absent or all zeros (some SDKs write zeros for none);
    the wrong length is flagged and kept at most 64 hex digits long (parents) or dropped
    (logs: ``flag`` says which)."""
    if not raw or raw == zero:
        return None
    if len(raw) != len(zero):
        budget.flags.add(flag)
        return raw.hex()[:64] if flag == s.INVALID_PARENT_ID else None
    return raw.hex()


# -- parsing -----------------------------------------------------------------------------------

# OTLP/JSON id keys -> the id's width in bytes.
_ID_KEYS: Final = {"traceId": 16, "trace_id": 16, "spanId": 8, "span_id": 8,
                   "parentSpanId": 8, "parent_span_id": 8}  # fmt: skip

_OTLP_JSON_KEYS = {
    "traces": frozenset({"resourceSpans", "resource_spans"}),
    "logs": frozenset({"resourceLogs", "resource_logs"}),
}


def _prepare_json(node: Any, flags: set[str]) -> Any:
    """OTLP/JSON as protobuf's JSON mapping takes it: hex ids as base64, and strings that
    are no valid UTF-8 (unpaired surrogates from ``\\ud800`` escapes) repaired, in values
    and in keys (the protobuf runtime fails on such a key with a SystemError)."""
    if isinstance(node, dict):
        return {
            _repair(key, flags): _json_id(value, _ID_KEYS[key], flags)
            if key in _ID_KEYS
            else _prepare_json(value, flags)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_prepare_json(item, flags) for item in node]
    if isinstance(node, str):
        return _repair(node, flags)
    return node


def _repair(text: str, flags: set[str]) -> str:
    """``text`` with unpaired surrogates as U+FFFD (flagged ``invalid_utf8``)."""
    if text.isascii():
        return text
    try:
        text.encode()
    except UnicodeEncodeError:
        flags.add(s.INVALID_UTF8)
        return "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text)
    return text


def _json_id(value: Any, width: int, flags: set[str]) -> Any:
    """An OTLP/JSON id as protobuf's JSON mapping takes it (base64 of ``width`` bytes).

    Hex is the OTLP/JSON form; base64 of the right length is what older exporters wrote and is
    kept; anything else is mapped by :func:`~hopscope.processors.foreign.hex_id` (short hex
    zero-padded, the rest hashed and flagged ``id_hashed``) rather than failing the message.
    """
    if not isinstance(value, str) or not value:
        return value
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = None
    if raw is not None and len(raw) == width:
        return base64.b64encode(raw).decode()
    if raw is None:
        try:
            if len(base64.b64decode(value, validate=True)) == width:
                return value
        except ValueError:
            pass
    text, hashed = hex_id(value, width * 2)
    if hashed:
        flags.add(s.ID_HASHED)
    return base64.b64encode(bytes.fromhex(text)).decode()


@functools.cache
def _lenient_classes() -> dict[str, Any]:
    """The OTLP request messages with every string field as bytes, in a pool of their own."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    prefix = "hopscope_lenient"
    pool = descriptor_pool.DescriptorPool()
    done: set[str] = set()

    def add(file: Any) -> None:
        if file.name in done:
            return
        for dependency in file.dependencies:
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        proto.name = f"{prefix}/{proto.name}"
        proto.package = f"{prefix}.{proto.package}"
        proto.dependency[:] = [f"{prefix}/{name}" for name in proto.dependency]
        proto.ClearField("service")
        messages = list(proto.message_type)
        while messages:
            message = messages.pop()
            messages.extend(message.nested_type)
            for f in message.field:
                if f.type == f.TYPE_STRING:
                    f.type = f.TYPE_BYTES
                if f.type_name.startswith(".opentelemetry."):
                    f.type_name = f".{prefix}{f.type_name}"
        pool.Add(proto)
        done.add(file.name)

    add(trace_service_pb2.DESCRIPTOR)
    add(logs_service_pb2.DESCRIPTOR)
    names = {
        "traces": "opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest",
        "logs": "opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest",
    }
    return {
        kind: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{prefix}.{name}"))
        for kind, name in names.items()
    }


def _parse(payload: bytes, message: Any, kind: str, flags: set[str]) -> Any:
    if not payload:
        raise DecodeError(f"empty {kind} message (0 bytes)")
    if payload[:1] == b"{":  # OTLP/JSON (otlp_json encoding)
        try:
            try:
                document = json.loads(payload)
            except UnicodeDecodeError:
                flags.add(s.INVALID_UTF8)
                document = json.loads(payload.decode(errors="replace"))
            if not isinstance(document, dict) or not set(document) & _OTLP_JSON_KEYS[kind]:
                # ignore_unknown_fields would turn any JSON (an application log line) into an
                # empty request: refuse what carries no OTLP content at all.
                raise DecodeError(f"JSON without OTLP {kind} content (no {kind} key)")
            json_format.ParseDict(_prepare_json(document, flags), message,
                                  ignore_unknown_fields=True)  # fmt: skip
        # SystemError: the protobuf runtime's C code failing on input it did not expect; no
        # input may stop the processor, so it is a dead letter like any other parse error.
        except (json_format.ParseError, ValueError, TypeError, RecursionError,
                SystemError) as error:  # fmt: skip
            raise DecodeError(f"invalid OTLP/JSON {kind}: {str(error)[:500]}") from None
        return message
    try:
        message.ParseFromString(payload)
    except (ProtobufDecodeError, RuntimeError, ValueError, SystemError) as error:
        # Parsed again with bytes for strings: when that works, only UTF-8 was wrong.
        lenient = _lenient_classes()[kind]()
        try:
            lenient.ParseFromString(payload)
        except (ProtobufDecodeError, RuntimeError, ValueError, SystemError):
            raise DecodeError(f"invalid OTLP protobuf {kind}: {error}") from None
        return lenient
    return message


def _identity(
    key_values: Iterable[Any], limits: Limits, flags: set[str], lenient: bool
) -> tuple[dict[str, Any], str, str | None, tuple[str, ...]]:
    """A resource's attributes, its service name, its node (``service.instance.id``) and what
    was sanitized in them (every record of the resource carries those flags)."""
    budget = _Budget(limits, flags, lenient)
    resource = _attributes(key_values, budget)
    node = resource.get(c.SERVICE_INSTANCE_ID)
    service = s.clip(str(resource.get(c.SERVICE_NAME) or "unknown_service"), limits.max_name_chars)
    node_name = s.clip(str(node), limits.max_name_chars) if node is not None else None
    return resource, service, node_name, budget.record_flags()


def _one_span_request(request: Any, resource_spans: Any, scope_spans: Any, span: Any) -> bytes:
    """``span`` alone in a request of the same schema, with its resource and scope."""
    single = type(request)()
    out_resource = single.resource_spans.add()
    out_resource.resource.CopyFrom(resource_spans.resource)
    out_resource.schema_url = resource_spans.schema_url
    out_scope = out_resource.scope_spans.add()
    out_scope.scope.CopyFrom(scope_spans.scope)
    out_scope.schema_url = scope_spans.schema_url
    out_scope.spans.add().CopyFrom(span)
    return bytes(single.SerializeToString())


def decode_span_message(
    payload: bytes, *, received_ns: int | None = None, limits: Limits = DEFAULT_LIMITS
) -> DecodedSpans:
    """Every span of one ``otlp_spans`` message, resource flattened in, sanitized.

    The native core decodes it when it is in use (:mod:`hopscope.processors.core`) and takes
    the message; otherwise :func:`decode_span_message_reference`, the specification, does.

    Parameters:
        payload: the Kafka message value (OTLP protobuf or OTLP/JSON).
        received_ns: the message's Kafka timestamp; when given, implausible times are
            replaced (:func:`~hopscope.processors.sanitize.check_span_times`).
        limits: the per-record limits.

    Returns:
        The usable spans and the rejected ones (unusable trace or span id).

    Raises:
        DecodeError: the message is no OTLP traces request, or holds no span at all.
    """
    native, native_limits = core.native(), core.native_limits(limits)
    if native is not None and native_limits is not None and payload.__class__ is bytes:
        spans: list[SpanRecord] | None = native.decode_spans(payload, received_ns, native_limits)
        if spans is not None:
            return DecodedSpans(spans)
    return decode_span_message_reference(payload, received_ns=received_ns, limits=limits)


def decode_span_message_reference(
    payload: bytes, *, received_ns: int | None = None, limits: Limits = DEFAULT_LIMITS
) -> DecodedSpans:
    """:func:`decode_span_message` in Python: the readable specification of the native core."""
    message_flags: set[str] = set()
    request = _parse(payload, ExportTraceServiceRequest(), "traces", message_flags)
    lenient = type(request) is not ExportTraceServiceRequest
    decoded = DecodedSpans()
    seen = 0
    for resource_spans in request.resource_spans:
        resource, service, node, resource_flags = _identity(
            resource_spans.resource.attributes, limits, message_flags, lenient
        )
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                seen += 1
                trace_id, span_id = span.trace_id, span.span_id
                if (
                    len(trace_id) != 16
                    or len(span_id) != 8
                    or trace_id == _ZERO_TRACE
                    or span_id == _ZERO_SPAN
                ):
                    problem = _id_problem(trace_id, _ZERO_TRACE, "trace_id") or _id_problem(
                        span_id, _ZERO_SPAN, "span_id"
                    )
                    decoded.rejected.append(RejectedSpan(
                        f"span rejected: {problem}",
                        _one_span_request(request, resource_spans, scope_spans, span),
                    ))  # fmt: skip
                    continue
                decoded.spans.append(_span(
                    span, service, node, resource, _Budget(limits, resource_flags, lenient),
                    received_ns,
                ))  # fmt: skip
    if not seen:
        raise DecodeError(
            f"empty traces message: no spans in {len(request.resource_spans)} resource spans"
        )
    return decoded


def _span(
    span: Any,
    service: str,
    node: str | None,
    resource: Mapping[str, Any],
    budget: _Budget,
    received_ns: int | None,
) -> SpanRecord:
    limits = budget.limits
    name = span.name
    if name.__class__ is str and len(name) <= limits.max_name_chars:
        name = mask_pans(name)
    else:
        name = _string(name, budget, limits.max_name_chars)
    attributes = _attributes(span.attributes, budget)
    parent_raw = span.parent_span_id
    if len(parent_raw) == 8 and parent_raw != _ZERO_SPAN:
        parent_id: str | None = parent_raw.hex()
    else:
        parent_id = _optional_id(parent_raw, _ZERO_SPAN, budget, s.INVALID_PARENT_ID)
    message = span.status.message
    status_message = _string(message, budget, limits.max_value_chars) if message else None
    start, end = int(span.start_time_unix_nano), int(span.end_time_unix_nano)
    if end < start:
        budget.flags.add(s.END_BEFORE_START)
    if span.kind == 0:
        budget.flags.add(s.KIND_UNSPECIFIED)
    events = _events(span.events, budget) if span.events else ()
    status, status_message, inferred = error_status(
        _STATUS.get(span.status.code, UNSET), status_message or None, attributes, events
    )
    if inferred:
        budget.flags.add(s.STATUS_INFERRED)
    record = SpanRecord(
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_id=parent_id,
        name=name,
        kind=_KINDS.get(span.kind, INTERNAL),
        start_ns=start,
        end_ns=end,
        service=service,
        node=node,
        status=status,
        status_message=status_message,
        attributes=attributes,
        events=events,
        links=_links(span.links, budget) if span.links else (),
        resource=resource,
        flags=tuple(sorted(budget.flags)) if budget.flags else (),
    )
    if received_ns is not None:
        record = s.check_span_times(record, received_ns, limits)
    return record


def _events(events: Any, budget: _Budget) -> tuple[SpanEvent, ...]:
    limits = budget.limits
    if len(events) > limits.max_events:
        budget.flags.add(s.EVENTS_DROPPED)
        events = events[: limits.max_events]
    return tuple(
        SpanEvent(
            _string(e.name, budget, limits.max_name_chars),
            int(e.time_unix_nano),
            _attributes(e.attributes, budget),
        )
        for e in events
    )


def _links(links: Any, budget: _Budget) -> tuple[SpanLink, ...]:
    if len(links) > budget.limits.max_links:
        budget.flags.add(s.LINKS_DROPPED)
        links = links[: budget.limits.max_links]
    # Ids of the wrong length are kept (links are not indexed), but bounded.
    return tuple(
        SpanLink(k.trace_id.hex()[:64], k.span_id.hex()[:64], _attributes(k.attributes, budget))
        for k in links
    )


def decode_spans(
    payload: bytes, *, received_ns: int | None = None, limits: Limits = DEFAULT_LIMITS
) -> list[SpanRecord]:
    """Every span of one ``otlp_spans`` message, resource flattened in.

    Strict: a span with an unusable trace or span id fails the whole message (the processor
    uses :func:`decode_span_message`, which rejects such spans alone).

    Raises:
        DecodeError: not an OTLP traces request, no spans, or an unusable span.
    """
    decoded = decode_span_message(payload, received_ns=received_ns, limits=limits)
    if decoded.rejected:
        raise DecodeError(decoded.rejected[0].reason.removeprefix("span rejected: "))
    return decoded.spans


def _body(value: Any, budget: _Budget) -> str:
    plain = _value(value, budget)
    if plain is None:
        return ""
    if isinstance(plain, str):
        return plain
    text = json.dumps(plain, sort_keys=True, default=str)
    if len(text) > budget.limits.max_value_chars:
        budget.flags.add(s.VALUE_TRUNCATED)
        return text[: budget.limits.max_value_chars]
    return text


def decode_logs(
    payload: bytes, *, received_ns: int | None = None, limits: Limits = DEFAULT_LIMITS
) -> list[LogRecord]:
    """Every log record of one ``otlp_logs`` message, resource flattened in, sanitized.

    ``received_ns`` and ``limits`` as for :func:`decode_span_message`; a log record's time is
    its ``time_unix_nano``, else its ``observed_time_unix_nano``.

    Raises:
        DecodeError: the message is no OTLP logs request, or holds no log record at all.
    """
    native, native_limits = core.native(), core.native_limits(limits)
    if native is not None and native_limits is not None and payload.__class__ is bytes:
        logs: list[LogRecord] | None = native.decode_logs(payload, received_ns, native_limits)
        if logs is not None:
            return logs
    return decode_logs_reference(payload, received_ns=received_ns, limits=limits)


def decode_logs_reference(
    payload: bytes, *, received_ns: int | None = None, limits: Limits = DEFAULT_LIMITS
) -> list[LogRecord]:
    """:func:`decode_logs` in Python: the readable specification of the native core."""
    message_flags: set[str] = set()
    request = _parse(payload, ExportLogsServiceRequest(), "logs", message_flags)
    lenient = type(request) is not ExportLogsServiceRequest
    records: list[LogRecord] = []
    seen = 0
    names = limits.max_name_chars
    for resource_logs in request.resource_logs:
        resource, service, node, resource_flags = _identity(
            resource_logs.resource.attributes, limits, message_flags, lenient
        )
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                seen += 1
                budget = _Budget(limits, resource_flags, lenient)
                attributes = _attributes(record.attributes, budget)
                event_name = mask_pans(_text(record.event_name, budget)) or attributes.get(
                    c.EVENT_NAME
                )
                severity = _text(record.severity_text, budget) or _SEVERITY_FROM_NUMBER.get(
                    (record.severity_number - 1) // 4 * 4 + 1 if record.severity_number else 0
                )
                observed = int(record.observed_time_unix_nano)
                log = LogRecord(
                    time_ns=int(record.time_unix_nano or observed),
                    service=service,
                    node=node,
                    severity=s.clip(severity, names) if severity else severity,
                    body=_body(record.body, budget),
                    trace_id=_optional_id(record.trace_id, _ZERO_TRACE, budget, s.INVALID_TRACE_ID),
                    span_id=_optional_id(record.span_id, _ZERO_SPAN, budget, s.INVALID_TRACE_ID),
                    event_name=s.clip(str(event_name), names) if event_name else None,
                    attributes=attributes,
                    resource=resource,
                    flags=budget.record_flags(),
                )
                if received_ns is not None:
                    log = s.check_log_time(log, received_ns, observed, limits)
                records.append(log)
    if not seen:
        raise DecodeError(
            f"empty logs message: no log records in {len(request.resource_logs)} resource logs"
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
