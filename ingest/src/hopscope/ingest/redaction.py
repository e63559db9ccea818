"""Card numbers (PANs) never leave a service unmasked.

A PAN is 13 to 19 digits that pass the Luhn check, written in one run or in groups joined by
single separators: a space or a dash as people type them, or what URL encoding makes of those
(``+``, ``%20``, ``%2D``). It is not glued to other digits, but it may follow a percent or
``\\uXXXX`` escape directly (``card%204111...``: the escape's hex digits are not part of it). In
a longer sequence of separated groups (a card number followed by its CVV), every contiguous
stretch of whole groups that is 13-19 digits and passes Luhn is a PAN. A PAN is masked to its
first six and last four digits (the BIN and the last four are what support staff legitimately
need); separators stay where they were::

    >>> mask_pans("card 4111 1111 1111 1111 declined")
    'card 4111 11** **** 1111 declined'
    >>> mask_pans("order 1234567890123 shipped")  # 13 digits, not Luhn-valid: kept
    'order 1234567890123 shipped'
    >>> mask_pans("GET /pay?card=4111+1111+1111+1111&cvv=123")
    'GET /pay?card=4111+11**+****+1111&cvv=123'
    >>> mask_pans("q=card%204111111111111111 123")
    'q=card%20411111******1111 123'

A number is a PAN when its decimal digits are (:func:`mask_pan_number`): an integer of 13-19
digits passing Luhn, or a float holding such an integer exactly, becomes the masked text.

The exporters call :func:`redact_export_request` on each encoded OTLP message. Its fast path is
one regular-expression scan over the serialized bytes: a message with no run of 13+ digits (the
common case) is never walked field by field. Numbers are varints or doubles on the wire, which
that scan cannot see: the SDK masks text and bytes; the processors, which decode every value,
apply the whole rule (:mod:`hopscope.processors.decode`).
"""

from __future__ import annotations

import re
from typing import Any

# A separator between two digits: what people type (space, dash) and its URL encodings.
_SEPARATOR = r"(?:[ +\-]|%20|%2[Dd])"
# Where a PAN may start: after a character that is no digit, or right after a complete percent
# (%XX) or \uXXXX escape, whose hex digits would otherwise glue onto the number; never inside
# such an escape (its digits would then count as the PAN's).
_START = (
    r"(?:(?<=%[0-9A-Fa-f]{2})|(?<=\\u[0-9A-Fa-f]{4})"
    r"|(?<![0-9%])(?<!%[0-9A-Fa-f])(?<!\\u)(?<!\\u[0-9A-Fa-f])(?<!\\u[0-9A-Fa-f]{2})"
    r"(?<!\\u[0-9A-Fa-f]{3}))"
)
# A candidate: 13 or more digits in groups joined by single separators, as far as it goes;
# _mask then finds the PANs among its stretches of whole groups. Each step consumes a digit and
# a separator is never a digit, so matching is linear (no backtracking blow-up). The leading
# lookahead skips non-digits before the costlier boundary lookbehinds (half the scan time).
_PAN = re.compile(r"(?=[0-9])" + _START + r"[0-9](?:" + _SEPARATOR + r"?[0-9]){12,}")
# The parts of a candidate: digit groups and separators.
_PART = re.compile(r"[0-9]+|%20|%2[Dd]|.")
# In serialized protobuf a string's neighbours are length and tag bytes, which can be ASCII
# digits: the byte-level test therefore only looks for a candidate run, without boundaries.
_PAN_CANDIDATE = re.compile(rb"[0-9](?:(?:[ +\-]|%20|%2[Dd])?[0-9]){12}")
_MIN_DIGITS, _MAX_DIGITS = 13, 19
# Floats hold every integer exactly only up to 2**53; beyond, the value is not the digits
# anyone wrote, and its text (4.1e+18) does not show them either.
_FLOAT_EXACT = 2**53


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


def _hidden_digits(groups: list[str]) -> set[int]:
    """Indices (over all digits of ``groups``) to hide: the middle of every contiguous stretch
    of whole groups that is 13-19 digits long and passes Luhn.

    Inside a valid stretch every shorter stretch's middle lies within its own middle, so a lone
    PAN keeps exactly its first six and last four digits.
    """
    hidden: set[int] = set()
    offsets = [0]
    for group in groups:
        offsets.append(offsets[-1] + len(group))
    for first in range(len(groups)):
        for last in range(first + 1, len(groups) + 1):
            size = offsets[last] - offsets[first]
            if size > _MAX_DIGITS:
                break
            if size >= _MIN_DIGITS and luhn_valid("".join(groups[first:last])):
                hidden.update(range(offsets[first] + 6, offsets[last] - 4))
    return hidden


def _mask(match: re.Match[str]) -> str:
    text = match.group(0)
    parts: list[str] = _PART.findall(text)
    groups = [part for part in parts if part[0].isdigit()]
    if len(groups) == 1:  # the common case: one run of digits
        digits = groups[0]
        if len(digits) > _MAX_DIGITS or not luhn_valid(digits):
            return text
        return digits[:6] + "*" * (len(digits) - 10) + digits[-4:]
    hidden = _hidden_digits(groups)
    if not hidden:
        return text
    out: list[str] = []
    position = 0
    for part in parts:
        if not part[0].isdigit():
            out.append(part)
            continue
        out.append("".join("*" if position + i in hidden else ch for i, ch in enumerate(part)))
        position += len(part)
    return "".join(out)


def mask_pans(text: str) -> str:
    """``text`` with every Luhn-valid card number masked to first-6/last-4.

    >>> mask_pans("pan=5500-0000-0000-0004;exp=12/27")
    'pan=5500-00**-****-0004;exp=12/27'
    """
    if len(text) < _MIN_DIGITS:
        return text
    return _PAN.sub(_mask, text)


def mask_pan_number(value: int | float) -> int | float | str:
    """``value``, or its masked text when it is a card number written as a number.

    The rule: an integer whose magnitude has 13-19 digits that pass the Luhn check (a float
    counts when it holds such an integer exactly, i.e. below 2**53) is a PAN; it becomes the
    text of its digits masked to first-6/last-4 (a minus sign kept). Every other number is
    returned unchanged. The masked value is text, so a field that held numbers gets a string.

    >>> mask_pan_number(4111111111111111), mask_pan_number(4111111111111112)
    ('411111******1111', 4111111111111112)
    >>> mask_pan_number(4111111111111111.0), mask_pan_number(42.5)
    ('411111******1111', 42.5)
    """
    if isinstance(value, float):
        if not value.is_integer() or abs(value) >= _FLOAT_EXACT:
            return value  # fractions, inf and nan included
        whole = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        whole = value
    else:
        return value
    digits = str(abs(whole))
    if not _MIN_DIGITS <= len(digits) <= _MAX_DIGITS or not luhn_valid(digits):
        return value
    masked = digits[:6] + "*" * (len(digits) - 10) + digits[-4:]
    return f"-{masked}" if whole < 0 else masked


def mask_pan_bytes(data: bytes) -> bytes:
    """``data`` with the ASCII digits of every card number in it replaced by ``*``.

    Bytes are read as Latin-1 (one character per byte), so the length and every other byte,
    multi-byte UTF-8 sequences included, stay as they were.

    >>> mask_pan_bytes(b"\\x00pan=4111111111111111\\xff")
    b'\\x00pan=411111******1111\\xff'
    """
    if not may_contain_pan(data):
        return data
    return mask_pans(data.decode("latin-1")).encode("latin-1")


def may_contain_pan(data: bytes) -> bool:
    """False when ``data`` certainly holds no card number (the fast path): no run of 13 digits,
    single spaces or dashes allowed between them. True means "walk the message"."""
    return _PAN_CANDIDATE.search(data) is not None


def _redact_any_value(value: Any) -> int:
    """Mask PANs inside an OTLP ``AnyValue`` in place (strings and bytes; numbers are left to
    the processors, see the module docstring); return how many values changed."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        masked = mask_pans(value.string_value)
        if masked != value.string_value:
            value.string_value = masked
            return 1
        return 0
    if kind == "bytes_value":
        masked_bytes = mask_pan_bytes(value.bytes_value)
        if masked_bytes != value.bytes_value:
            value.bytes_value = masked_bytes
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


__all__ = [
    "luhn_valid",
    "mask_pan_bytes",
    "mask_pan_number",
    "mask_pans",
    "may_contain_pan",
    "redact_export_request",
]
