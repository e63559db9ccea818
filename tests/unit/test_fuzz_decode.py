"""Property tests of the decoder: on any bytes it raises nothing but :class:`DecodeError`, and
what it returns is within the limits of :mod:`hopscope.processors.sanitize` and indexable."""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hopscope.processors import sanitize as s
from hopscope.processors.decode import _KEPT_KEYS, decode_logs, decode_span_message
from hopscope.processors.documents import log_document, span_document
from hopscope.processors.errors import DecodeError
from hopscope.processors.records import LogRecord, SpanRecord
from tests.otlp_builders import INVALID_MARKER, otlp_logs, otlp_spans

LIMITS = s.Limits(
    max_value_chars=64,
    max_name_chars=16,
    max_key_chars=32,
    max_attributes=6,
    max_attribute_chars=400,
    max_events=3,
    max_links=3,
    max_depth=3,
)
RECEIVED = 1_775_030_460_000_000_000
START = RECEIVED - 60_000_000_000
REASONS = {value for name, value in vars(s).items() if name.isupper() and isinstance(value, str)}
HEX = re.compile(r"[0-9a-f]*")


def encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def check_value(value: Any, depth: int = 0) -> None:
    assert depth <= LIMITS.max_depth + 1
    if isinstance(value, str):
        assert len(value) <= LIMITS.max_value_chars and encodable(value)
    elif isinstance(value, list):
        for item in value:
            check_value(item, depth + 1)
    elif isinstance(value, dict):
        check_attributes(value, depth + 1)
    else:
        assert value is None or isinstance(value, bool | int | float)


def check_attributes(attributes: Any, depth: int = 0) -> None:
    assert len(attributes) <= LIMITS.max_attributes + len(_KEPT_KEYS)
    for key, value in attributes.items():
        assert key and not key.isspace() and encodable(key)
        assert len(key) <= LIMITS.max_key_chars
        check_value(value, depth)


def check_flags(flags: tuple[str, ...]) -> None:
    assert list(flags) == sorted(set(flags)) and set(flags) <= REASONS


def check_span(span: SpanRecord, received: int | None) -> None:
    assert len(span.trace_id) == 32 and HEX.fullmatch(span.trace_id)
    assert len(span.span_id) == 16 and HEX.fullmatch(span.span_id)
    assert span.trace_id != "0" * 32 and span.span_id != "0" * 16
    assert span.parent_id is None or (len(span.parent_id) <= 64 and HEX.fullmatch(span.parent_id))
    assert len(span.name) <= LIMITS.max_name_chars and encodable(span.name)
    assert len(span.service) <= LIMITS.max_name_chars
    check_attributes(span.attributes)
    check_attributes(span.resource)
    assert len(span.events) <= LIMITS.max_events and len(span.links) <= LIMITS.max_links
    for event in span.events:
        assert len(event.name) <= LIMITS.max_name_chars
        check_attributes(event.attributes)
    check_flags(span.flags)
    if received is not None:
        for time_ns in (span.start_ns, span.end_ns):
            assert s.EARLIEST_NS <= time_ns <= received + LIMITS.max_future_ns
    document = span_document(span, "p")
    json.dumps(document.body)  # no surrogate, nothing unserializable
    assert 0 <= document.body["event.duration"] < 2**63


def check_log(log: LogRecord, received: int | None) -> None:
    assert len(log.body) <= LIMITS.max_value_chars and encodable(log.body)
    assert log.trace_id is None or len(log.trace_id) == 32
    assert log.span_id is None or len(log.span_id) == 16
    check_attributes(log.attributes)
    check_flags(log.flags)
    if received is not None:
        assert s.EARLIEST_NS <= log.time_ns <= received + LIMITS.max_future_ns
    json.dumps(log_document(log, "p").body)


def decode_anything(payload: bytes, received: int | None = RECEIVED) -> None:
    """Decode as spans and as logs; only DecodeError may come out; results are checked."""
    try:
        decoded = decode_span_message(payload, received_ns=received, limits=LIMITS)
    except DecodeError:
        pass
    else:
        for span in decoded.spans:
            check_span(span, received)
        for rejected in decoded.rejected:
            assert rejected.reason.startswith("span rejected: ") and rejected.payload
    try:
        logs = decode_logs(payload, received_ns=received, limits=LIMITS)
    except DecodeError:
        pass
    else:
        for log in logs:
            check_log(log, received)


@given(st.binary(max_size=2000))
@settings(max_examples=400, deadline=None)
def test_arbitrary_bytes_raise_only_decode_errors(payload: bytes) -> None:
    decode_anything(payload)


# Valid messages with every feature (and a bad string), to be mutated.
TRACE, ROOT, CHILD = bytes(range(1, 17)), bytes(range(1, 9)), bytes(range(9, 17))
SEEDS = [
    otlp_spans(
        TRACE,
        [
            {
                "span_id": ROOT,
                "start": START,
                "end": START + 9,
                "name": "a-long-span-name-" * 3,
                "attributes": {
                    "": "blank",
                    "k": "v",
                    "n": 1,
                    "f": 0.5,
                    "b": True,
                    "raw": b"\x00\x01",
                    "list": [1, "x", [2]],
                    "map": {"inner": {"deeper": "x" * 100}},
                    "payment.id": "pay",
                    INVALID_MARKER: INVALID_MARKER,
                },
                "events": [("exception", START + 1, {"message": "boom"})] * 4,
                "links": [(TRACE, CHILD)] * 4,
                "status": (2, "failed 4111 1111 1111 1111"),
            },
            {"span_id": CHILD, "parent": ROOT, "start": START + 5, "end": START + 1},
            {"span_id": bytes(8), "parent": b"\x01", "start": 0, "end": 2**64 - 1},
        ],
        resource={"host": INVALID_MARKER},
    ),
    otlp_logs(
        [
            {"time": START, "trace_id": TRACE, "span_id": ROOT, "body": {"k": ["v", 1]}},
            {"time": 0, "observed": 0, "trace_id": b"\x01", "body": INVALID_MARKER},
        ]
    ),
    json.dumps(
        {
            "resourceSpans": [
                {
                    "scopeSpans": [
                        {
                            "spans": [
                                {
                                    "traceId": TRACE.hex(),
                                    "spanId": ROOT.hex(),
                                    "name": "j\udc80",
                                    "startTimeUnixNano": str(START),
                                    "endTimeUnixNano": str(START + 1),
                                    "attributes": [
                                        {"key": "k", "value": {"stringValue": "v" * 200}}
                                    ],
                                }
                            ]
                        }
                    ]
                }
            ]
        }
    ).encode(),
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A seed with a few random edits: flips, insertions, deletions, a cut."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        edit = draw(st.sampled_from(["flip", "insert", "delete", "cut", "byte"]))
        if edit == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif edit == "byte":
            data[at] = draw(st.integers(0, 255))
        elif edit == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif edit == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        else:
            del data[at:]
    return bytes(data)


@given(mutated())
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_messages_raise_only_decode_errors_and_decode_within_limits(
    payload: bytes,
) -> None:
    decode_anything(payload)
    decode_anything(payload, received=None)


def test_the_seeds_decode_with_their_flags() -> None:
    decoded = decode_span_message(SEEDS[0], received_ns=RECEIVED, limits=LIMITS)
    assert len(decoded.spans) == 2 and len(decoded.rejected) == 1
    first, second = decoded.spans
    assert set(first.flags) >= {
        s.INVALID_UTF8,
        s.VALUE_TRUNCATED,
        s.INVALID_KEY,
        s.ATTRIBUTES_DROPPED,
        s.EVENTS_DROPPED,
        s.LINKS_DROPPED,
    }
    assert first.status_message == "failed 4111 11** **** 1111"
    assert set(second.flags) == {s.INVALID_UTF8, s.END_BEFORE_START}
    logs = decode_logs(SEEDS[1], received_ns=RECEIVED, limits=LIMITS)
    assert logs[1].flags == (s.INVALID_TRACE_ID, s.INVALID_UTF8, s.TIMESTAMP_OUT_OF_RANGE)


# Text with unpaired surrogates too: json.dumps writes them as \ud800 escapes, valid JSON
# that is no valid UTF-8 once parsed.
texts = st.text(st.characters(exclude_categories=()), max_size=10)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=30,
)
json_spans = st.fixed_dictionaries(
    {},
    optional={
        "traceId": st.one_of(st.sampled_from([TRACE.hex(), "zz", "", "00" * 16]), json_values),
        "spanId": st.one_of(st.sampled_from([ROOT.hex(), "0" * 16, "abc"]), json_values),
        "parentSpanId": st.one_of(st.sampled_from([CHILD.hex(), "01"]), json_values),
        "name": json_values,
        "kind": st.one_of(st.integers(-2, 9), json_values),
        "startTimeUnixNano": st.one_of(
            st.sampled_from([str(START), "0", "-1", "1e30"]), json_values
        ),
        "endTimeUnixNano": st.one_of(
            st.sampled_from([str(START), "18446744073709551615"]), json_values
        ),
        "attributes": st.one_of(
            st.lists(st.fixed_dictionaries({"key": json_values, "value": json_values})),
            json_values,
        ),
    },
)


@given(
    st.one_of(
        st.lists(
            # Unknown keys too: a key that is no valid UTF-8 once failed the protobuf runtime.
            st.tuples(json_spans, st.dictionaries(texts, json_values, max_size=2)).map(
                lambda pair: {**pair[1], **pair[0]}
            ),
            max_size=4,
        ).map(lambda spans: {"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}),
        st.dictionaries(st.sampled_from(["resourceSpans", "resource_spans", "x"]), json_values),
    )
)
@settings(max_examples=300, deadline=None)
def test_arbitrary_otlp_json_raises_only_decode_errors(document: Any) -> None:
    try:
        payload = json.dumps(document).encode()
    except (ValueError, UnicodeEncodeError):
        assume(False)
    decode_anything(payload)
