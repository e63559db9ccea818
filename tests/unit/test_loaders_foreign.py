"""File loader on other people's exports: several files, directories and globs in a window,
CSV tables, Jaeger ids that are not hex, Zipkin's shared client/server span ids."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from hopscope.analysis.errors import LoaderError
from hopscope.analysis.loaders import CsvFormat, load_file, load_files
from hopscope.analysis.loaders.files import pair_shared_ids, read_file
from hopscope.cli import app
from hopscope.processors import sanitize as s
from hopscope.processors.records import CLIENT, SERVER, SpanRecord

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
US = 1_000
T0_US = 1_772_445_600_000_000  # 2026-03-02T10:00:00Z in µs


def jaeger_span(
    span_id: str,
    parent: str | None,
    service: str,
    start_us: int,
    duration_us: int,
    *,
    kind: str | None = None,
    trace: str = TRACE,
    tags: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    all_tags = list(tags or [])
    if kind:
        all_tags.append({"key": "span.kind", "type": "string", "value": kind})
    return {
        "traceID": trace,
        "spanID": span_id,
        "operationName": "POST /pay",
        "references": [{"refType": "CHILD_OF", "traceID": trace, "spanID": parent}]
        if parent
        else [],
        "startTime": T0_US + start_us,
        "duration": duration_us,
        "tags": all_tags,
        "processID": service,
        "_service": service,
    }


def jaeger(spans: list[dict[str, Any]]) -> dict[str, Any]:
    """A Jaeger JSON document: one trace per trace id, a process per service."""
    traces: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        traces.setdefault(span["traceID"], []).append(span)
    return {
        "data": [
            {
                "traceID": trace,
                "spans": [{k: v for k, v in sp.items() if k != "_service"} for sp in members],
                "processes": {
                    sp["_service"]: {"serviceName": sp["_service"], "tags": []} for sp in members
                },
            }
            for trace, members in traces.items()
        ]
    }


def write(path: Path, document: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


def hops(data: Any) -> list[tuple[Any, ...]]:
    frame = data.hops.collect().sort("source_service", "target_service")
    return frame.select("source_service", "target_service", "network_ns").rows()


def test_a_jaeger_file_with_non_hex_ids_loads(tmp_path: Path) -> None:
    spans = [
        jaeger_span("G", None, "gateway", 0, 100, kind="client", trace="trace-1"),
        jaeger_span("server-2", "G", "payment", 10, 70, kind="server", trace="trace-1"),
        jaeger_span("00f067aa0ba902b7", None, "risk", 0, 5),
    ]
    path = write(tmp_path / "t.json", jaeger(spans))
    data = load_file(path)
    assert hops(data) == [("gateway", "payment", 30 * US)]
    assert data.spans.collect()["span_id"].str.len_chars().to_list() == [16] * 3
    flags = sorted((sp.service, sp.flags) for sp in read_file(path)[0])
    assert flags == [
        ("gateway", (s.ID_HASHED,)),
        ("payment", (s.ID_HASHED,)),
        ("risk", (s.KIND_UNSPECIFIED,)),
    ]


def test_jaeger_kindless_spans_across_services_pair_and_http_errors_count(tmp_path: Path) -> None:
    spans = [
        jaeger_span("a1", None, "gateway", 0, 100),
        jaeger_span(
            "b2",
            "a1",
            "payment",
            10,
            70,
            tags=[{"key": "http.status_code", "type": "int64", "value": 502}],
        ),
    ]
    data = load_file(write(tmp_path / "t.json", jaeger(spans)))
    hop = data.hops.collect().row(0, named=True)
    assert (hop["source_service"], hop["target_service"], hop["network_ns"]) == (
        "gateway",
        "payment",
        30 * US,
    )
    assert hop["error"] is True


SHARED = [
    # Zipkin-style: the client (gateway) and server (payment) halves share span id "c1"; the
    # server's own child names "c1" as its parent.
    jaeger_span("a0", None, "gateway", 0, 200, kind="server"),
    jaeger_span("c1", "a0", "gateway", 10, 100, kind="client"),
    jaeger_span("c1", "a0", "payment", 20, 80, kind="server"),
    jaeger_span("d3", "c1", "payment", 30, 40, kind="client"),
    jaeger_span("e4", "d3", "risk", 35, 30, kind="server"),
]


def test_shared_client_server_ids_are_the_two_halves_of_one_call(tmp_path: Path) -> None:
    data = load_file(write(tmp_path / "t.json", jaeger(SHARED)))
    assert hops(data) == [("gateway", "payment", 20 * US), ("payment", "risk", 10 * US)]
    assert data.traces.collect()["span_count"].to_list() == [5]
    assert data.spans.collect()["span_id"].n_unique() == 5


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(order=st.permutations(range(len(SHARED))))
def test_shared_ids_give_the_same_hops_in_any_file_order(tmp_path: Path, order: list[int]) -> None:
    path = write(tmp_path / "t.json", jaeger([SHARED[i] for i in order]))
    data = load_file(path)
    assert hops(data) == [("gateway", "payment", 20 * US), ("payment", "risk", 10 * US)]
    assert data.spans.collect()["span_id"].n_unique() == 5


def test_identical_copies_of_a_shared_id_are_not_split() -> None:
    client = SpanRecord("t", "c1", None, "pay", CLIENT, 0, 10, "gateway")
    assert pair_shared_ids([client, client]) == [client, client]
    server = SpanRecord("t", "c1", None, "pay", SERVER, 1, 9, "payment")
    split = pair_shared_ids([client, server, server])
    assert [(sp.span_id == "c1", sp.parent_id) for sp in split] == [
        (True, None),
        (False, "c1"),
        (False, "c1"),
    ]


def window_files(tmp_path: Path) -> None:
    """Three traces at 10:00, 10:05 and 10:10, one per file, in a nested directory."""
    for minute in (0, 5, 10):
        trace = f"{minute:032x}"
        spans = [
            jaeger_span("a1", None, "gateway", minute * 60_000_000, 100, kind="client",
                        trace=trace),
            jaeger_span("b2", "a1", "payment", minute * 60_000_000 + 10, 70, kind="server",
                        trace=trace),
        ]  # fmt: skip
        write(tmp_path / "exports" / f"day-{minute:02d}" / f"t{minute}.json", jaeger(spans))


def test_several_files_directories_globs_and_a_window(tmp_path: Path) -> None:
    window_files(tmp_path)
    exports = tmp_path / "exports"
    one = exports / "day-00" / "t0.json"
    assert load_files([one, exports / "day-05" / "t5.json"]).traces.collect().height == 2
    assert load_files([exports]).traces.collect().height == 3
    assert load_files([f"{exports}/**/*.json"]).traces.collect().height == 3
    assert load_files([one, f"{exports}/day-0*/*.json"]).traces.collect().height == 2
    since = datetime(2026, 3, 2, 10, 5, tzinfo=UTC)
    until = datetime(2026, 3, 2, 10, 10, tzinfo=UTC)
    windowed = load_files([exports], since=since, until=until)
    assert windowed.traces.collect()["trace_id"].to_list() == [f"{5:032x}"]
    assert windowed.hops.collect().height == 1
    with pytest.raises(LoaderError, match="matches no file"):
        load_files([f"{exports}/*.csv"])


def test_services_select_as_the_other_loaders_do(tmp_path: Path) -> None:
    client, server = (
        jaeger_span("a1", None, "gateway", 0, 100, kind="client"),
        jaeger_span("b2", "a1", "payment", 10, 70, kind="server"),
    )
    path = write(tmp_path / "t.json", jaeger([client, server]))
    payment = load_files([path], services=["payment"])
    assert payment.spans.collect()["service"].to_list() == ["payment"]
    assert payment.hops.collect().height == 0  # hops are the source service's (gateway)
    assert payment.traces.collect().height == 0  # a trace is its root service's
    gateway = load_files([path], services=["gateway"])
    # The hop was derived from the whole trace before the selection.
    assert hops(gateway) == [("gateway", "payment", 30 * US)]
    assert gateway.traces.collect().height == 1


def test_a_trace_split_over_two_files_is_one_trace(tmp_path: Path) -> None:
    client, server = (
        jaeger_span("a1", None, "gateway", 0, 100, kind="client"),
        jaeger_span("b2", "a1", "payment", 10, 70, kind="server"),
    )
    first = write(tmp_path / "gateway.json", jaeger([client]))
    second = write(tmp_path / "payment.json", jaeger([server]))
    assert hops(load_files([first, second])) == [("gateway", "payment", 30 * US)]


def test_the_cli_takes_several_files_and_a_window(tmp_path: Path) -> None:
    window_files(tmp_path)
    exports = tmp_path / "exports"
    result = CliRunner().invoke(app, [
        "analyze", "hops", "--json", "--file", str(exports / "day-00"),
        "--file", f"{exports}/day-1*/*.json", "--since", "2026-03-02T10:01:00Z",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    edges = json.loads(result.stdout)["tables"]["edges"]
    assert [e["calls"] for e in edges] == [1]


CSV = """traceID,spanID,parentSpanID,service,operation,start,duration,http.status_code
{t},a1,,gateway,POST /pay,1772445600000,100,200
{t},b2,a1,payment,POST /charge,1772445600010,70,503
"""


def test_csv_with_the_default_columns(tmp_path: Path) -> None:
    path = tmp_path / "spans.csv"
    path.write_text(CSV.format(t=TRACE))
    data = load_files([path], csv_format=CsvFormat(start_unit="ms", duration_unit="ms"))
    spans = data.spans.collect().sort("span_id")
    assert spans["duration_ns"].to_list() == [100_000_000, 70_000_000]
    assert spans["time"].dt.epoch("ns").to_list()[0] == 1_772_445_600_000_000_000
    assert spans["error"].to_list() == [False, True]
    hop = data.hops.collect().row(0, named=True)
    assert (hop["source_service"], hop["target_service"], hop["network_ns"], hop["error"]) == (
        "gateway",
        "payment",
        30_000_000,
        True,
    )


def test_csv_with_a_column_mapping_and_iso_times(tmp_path: Path) -> None:
    path = tmp_path / "spans.csv"
    path.write_text(
        "TraceId,SpanId,ParentId,Svc,Name,Kind,StartTime,DurationNs\n"
        f"{TRACE},a1,0,gateway,POST /pay,client,2026-03-02T10:00:00Z,100000\n"
        f"{TRACE},b2,a1,payment,POST /pay,SPAN_KIND_SERVER,2026-03-02T10:00:00.00001Z,70000\n"
    )
    columns = {"trace_id": "TraceId", "span_id": "SpanId", "parent_id": "ParentId",
               "service": "Svc", "operation": "Name", "kind": "Kind", "start": "StartTime",
               "duration": "DurationNs"}  # fmt: skip
    data = load_file(path, csv_format=CsvFormat(columns=columns, duration_unit="ns"))
    assert hops(data) == [("gateway", "payment", 30_000)]
    kinds = data.spans.collect().sort("span_id")["kind"].to_list()
    assert kinds == ["client", "server"]
    with pytest.raises(LoaderError, match=r"spans\.csv.*\['traceID'"):
        load_file(path)
    with pytest.raises(ValueError, match="unknown field"):
        CsvFormat(columns={"trace": "TraceId"})


def test_csv_options_on_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "spans.csv"
    path.write_text(CSV.format(t=TRACE).replace("traceID", "tid"))
    result = CliRunner().invoke(app, [
        "analyze", "hops", "--json", "--file", str(path), "--csv-column", "trace_id=tid",
        "--csv-start-unit", "ms", "--csv-duration-unit", "ms",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    (edge,) = json.loads(result.stdout)["tables"]["edges"]
    assert (edge["network_p50_ns"], edge["error_rate"]) == (30_000_000, 1.0)
    bad = CliRunner().invoke(app, ["analyze", "hops", "--file", str(path), "--csv-column", "x"])
    assert bad.exit_code != 0 and "FIELD=COLUMN" in bad.output
    assert pl  # polars is what the loaders return frames of
