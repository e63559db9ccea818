"""The accuracy benchmark's scoring rule, naive baseline and dataset converter (hand-made data)."""

from __future__ import annotations

import importlib.util
import io
import json
import pickle
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import polars as pl
import pytest

from hopscope.analysis.findings import Finding
from hopscope.analysis.loaders import load_file

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


sys.path.insert(0, str(BENCH / "datasets"))  # the converters import their shared _common
accuracy = _module(BENCH / "rca_accuracy.py")
shapleyiq = _module(BENCH / "datasets" / "shapleyiq_trainticket.py")


def finding(**subject: Any) -> Finding:
    return Finding(job="j", kind="k", title="t", impact="high", gain_ns=0, subject=subject,
                   evidence={}, recommendation="", gain="")  # fmt: skip


def test_ranked_services_follow_the_scoring_rule() -> None:
    findings = [
        finding(field="http.route", value="/pay"),  # names no service: skipped
        finding(source_service="gateway", target_service="risk"),  # edge: its callee
        finding(service="payment", node="payment-2"),
        finding(service="risk", operation="score"),  # already ranked
        finding(participant="ledger-0"),
    ]
    ranked = accuracy.ranked_services(findings)
    assert ranked == ["risk", "payment", "ledger-0"]
    assert accuracy.hit(ranked, "risk", 1)
    assert not accuracy.hit(ranked, "payment", 1)
    assert accuracy.hit(ranked, "payment", 3)
    assert not accuracy.hit(ranked, "clearing", 3)


def _spans(rows: list[tuple[str, str, str | None, str, str, int]]) -> pl.LazyFrame:
    names = ["trace_id", "span_id", "parent_id", "service", "kind", "duration_ns"]
    return pl.LazyFrame([dict(zip(names, row, strict=True)) for row in rows])


def test_naive_ranking_charges_client_time_to_the_callee() -> None:
    ms = 1_000_000

    def trace(tid: str, wire_ms: int, leaf_ms: int) -> list[Any]:
        # gateway server 100 ms → its client span → risk server (leaf)
        client = leaf_ms + wire_ms
        return [
            (tid, "a", None, "gateway", "server", (client + 10) * ms),
            (tid, "b", "a", "gateway", "client", client * ms),
            (tid, "c", "b", "risk", "SERVER", leaf_ms * ms),
        ]

    before = _spans(trace("t1", 1, 5))
    # The wire into risk grew by 50 ms: charged to risk (the callee), not to gateway.
    after = _spans(trace("t2", 51, 5))
    assert accuracy.naive_ranking(after, before)[0] == "risk"
    # gateway's own time grew by 30 ms, nothing else did.
    gateway = _spans([
        ("t3", "a", None, "gateway", "server", 46 * ms),
        ("t3", "b", "a", "gateway", "client", 6 * ms),
        ("t3", "c", "b", "risk", "server", 5 * ms),
    ])  # fmt: skip
    assert accuracy.naive_ranking(gateway, before)[0] == "gateway"


def _case() -> dict[str, Any]:
    def span(trace: str, sid: str, parent: str | None, service: str, start_s: float, dur_ms: int,
             kind: str) -> dict[str, Any]:  # fmt: skip
        refs = [{"refType": "CHILD_OF", "traceID": trace, "spanID": parent}] if parent else []
        return {"traceID": trace, "spanID": sid, "operationName": "op", "references": refs,
                "startTime": int(start_s * 1e6), "duration": dur_ms * 1000,
                "tags": [{"key": "span.kind", "type": "string", "value": kind}],
                "logs": [], "processID": "p1", "serviceName": service}  # fmt: skip

    def trace(tid: str, start: float, leaf_ms: int) -> list[dict[str, Any]]:
        return [span(tid, "00000000000000a1", None, "ts-preserve-service", start, leaf_ms + 5,
                     "server"),
                span(tid, "00000000000000a2", "00000000000000a1", "ts-order-service",
                     start + 0.001, leaf_ms, "server")]  # fmt: skip

    return {
        "root_causes": ["ts-order-service"],
        "anomaly_conditions": {"ts-order-service": 200},
        "normal_trace_dicts": {"00000000000000b1": trace("00000000000000b1", 1_649_780_500, 3)},
        "abnormal_trace_dict": {"00000000000000b2": trace("00000000000000b2", 1_649_780_530, 203)},
    }


def test_converter_writes_a_loadable_labelled_incident(tmp_path: Path) -> None:
    label = shapleyiq.convert_case("c1", _case(), tmp_path)
    assert label is not None
    written = json.loads((tmp_path / "c1" / "incident.json").read_text())
    assert written["root_cause_service"] == "ts-order-service"
    assert written["fault_type"] == "network_delay"
    assert written["baseline"] == ["2022-04-12T16:21:40Z", "2022-04-12T16:21:40.008000Z"]
    assert written["incident"] == ["2022-04-12T16:22:10Z", "2022-04-12T16:22:10.208000Z"]
    data = load_file(tmp_path / "c1" / "traces.json")
    services = data.spans.select("service").unique().collect()["service"].to_list()
    assert sorted(services) == ["ts-order-service", "ts-preserve-service"]
    incident, baseline = accuracy.split_windows(
        data,
        (accuracy._ns(written["incident"][0]), accuracy._ns(written["incident"][1]) + 1),
        (accuracy._ns(written["baseline"][0]), accuracy._ns(written["baseline"][1]) + 1),
    )
    assert incident.spans.collect().height == 2
    assert baseline.spans.collect().height == 2


def test_converter_skips_unlabelled_cases(tmp_path: Path) -> None:
    case = _case() | {"root_causes": ["a", "b"]}
    assert shapleyiq.convert_case("c2", case, tmp_path) is None
    assert not (tmp_path / "c2").exists()


def test_converter_pick_is_round_robin_over_services() -> None:
    services = {"1": "a", "2": "a", "3": "a", "4": "b", "5": "c"}
    assert shapleyiq.pick(sorted(services), services, 4) == ["1", "4", "5", "2"]


class _Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("ran",))


def test_converter_unpickler_refuses_foreign_globals() -> None:
    with pytest.raises(pickle.UnpicklingError, match=r"builtins\.print"):
        shapleyiq._SafeUnpickler(io.BytesIO(pickle.dumps(_Evil()))).load()


def test_lab_runs_are_read_from_their_archive_with_their_ground_truth(tmp_path: Path) -> None:
    from hopscope.analysis.loaders import documents_from_records
    from hopscope.processors.archive import ParquetArchive
    from hopscope.processors.records import SpanRecord

    second = 1_000_000_000
    start = 1_796_000_000 * second  # 2026-11-30T...: whole seconds, UTC

    def trace(k: int) -> list[SpanRecord]:
        at = start + k * second
        return [SpanRecord(f"{k:032x}", "a", None, "pay", "server", at, at + 5_000_000, "api"),
                SpanRecord(f"{k:032x}", "b", "a", "score", "client", at + 1, at + 4_000_000,
                           "api", attributes={"peer.service": "risk"})]  # fmt: skip

    def iso(k: int) -> str:
        moment = datetime.fromtimestamp((start + k * second) / second, UTC)
        return moment.isoformat().replace("+00:00", "Z")

    run = tmp_path / "cpu-run"
    ParquetArchive(run / "archive").write(
        list(documents_from_records([s for k in range(20) for s in trace(k)], []))
    )
    truth = {"fault": "cpu", "where": {"service": "risk", "node": "risk-1", "resource": "cpu"},
             "from": iso(10), "to": iso(20),
             "baseline": {"from": iso(2), "to": iso(10)}}  # fmt: skip
    (run / "ground-truth-cpu.json").write_text(json.dumps(truth), encoding="utf-8")
    control = tmp_path / "none-run"
    control.mkdir()
    (control / "ground-truth-none.json").write_text(
        json.dumps({**truth, "fault": "none", "where": {"service": None}}), encoding="utf-8"
    )

    (incident,) = accuracy.lab_incidents(tmp_path)  # the control run names no service
    assert (incident.dataset, incident.case, incident.root_cause_service) == (
        "lab", "cpu-run/cpu", "risk",
    )  # fmt: skip
    # Traces by their start: 10 … 19 in the fault window, 2 … 9 in the baseline.
    assert incident.incident.traces.collect().height == 10
    assert incident.baseline.traces.collect().height == 8
