"""The simulator's other-SDK traffic (``foreign_pans``): card numbers in every place, raw OTLP
that continues the simulated traces, recorded in the ground truth, masked by the processors'
decoding. In memory: no Kafka (tests/integration/test_pan_audit.py runs it end to end)."""

from __future__ import annotations

import base64
import functools
import json
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hopscope.ingest.simulator import (
    ForeignMessage,
    SimulationConfig,
    SimulationResult,
    is_luhn_valid,
    parse_iso8601_ns,
    simulate,
)
from hopscope.processors.decode import decode_logs, decode_span_message
from hopscope.processors.documents import log_document, span_document

START = parse_iso8601_ns("2026-03-02T09:00:00Z")
TRACES = 24
# What a bytes value looks like in a document (base64 of 16 bytes or more).
BASE64 = re.compile(r"[A-Za-z0-9+/]{20,}={0,2}")


@functools.cache
def run(
    foreign: bool, seed: int = 5
) -> tuple[SimulationResult, tuple[ReadableSpan, ...], tuple[ForeignMessage, ...]]:
    exporter = InMemorySpanExporter()
    messages: list[ForeignMessage] = []
    # The run id pinned with the seed: runs with and without foreign services must match.
    config = SimulationConfig(start_ns=START, seed=seed, run_id="pan-foreign", traces=TRACES,
                              foreign_pans=foreign)  # fmt: skip
    result = simulate(
        config,
        span_processors=[SimpleSpanProcessor(exporter)],
        foreign_sink=messages.append if foreign else None,
    )
    return result, exporter.get_finished_spans(), tuple(messages)


def requests(messages: tuple[ForeignMessage, ...]) -> Iterator[tuple[ForeignMessage, Any]]:
    for message in messages:
        if message.signal == "spans":
            yield message, ExportTraceServiceRequest.FromString(message.value)
        else:
            yield message, ExportLogsServiceRequest.FromString(message.value)


def plain(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [plain(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: plain(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind) if kind else None


def texts_of(request: Any) -> str:
    """Every value of a request as text, numbers in decimal and bytes as Latin-1."""
    out: list[str] = []

    def add(value: Any) -> None:
        out.extend(str(leaf) for leaf in _leaves(value))

    for resource in (*getattr(request, "resource_spans", ()),
                     *getattr(request, "resource_logs", ())):  # fmt: skip
        for kv in resource.resource.attributes:
            add(plain(kv.value))
        for scope in (*getattr(resource, "scope_spans", ()), *getattr(resource, "scope_logs", ())):
            for span in getattr(scope, "spans", ()):
                out += [span.name, span.status.message]
                for kv in span.attributes:
                    add(plain(kv.value))
                for event in span.events:
                    out.append(event.name)
                    for kv in event.attributes:
                        add(plain(kv.value))
                for link in span.links:
                    for kv in link.attributes:
                        add(plain(kv.value))
            for record in getattr(scope, "log_records", ()):
                add(plain(record.body))
                for kv in record.attributes:
                    add(plain(kv.value))
    return "\n".join(out)


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, bytes):
        yield value.decode("latin-1")
    elif isinstance(value, float) and value.is_integer():
        yield int(value)
    else:
        yield value


def span_content(spans: tuple[ReadableSpan, ...]) -> list[tuple[Any, ...]]:
    return sorted(
        (s.context.trace_id, s.context.span_id, s.name, s.start_time, s.end_time,  # type: ignore[union-attr]
         json.dumps(dict(s.attributes or {}), sort_keys=True))
        for s in spans
    )  # fmt: skip


def test_the_networks_own_telemetry_is_the_same_with_and_without_other_sdks() -> None:
    without, spans_without, none = run(False)
    with_foreign, spans_with, messages = run(True)
    assert none == () and "foreign" not in without.ground_truth
    assert span_content(spans_with) == span_content(spans_without)
    truth = dict(with_foreign.ground_truth)
    assert truth.pop("foreign")["issuer_calls"] > 0 and messages
    assert truth == without.ground_truth


def test_same_seed_same_foreign_messages() -> None:
    assert run(True, seed=5)[2] == run(True, seed=5)[2]
    assert run(True, seed=5)[2] != run(True, seed=6)[2]


def test_foreign_pans_needs_a_sink() -> None:
    config = SimulationConfig(start_ns=START, traces=2, foreign_pans=True)
    with pytest.raises(ValueError, match="foreign_sink"):
        simulate(config, span_processors=[])


def test_every_place_format_and_length_is_seeded_and_really_written() -> None:
    result, _, messages = run(True)
    foreign = result.ground_truth["foreign"]
    seeds = foreign["seeds"]
    calls = foreign["issuer_calls"]
    assert foreign["messages"] == {"spans": calls, "logs": calls}
    assert foreign["spans"] == 6 * calls and foreign["log_records"] == 9 * calls
    places = Counter((seed["signal"], seed["where"], seed["shape"]) for seed in seeds)
    expected_places = {
        ("span", "name", "string"), ("span", "status.message", "string"),
        ("span", "attributes.url.full", "string"), ("span", "attributes.url.query", "string"),
        ("span", "attributes.url.path", "string"), ("span", "attributes.http.url", "string"),
        ("span", "attributes.db.query.text", "string"),
        ("span", "attributes.http.request.header.x-card-number", "string"),
        ("span", "attributes.card.number", "int"), ("span", "attributes.card.numbers", "int"),
        ("span", "attributes.card.pan", "double"),
        ("span", "attributes.rpc.request.body", "bytes"),
        ("span", "attributes.http.request.body", "string"),
        ("span", "events.attributes.exception.message", "string"),
        ("span", "events.attributes.exception.stacktrace", "string"),
        ("span", "events.name", "string"),
        ("span", "links.attributes.audit.card", "string"),
        ("span", "links.attributes.audit.card_number", "int"),
        ("log", "body", "string"), ("log", "body", "int"), ("log", "body", "double"),
        ("log", "body", "bytes"), ("log", "attributes.card.number", "string"),
        ("log", "attributes.exception.message", "string"),
        ("log", "attributes.exception.stacktrace", "string"),
        ("log", "attributes.http.request.body", "string"),
        ("resource", "resource.process.command_line", "string"),
        ("resource", "resource.process.command_args", "string"),
    }  # fmt: skip
    assert set(places) == expected_places
    # Every length, every format (the URL encodings too).
    assert {len(seed["pan"]) for seed in seeds} == {13, 16, 19}
    strings = [seed["text"] for seed in seeds if seed["shape"] == "string"]
    assert any(" " in t for t in strings) and any("-" in t for t in strings)
    assert any("+" in t for t in strings) and any("%20" in t for t in strings)
    assert any(t.isdigit() for t in strings)
    for seed in seeds:
        assert is_luhn_valid(seed["pan"]), seed
        assert (
            seed["text"].replace("%20", "").replace("+", "").replace(" ", "").replace("-", "")
            == seed["pan"]
        )
    assert foreign["seeded_pans"] == list(dict.fromkeys(seed["pan"] for seed in seeds))
    assert foreign["seeded_pan_texts"] == sorted({seed["text"] for seed in seeds})
    # Really in the messages, unmasked: nothing on the way redacted them.
    written = "\n".join(texts_of(request) for _, request in requests(messages))
    missing = [seed for seed in seeds if seed["text"] not in written]
    assert not missing, missing[:3]


def test_foreign_spans_continue_the_simulated_traces() -> None:
    _, sdk_spans, messages = run(True)
    issuer_calls = {
        (s.context.trace_id, s.context.span_id): s  # type: ignore[union-attr]
        for s in sdk_spans
        if s.name == "issuer/authorize"
    }
    for message, request in requests(messages):
        if message.signal != "spans":
            continue
        spans = [span for rs in request.resource_spans for ss in rs.scope_spans
                 for span in ss.spans]  # fmt: skip
        by_id = {span.span_id: span for span in spans}
        assert {span.trace_id.hex() for span in spans} == {message.key.decode()}
        roots = [span for span in spans if span.parent_span_id not in by_id]
        assert len(roots) == 1  # the gateway's SERVER span, under the bank adapter's call
        root = roots[0]
        caller = issuer_calls[(int.from_bytes(root.trace_id), int.from_bytes(root.parent_span_id))]
        assert caller.start_time < root.start_time_unix_nano  # type: ignore[operator]
        assert root.end_time_unix_nano < caller.end_time  # type: ignore[operator]
        for span in spans:
            parent = by_id.get(span.parent_span_id, root)
            assert parent.start_time_unix_nano <= span.start_time_unix_nano
            assert span.start_time_unix_nano < span.end_time_unix_nano <= parent.end_time_unix_nano
    # Every issuer call was answered.
    assert sum(m.signal == "spans" for m in messages) == len(issuer_calls)


def test_the_processors_decoding_leaves_no_seeded_card_number() -> None:
    result, _, messages = run(True)
    foreign = result.ground_truth["foreign"]
    documents = []
    for message, _request in requests(messages):
        if message.signal == "spans":
            decoded = decode_span_message(message.value)
            assert not decoded.rejected
            documents += [span_document(span, "p").body for span in decoded.spans]
        else:
            documents += [log_document(log, "p").body for log in decode_logs(message.value)]
    text = json.dumps(documents, ensure_ascii=False)
    decoded_bytes = [
        base64.b64decode(value).decode("latin-1")
        for document in documents
        for value in _leaves(document)
        if isinstance(value, str) and BASE64.fullmatch(value) and len(value) % 4 == 0
    ]
    assert decoded_bytes  # the bytes values are there (masked)
    haystack = "\n".join([text, *decoded_bytes])
    leaked = [p for p in foreign["seeded_pans"] + foreign["seeded_pan_texts"] if p in haystack]
    assert not leaked, leaked[:3]
    assert len(documents) == foreign["spans"] + foreign["log_records"]
