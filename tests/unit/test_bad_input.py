"""Bad input, case by case, on the pure parts: each gets the outcome the table in
:mod:`hopscope.processors.sanitize` (and docs/BAD_INPUT.md) defines."""

from __future__ import annotations

import dataclasses
import doctest
import importlib
import json
import random

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from hopscope.processors import sanitize as s
from hopscope.processors.assembly import TraceAssembler, footprint, memory_bounds
from hopscope.processors.decode import decode_logs, decode_span_message, decode_spans
from hopscope.processors.derive import derive_all
from hopscope.processors.documents import derived_documents, log_document, span_document
from hopscope.processors.errors import DecodeError
from hopscope.processors.records import SpanRecord
from hopscope.processors.templates import index_template
from tests.otlp_builders import INVALID_MARKER, otlp_logs, otlp_spans

rng = random.Random(7)
TRACE, OTHER = rng.randbytes(16), rng.randbytes(16)
ROOT, CHILD, THIRD = rng.randbytes(8), rng.randbytes(8), rng.randbytes(8)
MS = 1_000_000
START = 1_775_030_400_000_000_000  # 2026-04-01T08:00:00Z
RECEIVED = START + 60_000 * MS  # the message's Kafka timestamp, a minute later
DAY = 86_400_000 * MS
PAN = "4111 1111 1111 1111"


def spec(span_id: bytes, parent: bytes | None = None, **extra: object) -> dict[str, object]:
    return {"span_id": span_id, "parent": parent, "start": START, "end": START + 5 * MS, **extra}


def decode_one(**extra: object) -> SpanRecord:
    (span,) = decode_spans(otlp_spans(TRACE, [spec(ROOT, **extra)]), received_ns=RECEIVED)
    return span


# -- messages that are no OTLP: the dead-letter topic -------------------------------------


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "empty traces message (0 bytes)"),
        (bytes(rng.randbytes(300)), "invalid OTLP protobuf traces"),
        (otlp_spans(TRACE, [spec(ROOT)])[:-7], "invalid OTLP protobuf traces"),
        (b"{not json", "invalid OTLP/JSON traces"),
        (b'{"level": "info", "msg": "approved"}', "JSON without OTLP traces content"),
        (b'{"resourceSpans": {"not": "a list"}}', "invalid OTLP/JSON traces"),
        # Deeper than the JSON parser recurses: a RecursionError must not escape.
        (b'{"resourceSpans": ' + b"[" * 100_000, "invalid OTLP/JSON traces"),
        (b'{"resourceSpans": [' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"]}", "invalid OTLP"),
    ],
    ids=[
        "empty",
        "random",
        "truncated",
        "not-json",
        "json-log-line",
        "json-wrong-shape",
        "json-deep-array",
        "json-deep-object",
    ],
)
def test_what_is_no_otlp_is_a_decode_error_with_the_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as raised:
        decode_span_message(payload)
    assert str(raised.value).startswith(reason)


def test_an_empty_batch_is_a_decode_error() -> None:
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add()  # resource and scope, no span
    with pytest.raises(DecodeError, match="empty traces message: no spans in 1 resource spans"):
        decode_span_message(request.SerializeToString())
    with pytest.raises(DecodeError, match="empty traces message"):
        decode_span_message(b'{"resourceSpans": []}')
    with pytest.raises(DecodeError, match="empty logs message"):
        decode_logs(b'{"resourceLogs": [{"scopeLogs": [{}]}]}')


def test_otlp_json_on_the_spans_topic_is_decoded() -> None:
    document = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": TRACE.hex(),
                                "spanId": ROOT.hex(),
                                "name": "pay",
                                "startTimeUnixNano": str(START),
                                "endTimeUnixNano": str(START + 1),
                            }
                        ]
                    }
                ]
            }
        ]
    }
    (span,) = decode_spans(json.dumps(document).encode(), received_ns=RECEIVED)
    assert (span.trace_id, span.name, span.flags) == (TRACE.hex(), "pay", (s.KIND_UNSPECIFIED,))


# -- one bad span: rejected alone ----------------------------------------------------------


def test_a_span_with_an_unusable_id_is_rejected_alone() -> None:
    payload = otlp_spans(
        TRACE,
        [
            spec(ROOT),
            spec(CHILD, ROOT, trace_id=b"\x01\x02"),
            spec(bytes(8), ROOT),
            spec(THIRD, ROOT, trace_id=bytes(16)),
        ],
        resource={"deployment.environment.name": "prod"},
    )
    decoded = decode_span_message(payload, received_ns=RECEIVED)
    assert [span.span_id for span in decoded.spans] == [ROOT.hex()]
    assert [r.reason for r in decoded.rejected] == [
        "span rejected: trace_id must be 16 bytes, got 2",
        "span rejected: span_id is all zeros (invalid)",
        "span rejected: trace_id is all zeros (invalid)",
    ]
    # Each dead letter is a valid one-span request with its resource and scope.
    letter = ExportTraceServiceRequest.FromString(decoded.rejected[0].payload)
    (resource_spans,) = letter.resource_spans
    assert {kv.key for kv in resource_spans.resource.attributes} >= {"deployment.environment.name"}
    (scope_spans,) = resource_spans.scope_spans
    assert scope_spans.scope.name == "tests" and [x.span_id for x in scope_spans.spans] == [CHILD]
    with pytest.raises(DecodeError, match="trace_id must be 16 bytes, got 2"):
        decode_spans(payload)  # the strict form refuses the message


def test_parent_ids_of_the_wrong_length_make_a_flagged_orphan_zeros_a_root() -> None:
    assert decode_one(parent=b"\x01\x02\x03").parent_id == "010203"
    assert decode_one(parent=b"\x01\x02\x03").flags == (s.INVALID_PARENT_ID,)
    assert len(decode_one(parent=b"\x07" * 4096).parent_id or "") == 64
    zero = decode_one(parent=bytes(8))
    assert zero.parent_id is None and zero.flags == ()


# -- strings: UTF-8, lengths, keys ----------------------------------------------------------


def test_invalid_utf8_is_replaced_and_flags_only_the_spans_holding_it() -> None:
    payload = otlp_spans(
        TRACE,
        [
            spec(ROOT, name=f"pay {INVALID_MARKER}"),
            spec(CHILD, ROOT, attributes={"note": INVALID_MARKER, INVALID_MARKER: 1}),
            spec(THIRD, ROOT, name="clean"),
        ],
    )
    with pytest.raises(Exception, match="UTF-8"):  # what the protobuf runtime does alone
        ExportTraceServiceRequest.FromString(payload)
    root, child, clean = decode_spans(payload, received_ns=RECEIVED)
    assert root.name.startswith("pay <<\ufffd") and root.flags == (s.INVALID_UTF8,)
    assert "\ufffd" in child.attributes["note"] and child.flags == (s.INVALID_UTF8,)
    assert any("\ufffd" in key for key in child.attributes)
    assert clean.flags == () and clean.name == "clean"
    # A bad resource attribute flags every span of the resource.
    flagged = decode_spans(
        otlp_spans(TRACE, [spec(ROOT), spec(CHILD, ROOT)], resource={"host": INVALID_MARKER}),
        received_ns=RECEIVED,
    )
    assert [span.flags for span in flagged] == [(s.INVALID_UTF8,)] * 2


def test_invalid_utf8_and_unpaired_surrogates_in_otlp_json_flag_the_message() -> None:
    document = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {"traceId": TRACE.hex(), "spanId": ROOT.hex(), "name": "a\udc80b"},
                            {"traceId": TRACE.hex(), "spanId": CHILD.hex(), "name": "ok"},
                        ]
                    }
                ]
            }
        ]
    }
    escaped = json.dumps(document).encode()  # "\udc80" as an escape: valid JSON, no UTF-8
    raw = escaped.replace(b"\\udc80", b"\xff")  # a raw byte that is no UTF-8 at all
    for payload in (escaped, raw):
        spans = decode_spans(payload)
        assert spans[0].name == "a\ufffdb"
        assert [span.flags for span in spans] == [(s.INVALID_UTF8, s.KIND_UNSPECIFIED)] * 2
    # In a key, the protobuf runtime's C code failed with a SystemError (found by atheris).
    document["resourceSpans"][0]["scopeSpans"][0]["spans"][1]["x\udc80"] = 1
    spans = decode_spans(json.dumps(document).encode())
    assert [span.flags for span in spans] == [(s.INVALID_UTF8, s.KIND_UNSPECIFIED)] * 2


def test_a_1mib_value_is_cut_after_masking_card_numbers() -> None:
    limit = s.DEFAULT_LIMITS.max_value_chars
    # A card number straddling the cut: masked as a whole first, so its head cannot leak.
    value = "x" * (limit - 8) + PAN + "y" * (1024 * 1024)
    span = decode_one(attributes={"blob": value, "small": "ok"})
    assert len(span.attributes["blob"]) == limit
    assert span.attributes["blob"].endswith("4111 11*")
    assert span.attributes["small"] == "ok" and span.flags == (s.VALUE_TRUNCATED,)
    as_bytes = decode_one(attributes={"raw": b"\x00" * (1024 * 1024)})
    assert len(as_bytes.attributes["raw"]) <= limit and as_bytes.flags == (s.VALUE_TRUNCATED,)


def test_names_keys_and_status_messages_are_bounded() -> None:
    span = decode_one(name="n" * 5000, attributes={"k" * 1000: 1, "": 2}, status=(2, "m" * 100_000))
    assert len(span.name) == s.DEFAULT_LIMITS.max_name_chars
    assert set(span.attributes) == {"k" * s.DEFAULT_LIMITS.max_key_chars, s.BLANK_KEY}
    assert len(span.status_message or "") == s.DEFAULT_LIMITS.max_value_chars
    assert span.flags == (s.INVALID_KEY, s.VALUE_TRUNCATED)
    assert decode_one(attributes={" \t": 1}).attributes == {s.BLANK_KEY: 1}
    (log,) = decode_logs(otlp_logs([{"time": START, "body": "b" * 100_000}]))
    assert len(log.body) == s.DEFAULT_LIMITS.max_value_chars and log.flags == (s.VALUE_TRUNCATED,)


def test_10000_attribute_keys_keep_the_first_128_and_the_ones_derivations_read() -> None:
    attributes: dict[str, object] = {f"key.{i:05d}": i for i in range(10_000)}
    attributes["payment.id"] = "pay-1"  # last on the wire, read by the summary
    span = decode_one(attributes=attributes)
    assert len(span.attributes) == s.DEFAULT_LIMITS.max_attributes + 1
    assert span.attributes["payment.id"] == "pay-1" and "key.00127" in span.attributes
    assert "key.00128" not in span.attributes and span.flags == (s.ATTRIBUTES_DROPPED,)


def test_the_text_budget_of_a_span_is_shared_by_its_attributes_and_events() -> None:
    big = "v" * 30_000
    span = decode_one(
        attributes={f"a{i}": big for i in range(20)},
        events=[("exception", START, {"message": big}) for _ in range(200)],
        links=[(OTHER, CHILD)] * 300,
    )
    text = sum(len(v) for v in span.attributes.values())
    text += sum(len(v) for e in span.events for v in e.attributes.values())
    assert text <= s.DEFAULT_LIMITS.max_attribute_chars + s.DEFAULT_LIMITS.max_value_chars
    assert len(span.events) == 128 and len(span.links) == 128
    assert set(span.flags) == {
        s.ATTRIBUTES_DROPPED, s.EVENTS_DROPPED, s.LINKS_DROPPED, s.STATUS_INFERRED,
    }  # fmt: skip
    assert footprint(span) < 2 * s.DEFAULT_LIMITS.max_attribute_chars


def test_deep_nesting_is_cut() -> None:
    value: object = "leaf"
    for _ in range(30):
        value = {"n": value}
    span = decode_one(attributes={"deep": value, "list": [[[[[[[[[["x"]]]]]]]]]]})
    node = span.attributes["deep"]
    depth = 0
    while isinstance(node, dict):
        node, depth = node["n"], depth + 1
    assert node == s.ELLIPSIS and depth == s.DEFAULT_LIMITS.max_depth
    assert span.flags == (s.VALUE_TRUNCATED,)


def test_non_finite_doubles_become_their_text_and_the_document_is_json() -> None:
    span = decode_one(attributes={"ratio": float("nan"), "up": float("inf"), "x": 2.5,
                                  "down": [float("-inf")]})  # fmt: skip
    assert span.attributes["ratio"] == "NaN" and span.attributes["up"] == "Infinity"
    assert span.attributes["down"] == ["-Infinity"] and span.attributes["x"] == 2.5
    assert span.flags == (s.NON_FINITE_NUMBER,)
    # Strict JSON (Elasticsearch refuses NaN): the document serializes without it.
    body = span_document(span, "p").body
    json.loads(json.dumps(body, allow_nan=False))


# -- times ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (0, START, (START, START)),  # start unset: a zero-length span at the end
        (START, 0, (START, START)),  # end unset (an unfinished span)
        (0, 0, (RECEIVED, RECEIVED)),
        (START, 2**64 - 1, (START, START)),  # past date_nanos' 2262
        (START + 2 * DAY, START + 2 * DAY + 5, (RECEIVED, RECEIVED)),  # two days ahead
        (946_684_799 * 10**9, START, (START, START)),  # 1999-12-31
        (1_775_030_400, 1_775_030_401, (RECEIVED, RECEIVED)),  # seconds sent as nanoseconds
    ],
)
def test_implausible_times_are_replaced_and_the_recorded_ones_kept(
    start: int, end: int, expected: tuple[int, int]
) -> None:
    span = decode_one(start=start, end=end)
    assert (span.start_ns, span.end_ns) == expected
    assert (span.original_start_ns, span.original_end_ns) == (start, end)
    assert span.flags == (s.TIMESTAMP_OUT_OF_RANGE,)
    doc = span_document(span, "p")
    assert doc.index == f"p-spans-{'2026.04.01'}"
    assert doc.body["hopscope.original.start_ns"] == str(start)
    assert doc.body["hopscope.sanitized"] == [s.TIMESTAMP_OUT_OF_RANGE]


def test_plausible_times_and_a_day_of_skew_are_kept() -> None:
    for start, end in ((START, START + 1), (RECEIVED + DAY - 10, RECEIVED + DAY)):
        span = decode_one(start=start, end=end)
        assert (span.start_ns, span.end_ns, span.flags) == (start, end, ())
        assert span.original_start_ns is None
    assert decode_spans(otlp_spans(TRACE, [spec(ROOT, start=0, end=5)]))[0].start_ns == 0


def test_end_before_start_is_kept_flagged_and_reads_as_zero_duration() -> None:
    span = decode_one(start=START + 10 * MS, end=START)
    assert (span.start_ns, span.end_ns, span.flags) == (
        START + 10 * MS,
        START,
        ("end_before_start",),
    )
    assert span_document(span, "p").body["event.duration"] == 0


def test_received_time_is_the_kafka_timestamp_when_plausible() -> None:
    assert s.received_ns(RECEIVED // MS, now_ns=START) == RECEIVED
    assert s.received_ns(None, now_ns=START) == START
    assert s.received_ns(5, now_ns=START) == START  # 1970: the producer's clock is wrong
    assert s.received_ns((START + 3 * DAY) // MS, now_ns=START) == START


def test_log_times_and_ids() -> None:
    payload = otlp_logs(
        [
            {"time": START, "trace_id": TRACE, "span_id": ROOT},
            {"time": 0, "observed": START + 7},
            {"time": 0, "observed": 0},
            {"time": START, "trace_id": b"\x01" * 5, "span_id": b"\x02"},
            {"time": START, "trace_id": bytes(16), "span_id": bytes(8)},
        ]
    )
    good, observed, unset, bad_ids, zeros = decode_logs(payload, received_ns=RECEIVED)
    assert (good.trace_id, good.span_id, good.flags) == (TRACE.hex(), ROOT.hex(), ())
    assert (observed.time_ns, observed.flags) == (START + 7, ())
    assert (unset.time_ns, unset.original_time_ns) == (RECEIVED, 0)
    assert unset.flags == (s.TIMESTAMP_OUT_OF_RANGE,)
    assert log_document(unset, "p").index == "p-logs-2026.04.01"
    assert (bad_ids.trace_id, bad_ids.span_id, bad_ids.flags) == (None, None, (s.INVALID_TRACE_ID,))
    assert (zeros.trace_id, zeros.span_id, zeros.flags) == (None, None, ())


# -- traces: unknown parents, cycles, duplicates, size ---------------------------------------


def record(span_id: str, parent: str | None, start: int = 0, end: int = 100) -> SpanRecord:
    return SpanRecord("t" * 32, span_id, parent, "op", "server", START + start, START + end, "svc")


@pytest.mark.parametrize(
    ("spans", "anomalies"),
    [
        ([record("r", None), record("a", "r", 10, 20)], ()),
        ([record("r", None), record("a", "gone", 10, 20)], (s.ORPHAN_SPANS,)),
        ([record("a", "gone", 10, 20)], (s.MISSING_ROOT, s.ORPHAN_SPANS)),
        ([record("r", None), record("q", None, 5, 9)], (s.MULTIPLE_ROOTS,)),
        ([record("r", None), record("a", "b"), record("b", "a")], (s.PARENT_CYCLE,)),
        ([record("a", "a")], (s.MISSING_ROOT, s.PARENT_CYCLE)),
        ([record("r", None), record("r", None, 0, 99)], (s.DUPLICATE_SPAN_IDS,)),
        ([record("r", None), record("r", None)], ()),  # an identical copy: a redelivery
        ([record("r", None, 50, 10)], (s.END_BEFORE_START,)),
    ],
    ids=[
        "clean",
        "orphan",
        "no-root",
        "two-roots",
        "cycle",
        "self-parent",
        "duplicate",
        "redelivered",
        "end-before-start",
    ],
)
def test_trace_anomalies_are_flagged_and_the_trace_still_derived(
    spans: list[SpanRecord], anomalies: tuple[str, ...]
) -> None:
    derived = derive_all(spans)
    assert derived.summary.anomalies == anomalies
    assert derived.summary.duration_ns >= 0 and derived.critical_path.duration_ns >= 0
    assert sum(derived.critical_path.exclusive_ns.values()) == derived.critical_path.duration_ns
    (trace_doc,) = [d for d in derived_documents(derived, "p") if d.kind == "traces"]
    assert trace_doc.body.get("hopscope.sanitized", []) == list(anomalies)
    assert "hopscope.trace.anomalies" not in trace_doc.body


def test_duplicate_span_ids_in_the_assembler_keep_the_later_copy_and_flag_the_trace() -> None:
    assembler = TraceAssembler(trace_idle_s=1, clock=lambda: 0.0)
    first, later = record("a", None, 0, 10), record("a", None, 0, 20)
    assembler.add_spans([first, first], ("t", 0, 0))  # a redelivered copy: one span
    assert (assembler.redelivered_spans, assembler.duplicate_spans) == (1, 0)
    assembler.add_spans([later], ("t", 0, 1))
    (trace,) = assembler.flush_all(complete=True)
    assert trace.spans == {"a": later} and trace.flags == {s.DUPLICATE_SPAN_IDS}
    summary = derive_all(trace.spans.values(), anomalies=trace.flags).summary
    assert summary.anomalies == (s.DUPLICATE_SPAN_IDS,) and summary.duration_ns == 20


def test_a_trace_past_max_trace_spans_is_evicted_at_once_and_its_rest_not_assembled() -> None:
    assembler = TraceAssembler(trace_idle_s=1, max_trace_spans=3, clock=lambda: 0.0)
    spans = [record("r", None)] + [record(f"c{i}", "r", i, i + 1) for i in range(5)]
    touched = assembler.add_spans(spans[:4], ("t", 0, 0))
    assert touched == {"t" * 32} and assembler.open_traces == 0
    assembler.add_spans(spans[4:], ("t", 0, 1))  # later spans: indexed only
    (trace,) = assembler.due()
    assert not trace.complete and trace.flags == {s.SPAN_LIMIT}
    assert len(trace.spans) == 3 and trace.sources == {("t", 0, 0)}
    assert assembler.unassembled_spans == 3 and assembler.held_spans == 0
    assert derive_all(trace.spans.values(), anomalies=trace.flags).summary.anomalies == (
        s.SPAN_LIMIT,
    )


def test_the_byte_bound_evicts_the_least_recently_active_traces_first() -> None:
    now = [0.0]
    span_bytes = footprint(record("x", None))
    assembler = TraceAssembler(
        trace_idle_s=10, max_open_bytes=3 * (span_bytes + 900), clock=lambda: now[0]
    )
    for i in range(5):
        now[0] = i
        assembler.add_spans(
            [dataclasses.replace(record("x", None), trace_id=f"{i:032x}")], ("t", 0, i)
        )
    evicted = assembler.due()
    assert [t.trace_id for t in evicted] == [f"{0:032x}", f"{1:032x}"]
    assert all(not t.complete for t in evicted) and not assembler.over_bound()
    # A later span of an evicted trace is indexed, not assembled into a partial trace.
    assembler.add_spans([dataclasses.replace(record("y", None), trace_id=f"{0:032x}")], ("t", 0, 9))
    assert assembler.unassembled_spans == 1 and assembler.open_traces == 3


def test_remembered_traces_are_forgotten_before_open_ones_are_evicted() -> None:
    now = [0.0]
    assembler = TraceAssembler(trace_idle_s=1, max_open_spans=4, clock=lambda: now[0])
    assembler.add_spans([record("a", None), record("b", "a")], ("t", 0, 0))
    now[0] = 2
    (done,) = assembler.due()
    assert done.complete and assembler.held_spans == 2  # kept for late spans
    other = [dataclasses.replace(record(i, None), trace_id="f" * 32) for i in "xyz"]
    assembler.add_spans(other, ("t", 0, 1))
    assert assembler.due() == []  # over the bound: the remembered trace goes, not an open one
    assert assembler.held_spans == 3 and assembler.open_traces == 1


def test_memory_bounds_refuse_a_budget_below_the_baseline() -> None:
    spans, byte_bound = memory_bounds(1024)
    assert byte_bound > memory_bounds(512)[1] and spans > 0
    with pytest.raises(ValueError, match="max_memory_mb must leave room"):
        memory_bounds(64)


# -- documents and templates -----------------------------------------------------------------


def test_clean_documents_carry_no_sanitized_field_and_templates_map_it() -> None:
    assert "hopscope.sanitized" not in span_document(record("a", None), "p").body
    too_long = dataclasses.replace(record("a", None), end_ns=2**64 - 1, start_ns=0)
    assert span_document(too_long, "p").body["event.duration"] == 2**63 - 1
    # Each kind maps what its documents carry (processors/schema.py): traces have no times
    # of their own to replace. Neither field is in schema.FILTERED: a Kibana filter on them
    # reads doc values, so they are keywords with doc values and no inverted index.
    unindexed_keyword = {"type": "keyword", "index": False}
    for kind, original in (("spans", "start_ns"), ("logs", "time_ns"), ("traces", None)):
        properties = index_template("p", kind)["template"]["mappings"]["properties"]
        assert properties["hopscope.sanitized"] == unindexed_keyword
        if original is not None:
            assert properties[f"hopscope.original.{original}"] == unindexed_keyword


def test_two_phase_commit_ids_stay_within_512_bytes() -> None:
    kind = {"hopscope.coordination.kind": "2pc.prepare"}
    coordinator = SpanRecord("t" * 32, "c", None, "tx", "server", START, START + 9, "tm")
    prepare = SpanRecord(
        "t" * 32,
        "p",
        "c",
        "prepare",
        "client",
        START + 1,
        START + 5,
        "tm",
        attributes={**kind, "hopscope.coordination.resource": "é" * 400},
    )
    docs = list(derived_documents(derive_all([coordinator, prepare]), "p"))
    (commit,) = [d for d in docs if d.body.get("hopscope.record") == "2pc"]
    assert len(commit.id.encode()) <= 512 and commit.id.startswith("2pc-")


@pytest.mark.parametrize(
    "name",
    [
        "hopscope.processors.sanitize",
        "hopscope.processors.assembly",
        "hopscope.processors.documents",
        "hopscope.processors.templates",
        "hopscope.processors.sink",
    ],
)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
