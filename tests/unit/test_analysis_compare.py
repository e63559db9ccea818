"""The window comparison: suspects are the services (or wires) that caused a change, not the
callers that waited on them; small samples are reported with their uncertainty; the simulator's
injected causes come first in the report with a baseline."""

from __future__ import annotations

import math
from typing import Any

import pytest

from hopscope.analysis.jobs import compare, hops
from hopscope.analysis.loaders import dataset_from_records
from hopscope.analysis.report import build_report
from hopscope.analysis.schema import Dataset
from hopscope.processors.records import LogRecord, SpanRecord
from tests.analysis_support import MS, SCENARIOS, START, simulated

CHAIN = ("a", "b", "c", "d")
SELF_NS = 1 * MS
WIRE_NS = MS // 2


def chain_trace(
    trace: str, *, leaf_ns: int, wires: tuple[int, int, int], start: int = START,
    request_cd: int | None = None,
) -> list[SpanRecord]:  # fmt: skip
    """a → b → c → d: each caller works 1 ms, then calls the next one and waits for it; the
    leaf d works ``leaf_ns``. ``wires[i]`` is the network time of the i-th call, half of it on
    the request leg (c → d: ``request_cd`` of it when given)."""
    spans: list[SpanRecord] = []

    def server(level: int, parent: str | None, begin: int) -> int:
        service = CHAIN[level]
        span_id = f"{service}s"
        if level == len(CHAIN) - 1:
            spans.append(SpanRecord(trace, span_id, parent, f"{service}/op", "server", begin,
                                    begin + leaf_ns, service))  # fmt: skip
            return leaf_ns
        call_start = begin + SELF_NS
        request = wires[level] // 2
        if level == 2 and request_cd is not None:
            request = request_cd
        child = server(level + 1, f"{service}c", call_start + request)
        call_ns = child + wires[level]
        spans.append(SpanRecord(trace, f"{service}c", span_id, f"{CHAIN[level + 1]}/op", "client",
                                call_start, call_start + call_ns, service))  # fmt: skip
        spans.append(SpanRecord(trace, span_id, parent, f"{service}/op", "server", begin,
                                call_start + call_ns, service))  # fmt: skip
        return SELF_NS + call_ns

    server(0, None, start)
    return spans


def window(
    traces: int, *, leaf_ns: int = SELF_NS, wire_cd: int = WIRE_NS, offset: int = 0,
    jitter_ns: int = 0, logs: list[LogRecord] | None = None, request_cd: int | None = None,
) -> Dataset:  # fmt: skip
    spans = [
        span
        for k in range(traces)
        for span in chain_trace(
            f"{offset + k:032x}",
            leaf_ns=leaf_ns,
            wires=(WIRE_NS, WIRE_NS, wire_cd + k * jitter_ns),
            start=START + (offset + k) * 100 * MS,
            request_cd=request_cd,
        )
    ]
    return dataset_from_records(spans, logs or [])


def suspects(result: Any) -> list[Any]:
    return [f for f in result.findings if f.kind in compare.SUSPECT_KINDS]


def test_a_slow_leaf_under_three_waiting_callers_names_the_leaf() -> None:
    before = window(20)
    after = window(20, leaf_ns=30 * MS, offset=100)
    result = compare.run(after, before)

    (finding,) = suspects(result)
    assert finding.kind == "suspect_service_time"
    assert finding.subject == {"service": "d"}
    assert finding.impact == "high"
    # d's own time 1 ms -> 30 ms on every payment; a, b and c waited longer but own nothing more.
    assert finding.evidence["per_payment_ns"] == [1 * MS, 30 * MS]
    assert finding.evidence["change_ns"] == 29 * MS
    assert finding.evidence["cliffs_delta"] == 1.0
    assert finding.evidence["p_value"] < 1e-6
    assert finding.evidence["traces"] == [20, 20]
    table = result.tables["suspects"]
    assert table.row(0, named=True)["subject"] == "d"
    callers = table.filter(table["subject"].is_in(["a", "b", "c"]))
    assert callers["change_ns"].to_list() == [0, 0, 0]
    # Example traces from both windows, the incident's on the finding.
    assert len(finding.example_traces) == 3
    assert len(finding.evidence["baseline_example_traces"]) == 3
    # The callers' spans did get slower: the operations table shows it, the suspects do not.
    ops = {r["operation"]: r for r in result.tables["operations"].iter_rows(named=True)}
    assert ops["[a] a/op"]["p50_ns_incident"] - ops["[a] a/op"]["p50_ns_baseline"] == 29 * MS


def test_a_slow_wire_names_the_edge_not_the_callee() -> None:
    before = window(20)
    after = window(20, wire_cd=20 * MS, offset=100)
    result = compare.run(after, before)

    (finding,) = suspects(result)
    assert finding.kind == "suspect_network"
    assert finding.subject == {"service": "d", "edge": "c → d", "source_service": "c",
                               "target_service": "d"}  # fmt: skip
    assert finding.evidence["change_ns"] == 20 * MS - WIRE_NS
    assert "network path" in finding.recommendation
    own = result.tables["suspects"].filter(cause="own_time", subject="d")
    assert own["change_ns"].item() == 0


def test_a_late_request_leg_names_the_caller() -> None:
    # c's requests to d leave 20 ms late; d answers as fast as before: c's egress, not d.
    before = window(20)
    after = window(20, wire_cd=20 * MS + WIRE_NS // 2, request_cd=20 * MS, offset=100)
    result = compare.run(after, before)

    (finding,) = suspects(result)
    assert finding.kind == "suspect_network"
    assert finding.subject == {"service": "c", "edge": "c → d", "source_service": "c",
                               "target_service": "d"}  # fmt: skip
    assert finding.evidence["delayed_leg"] == "request"
    assert finding.evidence["request_leg_ns"] == [WIRE_NS // 2, 20 * MS]
    assert finding.evidence["response_leg_ns"] == [WIRE_NS // 2, WIRE_NS // 2]
    assert "c's side of the path" in finding.recommendation
    row = result.tables["suspects"].filter(cause="network", subject="c → d").row(0, named=True)
    assert row["service"] == "c"


def test_a_late_response_leg_names_the_callee() -> None:
    before = window(20)
    after = window(20, wire_cd=20 * MS + WIRE_NS // 2, request_cd=WIRE_NS // 2, offset=100)
    (finding,) = suspects(compare.run(after, before))
    assert finding.evidence["delayed_leg"] == "response"
    assert finding.subject["service"] == "d"
    assert "d's side of the path" in finding.recommendation


def queued_trace(trace: str, start: int, *, queue_ns: int, store_ns: int) -> list[SpanRecord]:
    """api → worker → store: the worker waits ``queue_ns`` in its queue (a coordination span),
    then calls store, which works ``store_ns``; every wire 0.5 ms, split evenly."""
    half = WIRE_NS // 2
    worker = start + MS + half
    call = worker + queue_ns
    store = call + half
    worker_end = store + store_ns + half
    return [
        SpanRecord(trace, "as", None, "pay", "server", start, worker_end + half + MS, "api"),
        SpanRecord(trace, "ac", "as", "work", "client", start + MS, worker_end + half, "api"),
        SpanRecord(trace, "ws", "ac", "work", "server", worker, worker_end, "worker"),
        SpanRecord(trace, "wq", "ws", "queue_wait", "internal", worker, call, "worker",
                   attributes={"hopscope.coordination.kind": "queue"}),
        SpanRecord(trace, "wc", "ws", "store", "client", call, store + store_ns + half, "worker"),
        SpanRecord(trace, "ss", "wc", "store", "server", store, store + store_ns, "store"),
    ]  # fmt: skip


def test_waits_that_grow_under_a_slower_callee_are_inherited() -> None:
    # The worker's queue wait grows 1 → 40 ms because store slowed 1 → 20 ms: store leads,
    # the worker follows one level lower, naming store.
    def queued(offset: int, queue_ns: int, store_ns: int) -> Dataset:
        return dataset_from_records([
            span
            for k in range(20)
            for span in queued_trace(f"{offset + k:032x}", START + (offset + k) * 100 * MS,
                                     queue_ns=queue_ns + k * 1000, store_ns=store_ns + k * 1000)
        ])  # fmt: skip

    result = compare.run(queued(100, 40 * MS, 20 * MS), queued(0, MS, MS))
    first, second = suspects(result)
    assert (first.subject, first.impact) == ({"service": "store"}, "high")
    assert first.evidence["change_ns"] == 19 * MS
    assert (second.subject, second.impact) == ({"service": "worker"}, "medium")
    assert second.evidence["change_ns"] == 39 * MS
    assert second.evidence["callee_suspects"] == ["store"]
    assert second.evidence["coordination_ns_per_payment"] == [MS + 9_500, 40 * MS + 9_500]
    assert second.recommendation.startswith("Most of the growth is waiting")


def error_logs(traces: int, offset: int, service: str, count: int) -> list[LogRecord]:
    logs = [
        LogRecord(START + (offset + k) * 100 * MS, service, None, "ERROR", "payment failed",
                  trace_id=f"{offset + k:032x}")
        for k in range(count - 1)
    ]  # fmt: skip
    # An exception recorded as a log is an error whatever its level.
    logs.append(LogRecord(START + offset * 100 * MS, service, None, "INFO", "boom",
                          attributes={"exception.type": "java.io.IOException"}))  # fmt: skip
    # Chatter from another service at INFO never counts.
    logs += [LogRecord(START + (offset + k) * 100 * MS, "b", None, "INFO", "ok")
             for k in range(traces)]  # fmt: skip
    return logs


def test_errors_only_in_logs_name_the_service() -> None:
    before = window(20, logs=error_logs(20, 0, "c", 1)[1:])  # no error log of c at all
    after = window(20, offset=100, logs=error_logs(20, 100, "c", 12))
    result = compare.run(after, before)

    (finding,) = suspects(result)
    assert finding.kind == "suspect_errors"
    assert finding.subject == {"service": "c"}
    assert finding.evidence["error_logs"] == [0, 12]
    assert finding.evidence["error_rate"] == [0.0, 0.0]  # no span failed
    # 12 events, all in the incident window of equal exposure: 2 · 2⁻¹² (exact binomial).
    assert finding.evidence["error_logs_p_value"] == pytest.approx(2 / 4096)
    assert finding.impact == "high"


def test_a_caller_logging_its_callees_failures_comes_after_the_callee() -> None:
    # b logs every failure of its callee c, which logs them too: c is the deeper, b drops a level.
    before = window(20, logs=error_logs(20, 0, "c", 1)[1:])
    after_logs = [*error_logs(20, 100, "c", 12), *error_logs(20, 100, "b", 12)]
    result = compare.run(window(20, offset=100, logs=after_logs), before)

    first, second = suspects(result)
    assert (first.subject, first.impact) == ({"service": "c"}, "high")
    assert (second.subject, second.impact) == ({"service": "b"}, "medium")
    assert second.evidence["callee_suspects"] == ["c"]


def test_a_large_effect_on_eight_calls_is_reported_with_its_uncertainty() -> None:
    # 8 payments per window; c → d's wire 4 ms -> 584 ms (10 µs apart, so no ties).
    before = window(8, wire_cd=4 * MS, jitter_ns=10_000)
    after = window(8, wire_cd=584 * MS, jitter_ns=10_000, offset=100)
    result = compare.run(after, before)

    (finding,) = suspects(result)
    assert finding.subject["edge"] == "c → d"
    assert finding.impact == "high"
    evidence = finding.evidence
    assert evidence["change_ns"] == 580 * MS
    # Exact Mann–Whitney: all 8 incident values above all 8 baseline ones, 2 / C(16, 8).
    assert evidence["p_value"] == pytest.approx(2 / math.comb(16, 8))
    assert evidence["cliffs_delta"] == 1.0
    low, high = evidence["change_interval_ns"]
    assert low < 580 * MS < high
    assert evidence["traces"] == [8, 8]

    # The hops job judges the 8-call edge too (no count gate): its p50 interval is the range of
    # its 8 calls (coverage 1 − 2 · 2⁻⁸), all far above the other edges' 0.5 ms.
    (slow,) = [f for f in hops.run(after).findings if f.kind == "slow_edge"]
    assert slow.impact == "high"
    assert slow.evidence["network_p50_interval_ns"] == [584 * MS, 584 * MS + 70_000]
    assert slow.evidence["network_p50_interval_coverage"] == round(1 - 2 / 256, 4)


def test_few_calls_that_cannot_bound_the_p50_stay_a_medium_finding() -> None:
    after = window(3, wire_cd=584 * MS, jitter_ns=10_000)
    (slow,) = [f for f in hops.run(after).findings if f.kind == "slow_edge"]
    assert slow.impact == "medium"
    assert slow.evidence["network_p50_interval_coverage"] == 0.75  # 1 − 2 · 2⁻³


# --- the simulator: a fault scenario's window against a baseline run's window ---------------

BASELINE_SEED = 8  # another run than the scenarios' (seed 7): different payments, same system


def expected_service(scenario: str) -> str | None:
    injected = simulated(scenario).ground_truth["injected"][0]
    if "edge" in injected:
        return str(injected["edge"]["target"])
    # The replica and clock faults change no latency or errors: no suspect, the per-window
    # jobs keep the lead (checked below against the report without a baseline).
    if injected["kind"] in ("slow_replica", "clock_skew"):
        return None
    if injected["kind"] == "lb_skew":  # the overloaded node's service
        return str(injected["overloaded_node"]).rsplit("-", 1)[0]
    return str(injected["service"])


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "baseline"])
def test_the_injected_cause_leads_the_report_with_a_baseline(scenario: str) -> None:
    incident = simulated(scenario).dataset
    baseline = simulated("baseline", seed=BASELINE_SEED).dataset
    with_baseline = build_report(incident, source=scenario, progress=False, baseline=baseline)
    top = with_baseline.findings[0]
    service = expected_service(scenario)
    if service is None:
        # No latency or error change to attribute: the per-window finding of the fault leads,
        # ahead of the standing ones the baseline has too.
        assert not [f for f in with_baseline.findings if f.kind in compare.SUSPECT_KINDS]
        injected = simulated(scenario).ground_truth["injected"][0]
        if scenario == "slow-replica":
            assert (top.job, top.kind) == ("db", "replica_lag")
            assert top.subject["replica"] == injected["replica"]
            assert top.subject["service"] == "payment"  # whose balance reads moved
        else:
            assert (top.job, top.kind) == ("hops", "clock_skew")
            assert top.subject["node"] == injected["node"]
        assert "in_baseline" not in top.evidence
        standing = [f for f in with_baseline.findings if f.evidence.get("in_baseline")]
        assert standing and all(f.title.endswith("(also in the baseline window)")
                                for f in standing)  # fmt: skip
        first_standing = with_baseline.findings.index(standing[0])
        assert all(f.evidence.get("in_baseline") for f in with_baseline.findings[first_standing:])
    else:
        assert top.job == compare.JOB and top.kind in compare.SUSPECT_KINDS
        assert top.subject["service"] == service
        assert top.impact in ("high", "medium")
    if scenario == "slow-hop":
        assert top.kind == "suspect_network" and top.subject["edge"] == "payment → risk"
    if scenario == "lb-skew":  # the overloaded node carries the growth, and is named
        node = simulated(scenario).ground_truth["injected"][0]["overloaded_node"]
        assert top.evidence["nodes"][0]["node"] == node
        assert f"sits on {node}" in top.recommendation


def test_baseline_against_baseline_yields_no_high_finding() -> None:
    incident = simulated("baseline").dataset
    baseline = simulated("baseline", seed=BASELINE_SEED).dataset
    result = compare.run(incident, baseline)
    assert not [f for f in result.findings if f.impact in ("high", "medium")]
    report = build_report(incident, source="baseline", progress=False, baseline=baseline)
    assert not [f for f in report.findings if f.impact == "high"]
    assert report.baseline_window is not None


def test_findings_already_in_the_baseline_follow_the_new_ones() -> None:
    from hopscope.analysis.findings import Finding
    from hopscope.analysis.report import split_standing

    def finding(kind: str, impact: str, gain_ns: int, **subject: str) -> Finding:
        return Finding("coordination", kind, kind, impact, gain_ns, subject, {}, "", "", ())  # type: ignore[arg-type]

    before = [finding("lock_contention", "high", 10, service="ledger")]
    same = finding("lock_contention", "high", 15, service="ledger")
    grown = finding("lock_contention", "high", 100, service="ledger")
    other = finding("lock_contention", "high", 15, service="risk")
    changed, standing = split_standing([same, grown, other], before)
    assert changed == [grown, other]
    assert [f.evidence for f in standing] == [{"in_baseline": True}]
    assert standing[0].title == "lock_contention (also in the baseline window)"
