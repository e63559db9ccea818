"""Card-number masking in every shape a value can take: text in any of the written formats,
numbers, bytes, and every OTLP AnyValue the processors decode (span names, status messages,
events, links, resources, log bodies and attributes)."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from hopscope.ingest.redaction import (
    luhn_valid,
    mask_pan_bytes,
    mask_pan_number,
    mask_pans,
    may_contain_pan,
    redact_export_request,
)
from hopscope.processors.decode import decode_logs, decode_span_message
from hopscope.processors.documents import log_document, span_document
from tests.otlp_builders import any_value, key_values
from tests.pan_support import expected_mask

VISA16 = "4111111111111111"
VISA13 = "4222222222222"
UNIONPAY19 = "6212345678901234569"
SEPARATORS = {"plain": "", "spaces": " ", "dashes": "-", "plus": "+", "percent": "%20"}
# Characters that may stand right before or after a card number in text. Digits glue onto it
# (then it is part of a longer number, not a card number); after "%" or "\u00" a hex letter
# completes an escape that takes the card's first digits ("%a4111..." is "¤111..."), so hex
# letters are no delimiters either.
DELIMITERS = " =:\"',;/?&()<>[]{}\n\txyzXYZ*#"


def luhn_complete(partial: str) -> str:
    """``partial`` plus the check digit that makes it Luhn-valid."""
    return next(partial + d for d in "0123456789" if luhn_valid(partial + d))


def formatted(pan: str, style: str) -> str:
    return SEPARATORS[style].join(pan[i : i + 4] for i in range(0, len(pan), 4))


def test_known_cards_in_every_format() -> None:
    for pan in (VISA16, VISA13, UNIONPAY19):
        assert luhn_valid(pan)
        for style in SEPARATORS:
            text = formatted(pan, style)
            masked = mask_pans(f"card={text};")
            assert masked == f"card={expected_mask(text)};", (style, masked)
            assert pan not in masked.replace(SEPARATORS[style] or "\0", "")


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        # A CVV or a year after the number does not hide the number.
        ("4111111111111111 123", "411111******1111 123"),
        ("4111 1111 1111 1111 12/27", "4111 11** **** 1111 12/27"),
        ("cvv 123 4111-1111-1111-1111", "cvv 123 4111-11**-****-1111"),
        # Escapes right before the number: their hex digits are not the card's.
        ("q=card%204111111111111111", "q=card%20411111******1111"),
        ("pan\\u003d4111111111111111", "pan\\u003d411111******1111"),
        ("note\\u00204111111111111111", "note\\u0020411111******1111"),
        ("x%A04111111111111111", "x%A0411111******1111"),
        ("card=4111%2D1111%2D1111%2D1111", "card=4111%2D11**%2D****%2D1111"),
        # Key-value pairs and JSON.
        ("pan=4111111111111111;exp=12/27", "pan=411111******1111;exp=12/27"),
        ('{"pan":"4111111111111111"}', '{"pan":"411111******1111"}'),
    ],
)
def test_card_numbers_next_to_other_things(text: str, masked: str) -> None:
    assert mask_pans(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "order 4111111111111112 shipped",  # 16 digits, not Luhn-valid
        "id 99411111111111111199 x",  # a valid card glued inside a longer number
        "ts 1764150000123456789",  # 19 digits, not Luhn-valid
        "ref 12345",
        "",
    ],
)
def test_other_numbers_are_kept(text: str) -> None:
    assert mask_pans(text) == text


@st.composite
def card_numbers(draw: st.DrawFn) -> tuple[str, str]:
    """(digits, text): a Luhn-valid 13-19 digit number in one of the written formats."""
    length = draw(st.integers(13, 19))
    first = draw(st.sampled_from("123456789"))
    rest = draw(st.text(alphabet="0123456789", min_size=length - 2, max_size=length - 2))
    pan = luhn_complete(first + rest)
    return pan, formatted(pan, draw(st.sampled_from(sorted(SEPARATORS))))


@settings(max_examples=400)
@given(
    card=card_numbers(),
    before=st.text(max_size=30),
    after=st.text(max_size=30),
    left=st.sampled_from(DELIMITERS),
    right=st.sampled_from(DELIMITERS),
)
@example(card=(VISA16, "4111%201111%201111%201111"), before="a%", after="", left="?", right="&")
def test_no_card_number_survives_in_any_text(
    card: tuple[str, str], before: str, after: str, left: str, right: str
) -> None:
    pan, text = card
    masked = mask_pans(f"{before}{left}{text}{right}{after}")
    assert text not in masked
    assert pan not in masked
    # Whatever the surroundings, the separators-free digits are gone too.
    assert pan not in re.sub(r"%20|%2[Dd]|[ +-]", "", masked)


@settings(max_examples=300)
@given(
    card=card_numbers(),
    before=st.text(alphabet="abc XYZ:=/?&", max_size=20),
    after=st.text(alphabet="abc XYZ:=/?&", max_size=20),
)
def test_masking_keeps_first_six_and_last_four(
    card: tuple[str, str], before: str, after: str
) -> None:
    _, text = card
    left, right = f"{before}=", f";{after}"
    assert mask_pans(f"{left}{text}{right}") == f"{left}{expected_mask(text)}{right}"


@st.composite
def non_luhn_runs(draw: st.DrawFn) -> str:
    length = draw(st.integers(13, 19))
    digits = draw(st.text(alphabet="0123456789", min_size=length, max_size=length))
    if luhn_valid(digits):  # change the check digit: off by one is never valid
        digits = digits[:-1] + str((int(digits[-1]) + 1) % 10)
    return digits


@settings(max_examples=300)
@given(
    run=non_luhn_runs(),
    before=st.text(alphabet="abc XYZ:=/?&", max_size=20),
    after=st.text(alphabet="abc XYZ:=/?&", max_size=20),
)
def test_digit_runs_failing_luhn_are_left_alone(run: str, before: str, after: str) -> None:
    text = f"{before}={run};{after}"
    assert mask_pans(text) == text


# -- numbers and bytes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        (int(VISA16), "411111******1111"),
        (int(VISA13), "422222***2222"),
        (int(UNIONPAY19), "621234*********4569"),
        (-int(VISA16), "-411111******1111"),
        (float(VISA16), "411111******1111"),  # a JSON number decoded as float64
        (float(VISA13), "422222***2222"),
        (4111111111111112, 4111111111111112),  # not Luhn-valid
        (1_764_150_000_120, 1_764_150_000_120),  # a millisecond timestamp, not Luhn-valid
        (123456789012, 123456789012),  # 12 digits
        (41111111111111111110, 41111111111111111110),  # 20 digits
        (4111111111111111.5, 4111111111111111.5),
        (float(UNIONPAY19), float(UNIONPAY19)),  # above 2**53: not the digits written
        (True, True),
        (0, 0),
    ],
)
def test_numbers_that_are_card_numbers_become_masked_text(value: Any, masked: Any) -> None:
    result = mask_pan_number(value)
    assert result == masked and type(result) is type(masked)


def test_bytes_are_masked_in_place() -> None:
    raw = "é pan=4111 1111 1111 1111 ✓".encode() + b"\xff\x00"
    masked = mask_pan_bytes(raw)
    assert masked == "é pan=4111 11** **** 1111 ✓".encode() + b"\xff\x00"
    assert mask_pan_bytes(b"\x00\x01 no card") == b"\x00\x01 no card"


def test_the_sdk_fast_path_sees_url_encoded_card_numbers() -> None:
    for style in SEPARATORS:
        assert may_contain_pan(f"q={formatted(VISA16, style)}".encode())


def test_the_sdk_masks_bytes_values_too() -> None:
    request = ExportLogsServiceRequest()
    record = request.resource_logs.add().scope_logs.add().log_records.add()
    record.body.bytes_value = b"pan=4111+1111+1111+1111"
    assert may_contain_pan(request.SerializeToString())
    assert redact_export_request(request) == 1
    assert record.body.bytes_value == b"pan=4111+11**+****+1111"


# -- the processors' decoding: every AnyValue shape, every place ---------------------------


# One value of each shape, each carrying a card number (or being one).
SHAPES: dict[str, Any] = {
    "string": f"card {formatted(VISA16, 'spaces')}",
    "int": int(VISA16),
    "double": float(VISA13),
    "bytes": f"pan={VISA16}".encode(),
    "array": ["x", formatted(VISA13, "dashes"), [int(UNIONPAY19)]],
    "kvlist": {"pan": VISA16, "inner": {"list": [formatted(VISA16, "plus")], "n": int(VISA13)}},
}
CARD_TEXTS = [VISA16, VISA13, UNIONPAY19, *(formatted(p, s) for p in (VISA16, VISA13,
              UNIONPAY19) for s in SEPARATORS)]  # fmt: skip


def leaks(document: dict[str, Any]) -> list[str]:
    """Card numbers readable in a document: in its JSON, or in any base64 value decoded."""
    texts = [json.dumps(document, ensure_ascii=False)]
    for value in re.findall(r'"([A-Za-z0-9+/]{16,}={0,2})"', texts[0]):
        try:
            texts.append(base64.b64decode(value, validate=True).decode("latin-1"))
        except ValueError:
            continue
    return [card for card in CARD_TEXTS for text in texts if card in text]


def test_every_place_of_a_span_is_masked() -> None:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(
        key_values({"service.name": "gw", **{f"r.{k}": v for k, v in SHAPES.items()}})
    )
    span = resource_spans.scope_spans.add().spans.add(
        trace_id=bytes(range(1, 17)), span_id=bytes(range(1, 9)), name=f"GET /cards/{VISA16}"
    )
    span.attributes.extend(key_values(SHAPES))
    span.status.code, span.status.message = 2, f"duplicate key (pan)=({VISA13})"
    event = span.events.add(name=f"card {formatted(VISA16, 'dashes')} tokenized")
    event.attributes.extend(key_values({"exception.message": f"bad {VISA16}", **SHAPES}))
    link = span.links.add(trace_id=bytes(range(1, 17)), span_id=bytes(range(2, 10)))
    link.attributes.extend(key_values(SHAPES))

    decoded = decode_span_message(request.SerializeToString())
    assert not decoded.rejected
    record = decoded.spans[0]
    assert record.name == "GET /cards/411111******1111"
    assert record.status_message == "duplicate key (pan)=(422222***2222)"
    assert record.events[0].name == "card 4111-11**-****-1111 tokenized"
    for attributes in (record.attributes, record.events[0].attributes, record.links[0].attributes):
        assert attributes["int"] == "411111******1111"
        assert attributes["double"] == "422222***2222"
        assert base64.b64decode(attributes["bytes"]) == b"pan=411111******1111"
        assert attributes["array"] == ["x", "4222-22**-*222-2", ["621234*********4569"]]
        assert attributes["kvlist"] == {
            "pan": "411111******1111",
            "inner": {"list": ["4111+11**+****+1111"], "n": "422222***2222"},
        }
    assert record.resource["r.int"] == "411111******1111"
    # Nothing readable anywhere: the record itself and the document built from it.
    assert not leaks({"record": repr(record)})
    assert not leaks(span_document(record, "p").body)


@pytest.mark.parametrize("shape", [*SHAPES, "bool"])
def test_every_log_body_shape_is_masked(shape: str) -> None:
    body = SHAPES.get(shape, True)
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.extend(key_values({"service.name": "vault", **SHAPES}))
    record = resource_logs.scope_logs.add().log_records.add(
        time_unix_nano=1, event_name=f"card {VISA16} seen"
    )
    record.body.CopyFrom(any_value(body))
    record.attributes.extend(key_values(SHAPES))

    (log,) = decode_logs(request.SerializeToString())
    assert log.event_name == "card 411111******1111 seen"
    assert log.attributes["int"] == "411111******1111"
    expected_body = {
        "string": "card 4111 11** **** 1111",
        "int": "411111******1111",
        "double": "422222***2222",
        "bool": "true",
    }
    if shape in expected_body:
        assert log.body == expected_body[shape]
    elif shape == "bytes":
        assert base64.b64decode(log.body) == b"pan=411111******1111"
    else:  # arrays and maps become JSON text
        assert "******" in log.body
    assert not leaks(log_document(log, "p").body)


def test_numbers_that_are_no_card_numbers_keep_their_type() -> None:
    request = ExportLogsServiceRequest()
    record = request.resource_logs.add().scope_logs.add().log_records.add(time_unix_nano=1)
    record.attributes.extend(
        key_values({"ts": 1_764_150_000_120, "n": 4111111111111112, "x": 2.5, "port": 443})
    )
    (log,) = decode_logs(request.SerializeToString())
    assert log.attributes == {"ts": 1_764_150_000_120, "n": 4111111111111112, "x": 2.5,
                              "port": 443}  # fmt: skip
