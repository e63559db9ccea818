"""load_file: OTLP/JSON (one object and JSON lines) and Jaeger JSON exports -> a Dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from google.protobuf.json_format import MessageToJson
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hopscope.analysis.errors import AnalysisError, LoaderError
from hopscope.analysis.loaders import dataset_from_records, load_file
from hopscope.core.errors import HopscopeError
from hopscope.ingest.simulator import Scenario, SimulationConfig, parse_iso8601_ns, simulate
from hopscope.processors.decode import decode_logs, decode_spans
from tests.unit.test_loaders_parquet import assert_same_dataset

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PAN = "4111111111111111"


def _simulated(traces: int = 40) -> tuple[Any, Any]:
    spans, logs = InMemorySpanExporter(), InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    config = SimulationConfig(
        start_ns=parse_iso8601_ns("2026-03-02T10:00:00Z"),
        scenario=Scenario("node-failure"),
        seed=3,
        run_id="loaders-files",
        traces=traces,
    )
    simulate(
        config,
        span_processors=[SimpleSpanProcessor(spans)],
        log_processors=[SimpleLogRecordProcessor(logs)],
    )
    return encode_spans(spans.get_finished_spans()), encode_logs(logs.get_finished_logs())


def test_otlp_json_object_equals_the_processors_path(tmp_path: Path) -> None:
    spans_request, _ = _simulated()
    path = tmp_path / "export.json"
    path.write_text(MessageToJson(spans_request))  # one pretty-printed object

    loaded = load_file(path)

    expected = dataset_from_records(decode_spans(spans_request.SerializeToString()))
    assert loaded.spans.collect().height == len(decode_spans(spans_request.SerializeToString()))
    assert loaded.hops.collect().height > 0
    assert_same_dataset(loaded, expected)


def test_otlp_json_lines_with_spans_and_logs(tmp_path: Path) -> None:
    spans_request, logs_request = _simulated()
    half = len(spans_request.resource_spans) // 2
    first, second = type(spans_request)(), type(spans_request)()
    first.resource_spans.extend(spans_request.resource_spans[:half])
    second.resource_spans.extend(spans_request.resource_spans[half:])
    lines = [MessageToJson(m, indent=None) for m in (first, second, logs_request)]
    path = tmp_path / "collector-file-exporter.jsonl"
    path.write_text("\n".join(lines) + "\n\n")

    loaded = load_file(path)

    spans = decode_spans(spans_request.SerializeToString())
    logs = decode_logs(logs_request.SerializeToString())
    assert logs, "the node-failure scenario logs cluster events"
    assert_same_dataset(loaded, dataset_from_records(spans, logs))
    assert loaded.failovers.collect().height > 0


def _tag(key: str, value: Any) -> dict[str, Any]:
    kind = {bool: "bool", int: "int64", float: "float64"}.get(type(value), "string")
    return {"key": key, "type": kind, "value": value}


def _jaeger_trace() -> dict[str, Any]:
    """gateway SERVER (1000 µs) -> gateway CLIENT (800 µs) -> payment SERVER (600 µs)."""
    start = 1_772_445_600_000_000  # µs: 2026-03-02T10:00:00Z
    return {
        "traceID": TRACE,
        "spans": [
            {
                "traceID": TRACE, "spanID": "00000000000000a1", "operationName": "POST /pay",
                "references": [], "startTime": start, "duration": 1000, "processID": "p1",
                "tags": [_tag("span.kind", "server"), _tag("card", f"card {PAN} used"),
                         _tag("http.response.status_code", 200)],
                "logs": [],
            },
            {
                "traceID": TRACE, "spanID": "00000000000000b2",
                "operationName": "payment/Authorize",
                "references": [{"refType": "CHILD_OF", "traceID": TRACE,
                                "spanID": "00000000000000a1"}],
                "startTime": start + 100, "duration": 800, "processID": "p1",
                "tags": [_tag("span.kind", "client"), _tag("peer.service", "payment"),
                         _tag("hopscope.cache.hit", False)],
                "logs": [{"timestamp": start + 120,
                          "fields": [_tag("event", "retry"), _tag("attempt", 2)]}],
            },
            {
                "traceID": TRACE, "spanID": "00000000000000c3",
                "operationName": "payment/Authorize",
                "references": [{"refType": "CHILD_OF", "traceID": TRACE,
                                "spanID": "00000000000000b2"}],
                "startTime": start + 150, "duration": 600, "processID": "p2",
                "tags": [_tag("span.kind", "server"), _tag("error", True),
                         _tag("otel.status_description", "issuer timeout")],
                "logs": [],
            },
        ],
        "processes": {
            "p1": {"serviceName": "gateway",
                   "tags": [_tag("service.instance.id", "gateway-1"), _tag("hostname", "h1")]},
            "p2": {"serviceName": "payment",
                   "tags": [_tag("hostname", "payment-host-2"), _tag("ip", "10.0.0.2")]},
        },
        "warnings": None,
    }  # fmt: skip


def test_jaeger_json_gives_the_hop_and_the_critical_path(tmp_path: Path) -> None:
    path = tmp_path / "trace.json"
    path.write_text(json.dumps({"data": [_jaeger_trace()], "total": 0, "errors": None}))

    data = load_file(path).collect()

    spans = data.spans.collect().sort("time")
    assert spans.select("service", "node", "kind", "duration_ns", "error").rows() == [
        ("gateway", "gateway-1", "server", 1_000_000, False),
        ("gateway", "gateway-1", "client", 800_000, False),
        ("payment", "payment-host-2", "server", 600_000, True),
    ]
    assert spans["time"][0] == pl.Series([1_772_445_600_000_000_000]).cast(spans["time"].dtype)[0]
    assert spans["cache_hit"].to_list() == [None, False, None]
    hop = data.hops.collect()
    assert hop.select(
        "source_service", "source_node", "target_service", "target_node", "client_ns",
        "server_ns", "network_ns", "error",
    ).rows() == [("gateway", "gateway-1", "payment", "payment-host-2", 800_000, 600_000,
                  200_000, True)]  # fmt: skip
    trace = data.traces.collect()
    assert trace.select("trace_id", "root_service", "duration_ns", "span_count", "error").row(
        0
    ) == (TRACE, "gateway", 1_000_000, 3, True)
    by_service = {e["service"]: e["exclusive_ns"] for e in trace["critical_by_service"][0]}
    # root 1000 - client 800; client 800 - server 600; the server's 600 all its own.
    assert by_service == {"gateway": 400_000, "payment": 600_000}
    by_operation = {e["operation"]: e["exclusive_ns"] for e in trace["critical_by_operation"][0]}
    assert sum(by_operation.values()) == 1_000_000


def test_jaeger_masks_card_numbers_and_keeps_events_and_links() -> None:
    from hopscope.analysis.loaders import jaeger_spans

    trace = _jaeger_trace()
    trace["spans"][2]["references"].append(
        {"refType": "FOLLOWS_FROM", "traceID": "abc", "spanID": "d4"}
    )
    spans = {s.span_id: s for s in jaeger_spans([trace])}

    root = spans["00000000000000a1"]
    assert PAN not in root.attributes["card"] and "411111" in root.attributes["card"]
    assert root.attributes["http.response.status_code"] == 200
    assert "span.kind" not in root.attributes
    client = spans["00000000000000b2"]
    assert [(e.name, e.time_ns, dict(e.attributes)) for e in client.events] == [
        ("retry", (1_772_445_600_000_000 + 120) * 1000, {"attempt": 2})
    ]
    server = spans["00000000000000c3"]
    assert server.parent_id == "00000000000000b2"
    assert server.status_message == "issuer timeout"
    # A 64-bit Jaeger id is padded to OTel's 128 bits; FOLLOWS_FROM becomes a link.
    assert [(k.trace_id, k.span_id) for k in server.links] == [("0" * 29 + "abc", "0" * 14 + "d4")]


def test_a_bare_jaeger_trace_and_a_list_of_traces_load_too(tmp_path: Path) -> None:
    for document in (_jaeger_trace(), [_jaeger_trace()]):
        path = tmp_path / "t.json"
        path.write_text(json.dumps(document))
        assert load_file(path).hops.collect().height == 1


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"hello": "world"}', "unknown format (found ['hello'])"),
        ("not json at all\n", "line 1 is not JSON"),
        ("", "the file is empty"),
        ('{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "00"}]}]}]}', "trace_id"),
        (json.dumps({"data": [{"spans": [{"spanID": "", "traceID": TRACE}]}]}), "spanID"),
    ],
)
def test_unreadable_files_raise_a_loader_error_naming_the_file(
    tmp_path: Path, content: str, expected: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(LoaderError, match=r"bad\.json") as caught:
        load_file(path)
    assert expected in str(caught.value)
    assert isinstance(caught.value, AnalysisError) and isinstance(caught.value, HopscopeError)


def test_a_missing_file_is_a_loader_error(tmp_path: Path) -> None:
    with pytest.raises(LoaderError, match="cannot read"):
        load_file(tmp_path / "absent.json")
