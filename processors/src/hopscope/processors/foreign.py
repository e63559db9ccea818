"""Other people's telemetry: the conventions other exporters use where ours are missing.

Traces recorded by other systems rarely carry what hopscope's SDK writes. Three readings are
shared by the stream decoder (:mod:`hopscope.processors.decode`) and the file loaders, so both
paths see the same records:

- **Errors** (:func:`error_status`): a span whose status is unset failed when it carries any of
  the common error conventions, in this order: Jaeger's ``error=true`` tag, an HTTP status
  (``http.response.status_code``, or the older ``http.status_code``) of 500 or more, a gRPC
  status (``rpc.grpc.status_code``) other than 0 (OK), an ``exception`` event. An explicit OK
  status is final, as OpenTelemetry specifies; the convention found becomes the status
  message when the span has none, so failure reasons name it.
- **Ids** (:func:`hex_id`): ids written as text are used as lowercase hex of the expected
  width; shorter hex is zero-padded (Zipkin and Jaeger write 64-bit trace ids and drop leading
  zeros); anything else (not hex, too long) is hashed to an id of that width, so the same text
  maps to the same id everywhere in a file (a span's id and its children's parent ids agree)
  instead of the whole file being rejected.
- **Kinds**: a span whose kind is unspecified (OTLP's ``SPAN_KIND_UNSPECIFIED``, a Jaeger span
  without a ``span.kind`` tag) is decoded as ``internal`` and flagged
  :data:`~hopscope.processors.sanitize.KIND_UNSPECIFIED`; the derivations infer its kind from
  the trace's cross-service links
  (:meth:`hopscope.processors.derive._common.TraceIndex`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any, Final

from hopscope.processors.records import ERROR, OK, SpanEvent

# Attribute names of the error conventions (OpenTelemetry semantic conventions; Jaeger).
JAEGER_ERROR: Final = "error"
HTTP_RESPONSE_STATUS_CODE: Final = "http.response.status_code"
HTTP_STATUS_CODE_OLD: Final = "http.status_code"  # before semantic conventions 1.21
GRPC_STATUS_CODE: Final = "rpc.grpc.status_code"
EXCEPTION_EVENT: Final = "exception"
# 5xx: the server failed. 4xx are the caller's mistakes and not a failure of the call path.
HTTP_SERVER_ERROR: Final = 500


def _number(value: Any) -> int | None:
    """An integer attribute (exporters send numbers as text too), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def inferred_error(attributes: Mapping[str, Any], events: Iterable[SpanEvent] = ()) -> str | None:
    """Which error convention a span carries (module docstring), as a short reason; None when
    it carries none.

    >>> inferred_error({"http.response.status_code": 503})
    'http.response.status_code 503'
    >>> inferred_error({"rpc.grpc.status_code": 0, "http.status_code": "404"}) is None
    True
    """
    flag = attributes.get(JAEGER_ERROR)
    if flag is True or (isinstance(flag, str) and flag.lower() == "true"):
        return "error=true"
    for key in (HTTP_RESPONSE_STATUS_CODE, HTTP_STATUS_CODE_OLD):
        code = _number(attributes.get(key))
        if code is not None and code >= HTTP_SERVER_ERROR:
            return f"{key} {code}"
    grpc = _number(attributes.get(GRPC_STATUS_CODE))
    if grpc is not None and grpc != 0:
        return f"{GRPC_STATUS_CODE} {grpc}"
    for event in events:
        if event.name == EXCEPTION_EVENT:
            kind = event.attributes.get("exception.type")
            return f"exception {kind}" if kind else "exception"
    return None


def error_status(
    status: str,
    message: str | None,
    attributes: Mapping[str, Any],
    events: Iterable[SpanEvent] = (),
) -> tuple[str, str | None, bool]:
    """A span's status and status message with the error conventions applied, and whether
    the status was inferred from them.

    >>> error_status("unset", None, {"error": True})
    ('error', 'error=true', True)
    >>> error_status("ok", None, {"http.response.status_code": 500})
    ('ok', None, False)
    """
    if status in (ERROR, OK):
        return status, message, False
    reason = inferred_error(attributes, events)
    if reason is None:
        return status, message, False
    return ERROR, message or reason, True


def _hashed(text: str, width: int) -> str:
    return hashlib.sha256(text.encode(errors="replace")).hexdigest()[:width]


def hex_id(text: str, width: int) -> tuple[str, bool]:
    """An id as ``width`` lowercase hex digits, and whether it had to be hashed.

    Empty text stays empty (no id: the caller decides what that means).

    >>> hex_id("00F067AA0BA902B7", 16), hex_id("1f", 16)
    (('00f067aa0ba902b7', False), ('000000000000001f', False))
    >>> hex_id("G", 16)
    ('333e0a1e27815d0c', True)
    """
    if not text:
        return "", False
    lowered = text.strip().lower()
    if 0 < len(lowered) <= width and all(ch in "0123456789abcdef" for ch in lowered):
        return lowered.zfill(width), False
    return _hashed(text, width), True
