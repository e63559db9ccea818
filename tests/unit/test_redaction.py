"""PAN masking: every Luhn-valid 13-19 digit number, in every string field, before export."""

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from hopscope.ingest.redaction import (
    luhn_valid,
    mask_pans,
    may_contain_pan,
    redact_export_request,
)


def luhn_complete(prefix: str) -> str:
    """``prefix`` plus the check digit that makes it Luhn-valid."""
    for check in "0123456789":
        if luhn_valid(prefix + check):
            return prefix + check
    raise AssertionError("unreachable")


@st.composite
def pans(draw: st.DrawFn) -> str:
    length = draw(st.integers(13, 19))
    body = "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=length - 1,
                                 max_size=length - 1)))  # fmt: skip
    pan = luhn_complete(body)
    separator = draw(st.sampled_from(["", " ", "-"]))
    if separator:
        pan = separator.join(pan[i : i + 4] for i in range(0, len(pan), 4))
    return pan


def digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


@settings(max_examples=300)
@given(pan=pans(), before=st.text(alphabet="abc XYZ:=", max_size=20),
       after=st.text(alphabet="abc XYZ:=", max_size=20))  # fmt: skip
def test_every_pan_is_masked_first6_last4(pan: str, before: str, after: str) -> None:
    masked = mask_pans(f"{before}{pan}{after}")
    assert digits(pan) not in digits(masked) or len(digits(pan)) <= 10
    inner = masked[len(before) : len(before) + len(pan)]
    assert len(inner) == len(pan)  # separators and length kept
    shown = digits(inner)
    assert shown == digits(pan)[:6] + digits(pan)[-4:]
    assert inner.count("*") == len(digits(pan)) - 10
    assert masked.startswith(before) and masked.endswith(after)


@given(st.text(alphabet="abcdef -:", max_size=200))
def test_text_without_digits_is_untouched(text: str) -> None:
    assert mask_pans(text) == text
    assert not may_contain_pan(text.encode())


def test_non_luhn_and_short_numbers_are_kept() -> None:
    assert mask_pans("order 4111111111111112 ref 123456789012") == (
        "order 4111111111111112 ref 123456789012"
    )
    # A Luhn-valid run glued inside a longer number is not a PAN.
    assert mask_pans("x 99411111111111111199 y") == "x 99411111111111111199 y"


def test_masks_known_test_cards() -> None:
    assert mask_pans("amex 378282246310005") == "amex 378282*****0005"
    assert mask_pans("mc 5500-0000-0000-0004.") == "mc 5500-00**-****-0004."


def _kv(key: str, value: AnyValue) -> KeyValue:
    return KeyValue(key=key, value=value)


def test_trace_request_is_masked_everywhere() -> None:
    pan = "4111 1111 1111 1111"
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(_kv("service.name", AnyValue(string_value="gw")))
    span = resource_spans.scope_spans.add().spans.add()
    span.name = f"charge {pan}"
    span.attributes.append(_kv("card", AnyValue(string_value=pan)))
    nested = AnyValue()
    nested.array_value.values.add().string_value = f"[{pan}]"
    nested.kvlist_value.values.add(key="inner").value.string_value = pan
    span.attributes.append(_kv("nested", nested))
    span.events.add(name="exception").attributes.append(
        _kv("exception.message", AnyValue(string_value=f"declined {pan}"))
    )
    span.status.message = f"card {pan} refused"
    payload = request.SerializeToString()
    assert may_contain_pan(payload)

    changed = redact_export_request(request)
    assert changed == 5
    assert b"1111 1111 1111" not in request.SerializeToString()
    assert span.attributes[0].value.string_value == "4111 11** **** 1111"


def test_log_request_body_and_attributes_are_masked() -> None:
    request = ExportLogsServiceRequest()
    record = request.resource_logs.add().scope_logs.add().log_records.add()
    record.body.string_value = "card 5500000000000004 declined"
    record.attributes.append(_kv("raw", AnyValue(string_value="pan=5500000000000004")))
    record.attributes.append(_kv("amount", AnyValue(int_value=4111111111111111)))
    assert redact_export_request(request) == 2
    assert record.body.string_value == "card 550000******0004 declined"
    # Numbers typed as numbers are values, not text: left alone.
    assert record.attributes[1].value.int_value == 4111111111111111


def test_fast_path_scans_bytes_only() -> None:
    rng = random.Random(1)
    payload = bytes(rng.choice(b"abcdefgh{}:\n\x00\x12") for _ in range(10_000))
    assert not may_contain_pan(payload)
