"""Bad input: what the processor does with each kind, and the limits it enforces.

Every input gets a defined outcome: it is indexed, *sanitized* with a flag saying what was
changed (the reason codes below, in the document field ``hopscope.sanitized``), or sent to the
dead-letter topic with a reason (header ``hopscope.error``). Nothing crashes or stalls the
processor. docs/BAD_INPUT.md holds the same table for operators.

===========================================  =================================================
Input                                        Outcome
===========================================  =================================================
random bytes, truncated protobuf             DLQ: ``invalid OTLP protobuf traces: <error>``
zero-byte message; a request without spans   DLQ: ``empty traces message: ...`` (a producer
(an empty batch)                             bug; the SDK and the Collector never send one)
OTLP/JSON on the spans topic                 decoded like protobuf (the Collector's
                                             ``otlp_json`` encoding)
JSON that is not OTLP, invalid JSON          DLQ: ``JSON without OTLP traces content`` /
                                             ``invalid OTLP/JSON traces: <error>``
a span whose trace or span id has the        that span alone to the DLQ, as a one-span
wrong length or is all zeros                 request with its resource and scope:
                                             ``span rejected: <why>``; the rest is indexed
parent id of the wrong length                indexed; the parent id (hex, at most 64 chars)
                                             names no span, so the span is an orphan:
                                             ``invalid_parent_id``
invalid UTF-8 in a protobuf string           the message is parsed again with bytes for
                                             strings; bad bytes become U+FFFD; only the
                                             records holding such a string: ``invalid_utf8``
invalid UTF-8 or an unpaired surrogate in    replaced by U+FFFD; every record of the
OTLP/JSON                                    message: ``invalid_utf8``
a string longer than its limit (values       PANs masked first, then cut at the limit:
32,768 chars; names 1,024; keys 256)         ``value_truncated``
an empty or blank attribute key              renamed ``_blank_key`` (Elasticsearch refuses
                                             such field names): ``invalid_key``
more than 128 attributes (nested leaves      the first ones in wire order are kept, plus
count) or 256 Ki chars of attribute text     every key the derivations read:
on one span                                  ``attributes_dropped``
more than 128 events or links on a span      the first 128: ``events_dropped`` /
                                             ``links_dropped``
values nested deeper than 8 levels           the deeper value becomes ``"…"``:
                                             ``value_truncated``
a double value NaN or ±Infinity (no JSON     its text ``"NaN"``, ``"Infinity"``,
number)                                      ``"-Infinity"``: ``non_finite_number``
a time before 2000-01-01, or more than a     replaced (see :func:`check_span_times`); the
day after the message's Kafka timestamp      recorded values kept as ``hopscope.original.*``
(0 included)                                 (strings): ``timestamp_out_of_range``; no
                                             ``-1970.01.01`` or ``-2262...`` index appears
end before start                             kept as recorded; every duration reads it as 0
                                             (``event.duration``, hops, critical path):
                                             ``end_before_start``
a log's trace or span id of the wrong        dropped from the log (it joins no trace):
length                                       ``invalid_trace_id``
an OTLP/JSON id that is neither hex nor      hashed to an id of the right width (SHA-256),
base64 of the right length (``"G"``), or     the same text always to the same id; every
hex longer than the id                       record of the message: ``id_hashed``
OTLP/JSON hex shorter than the id (64-bit    zero-padded on the left, as Jaeger does
Zipkin/Jaeger trace ids)
a span kind of 0 (``UNSPECIFIED``)           decoded as ``internal``: ``kind_unspecified``;
                                             the derivations infer CLIENT/SERVER from
                                             cross-service parent links
no error status, but another exporter's      status ``error`` (an explicit OK is final), the
error convention (``error=true``, HTTP       convention as the status message when there is
status >= 500, gRPC status != 0, an          none: ``status_inferred``
``exception`` event)
===========================================  =================================================

Trace-level anomalies go to the trace summary's ``hopscope.sanitized``; the trace is still
derived (:mod:`hopscope.processors.derive._common` defines the tree rules):

===========================================  =================================================
unknown parent                               indexed; the earliest root (else the earliest
                                             orphan) is the main root: ``orphan_spans``, and
                                             ``missing_root`` when there is no root at all
several roots                                the earliest is the main root, the others are
                                             detached: ``multiple_roots``
parent cycle (a span its own parent too)     broken at the member that starts first, no
                                             recursion: ``parent_cycle``
the same span id twice                       identical copies (redelivery) are one span; a
                                             different copy replaces the earlier one, as its
                                             document does in Elasticsearch:
                                             ``duplicate_span_ids``
more spans than ``max_trace_spans``          derived from the first ones at once, incomplete;
                                             later spans indexed, not derived: ``span_limit``
open traces over the memory bound            the least recently active derived, incomplete
                                             (``complete: false``); later spans of them are
                                             indexed, not derived
===========================================  =================================================

Index level: thousands of distinct attribute keys (a mapping explosion) stop being mapped at
the templates' field limit; later documents are still accepted, the extra fields kept in
``_source`` and listed in ``_ignored`` (:mod:`hopscope.processors.templates`). A value of a type
its field was already mapped to differently is rejected by Elasticsearch and dead-lettered
with Elasticsearch's reason.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Final

from hopscope.processors.records import LogRecord, SpanRecord

# Reason codes: span and log documents (``hopscope.sanitized``).
INVALID_UTF8: Final = "invalid_utf8"
ID_HASHED: Final = "id_hashed"
KIND_UNSPECIFIED: Final = "kind_unspecified"
STATUS_INFERRED: Final = "status_inferred"
VALUE_TRUNCATED: Final = "value_truncated"
NON_FINITE_NUMBER: Final = "non_finite_number"
INVALID_KEY: Final = "invalid_key"
ATTRIBUTES_DROPPED: Final = "attributes_dropped"
EVENTS_DROPPED: Final = "events_dropped"
LINKS_DROPPED: Final = "links_dropped"
INVALID_PARENT_ID: Final = "invalid_parent_id"
INVALID_TRACE_ID: Final = "invalid_trace_id"
TIMESTAMP_OUT_OF_RANGE: Final = "timestamp_out_of_range"
END_BEFORE_START: Final = "end_before_start"
# Reason codes: traces (the summary's ``hopscope.sanitized``).
ORPHAN_SPANS: Final = "orphan_spans"
MISSING_ROOT: Final = "missing_root"
MULTIPLE_ROOTS: Final = "multiple_roots"
PARENT_CYCLE: Final = "parent_cycle"
DUPLICATE_SPAN_IDS: Final = "duplicate_span_ids"
SPAN_LIMIT: Final = "span_limit"

# 2000-01-01T00:00:00Z: nothing hopscope sees was recorded earlier; 0 (unset) and small
# numbers (seconds or milliseconds sent as nanoseconds) land below it.
EARLIEST_NS: Final = 946_684_800_000_000_000
# The latest instant a date_nanos field holds (2262-04-11T23:47:16.854775807Z).
LATEST_NS: Final = 2**63 - 1
DAY_NS: Final = 86_400_000_000_000
BLANK_KEY: Final = "_blank_key"
ELLIPSIS: Final = "…"


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-record limits applied while decoding (see the module table).

    The defaults follow OpenTelemetry's SDK limits (128 attributes, events and links per span)
    and keep every keyword field far below Lucene's 32,766-byte term limit. Lengths count
    characters, as Elasticsearch's ``ignore_above`` does.
    """

    max_value_chars: int = 32_768
    max_name_chars: int = 1_024
    max_key_chars: int = 256
    max_attributes: int = 128
    max_attribute_chars: int = 256 * 1024
    max_events: int = 128
    max_links: int = 128
    max_depth: int = 8
    # How far past the message's Kafka timestamp a span may end (clock skew, batching).
    max_future_ns: int = DAY_NS

    def __post_init__(self) -> None:
        for name, value in dataclasses.asdict(self).items():
            if value < 1:
                raise ValueError(f"Limits.{name} must be at least 1, got {value}")


DEFAULT_LIMITS: Final = Limits()


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters (unchanged when shorter).

    >>> clip("abcdef", 4), clip("abc", 4)
    ('abcd', 'abc')
    """
    return text if len(text) <= limit else text[:limit]


def received_ns(kafka_timestamp_ms: int | None, now_ns: int | None = None) -> int:
    """The time a message counts as received: its Kafka timestamp, when plausible.

    The Kafka timestamp (not the wall clock) makes a replay route a sanitized record to the
    same daily index as the first time, so its deterministic id overwrites it. A missing
    (-1) or implausible timestamp falls back to ``now_ns`` (default: the wall clock).

    >>> received_ns(1_764_150_000_000, now_ns=1_764_150_001_000_000_000)
    1764150000000000000
    >>> received_ns(-1, now_ns=1_764_150_000_000_000_000)
    1764150000000000000
    """
    now = time.time_ns() if now_ns is None else now_ns
    if kafka_timestamp_ms is None or kafka_timestamp_ms < 0:
        return now
    stamp = kafka_timestamp_ms * 1_000_000
    return stamp if EARLIEST_NS <= stamp <= max(now, EARLIEST_NS) + DAY_NS else now


def _window(received: int, limits: Limits) -> tuple[int, int]:
    return EARLIEST_NS, min(LATEST_NS, received + limits.max_future_ns)


def check_span_times(
    span: SpanRecord, received: int, limits: Limits = DEFAULT_LIMITS
) -> SpanRecord:
    """``span`` with implausible times replaced, flagged ``timestamp_out_of_range``.

    A time is plausible from 2000-01-01 to ``limits.max_future_ns`` after ``received`` (the
    message's Kafka timestamp). When only one end is implausible it takes the other's value
    (a zero-length span at the time that is known); when both are, both become ``received``.
    The recorded values are kept in ``original_start_ns``/``original_end_ns``. A span with
    plausible times is returned as is (the same object).

    Examples:
        >>> day = 86_400_000_000_000
        >>> now = 20_000 * day  # 2024-10-04
        >>> span = SpanRecord("t", "s", None, "op", "server", 0, now - 5, "svc")
        >>> fixed = check_span_times(span, now)
        >>> fixed.start_ns == fixed.end_ns == now - 5, fixed.original_start_ns, fixed.flags
        (True, 0, ('timestamp_out_of_range',))
    """
    low, high = _window(received, limits)
    start_ok = low <= span.start_ns <= high
    end_ok = low <= span.end_ns <= high
    if start_ok and end_ok:
        return span
    if start_ok:
        start = end = span.start_ns
    elif end_ok:
        start = end = span.end_ns
    else:
        start = end = received
    # The replacement is a zero-length span: an end before the (garbage) start is moot.
    flags = tuple(flag for flag in span.flags if flag != END_BEFORE_START)
    return dataclasses.replace(
        span,
        start_ns=start,
        end_ns=end,
        flags=with_flag(flags, TIMESTAMP_OUT_OF_RANGE),
        original_start_ns=span.start_ns,
        original_end_ns=span.end_ns,
    )


def check_log_time(
    log: LogRecord, received: int, observed_ns: int = 0, limits: Limits = DEFAULT_LIMITS
) -> LogRecord:
    """``log`` with an implausible time replaced by ``observed_ns`` (when plausible) or
    ``received``, flagged ``timestamp_out_of_range``, the recorded time kept."""
    low, high = _window(received, limits)
    if low <= log.time_ns <= high:
        return log
    replacement = observed_ns if low <= observed_ns <= high else received
    return dataclasses.replace(
        log,
        time_ns=replacement,
        flags=with_flag(log.flags, TIMESTAMP_OUT_OF_RANGE),
        original_time_ns=log.time_ns,
    )


def with_flag(flags: tuple[str, ...], flag: str) -> tuple[str, ...]:
    """``flags`` with ``flag`` added once, kept sorted (so records compare equal).

    >>> with_flag(("value_truncated",), "invalid_utf8")
    ('invalid_utf8', 'value_truncated')
    """
    return flags if flag in flags else tuple(sorted((*flags, flag)))
