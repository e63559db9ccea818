"""Card numbers (PANs) never leave a service unmasked.

A PAN is 13 to 19 digits, optionally grouped by single spaces or dashes, that passes the Luhn
check. It is masked to its first six and last four digits (the BIN and the last four are what
support staff legitimately need); separators stay where they were::

    >>> mask_pans("card 4111 1111 1111 1111 declined")
    'card 4111 11** **** 1111 declined'
    >>> mask_pans("order 1234567890123 shipped")  # 13 digits, not Luhn-valid: kept
    'order 1234567890123 shipped'

The exporters call :func:`redact_export_request` on each encoded OTLP message. Its fast path is
one regular-expression scan over the serialized bytes: a message with no run of 13+ digits (the
common case) is never walked field by field.
"""

from __future__ import annotations

import re
from typing import Any

# 13-19 digits, single space or dash allowed between digits, not glued to more digits.
_PAN = re.compile(r"(?<![0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9])")
# In serialized protobuf a string's neighbours are length and tag bytes, which can be ASCII
# digits: the byte-level test therefore only looks for a candidate run, without boundaries.
_PAN_CANDIDATE = re.compile(rb"[0-9](?:[ -]?[0-9]){12}")


def luhn_valid(digits: str) -> bool:
    """True when the digit string passes the Luhn (mod 10) check.

    >>> luhn_valid("4111111111111111"), luhn_valid("4111111111111112")
    (True, False)
    """
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _mask(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = [i for i, ch in enumerate(text) if ch.isdigit()]
    if not luhn_valid("".join(text[i] for i in digits)):
        return text
    hidden = set(digits[6:-4])
    return "".join("*" if i in hidden else ch for i, ch in enumerate(text))


def mask_pans(text: str) -> str:
    """``text`` with every Luhn-valid card number masked to first-6/last-4."""
    if len(text) < 13:
        return text
    return _PAN.sub(_mask, text)


def may_contain_pan(data: bytes) -> bool:
    """False when ``data`` certainly holds no card number (the fast path): no run of 13 digits,
    single spaces or dashes allowed between them. True means "walk the message"."""
    return _PAN_CANDIDATE.search(data) is not None


def _redact_any_value(value: Any) -> int:
    """Mask PANs inside an OTLP ``AnyValue`` in place; return how many strings changed."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        masked = mask_pans(value.string_value)
        if masked != value.string_value:
            value.string_value = masked
            return 1
        return 0
    if kind == "array_value":
        return sum(_redact_any_value(v) for v in value.array_value.values)
    if kind == "kvlist_value":
        return _redact_key_values(value.kvlist_value.values)
    return 0


def _redact_key_values(key_values: Any) -> int:
    return sum(_redact_any_value(kv.value) for kv in key_values)


def redact_export_request(request: Any) -> int:
    """Mask PANs in an ``ExportTraceServiceRequest`` or ``ExportLogsServiceRequest`` in place.

    Covers resource and scope attributes, span names, span/event/link attributes, status
    messages, log bodies and log attributes. Returns the number of strings changed.
    """
    changed = 0
    for resource_spans in getattr(request, "resource_spans", ()):
        changed += _redact_key_values(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                masked = mask_pans(span.name)
                if masked != span.name:
                    span.name, changed = masked, changed + 1
                changed += _redact_key_values(span.attributes)
                for event in span.events:
                    changed += _redact_key_values(event.attributes)
                for link in span.links:
                    changed += _redact_key_values(link.attributes)
                if span.status.message:
                    masked = mask_pans(span.status.message)
                    if masked != span.status.message:
                        span.status.message, changed = masked, changed + 1
    for resource_logs in getattr(request, "resource_logs", ()):
        changed += _redact_key_values(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                changed += _redact_any_value(record.body)
                changed += _redact_key_values(record.attributes)
    return changed


__all__ = ["luhn_valid", "mask_pans", "may_contain_pan", "redact_export_request"]
