"""The native per-span core against the Python reference, record for record and document for
document (:mod:`hopscope.processors.core`): the decoder against ``decode.py``, span, log, hop,
coordination-delay and trace documents against the schema tables, the trace's tree index against
``TraceIndex._build``, the critical path's walk against ``critical_path._walked``, the hops
against ``hops._hops``, the summary's span facts against ``summary._facts``, the coordination
delays and 2PC transactions against ``coordination._derive_coordination`` and
``_derive_two_phase_commits``, the footprints against ``assembly.footprint``.

Random OTLP requests (hypothesis: traces, attributes of every shape, card numbers as text,
numbers and bytes, bad ids, implausible times, limits small enough to cut), the bad-input
corpus of the decoder's fuzz test (mutated seeds, arbitrary bytes) and every simulator
scenario's output go through both. Where the native core hands a message back (it returns
None), the dispatcher's outcome is the reference's by construction; the test still checks that
outcome, the dead-letter reasons and payloads included, and that the simulator's traffic is
decoded natively in full.

The derivations are compared on random span trees (intervals drawn around their parents':
clock skew within and past the 1 % allowance, clipped and dropped children, tolerated overlaps,
ties, asynchronous consumers), random call traces (every attribute shape the hops read, links),
random coordination traces (2PC phases, transaction ids, participants, coordinators at every
distance), the derivation fuzz test's forests (cycles, duplicates, unknown parents; for the
index and the summary with payment ids, error types, statuses and services of every shape),
every simulator scenario and edge cases (missing parents, zero-length and end-before-start spans,
20k-span chains and fan-outs); what the native core hands back (times past 64 bits, text that
is no UTF-8, kinds to infer) is checked to be derived by the reference. The trace documents are
compared on the summaries and critical paths of all of these, and on random summaries and paths
with values of every type the table writes as they are.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from types import MappingProxyType
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hopscope.ingest import conventions as c
from hopscope.ingest.simulator import Scenario, SimulationConfig, simulate
from hopscope.processors import core, documents, sanitize, schema
from hopscope.processors import decode as d
from hopscope.processors.assembly import (
    ATTRIBUTE_BYTES,
    EVENT_BYTES,
    SPAN_BYTES,
    footprint,
    footprints,
)
from hopscope.processors.derive import (
    ABORTED,
    COMMITTED,
    IN_DOUBT,
    CoordinationDelay,
    CoordinationRule,
    Hop,
    TwoPhaseCommit,
    derive_all,
)
from hopscope.processors.derive._common import TraceIndex
from hopscope.processors.derive.coordination import (
    _derive_coordination,
    _derive_two_phase_commits,
)
from hopscope.processors.derive.critical_path import (
    SEGMENT_KINDS,
    CriticalPath,
    PathSegment,
    _critical_path,
    _Walked,
    _walked,
)
from hopscope.processors.derive.hops import _hops
from hopscope.processors.derive.summary import TraceSummary, _Facts, _facts
from hopscope.processors.documents import Document, log_document, span_document
from hopscope.processors.errors import DecodeError
from hopscope.processors.pipeline import derive_gathered
from hopscope.processors.records import (
    CLIENT,
    CONSUMER,
    INTERNAL,
    PRODUCER,
    SERVER,
    LogRecord,
    SpanEvent,
    SpanLink,
    SpanRecord,
)
from hopscope.processors.sanitize import DEFAULT_LIMITS, Limits
from hopscope.processors.sink import bulk_lines
from tests.otlp_builders import any_value, key_values
from tests.unit.test_fuzz_decode import LIMITS as SMALL_LIMITS
from tests.unit.test_fuzz_decode import SEEDS, mutated
from tests.unit.test_fuzz_derive import forests

pytestmark = pytest.mark.skipif(
    core.native() is None,
    reason="the native core is not in use (hopscope_native not built: `make install`, or "
    "HOPSCOPE_NATIVE=0): nothing to compare",
)

RECEIVED = 1_775_030_460_000_000_000
START = RECEIVED - 60_000_000_000
# Card numbers in the shapes the masking rule knows (Luhn-valid unless noted).
PANS = [
    "4111111111111111",
    "4111 1111 1111 1111",
    "4111-1111-1111-1111",
    "4111+1111+1111+1111",
    "4111%201111%201111%201111",
    "5500%2D0000%2d0000%2D0004",
    "card%204111111111111111",
    "\\u00414111111111111111",
    "%4111111111111111",
    "4111111111111112",  # not Luhn-valid
    "4111 1111 1111 1111 123",
    "378282246310005",
    "6011111111111117 6011111111111117",
    "12345678901234567890123",
    "1%201234567890123",
    "\\u41 4111111111111111",
]


def _native_raw(kind: str, payload: bytes, received: int | None, limits: Limits) -> Any:
    native = core.native()
    assert native is not None
    decode = native.decode_spans if kind == "spans" else native.decode_logs
    native_limits = core.native_limits(limits)
    assert native_limits is not None
    return decode(payload, received, native_limits)


def table_document(span: SpanRecord) -> Document:
    """The span's document as the schema table writes it (the native core's specification)."""
    return documents._document(schema.SPANS, span, "p")


def sent(document: Document) -> Document:
    """``document`` as the bulk request carries it: its body read back from its source line
    (a table's NaN is null there, a tuple a list)."""
    *_, line = bulk_lines([document])
    return Document(document.kind, document.index, document.id, json.loads(line))


def orjson_writes(body: dict[str, Any]) -> bool:
    """Whether orjson writes ``body`` (the native core writes what it writes, no more)."""
    try:
        orjson.dumps(body)
    except TypeError:
        return False
    return True


def same_documents(spans: list[SpanRecord]) -> list[Document]:
    """The native documents of ``spans`` equal the table's as sent, field order included;
    each made natively (its source) is sent as the native core wrote it."""
    native = core.native()
    assert native is not None
    written = [span_document(span, "p") for span in spans]
    expected = [sent(table_document(span)) for span in spans]
    assert [sent(d) for d in written] == expected
    assert [typed(sent(d).body) for d in written] == [typed(d.body) for d in expected]
    for span, document in zip(spans, written, strict=True):
        assert (document.source is not None) == (native.span_document(span, "p") is not None)
    return written


# Values the native JSON writer must write as orjson does, or hand to the table: floats at
# their edges (NaN and the infinities are null), integers at and past 64 bits, text to escape
# or to keep raw, a lone surrogate, empty and nested maps, nested lists.
JSON_EDGES: dict[str, Any] = {
    "nan": float("nan"),
    "inf": float("inf"),
    "-inf": float("-inf"),
    "-0.0": -0.0,
    "1e300": 1e300,
    "tiny": 5e-324,
    "1.0": 1.0,
    "0.1": 0.1,
    "1e16": 1e16,
    "1e-7": 1e-7,
    "big float": 123456789012345680.0,
    "i64 max": 2**63 - 1,
    "i64 min": -(2**63),
    "u64 max": 2**64 - 1,
    "past u64": 2**64,
    "below i64": -(2**63) - 1,
    "huge": 10**40,
    "unicode": "é/ü 支付 💳",
    "control": "a\x00b\x01\x08\x0c\x1f\x7f\n\r\t\"'\\/</script>",
    "lone surrogate": "a\ud800b",
    "empty text": "",
    "list": [1, 2.5, "x", True, None, [float("nan"), {"k": "v"}], []],
    "list with huge": [1, 2**64],
    "list with surrogate": ["\udfff"],
    "bools": True,
    "none": None,
}


def _edge_span(attributes: Any, **kw: Any) -> SpanRecord:
    fields: dict[str, Any] = {"parent_id": None, **kw}
    return SpanRecord(trace_id="t", span_id="s", name="op", kind=SERVER, start_ns=START,
                      end_ns=START + 10, service="svc", attributes=attributes,
                      **fields)  # fmt: skip


@pytest.mark.parametrize("name", list(JSON_EDGES))
def test_span_documents_of_json_edge_values(name: str) -> None:
    """Each edge value as an attribute, a resource value, an event's and a nested attribute,
    and as the status message: the native source reads back as the table's body as orjson
    writes it, and the native core writes exactly what orjson writes (no more)."""
    value = JSON_EDGES[name]
    spans = [
        _edge_span({"v": value}),
        _edge_span({}, resource={"v": value, "service.name": "svc"}),
        _edge_span({"a": {"b": {"v": value}}, "z": 1}),
        _edge_span({}, events=(SpanEvent("e", START, {"v": value}),)),
        _edge_span({}, status_message=value),
        _edge_span({}, parent_id=value, node=value),
    ]
    native = core.native()
    assert native is not None
    written = same_documents(spans)
    for span, document in zip(spans, written, strict=True):
        assert (document.source is not None) == orjson_writes(table_document(span).body)
        if document.source is not None:
            assert document.stamp == document.body["@timestamp"]


def test_span_documents_of_edge_maps() -> None:
    """Empty maps, a key named twice once flattened (a dict keeps it once, at its first place
    with its last value: so does the source), deep nesting, keys to escape."""
    spans = [
        _edge_span({}),
        _edge_span({"a.b": 1, "a": {"b": 2}, "c": 3}),
        _edge_span({"a": {"b": 1}, "a.b": 2}),
        _edge_span({"a": {}, "b": {"c": {}}}),
        _edge_span({'q"\\\n\x00é': "v", "": ""}),
        _edge_span({"d": functools.reduce(lambda inner, _: {"x": inner}, range(50), {"y": 1})}),
        _edge_span({"l": functools.reduce(lambda inner, _: [inner], range(100), [1])}),
        _edge_span({1: "int key"}),
        _edge_span({"t": (1, 2)}),
        _edge_span(MappingProxyType({"a": 1})),
        _edge_span({}, links=(SpanLink("t2", "s2"),), flags=("span_limit", "attribute_limit")),
        _edge_span({}, original_start_ns=2**64 - 1, original_end_ns=2**70),
    ]
    written = same_documents(spans)
    assert written[1].source is not None
    assert written[1].source.count(b'"a.b"') == 1
    assert list(written[1].body["attributes"].items()) == [("a.b", 2), ("c", 3)]
    assert [d.source is not None for d in written] == [
        True, True, True, True, True, True, False, False, False, False, True, True,
    ]  # fmt: skip


def table_log_document(log: LogRecord) -> Document:
    """The log record's document as the schema table writes it, the id hashed as
    ``log_document`` hashes it."""
    core.select("python")  # the test runs only while the native core is in use
    try:
        return log_document(log, "p")
    finally:
        core.select("native")


def same_log_documents(logs: list[LogRecord]) -> list[Document]:
    """The native log documents equal the table's, field order included."""
    native = core.native()
    assert native is not None
    written = [log_document(log, "p") for log in logs]
    expected = [table_log_document(log) for log in logs]
    assert written == expected
    assert [list(d.body) for d in written] == [list(d.body) for d in expected]
    assert all(native.log_document(log, "p") is not None for log in logs)
    return written


def _spans_outcome(function: Any, payload: bytes, received: int | None, limits: Limits) -> Any:
    try:
        decoded = function(payload, received_ns=received, limits=limits)
    except DecodeError as error:
        return ("dead letter", str(error))
    documents = [table_document(span) for span in decoded.spans]
    rejected = [(r.reason, r.payload) for r in decoded.rejected]
    return ("decoded", decoded.spans, documents, rejected)


def _logs_outcome(function: Any, payload: bytes, received: int | None, limits: Limits) -> Any:
    try:
        logs = function(payload, received_ns=received, limits=limits)
    except DecodeError as error:
        return ("dead letter", str(error))
    return ("decoded", logs, [table_log_document(log) for log in logs])


def same_spans(payload: bytes, received: int | None, limits: Limits = DEFAULT_LIMITS) -> bool:
    """Native and reference agree on ``payload``; True when the native core decoded it."""
    reference = _spans_outcome(d.decode_span_message_reference, payload, received, limits)
    assert _spans_outcome(d.decode_span_message, payload, received, limits) == reference
    if reference[0] == "decoded":
        same_documents(reference[1])  # spans the native decoder handed back too
    raw = _native_raw("spans", payload, received, limits)
    if raw is None:
        return False
    assert reference[0] == "decoded" and not reference[3], "native decoded a message with rejects"
    assert raw == reference[1]
    assert same_documents(raw) == reference[2]
    return True


def same_logs(payload: bytes, received: int | None, limits: Limits = DEFAULT_LIMITS) -> bool:
    reference = _logs_outcome(d.decode_logs_reference, payload, received, limits)
    assert _logs_outcome(d.decode_logs, payload, received, limits) == reference
    if reference[0] == "decoded":
        same_log_documents(reference[1])  # records the native decoder handed back too
    raw = _native_raw("logs", payload, received, limits)
    if raw is None:
        return False
    assert reference[0] == "decoded"
    assert raw == reference[1]
    assert same_log_documents(raw) == reference[2]
    return True


# -- strategies --------------------------------------------------------------------------------

texts = st.one_of(
    st.text(max_size=20),
    st.sampled_from(PANS),
    st.builds(
        lambda a, p, b: f"{a}{p}{b}",
        st.text(max_size=5),
        st.sampled_from(PANS),
        st.text(max_size=5),
    ),
    st.text(alphabet="0123456789 -+%2Du\\", max_size=40),
    st.sampled_from(["", " ", "\t", "x" * 70, "é" * 40, "exception", "true"]),
)
integers = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([4111111111111111, -4111111111111111, 4111111111111112, 0, 503, 2]),
)
floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([4111111111111111.0, -0.0, 2.0**53, 1e20, 503.0, float("nan")]),
)
scalars = st.one_of(
    texts,
    st.booleans(),
    integers,
    floats,
    st.binary(max_size=30),
    st.sampled_from([b"4111111111111111", b"\xff4111 1111 1111 1111\x00"]),
)
keys = st.one_of(
    st.sampled_from(["k", "payment.id", "error", "http.response.status_code", "http.status_code",
                     "rpc.grpc.status_code", "event.name", "service.name", "", " "]),
    st.text(max_size=12),
)  # fmt: skip
# Keys every decoder takes as they are (the "clean" requests).
plain_keys = st.one_of(
    st.sampled_from(["k", "payment.id", "error", "http.response.status_code", "event.name"]),
    st.text(alphabet="abcdefghij._-é", min_size=1, max_size=12).filter(lambda k: k[0] != " "),
)


def value_strategy(key_strategy: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(key_strategy, inner, max_size=4)
        ),
        max_leaves=12,
    )


values = value_strategy(keys)
attribute_maps = st.dictionaries(keys, values, max_size=7)
clean_maps = st.dictionaries(plain_keys, value_strategy(plain_keys), max_size=7)
ids16 = st.one_of(st.binary(min_size=16, max_size=16), st.sampled_from([bytes(16), b"\x01"]))
ids8 = st.one_of(st.binary(min_size=8, max_size=8), st.sampled_from([bytes(8), b"", b"\x01" * 9]))
times = st.one_of(
    st.integers(START - 10**9, START + 10**9),
    st.sampled_from([0, 1, 2**64 - 1, RECEIVED + 2 * 86_400 * 10**9]),
)


@st.composite
def span_requests(draw: st.DrawFn, clean: bool = False) -> bytes:
    """Random trace requests; ``clean``: valid ids, plain keys, a span in every scope (what
    the native core decodes rather than hands back)."""
    maps = clean_maps if clean else attribute_maps
    good16 = st.binary(min_size=16, max_size=16).filter(any)
    good8 = st.binary(min_size=8, max_size=8).filter(any)
    request = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(1, 2))):
        resource_spans = request.resource_spans.add()
        resource = draw(st.dictionaries(plain_keys if clean else keys, values, max_size=3))
        resource.update(draw(st.fixed_dictionaries({}, optional={
            "service.name": st.one_of(texts, integers, st.just([1, 2])),
            "service.instance.id": st.one_of(texts, integers),
        })))  # fmt: skip
        resource_spans.resource.attributes.extend(key_values(resource))
        for _ in range(draw(st.integers(1, 2))):
            scope = resource_spans.scope_spans.add()
            scope.scope.name = draw(st.text(max_size=5))
            for _ in range(draw(st.integers(1 if clean else 0, 3))):
                span = scope.spans.add()
                span.trace_id = draw(good16 if clean else st.one_of(ids16, st.just(bytes(16))))
                span.span_id = draw(good8 if clean else ids8)
                span.parent_span_id = draw(ids8)
                span.name = draw(texts)
                span.kind = draw(st.integers(0, 7))  # type: ignore[assignment]
                span.start_time_unix_nano = draw(times)
                span.end_time_unix_nano = draw(times)
                span.attributes.extend(key_values(draw(maps)))
                for _ in range(draw(st.integers(0, 4))):
                    event = span.events.add()
                    event.name = draw(st.one_of(texts, st.just("exception")))
                    event.time_unix_nano = draw(times)
                    event.attributes.extend(key_values(draw(maps)))
                for _ in range(draw(st.integers(0, 4))):
                    link = span.links.add()
                    link.trace_id, link.span_id = draw(ids16), draw(ids8)
                    link.attributes.extend(key_values(draw(maps)))
                span.status.code = draw(st.integers(0, 3))  # type: ignore[assignment]
                span.status.message = draw(texts)
    return bytes(request.SerializeToString())


@st.composite
def log_requests(draw: st.DrawFn) -> bytes:
    request = ExportLogsServiceRequest()
    for _ in range(draw(st.integers(1, 2))):
        resource_logs = request.resource_logs.add()
        resource_logs.resource.attributes.extend(key_values(draw(attribute_maps)))
        scope = resource_logs.scope_logs.add()
        for _ in range(draw(st.integers(0, 3))):
            record = scope.log_records.add()
            record.time_unix_nano = draw(times)
            record.observed_time_unix_nano = draw(times)
            record.severity_number = draw(st.integers(0, 26))  # type: ignore[assignment]
            record.severity_text = draw(st.one_of(st.just(""), texts))
            if draw(st.booleans()):
                record.body.CopyFrom(any_value(draw(values)))
            record.attributes.extend(key_values(draw(attribute_maps)))
            record.trace_id = draw(st.one_of(st.just(b""), ids16))
            record.span_id = draw(st.one_of(st.just(b""), ids8))
            record.event_name = draw(st.one_of(st.just(""), texts))
    return bytes(request.SerializeToString())


received_times = st.sampled_from([None, RECEIVED])
limit_sets = st.sampled_from([DEFAULT_LIMITS, SMALL_LIMITS])
SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=SLOW_OK)


@given(st.one_of(span_requests(), span_requests(clean=True)), received_times, limit_sets)
@SETTINGS
def test_random_span_requests(payload: bytes, received: int | None, limits: Limits) -> None:
    same_spans(payload, received, limits)


@given(log_requests(), received_times, limit_sets)
@SETTINGS
def test_random_log_requests(payload: bytes, received: int | None, limits: Limits) -> None:
    same_logs(payload, received, limits)


@given(st.one_of(mutated(), st.binary(max_size=300)), received_times)
@SETTINGS
def test_bad_input_corpus(payload: bytes, received: int | None) -> None:
    """Mutated seeds of the decoder's fuzz test and arbitrary bytes: the same records, the
    same dead-letter reasons, the same rejected spans."""
    same_spans(payload, received, SMALL_LIMITS)
    same_logs(payload, received, SMALL_LIMITS)


@pytest.mark.parametrize("seed", range(len(SEEDS)))
def test_bad_input_seeds(seed: int) -> None:
    for limits in (DEFAULT_LIMITS, SMALL_LIMITS):
        same_spans(SEEDS[seed], RECEIVED, limits)
        same_logs(SEEDS[seed], RECEIVED, limits)


def test_the_random_requests_are_mostly_decoded_natively() -> None:
    """The comparison means something: most clean random requests are not handed back."""
    outcomes: list[bool] = []

    @given(span_requests(clean=True))
    @settings(max_examples=60, deadline=None, database=None, suppress_health_check=SLOW_OK)
    def decode(payload: bytes) -> None:
        outcomes.append(same_spans(payload, RECEIVED))

    decode()
    assert sum(outcomes) >= len(outcomes) // 3, (
        f"{sum(outcomes)} of {len(outcomes)} decoded natively"
    )


@functools.cache
def scenario_payloads(scenario: Scenario) -> tuple[bytes, bytes]:
    span_exporter, log_exporter = InMemorySpanExporter(), InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    config = SimulationConfig(start_ns=START, scenario=scenario, seed=11, run_id="native",
                              traces=60)  # fmt: skip
    simulate(config, span_processors=[SimpleSpanProcessor(span_exporter)],
             log_processors=[SimpleLogRecordProcessor(log_exporter)])  # fmt: skip
    spans = encode_spans(span_exporter.get_finished_spans()).SerializeToString()
    logs = encode_logs(log_exporter.get_finished_logs()).SerializeToString()
    return spans, logs


@pytest.mark.parametrize("scenario", list(Scenario), ids=lambda s: s.value)
def test_every_simulator_scenario(scenario: Scenario) -> None:
    """The simulator's traffic is decoded natively in full, to the reference's records."""
    spans, logs = scenario_payloads(scenario)
    for received in (None, RECEIVED):
        assert same_spans(spans, received), "the native core handed simulated spans back"
        assert same_logs(logs, received), "the native core handed simulated logs back"


@given(texts)
@settings(max_examples=500, deadline=None)
def test_masking(text: str) -> None:
    from hopscope.ingest.redaction import mask_pans

    native = core.native()
    assert native is not None
    assert native.mask_pans(text) == mask_pans(text)


def test_what_the_native_core_does_not_take_goes_to_the_reference() -> None:
    """A payload that is no ``bytes`` and limits past 64-bit counting: the reference decodes."""
    spans, logs = scenario_payloads(Scenario.BASELINE)
    huge = Limits(max_value_chars=10**30)
    assert core.native_limits(huge) is None
    reference = d.decode_span_message_reference(spans, limits=huge)
    assert d.decode_span_message(spans, limits=huge) == reference
    assert d.decode_span_message(bytearray(spans)) == d.decode_span_message_reference(spans)  # type: ignore[arg-type]
    assert d.decode_logs(bytearray(logs)) == d.decode_logs_reference(logs)  # type: ignore[arg-type]


def same_derived_documents(hops: list[Hop], delays: list[CoordinationDelay]) -> None:
    """The native hop and coordination-delay documents equal the tables', field order
    included."""
    native = core.native()
    assert native is not None
    pairs: list[tuple[Any, schema.Table, Hop | CoordinationDelay]] = [
        (native.hop_document, schema.HOPS, hop) for hop in hops
    ]
    pairs += [(native.coordination_document, schema.COORDINATION, delay) for delay in delays]
    for write, table, record in pairs:
        parts = write(record, "p")
        assert parts is not None
        index, doc_id, source = parts
        written = Document(table.index, index, doc_id, json.loads(source))
        expected = sent(documents._document(table, record, "p"))
        assert written == expected
        assert typed(written.body) == typed(expected.body)


def typed(value: Any) -> Any:
    """``value`` with the type of each scalar and the order of each dict (``1 == 1.0 == True``
    and dicts compare equal in any order otherwise)."""
    if type(value) is dict:
        return [("dict", key, typed(item)) for key, item in value.items()]
    if type(value) is list:
        return ["list", *(typed(item) for item in value)]
    return (type(value), value)


def table_trace_document(summary: TraceSummary, path: CriticalPath) -> Document:
    """The trace's document as ``schema.TRACES`` writes it (the native core's specification)."""
    return documents._document(schema.TRACES, schema.TraceRecord(summary, path), "p")


def same_trace_document(summary: TraceSummary, path: CriticalPath) -> bool:
    """The native trace document equals the table's, types and field order included; True
    when the native core wrote it."""
    native = core.native()
    assert native is not None
    parts = native.trace_document(summary, path, "p")
    if parts is None:
        return False
    index, doc_id, source = parts
    written = Document("traces", index, doc_id, json.loads(source))
    expected = sent(table_trace_document(summary, path))
    assert written == expected
    assert typed(written.body) == typed(expected.body)
    return True


@pytest.mark.parametrize("scenario", list(Scenario), ids=lambda s: s.value)
def test_derived_documents_of_every_simulator_scenario(scenario: Scenario) -> None:
    """Hops, coordination delays and summaries of the simulator's traces: the tables'
    documents, and ``derived_documents`` yields them."""
    spans, _ = scenario_payloads(scenario)
    by_trace: dict[str, list[SpanRecord]] = {}
    for span in d.decode_span_message(spans, received_ns=RECEIVED).spans:
        by_trace.setdefault(span.trace_id, []).append(span)
    derived = [derive_all(trace) for trace in by_trace.values()]
    hops = [hop for records in derived for hop in records.hops]
    delays = [delay for records in derived for delay in records.coordination]
    assert hops
    same_derived_documents(hops, delays)
    for records in derived:
        assert same_trace_document(records.summary, records.critical_path)
        written = [
            doc
            for doc in documents.derived_documents(records, "p")
            if doc.kind in ("hops", "traces") or doc.body.get(schema.RECORD_FIELD) == "delay"
        ]
        expected = [documents._document(schema.HOPS, hop, "p") for hop in records.hops]
        expected += [documents._document(schema.COORDINATION, delay, "p")
                     for delay in records.coordination]  # fmt: skip
        expected.append(table_trace_document(records.summary, records.critical_path))
        assert written == expected


@pytest.mark.parametrize("name", [k for k, v in JSON_EDGES.items() if type(v) is not list])
def test_hop_and_coordination_documents_of_json_edge_values(name: str) -> None:
    """Each scalar edge value in a text and a number field of a hop and of a coordination
    delay: the native source reads back as the table's body as sent; what orjson refuses,
    the table writes."""
    native = core.native()
    assert native is not None
    value = JSON_EDGES[name]
    hop = Hop(
        trace_id="t", hop_id="h", kind="http", source_service="a", source_node=None,
        target_service="b", target_node=None, operation=value, start_ns=START, client_ns=10,
        server_ns=None, network_ns=None, request_leg_ns=None, response_leg_ns=None,
        clock_skew_suspected=False, adjusted_request_leg_ns=None, adjusted_response_leg_ns=None,
        queue_ns=value, error=value, attempt=None, server_span_id=None, client_abandoned=False,
    )  # fmt: skip
    delay = CoordinationDelay(
        trace_id="t", span_id="s", parent_span_id=None, name=value, kind="lock", service="a",
        node=None, resource=value, participant=None, start_ns=START, duration_ns=value,
        critical_ns=0, error=False,
    )  # fmt: skip
    for write, table, record in (
        (native.hop_document, schema.HOPS, hop),
        (native.coordination_document, schema.COORDINATION, delay),
    ):
        expected = documents._document(table, record, "p")
        parts = write(record, "p")
        assert (parts is not None) == orjson_writes(expected.body)
        if parts is not None:
            index, doc_id, source = parts
            written = Document(table.index, index, doc_id, json.loads(source))
            assert written == sent(expected)
            assert typed(written.body) == typed(sent(expected).body)


def test_coordination_delays_are_compared() -> None:
    spans, _ = scenario_payloads(Scenario.BASELINE)
    by_trace: dict[str, list[SpanRecord]] = {}
    for span in d.decode_span_message(spans, received_ns=RECEIVED).spans:
        by_trace.setdefault(span.trace_id, []).append(span)
    assert any(derive_all(trace).coordination for trace in by_trace.values())


optional_text = st.one_of(st.none(), texts)
optional_int = st.one_of(st.none(), integers)


@given(
    st.builds(
        Hop,
        trace_id=texts, hop_id=texts, kind=texts, source_service=texts,
        source_node=optional_text, target_service=optional_text, target_node=optional_text,
        operation=texts, start_ns=times, client_ns=integers, server_ns=optional_int,
        network_ns=optional_int, request_leg_ns=optional_int, response_leg_ns=optional_int,
        clock_skew_suspected=st.booleans(), adjusted_request_leg_ns=optional_int,
        adjusted_response_leg_ns=optional_int, queue_ns=optional_int, error=st.booleans(),
        attempt=optional_int, server_span_id=optional_text, client_abandoned=st.booleans(),
    )
)  # fmt: skip
@SETTINGS
def test_random_hop_documents(hop: Hop) -> None:
    same_derived_documents([hop], [])


@given(
    st.builds(
        CoordinationDelay,
        trace_id=texts, span_id=texts, parent_span_id=optional_text, name=texts, kind=texts,
        service=texts, node=optional_text, resource=optional_text, participant=optional_text,
        start_ns=times, duration_ns=integers, critical_ns=integers, error=st.booleans(),
    )
)  # fmt: skip
@SETTINGS
def test_random_coordination_documents(delay: CoordinationDelay) -> None:
    same_derived_documents([], [delay])


# -- the critical path -------------------------------------------------------------------------


def same_critical_path(spans: list[SpanRecord], rules: tuple[CoordinationRule, ...] = ()) -> bool:
    """The native walk of ``spans``' trace equals the reference's (``critical_path._walked``),
    dict order included; True when the native core walked it."""
    native = core.native()
    assert native is not None
    index = TraceIndex(spans)
    root = index.main_root
    if root is None:
        return False
    coordinating = index.coordination_kinds(rules)
    expected = _walked(index, root, coordinating)
    parts = native.critical_path(root, index.children, coordinating, index.server_of, PathSegment)
    if parts is None:
        return False
    walked = _Walked(*parts)
    assert walked == expected
    for name in ("exclusive_ns", "by_operation", "by_service", "by_kind", "by_operation_kind"):
        assert list(getattr(walked, name).items()) == list(getattr(expected, name).items()), name
    assert [type(v) for v in walked.by_kind.values()] == [int, int, int]
    # What derive_all gives through the dispatcher: the same record as the Python core's.
    assert derive_all(spans, rules=rules) == python_core(derive_all, spans, rules=rules)
    return True


def python_core(function: Any, *args: Any, **kwargs: Any) -> Any:
    """``function`` run with the Python core (the test runs only while the native one is in
    use)."""
    core.select("python")
    try:
        return function(*args, **kwargs)
    finally:
        core.select("native")


CP_KINDS = [CLIENT, SERVER, PRODUCER, CONSUMER, INTERNAL]
CP_T0 = 1_775_030_400_000_000_000


# Where a child starts and how long it lasts, in thousandths of its parent's length: anywhere
# in and around it, or on the marks that make ties, touching siblings, skew within and past
# CRISP's 1 %, and overlaps within and past its 1 %.
PER_MILLE_STARTS = st.one_of(
    st.integers(-50, 1050), st.sampled_from([-20, -5, 0, 0, 300, 495, 500, 505, 995, 1000])
)
PER_MILLE_LENGTHS = st.one_of(
    st.integers(-20, 1050), st.sampled_from([0, 0, 5, 200, 500, 505, 1000, 1005, 1010, 1011])
)


@st.composite
def span_trees(draw: st.DrawFn) -> list[SpanRecord]:
    """Up to 80 spans, each under an earlier one (now and then a root, or under a missing
    parent), its interval drawn around its parent's (:data:`PER_MILLE_STARTS`): inside,
    touching, sticking out by a little (clock skew, the 1 % allowances) or a lot, zero-length,
    ending before it starts."""
    count = draw(st.integers(1, 80))
    spans: list[SpanRecord] = []
    for i in range(count):
        at = draw(st.integers(-2, i - 1)) if i else -1
        if at >= 0:
            parent = spans[at]
            p_start, length = parent.start_ns, max(parent.end_ns - parent.start_ns, 0)
            parent_id: str | None = parent.span_id
        else:
            p_start, length = CP_T0 + draw(st.integers(0, 1000)), draw(st.integers(0, 10**9))
            parent_id = None if at == -1 else "f" * 16
        start = p_start + length * draw(PER_MILLE_STARTS) // 1000
        end = start + length * draw(PER_MILLE_LENGTHS) // 1000
        spans.append(
            SpanRecord(
                "a" * 32,
                f"{i:016x}",
                parent_id,
                draw(st.sampled_from(["op", "pay/Auth", "lock", "é/ü"])),
                draw(st.sampled_from(CP_KINDS)),
                start,
                end,
                draw(st.sampled_from(["gw", "pay", "ledger"])),
                attributes=draw(
                    st.sampled_from(
                        [{}, {}, {c.COORDINATION_KIND: c.LOCK_WAIT}, {c.PEER_SERVICE: "x"}]
                    )
                ),
            )
        )
    if draw(st.booleans()):  # any order, duplicates
        spans = draw(st.permutations(spans)) + draw(st.lists(st.sampled_from(spans), max_size=3))
    return spans


CP_RULES = (CoordinationRule("lock_wait", name="^lock"),)


@given(span_trees(), st.sampled_from([(), CP_RULES]))
@settings(max_examples=300, deadline=None, suppress_health_check=SLOW_OK)
def test_random_critical_paths(
    spans: list[SpanRecord], rules: tuple[CoordinationRule, ...]
) -> None:
    assert same_critical_path(spans, rules)


@given(forests())
@SETTINGS
def test_critical_paths_of_random_forests(spans: list[SpanRecord]) -> None:
    """Cycles, self-parents, unknown parents, duplicate ids (the derivation fuzz test's)."""
    same_critical_path(spans)


@pytest.mark.parametrize("scenario", list(Scenario), ids=lambda s: s.value)
def test_critical_paths_of_every_simulator_scenario(scenario: Scenario) -> None:
    """Every trace of every scenario is walked natively, to the reference's path, and
    ``derive_gathered`` (what the file loaders and ``documents_from_records`` derive) agrees."""
    spans, logs = scenario_payloads(scenario)
    records = d.decode_span_message(spans, received_ns=RECEIVED).spans
    log_records = d.decode_logs(logs, received_ns=RECEIVED)
    by_trace: dict[str, list[SpanRecord]] = {}
    for span in records:
        by_trace.setdefault(span.trace_id, []).append(span)
    assert all(same_critical_path(trace) for trace in by_trace.values())
    assert derive_gathered(records, log_records) == python_core(
        derive_gathered, records, log_records
    )


def _chain(length: int, step: int = 10) -> list[SpanRecord]:
    return [
        SpanRecord(
            "t",
            f"{i:08x}",
            f"{i - 1:08x}" if i else None,
            "op",
            INTERNAL,
            CP_T0 + i * step,
            CP_T0 + 2 * length * step - i * step,
            "svc",
        )
        for i in range(length)
    ]


def _span(
    span_id: str, parent: str | None, kind: str, start: int, end: int, **kw: Any
) -> SpanRecord:
    return SpanRecord(
        "t", span_id, parent, kw.pop("name", "op"), kind, start, end, kw.pop("service", "svc"), **kw
    )


CP_EDGES = {
    "empty": [],
    "one span": [_span("r", None, SERVER, 0, 100)],
    "zero length": [
        _span("r", None, SERVER, 5, 5),
        _span("a", "r", CLIENT, 5, 5),
        _span("b", "a", SERVER, 5, 5),
    ],
    "zero-length children between": [
        _span("r", None, SERVER, 0, 100),
        _span("a", "r", INTERNAL, 10, 40),
        _span("z", "r", INTERNAL, 40, 40),
        _span("y", "r", INTERNAL, 40, 40),
        _span("b", "r", INTERNAL, 40, 90),
    ],
    "end before start": [_span("r", None, SERVER, 0, 100), _span("a", "r", INTERNAL, 50, 20)],
    "missing parents": [
        _span("o1", "gone", SERVER, 0, 100),
        _span("o2", "gone", SERVER, 0, 100),
        _span("a", "o1", INTERNAL, 10, 20),
    ],
    "skew within 1 %": [
        _span("c", None, CLIENT, 0, 1000),
        _span("s", "c", SERVER, 995, 2004),
        _span("k", "s", INTERNAL, 1000, 1500),
    ],
    "skew past 1 %": [_span("c", None, CLIENT, 0, 1000), _span("s", "c", SERVER, 990, 2020)],
    "clipped and dropped": [
        _span("r", None, SERVER, 0, 100),
        _span("a", "r", INTERNAL, -50, 30),
        _span("b", "r", INTERNAL, 100, 130),
        _span("c", "r", INTERNAL, 90, 120),
    ],
    "tolerated overlap": [
        _span("r", None, SERVER, 0, 10_000),
        _span("a", "r", INTERNAL, 100, 5_050),
        _span("b", "r", INTERNAL, 5_000, 9_000),
    ],
    "overlap with a third child inside": [
        _span("r", None, SERVER, 0, 10_000),
        _span("a", "r", INTERNAL, 100, 5_050),
        _span("x", "r", INTERNAL, 5_010, 5_020),
        _span("b", "r", INTERNAL, 5_000, 9_000),
    ],
    "ties": [_span("r", None, SERVER, 0, 100)]
    + [_span(f"t{i}", "r", INTERNAL, 10 * (i % 2), 90) for i in range(6)],
    "async consumer": [
        _span("r", None, SERVER, 0, 100),
        _span("p", "r", PRODUCER, 10, 20),
        _span("q", "p", CONSUMER, 30, 500),
    ],
    "parent cycle": [_span("a", "b", SERVER, 0, 100), _span("b", "a", INTERNAL, 10, 20)],
    "paired client": [
        _span("r", None, SERVER, 0, 100, service="gw"),
        _span("c", "r", CLIENT, 10, 90, service="gw", name="pay"),
        _span("s", "c", SERVER, 20, 80, service="pay", name="pay"),
        _span(
            "l", "s", CLIENT, 30, 70, service="pay", attributes={c.COORDINATION_KIND: "lock_wait"}
        ),
    ],
    "non-ASCII ids and names": [
        _span("é", None, SERVER, 0, 100, name="ü"),
        _span("e", "é", INTERNAL, 10, 20, service="ß"),
    ],
    "deep chain": _chain(20_000),
    "wide fan-out": [_span("r", None, SERVER, 0, 10**9)]
    + [
        _span(f"{i:06d}", "r", CLIENT, i * 37 % 10**6, i * 37 % 10**6 + 5_000 + i % 7)
        for i in range(20_000)
    ],
}


@pytest.mark.parametrize("name", list(CP_EDGES))
def test_critical_path_edge_cases(name: str) -> None:
    spans = CP_EDGES[name]
    assert same_critical_path(spans) == bool(spans)


def test_what_the_native_walk_does_not_take_goes_to_the_reference() -> None:
    """Times past 64 bits and a service that is not text: the reference walks the trace."""
    native = core.native()
    assert native is not None
    for spans in (
        [_span("r", None, SERVER, 0, 2**64), _span("a", "r", INTERNAL, 2**63, 2**64 - 1)],
        [_span("r", None, SERVER, 0, 100, service=7)],  # type: ignore[arg-type]
        [_span("r", None, SERVER, 0, 100, name="\ud800")],
    ):
        index = TraceIndex(spans)
        assert index.main_root is not None
        args = (index.main_root, index.children, index.coordination_kinds(), index.server_of)
        assert native.critical_path(*args, PathSegment) is None
        assert derive_all(spans) == python_core(derive_all, spans)


# -- hops --------------------------------------------------------------------------------------


def same_hops(spans: list[SpanRecord]) -> bool:
    """The native hops of ``spans``' trace equal the reference's (``hops._hops``); True when
    the native core derived them."""
    native = core.native()
    assert native is not None
    index = TraceIndex(spans)
    expected = _hops(index)
    derived = native.hops(index.spans, index.server_of, index.raw_children, index.by_id, Hop)
    if derived is None:
        return False
    assert derived == expected
    assert [type(h.network_ns) for h in derived] == [type(h.network_ns) for h in expected]
    assert derive_all(spans) == python_core(derive_all, spans)
    return True


# Attribute values the hops read, in the shapes other exporters send.
HOP_VALUES = st.one_of(
    st.sampled_from(["", "risk", "pg-primary", "ledger.Ledger", "Post", "é"]),
    st.sampled_from([None, 0, 3, True, False, 2.5, ["a"], b"x"]),
)


@st.composite
def call_traces(draw: st.DrawFn) -> list[SpanRecord]:
    """Up to 40 spans of every kind under earlier ones, linking back to producers now and then,
    with the attributes the hops read (of every shape) and nodes, statuses, times to match."""
    count = draw(st.integers(1, 40))
    spans: list[SpanRecord] = []
    for i in range(count):
        at = draw(st.integers(-2, i - 1)) if i else -1
        parent_id = spans[at].span_id if at >= 0 else (None if at == -1 else "f" * 16)
        start = CP_T0 + draw(st.integers(0, 10**7))
        end = start + draw(st.one_of(st.integers(-1000, 10**7), st.sampled_from([0, 2_000_001])))
        attributes = draw(
            st.dictionaries(st.sampled_from(list(native_hop_keys())), HOP_VALUES, max_size=4)
        )
        links = tuple(
            SpanLink(draw(st.sampled_from(["a" * 32, "b" * 32])), spans[j].span_id, {})
            for j in draw(st.lists(st.integers(0, max(i - 1, 0)), max_size=2))
            if spans
        )
        spans.append(
            SpanRecord(
                "a" * 32,
                f"{i:016x}",
                parent_id,
                draw(st.sampled_from(["op", "risk/Score", "SELECT"])),
                draw(st.sampled_from(CP_KINDS)),
                start,
                end,
                draw(st.sampled_from(["gw", "pay", "ledger"])),
                node=draw(st.sampled_from([None, "", "n1", "n2"])),
                status=draw(st.sampled_from(["unset", "error", "ok"])),
                attributes=attributes,
                links=links,
            )
        )
    return draw(st.permutations(spans))


def native_hop_keys() -> tuple[str, ...]:
    native = core.native()
    return () if native is None else tuple(native.HOP_KEYS)


def test_the_native_hops_read_the_conventions_keys() -> None:
    assert set(native_hop_keys()) == {
        c.DB_SYSTEM,
        c.SERVER_ADDRESS,
        c.PEER_SERVICE,
        c.PEER_NODE,
        c.HTTP_RESEND_COUNT,
        c.RPC_METHOD,
        c.RPC_SERVICE,
        c.ERROR_TYPE,
        c.MESSAGING_DESTINATION,
        c.MESSAGING_SYSTEM,
    }


@given(call_traces())
@settings(max_examples=300, deadline=None, suppress_health_check=SLOW_OK)
def test_random_hops(spans: list[SpanRecord]) -> None:
    same_hops(spans)


def test_random_hops_are_mostly_derived_natively() -> None:
    """Only text resend counts (parsed by the reference) are handed back. One fixed sample
    (derandomized): the share is the generator's, and varies between random samples of 100
    from under a half to over nine tenths."""
    taken: list[bool] = []

    @given(call_traces())
    @settings(
        max_examples=100,
        deadline=None,
        suppress_health_check=SLOW_OK,
        database=None,
        derandomize=True,
    )
    def collect(spans: list[SpanRecord]) -> None:
        taken.append(same_hops(spans))

    collect()
    assert sum(taken) > len(taken) // 2, f"{sum(taken)} of {len(taken)} derived natively"


@pytest.mark.parametrize("scenario", list(Scenario), ids=lambda s: s.value)
def test_hops_of_every_simulator_scenario(scenario: Scenario) -> None:
    spans, _ = scenario_payloads(scenario)
    by_trace: dict[str, list[SpanRecord]] = {}
    for span in d.decode_span_message(spans, received_ns=RECEIVED).spans:
        by_trace.setdefault(span.trace_id, []).append(span)
    assert all(same_hops(trace) for trace in by_trace.values())


HOP_EDGES = {
    "abandoned by its caller": [
        _span("c", None, CLIENT, 0, 100_000_000),
        _span("s", "c", SERVER, 0, 130_000_000, service="pay"),
    ],
    "coarse timestamps within the tolerance": [
        _span("c", None, CLIENT, 0, 100_000_000),
        _span("s", "c", SERVER, 0, 101_000_000, service="pay"),
    ],
    "skewed legs, odd negative network": [
        _span("c", None, CLIENT, 1_000, 1_101),
        _span("s", "c", SERVER, 900, 1_003, service="pay"),
    ],
    "several servers answer": [
        _span("c", None, CLIENT, 0, 100),
        _span("s2", "c", SERVER, 10, 20, service="pay"),
        _span("s1", "c", SERVER, 10, 30, service="pay"),
    ],
    "producer, child and linking consumers": [
        _span("p", None, PRODUCER, 0, 10, attributes={c.MESSAGING_DESTINATION: "q"}),
        _span("k", "x", CONSUMER, 5, 50, links=(SpanLink("t", "p", {}),)),
        _span("l", "p", CONSUMER, 40, 60),
        _span("p2", None, PRODUCER, 0, 10, attributes={c.MESSAGING_SYSTEM: "kafka"}),
        _span("k2", None, CONSUMER, 30, 40, links=(SpanLink("t", "p2", {}),)),
        _span("p3", None, PRODUCER, 0, 10),
    ],
    "end before start": [_span("c", None, CLIENT, 100, 50, attributes={c.DB_SYSTEM: "pg"})],
    "missing parent": [
        _span("s", "gone", SERVER, 0, 10),
        _span("c", "s", CLIENT, 1, 9, attributes={c.PEER_SERVICE: "risk", c.HTTP_RESEND_COUNT: 2}),
    ],
    "huge": [_span("r", None, SERVER, 0, 10**9)]
    + [
        _span(f"c{i:05d}", "r", CLIENT, i, i + 1000, attributes={c.SERVER_ADDRESS: "pg"})
        for i in range(10_000)
    ]
    + [
        _span(f"s{i:05d}", f"c{i:05d}", SERVER, i + 10, i + 990, service="pay")
        for i in range(0, 10_000, 2)
    ],
}


@pytest.mark.parametrize("name", list(HOP_EDGES))
def test_hop_edge_cases(name: str) -> None:
    assert same_hops(HOP_EDGES[name])


RESEND = c.HTTP_RESEND_COUNT


def test_what_the_native_hops_do_not_take_go_to_the_reference() -> None:
    """Times past 64 bits, a resend count as text, text that is no UTF-8: the reference."""
    native = core.native()
    assert native is not None
    for attributes in (
        {c.PEER_SERVICE: "risk", RESEND: "2"},
        {c.PEER_SERVICE: "risk", c.RPC_SERVICE: "\ud800", c.RPC_METHOD: "m"},
    ):
        spans = [_span("c", None, CLIENT, 0, 10, attributes=attributes)]
        index = TraceIndex(spans)
        args = (index.spans, index.server_of, index.raw_children, index.by_id)
        assert native.hops(*args, Hop) is None
        assert derive_all(spans) == python_core(derive_all, spans)
    spans = [_span("c", None, CLIENT, 0, 2**64, attributes={c.PEER_SERVICE: "risk"})]
    index = TraceIndex(spans)
    args = (index.spans, index.server_of, index.raw_children, index.by_id)
    assert native.hops(*args, Hop) is None


# -- the tree index and the summary ------------------------------------------------------------


def reference_index(spans: list[SpanRecord]) -> TraceIndex:
    """The index as ``TraceIndex._build`` (the specification) builds it."""
    index = TraceIndex.__new__(TraceIndex)
    index._build(spans)
    return index


def _same_records(native: Any, reference: Any) -> None:
    """Two lists, or dicts of lists or records, holding the very same records, in order."""
    if isinstance(reference, dict):
        assert list(native) == list(reference)
        for key, value in reference.items():
            _same_records(native[key], value)
    elif isinstance(reference, list):
        assert [id(s) for s in native] == [id(s) for s in reference]
    else:
        assert native is reference


INDEX_FIELDS = ("spans", "by_id", "raw_children", "children", "roots", "orphans", "cycle_roots",
                "top_down", "main_root", "detached", "server_of")  # fmt: skip


def same_index(spans: list[SpanRecord], rules: tuple[CoordinationRule, ...] = ()) -> bool:
    """The native index of ``spans`` equals the reference's, field for field, the same record
    objects in the same order; and the summary's facts agree. True when the native core indexed
    the trace."""
    native = core.native()
    assert native is not None
    expected = reference_index(spans)
    fields = native.trace_index(spans)
    if fields is None:
        assert TraceIndex(spans).anomalies == expected.anomalies
        return False
    index = TraceIndex(spans)
    for name in INDEX_FIELDS:
        _same_records(getattr(index, name), getattr(expected, name))
    assert index.trace_id == expected.trace_id
    assert type(index.trace_id) is type(expected.trace_id)
    assert index.conflicting_duplicates == expected.conflicting_duplicates
    assert index._tops == expected._tops
    assert index.anomalies == expected.anomalies
    assert list(index.coordination_kinds().items()) == list(expected.coordination_kinds().items())
    assert index.coordination_kinds(rules) == expected.coordination_kinds(rules)
    assert index.entry_of == expected.entry_of
    assert same_summary_facts(index, expected)
    assert derive_all(spans, rules=rules) == python_core(derive_all, spans, rules=rules)
    return True


def same_summary_facts(index: TraceIndex, expected: TraceIndex) -> bool:
    """The native summary facts of the index equal ``summary._facts``; True when native."""
    native = core.native()
    assert native is not None
    parts = native.summary_facts(index.spans, index.main_root)
    if parts is None:
        return False
    facts = _Facts(*parts)
    assert facts == _facts(expected)
    assert [type(v) for v in facts] == [type(v) for v in _facts(expected)]
    return True


# What the summary reads, in the shapes other exporters send.
SUMMARY_VALUES = st.sampled_from([None, "", "pay-1", "pay-2", "é", 0, 7, True, 2.5, ["p"], b"x"])


@st.composite
def summary_traces(draw: st.DrawFn) -> list[SpanRecord]:
    """A random forest (the derivation fuzz test's: cycles, duplicates, unknown parents) with
    payment ids, error types, statuses and services of every shape."""
    spans = draw(forests())
    out = []
    for span in spans:
        attributes = dict(span.attributes)
        for key in (c.PAYMENT_ID, c.ERROR_TYPE, c.COORDINATION_KIND):
            if draw(st.integers(0, 3)) == 0:
                attributes[key] = draw(SUMMARY_VALUES)
        out.append(
            dataclasses.replace(
                span,
                attributes=attributes,
                service=draw(st.sampled_from(["gw", "pay", "", "ledger", "é"])),
                status=draw(st.sampled_from(["unset", "error", "ok"])),
                kind=draw(st.sampled_from(CP_KINDS)),
            )
        )
    return out


@given(st.one_of(summary_traces(), span_trees(), call_traces()), st.sampled_from([(), CP_RULES]))
@settings(max_examples=300, deadline=None, suppress_health_check=SLOW_OK)
def test_random_indexes_and_summaries(
    spans: list[SpanRecord], rules: tuple[CoordinationRule, ...]
) -> None:
    assert same_index(spans, rules)


@pytest.mark.parametrize("scenario", list(Scenario), ids=lambda s: s.value)
def test_indexes_and_summaries_of_every_simulator_scenario(scenario: Scenario) -> None:
    """Every trace of every scenario is indexed and summarized natively, to the reference's."""
    spans, logs = scenario_payloads(scenario)
    records = d.decode_span_message(spans, received_ns=RECEIVED).spans
    by_trace: dict[str, list[SpanRecord]] = {}
    for span in records:
        by_trace.setdefault(span.trace_id, []).append(span)
    assert all(same_index(trace) for trace in by_trace.values())
    log_records = d.decode_logs(logs, received_ns=RECEIVED)
    assert derive_gathered(records, log_records) == python_core(
        derive_gathered, records, log_records
    )


INDEX_EDGES = {
    **CP_EDGES,
    **HOP_EDGES,
    "self parent": [_span("a", "a", SERVER, 0, 100), _span("b", "a", INTERNAL, 10, 20)],
    "two cycles and a tail": [
        _span("a", "b", SERVER, 0, 100),
        _span("b", "a", INTERNAL, 0, 100),
        _span("c", "d", SERVER, 5, 50),
        _span("d", "c", CLIENT, 5, 60),
        _span("e", "d", SERVER, 6, 40),
    ],
    "duplicates, identical and conflicting": [
        _span("r", None, SERVER, 0, 100),
        _span("r", None, SERVER, 0, 100),
        _span("r", None, SERVER, 0, 90),
        _span("a", "r", CLIENT, 10, 20),
    ],
    "empty parent id": [_span("r", "", SERVER, 0, 100), _span("a", "r", INTERNAL, 10, 20)],
    "payment id below the root": [
        _span("r", None, SERVER, 0, 100),
        _span("b", "r", INTERNAL, 20, 30, attributes={c.PAYMENT_ID: "pay-b"}),
        _span("a", "r", INTERNAL, 20, 30, attributes={c.PAYMENT_ID: "pay-a"}),
        _span("z", "r", INTERNAL, 10, 30, attributes={c.PAYMENT_ID: ""}),
    ],
    "payment id and error type not text": [
        _span("r", None, SERVER, 0, 100, attributes={c.PAYMENT_ID: 42, c.ERROR_TYPE: 0}),
        _span("a", "r", CLIENT, 10, 20, attributes={c.ERROR_TYPE: None}),
    ],
    "errors below the root": [
        _span("r", None, SERVER, 0, 100, service=""),
        _span("a", "r", CLIENT, 10, 20, status="error"),
    ],
    "two servers from another trace": [
        _span("c", None, CLIENT, 0, 100),
        dataclasses.replace(_span("s", "c", SERVER, 10, 20), trace_id="u"),
        _span("s2", "c", SERVER, 10, 20),
    ],
}


@pytest.mark.parametrize("name", list(INDEX_EDGES))
def test_index_and_summary_edge_cases(name: str) -> None:
    assert same_index(INDEX_EDGES[name])


def test_what_the_native_index_does_not_take_goes_to_the_reference() -> None:
    """Kinds to infer, times past 64 bits, ids and services that are not text, text that is
    no UTF-8, attributes that are no dict: the reference indexes (or reads) the trace."""
    native = core.native()
    assert native is not None
    unspecified = (sanitize.KIND_UNSPECIFIED,)
    for spans in (
        [
            _span("r", None, INTERNAL, 0, 100, flags=unspecified),
            _span("a", "r", INTERNAL, 10, 20, service="pay", flags=unspecified),
        ],
        [_span("r", None, SERVER, 0, 2**64)],
        [_span("r", None, SERVER, 0, 100), _span(7, "r", INTERNAL, 10, 20)],  # type: ignore[arg-type]
        [_span("r", None, SERVER, 0, 100), _span("a", "\ud800", INTERNAL, 10, 20)],
        [_span("r", None, SERVER, 0, 100, attributes=MappingProxyType({}))],
    ):
        assert native.trace_index(spans) is None
        assert not same_index(spans)
        assert derive_all(spans) == python_core(derive_all, spans)
    for spans in (
        [_span("r", None, SERVER, 0, 100, service=7)],  # type: ignore[arg-type]
        [_span("r", None, SERVER, 0, 100, service="\ud800")],
    ):
        index = TraceIndex(spans)
        assert native.summary_facts(index.spans, index.main_root) is None
        assert derive_all(spans) == python_core(derive_all, spans)


def test_the_native_index_and_summary_read_the_conventions_keys() -> None:
    native = core.native()
    assert native is not None
    assert set(native.INDEX_KEYS) == {c.COORDINATION_KIND}
    assert set(native.SUMMARY_KEYS) == {c.ERROR_TYPE, c.PAYMENT_ID}


# -- coordination delays and 2PC transactions --------------------------------------------------


def same_coordination(spans: list[SpanRecord], rules: tuple[CoordinationRule, ...] = ()) -> bool:
    """The native delays and transactions of ``spans``' trace equal the reference's
    (``coordination._derive_coordination``, ``_derive_two_phase_commits``); True when the
    native core derived them."""
    native = core.native()
    assert native is not None
    index = TraceIndex(spans)
    critical = _critical_path(index, rules)
    expected = (_derive_coordination(index, critical, rules),
                _derive_two_phase_commits(index, rules))  # fmt: skip
    kinds = index.coordination_kinds(rules)
    args = (kinds, index.by_id, index.tops, critical.exclusive_ns)
    parts = native.coordination(*args, CoordinationDelay, TwoPhaseCommit)
    if parts is None:
        return False
    assert (parts[0], parts[1]) == expected
    for derived, reference in zip(parts[1], expected[1], strict=True):
        assert [type(v) for v in dataclasses.astuple(derived)] == [
            type(v) for v in dataclasses.astuple(reference)
        ]
    assert derive_all(spans, rules=rules) == python_core(derive_all, spans, rules=rules)
    return True


# What the coordination records read, in the shapes other exporters send.
TWO_PC_KINDS = [c.TWO_PC_PREPARE, c.TWO_PC_COMMIT, c.TWO_PC_ABORT]
COORDINATION_VALUES = {
    c.COORDINATION_KIND: st.sampled_from([*TWO_PC_KINDS, *TWO_PC_KINDS, c.LOCK_WAIT, "", None]),
    c.COORDINATION_RESOURCE: st.sampled_from(["tx1", "tx1", "tx2", "", None, 5]),
    c.COORDINATION_PARTICIPANT: st.sampled_from(["n1", "pay", "db-a", "é", "", None, 3]),
    c.ERROR_TYPE: st.sampled_from(["timeout", "", None]),
}


@st.composite
def coordination_traces(draw: st.DrawFn) -> list[SpanRecord]:
    """Up to 40 spans of every kind under earlier ones (now and then a root, or under a missing
    parent), with 2PC and lock-wait kinds, transaction ids, participants, nodes, services,
    statuses and times to match: coordinators at every distance, participant-side spans,
    aborts, failed and unanswered prepares, ties."""
    count = draw(st.integers(1, 40))
    spans: list[SpanRecord] = []
    for i in range(count):
        at = draw(st.integers(-2, i - 1)) if i else -1
        parent_id = spans[at].span_id if at >= 0 else (None if at == -1 else "f" * 16)
        start = CP_T0 + draw(st.sampled_from([0, 10, 10, 500]) | st.integers(0, 10**6))
        end = start + draw(st.sampled_from([0, 40, 40, -5]) | st.integers(0, 10**6))
        attributes = {
            key: value
            for key, values in COORDINATION_VALUES.items()
            if draw(st.booleans()) and (value := draw(values)) is not None
        }
        spans.append(
            SpanRecord(
                "a" * 32,
                f"{i:016x}",
                parent_id,
                draw(st.sampled_from(["op", "prepare", "lock"])),
                draw(st.sampled_from(CP_KINDS)),
                start,
                end,
                draw(st.sampled_from(["gw", "pay", "ledger", "n1"])),
                node=draw(st.sampled_from([None, "", "n1", "n2"])),
                status=draw(st.sampled_from(["unset", "error", "ok"])),
                attributes=attributes,
            )
        )
    return draw(st.permutations(spans))


@given(st.one_of(coordination_traces(), summary_traces()), st.sampled_from([(), CP_RULES]))
@settings(max_examples=300, deadline=None, suppress_health_check=SLOW_OK)
def test_random_coordination_records(
    spans: list[SpanRecord], rules: tuple[CoordinationRule, ...]
) -> None:
    assert same_coordination(spans, rules)


@pytest.mark.parametrize("scenario", list(Scenario), ids=lambda s: s.value)
def test_coordination_records_of_every_simulator_scenario(scenario: Scenario) -> None:
    spans, _ = scenario_payloads(scenario)
    by_trace: dict[str, list[SpanRecord]] = {}
    for span in d.decode_span_message(spans, received_ns=RECEIVED).spans:
        by_trace.setdefault(span.trace_id, []).append(span)
    assert all(same_coordination(trace) for trace in by_trace.values())


def test_the_simulators_transactions_are_compared() -> None:
    spans, _ = scenario_payloads(Scenario.BASELINE)
    by_trace: dict[str, list[SpanRecord]] = {}
    for span in d.decode_span_message(spans, received_ns=RECEIVED).spans:
        by_trace.setdefault(span.trace_id, []).append(span)
    assert any(derive_all(trace).two_phase_commits for trace in by_trace.values())


def _two_pc(kind: str, resource: Any = "tx1", **attributes: Any) -> dict[str, Any]:
    return {c.COORDINATION_KIND: kind, c.COORDINATION_RESOURCE: resource, **attributes}


PREPARE, COMMIT, ABORT = TWO_PC_KINDS
PARTICIPANT = c.COORDINATION_PARTICIPANT
COORDINATION_EDGES = {
    "coordinator calls two participants": [
        _span("r", None, SERVER, 0, 100, service="gw"),
        _span("p1", "r", CLIENT, 10, 40, attributes=_two_pc(PREPARE, **{PARTICIPANT: "db-a"})),
        _span("p2", "r", CLIENT, 10, 40, attributes=_two_pc(PREPARE, **{PARTICIPANT: "db-b"})),
        _span("c1", "r", CLIENT, 50, 60, attributes=_two_pc(COMMIT, **{PARTICIPANT: "db-a"})),
    ],
    "participant-side spans under their entry spans": [
        _span("r", None, SERVER, 0, 100, service="gw"),
        _span("k", "r", CLIENT, 5, 90, service="gw"),
        _span("s", "k", SERVER, 6, 89, service="pay", node="n1"),
        _span("p", "s", INTERNAL, 10, 30, service="pay", node="n1", attributes=_two_pc(PREPARE)),
        _span("q", "s", SERVER, 10, 35, service="pay", attributes=_two_pc(PREPARE, resource=5)),
        _span("x", "s", INTERNAL, 40, 50, service="pay", attributes=_two_pc(ABORT)),
    ],
    "a 2PC top and no entry above": [
        _span("t", None, INTERNAL, 0, 10, attributes=_two_pc(PREPARE)),
        _span("u", "t", INTERNAL, 1, 9, attributes=_two_pc(PREPARE, **{PARTICIPANT: "n9"})),
    ],
    "failed prepare, ties, in doubt": [
        _span("r", None, SERVER, 0, 100),
        _span("a", "r", CLIENT, 10, 40, status="error", attributes=_two_pc(PREPARE)),
        _span("b", "r", CLIENT, 10, 40, node="n2", attributes=_two_pc(PREPARE)),
        _span("c", "r", CLIENT, 10, 30, attributes=_two_pc(PREPARE, resource="tx2")),
    ],
    "commit only, several participants": [
        _span("r", None, CONSUMER, 0, 100),
        _span("a", "r", CLIENT, 10, 40, node="n2", attributes=_two_pc(COMMIT)),
        _span("b", "r", CLIENT, 10, 50, node="n1", attributes=_two_pc(COMMIT)),
        _span("l", "r", INTERNAL, 0, 5, attributes={c.COORDINATION_KIND: c.LOCK_WAIT}),
    ],
    "parent cycle": [
        _span("a", "b", SERVER, 0, 100, attributes=_two_pc(PREPARE)),
        _span("b", "a", INTERNAL, 10, 20, attributes=_two_pc(COMMIT)),
    ],
    "no transaction id": [_span("r", None, SERVER, 0, 9, attributes=_two_pc(PREPARE, ""))],
}


@pytest.mark.parametrize("name", list(COORDINATION_EDGES))
def test_coordination_edge_cases(name: str) -> None:
    assert same_coordination(COORDINATION_EDGES[name])


def test_what_the_native_coordination_does_not_take_goes_to_the_reference() -> None:
    """Times past 64 bits, a node or service that is not text where a participant is named:
    the reference derives the delays and transactions."""
    native = core.native()
    assert native is not None
    for spans in (
        [_span("r", None, SERVER, 0, 2**64, attributes=_two_pc(PREPARE))],
        [_span("r", None, SERVER, 0, 9, node=7, attributes=_two_pc(PREPARE))],  # type: ignore[arg-type]
        [_span("r", None, SERVER, 0, 9, service=7, attributes=_two_pc(COMMIT))],  # type: ignore[arg-type]
    ):
        assert not same_coordination(spans)
        assert derive_all(spans) == python_core(derive_all, spans)


def test_the_native_coordination_reads_the_conventions_words() -> None:
    native = core.native()
    assert native is not None
    assert set(native.COORDINATION_KEYS) == {
        c.ERROR_TYPE,
        c.COORDINATION_RESOURCE,
        c.COORDINATION_PARTICIPANT,
    }
    assert tuple(native.TWO_PC_WORDS) == (*TWO_PC_KINDS, COMMITTED, ABORTED, IN_DOUBT)


# -- footprints --------------------------------------------------------------------------------


def same_footprints(spans: list[SpanRecord]) -> bool:
    """The native footprints of ``spans`` equal the reference's; True when the native core
    counted them."""
    native = core.native()
    assert native is not None
    sizes = native.footprints(spans)
    if sizes is None:
        return False
    assert sizes == [footprint(span) for span in spans]
    return True


def test_the_native_footprints_use_the_assemblers_constants() -> None:
    native = core.native()
    assert native is not None
    assert native.FOOTPRINT_BYTES == [SPAN_BYTES, ATTRIBUTE_BYTES, EVENT_BYTES]


@given(st.one_of(span_requests(), span_requests(clean=True)), limit_sets)
@SETTINGS
def test_random_footprints(payload: bytes, limits: Limits) -> None:
    """Spans of every shape (attribute values, events, links, status messages) as decoded."""
    try:
        spans = d.decode_span_message_reference(payload, received_ns=RECEIVED, limits=limits).spans
    except DecodeError:
        return
    assert same_footprints(spans)


@pytest.mark.parametrize("scenario", list(Scenario), ids=lambda s: s.value)
def test_footprints_of_every_simulator_scenario(scenario: Scenario) -> None:
    spans, _ = scenario_payloads(scenario)
    assert same_footprints(d.decode_span_message(spans, received_ns=RECEIVED).spans)


def test_footprint_edge_cases() -> None:
    native = core.native()
    assert native is not None
    event = SpanEvent("e", 1, {"k": "vé", "n": 3})
    spans = [
        _span("a", None, SERVER, 0, 1, attributes={"k": ["v"], "n": None, "é": "ü" * 10}),
        _span("b", None, SERVER, 0, 1, status_message="", events=(event, SpanEvent("f", 2, {}))),
        _span("c", None, SERVER, 0, 1, status_message="timeout", links=(SpanLink("t", "a", {}),)),
        _span("d", None, SERVER, 0, 1, events=(SpanEvent("g", 2, ("not", "a", "dict")),)),  # type: ignore[arg-type]
    ]
    assert same_footprints(spans)
    assert native.footprints(()) == []
    # A map that is no dict: the reference counts it; unsized keys raise as in the reference.
    frozen = _span("e", None, SERVER, 0, 1, attributes=MappingProxyType({"k": "v"}))
    assert native.footprints([spans[0], frozen]) is None
    assert footprints([frozen]) == [footprint(frozen)]
    with pytest.raises(TypeError):
        native.footprints([_span("f", None, SERVER, 0, 1, attributes={1: "v"})])
    with pytest.raises(TypeError):
        footprint(_span("f", None, SERVER, 0, 1, attributes={1: "v"}))


# -- trace documents ---------------------------------------------------------------------------


def test_the_native_trace_document_splits_the_segment_kinds() -> None:
    native = core.native()
    assert native is not None
    assert tuple(native.SEGMENT_KINDS) == SEGMENT_KINDS


@given(st.one_of(summary_traces(), span_trees(), call_traces(), coordination_traces()))
@settings(max_examples=300, deadline=None, suppress_health_check=SLOW_OK)
def test_random_trace_documents(spans: list[SpanRecord]) -> None:
    """The summaries and paths the derivations make of random traces; a payment id that is not
    a scalar (a list attribute) is the table's to write."""
    records = derive_all(spans)
    summary = records.summary
    scalar = summary.payment_id is None or type(summary.payment_id) in (str, int, float, bool)
    assert same_trace_document(summary, records.critical_path) == scalar


@pytest.mark.parametrize("scenario", list(Scenario), ids=lambda s: s.value)
def test_trace_documents_of_every_simulator_scenario(scenario: Scenario) -> None:
    """Every trace of every scenario, its logs and the processors' enrichment included: the
    native core writes its document, the table's."""
    spans, logs = scenario_payloads(scenario)
    records = d.decode_span_message(spans, received_ns=RECEIVED).spans
    traces, _ = derive_gathered(records, d.decode_logs(logs, received_ns=RECEIVED))
    assert traces
    for trace in traces:
        assert same_trace_document(trace.records.summary, trace.records.critical_path)


@pytest.mark.parametrize("name", list(INDEX_EDGES))
def test_trace_document_edge_cases(name: str) -> None:
    """Cycles (no main root, an empty path), duplicates, zero-length and end-before-start
    spans, 20k-span chains, payment ids that are not text."""
    records = derive_all(INDEX_EDGES[name])
    assert same_trace_document(records.summary, records.critical_path)


# Values the table writes as they are, a scalar of each type.
doc_scalars = st.one_of(texts, integers, floats, st.booleans(), st.none(), st.integers())
doc_texts = st.one_of(texts, st.none())


@st.composite
def trace_records(draw: st.DrawFn) -> tuple[TraceSummary, CriticalPath]:
    """A summary and a path of arbitrary values: missing ids, every scalar where the table
    writes one, services and anomalies as tuples or lists (empty too), per-kind maps with kinds
    missing, operations with part of their split."""
    operations = draw(st.lists(st.one_of(texts, st.sampled_from(["op", "é/ü"])), max_size=4,
                               unique=True))  # fmt: skip
    by_operation = {operation: draw(doc_scalars) for operation in operations}
    pairs = [(operation, kind) for operation in operations for kind in SEGMENT_KINDS]
    chosen = draw(st.lists(st.sampled_from(pairs), unique=True)) if pairs else []
    by_operation_kind = {pair: draw(integers) for pair in chosen}
    path = CriticalPath(
        "t", None, 0, 0, (), {}, by_operation, {}, {}, by_operation_kind=by_operation_kind
    )
    sequences = st.one_of(
        st.lists(texts, max_size=3).map(tuple), st.lists(texts, max_size=3), st.just(())
    )
    summary = TraceSummary(
        trace_id=draw(texts),
        root_span_id=draw(doc_texts),
        root_service=draw(doc_texts),
        root_operation=draw(doc_texts),
        start_ns=draw(times),
        duration_ns=draw(doc_scalars),
        extent_ns=draw(doc_scalars),
        span_count=draw(doc_scalars),
        services=draw(sequences),
        error=draw(st.one_of(st.booleans(), st.none(), integers)),
        root_error=draw(doc_scalars),
        complete=draw(doc_scalars),
        critical_by_service=draw(st.dictionaries(texts, doc_scalars, max_size=3)),
        critical_by_kind=draw(
            st.dictionaries(st.sampled_from([*SEGMENT_KINDS, "other"]), doc_scalars)
        ),
        failover_count=draw(doc_scalars),
        retry_count=draw(doc_scalars),
        hop_count=draw(doc_scalars),
        payment_id=draw(doc_texts),
        anomalies=draw(st.one_of(sequences, st.none())),  # type: ignore[arg-type]
    )
    return summary, path


@given(trace_records())
@settings(max_examples=300, deadline=None, suppress_health_check=SLOW_OK)
def test_random_trace_documents_of_arbitrary_values(
    records: tuple[TraceSummary, CriticalPath],
) -> None:
    summary, path = records
    in_range = 0 <= summary.start_ns < 2**63
    # What orjson refuses (an integer past 64 bits, a lone surrogate) the table writes.
    plain = in_range and orjson_writes(table_trace_document(summary, path).body)
    assert same_trace_document(summary, path) == plain


def _records(spans: list[SpanRecord], **summary: Any) -> Any:
    records = derive_all(spans)
    return dataclasses.replace(records, summary=dataclasses.replace(records.summary, **summary))


def test_what_the_native_trace_document_does_not_take_goes_to_the_table() -> None:
    """A start past 64 bits or before 1970, a time that is no int, maps that are no dict, a
    services or anomalies value that is no tuple, a split the table would add as a float or fail
    on: the native core hands the trace back, and ``derived_documents`` writes (or fails on) it
    as the table does."""
    native = core.native()
    assert native is not None
    spans = [_span("r", None, SERVER, 0, 100), _span("a", "r", CLIENT, 10, 60, service="gw")]
    base = derive_all(spans)
    path = base.critical_path
    operation = next(iter(path.by_operation))
    handed_back = [
        _records(spans, start_ns=2**64),
        _records(spans, start_ns=-1),
        _records(spans, start_ns=True),
        _records(spans, start_ns=5.0),
        _records(spans, trace_id=7),
        _records(spans, services=frozenset({"svc"})),
        _records(spans, anomalies="span_limit"),
        _records(spans, payment_id=["pay-1"]),
        _records(spans, root_error=b"x"),
        _records(spans, critical_by_kind=MappingProxyType(dict(base.summary.critical_by_kind))),
        _records(spans, critical_by_service=MappingProxyType({"svc": 1})),
        _records(spans, critical_by_kind={"self": [1]}),
        dataclasses.replace(
            base, critical_path=dataclasses.replace(path, by_operation=MappingProxyType({}))
        ),
        dataclasses.replace(
            base,
            critical_path=dataclasses.replace(path, by_operation_kind={(operation, "self"): 2.5}),
        ),
        dataclasses.replace(
            base,
            critical_path=dataclasses.replace(path, by_operation_kind={(operation, "other"): 1}),
        ),
        dataclasses.replace(
            base,
            critical_path=dataclasses.replace(path, by_operation_kind={("elsewhere", "self"): 1}),
        ),
    ]
    for records in handed_back:
        assert native.trace_document(records.summary, records.critical_path, "p") is None
        try:
            expected: Any = list(python_core(documents.derived_documents, records, "p"))
        except Exception as error:  # the table fails on it: so does the dispatcher
            with pytest.raises(type(error)):
                list(documents.derived_documents(records, "p"))
        else:
            assert list(documents.derived_documents(records, "p")) == expected
    # Past 64 bits, the table still writes a time Python's datetime takes.
    last = list(documents.derived_documents(handed_back[0], "p"))[-1]
    assert (last.kind, last.index) == ("traces", "p-traces-2554.07.21")


def test_the_edges_of_a_trace_document() -> None:
    """No spans (no main root, an empty path), ids missing, no anomalies as None, () or [],
    durations past Elasticsearch's long, every kind missing from the per-kind times."""
    empty = derive_all([])
    assert empty.critical_path.root_span_id is None and not empty.critical_path.by_operation
    assert same_trace_document(empty.summary, empty.critical_path)
    summary = dataclasses.replace(
        empty.summary, root_span_id=None, root_service=None, root_operation=None,
        payment_id=None, duration_ns=2**64 - 1, extent_ns=-(2**63), critical_by_kind={},
        critical_by_service={}, services=(),
    )  # fmt: skip
    for anomalies in (None, (), [], ("span_limit",), ["span_limit"]):
        edge = dataclasses.replace(summary, anomalies=anomalies)  # type: ignore[arg-type]
        assert same_trace_document(edge, empty.critical_path)
        written = list(documents.derived_documents(dataclasses.replace(empty, summary=edge), "p"))
        assert written == [table_trace_document(edge, empty.critical_path)]
    # Past 64 bits (orjson refuses them too): the table writes the document.
    for huge in ({"duration_ns": 2**80}, {"extent_ns": -(2**70)}, {"hop_count": 2**64}):
        edge = dataclasses.replace(summary, **huge)
        assert not same_trace_document(edge, empty.critical_path)
        written = list(documents.derived_documents(dataclasses.replace(empty, summary=edge), "p"))
        assert written == [table_trace_document(edge, empty.critical_path)]
        assert written[0].source is None
