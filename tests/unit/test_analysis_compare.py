"""The window comparison: suspects are the services (or wires) that caused a change, not the
callers that waited on them; small samples are reported with their uncertainty; the simulator's
injected causes come first in the report with a baseline."""

from __future__ import annotations

import dataclasses
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


def queued(offset: int, queue_ns: int, store_ns: int) -> Dataset:
    """20 of :func:`queued_trace` from the ``offset``-th on: queue and store times growing by
    1 µs a trace."""
    return dataset_from_records([
        span
        for k in range(20)
        for span in queued_trace(f"{offset + k:032x}", START + (offset + k) * 100 * MS,
                                 queue_ns=queue_ns + k * 1000, store_ns=store_ns + k * 1000)
    ])  # fmt: skip


def test_waits_that_grow_under_a_slower_callee_are_inherited() -> None:
    # The worker's queue wait grows 1 → 40 ms because store slowed 1 → 20 ms: store leads,
    # the worker follows one level lower, naming store.
    result = compare.run(queued(100, 40 * MS, 20 * MS), queued(0, MS, MS))
    first, second = suspects(result)
    assert (first.subject, first.impact) == ({"service": "store"}, "high")
    assert first.evidence["change_ns"] == 19 * MS
    assert (second.subject, second.impact) == ({"service": "worker"}, "medium")
    assert second.evidence["change_ns"] == 39 * MS
    assert second.evidence["callee_suspects"] == ["store"]
    assert second.evidence["coordination_ns_per_payment"] == [MS + 9_500, 40 * MS + 9_500]
    assert second.recommendation.startswith("Most of the growth is waiting")


def test_waits_far_larger_than_the_callees_growth_are_not_inherited() -> None:
    # The worker's queue wait grows 1 → 100 ms while store slowed 1 → 3 ms (2 % of it): store
    # cannot have filled the queue (a lock held by another, not slower work below), so the
    # worker stays high and leads.
    result = compare.run(queued(100, 100 * MS, 3 * MS), queued(0, MS, MS))
    first = suspects(result)[0]
    assert (first.subject, first.impact) == ({"service": "worker"}, "high")
    assert "callee_suspects" not in first.evidence


def cached_trace(trace: str, start: int, *, miss: bool) -> list[SpanRecord]:
    """api → risk; risk reads its cache (0.2 ms) and, on a miss, the database (5 ms, no server
    span: the call is charged to postgres); api and risk work 1 ms each, wires 0.5 ms."""
    half = WIRE_NS // 2
    risk = start + MS + half
    get_end = risk + MS + 200_000
    db_end = get_end + (5 * MS if miss else 0)
    risk_end = db_end
    cache = {
        "db.system": "redis",
        "peer.service": "redis",
        "hopscope.cache.name": "rules",
        "hopscope.cache.hit": not miss,
    }
    spans = [
        SpanRecord(trace, "as", None, "pay", "server", start, risk_end + half + MS, "api"),
        SpanRecord(trace, "ac", "as", "score", "client", start + MS, risk_end + half, "api"),
        SpanRecord(trace, "rs", "ac", "score", "server", risk, risk_end, "risk"),
        SpanRecord(trace, "rg", "rs", "GET", "client", risk + MS, get_end, "risk",
                   attributes=cache),
    ]  # fmt: skip
    if miss:
        spans.append(SpanRecord(trace, "rd", "rs", "SELECT rules", "client", get_end, db_end,
                                "risk", attributes={"db.system": "postgresql",
                                                    "peer.service": "postgres"}))  # fmt: skip
    return spans


def test_more_calls_at_the_same_speed_charge_the_caller_not_the_callee() -> None:
    # risk's cache hits 9 in 10 reads, then 1 in 5: postgres gets 0.1 → 0.8 calls per payment,
    # each 5 ms as before. postgres's own time grows 0.5 → 4 ms per payment, all of it from
    # more calls: risk (whose cache stopped hitting) leads, postgres follows one level lower.
    def cached(offset: int, miss_every: int, misses: int) -> Dataset:
        return dataset_from_records([
            span
            for k in range(40)
            for span in cached_trace(f"{offset + k:032x}", START + (offset + k) * 100 * MS,
                                     miss=k % miss_every < misses)
        ])  # fmt: skip

    result = compare.run(cached(100, 5, 4), cached(0, 10, 1))
    first, second = suspects(result)
    assert first.kind == "suspect_call_volume"
    assert first.subject == {"service": "risk", "callee": "postgres", "edge": "risk → postgres",
                             "cache": "rules"}  # fmt: skip
    assert first.evidence["calls_per_payment"] == [0.1, 0.8]
    assert first.evidence["per_call_ns"] == [5 * MS, 5 * MS]
    # (0.8 − 0.1) calls × 5 ms; no latency part.
    assert first.evidence["count_part_ns"] == 3_500_000
    assert first.evidence["latency_part_ns"] == 0
    assert first.evidence["cache_hit_ratio"] == [0.9, 0.2]
    assert first.impact == "high"
    assert "rules serves 20% of reads (was 90%)" in first.title
    assert (second.subject, second.impact) == ({"service": "postgres"}, "medium")
    assert second.evidence["change_ns"] == 3_500_000
    assert second.evidence["more_calls_from"] == "risk"
    assert second.recommendation.startswith("More calls, not slower ones: risk")
    row = result.tables["suspects"].filter(cause="call_volume").row(0, named=True)
    assert (row["subject"], row["service"], row["change_ns"]) == ("risk → postgres", "risk",
                                                                  3_500_000)  # fmt: skip


def test_slower_calls_at_the_same_count_stay_with_the_callee() -> None:
    # Every payment misses the cache in both windows; each database call 5 → 25 ms: postgres
    # slowed, its callers did not call it more.
    def slow(offset: int, extra_ns: int) -> Dataset:
        return dataset_from_records([
            dataclasses.replace(span, end_ns=span.end_ns + (extra_ns if span.span_id != "rg"
                                                            else 0))
            for k in range(40)
            for span in cached_trace(f"{offset + k:032x}", START + (offset + k) * 100 * MS,
                                     miss=True)
        ])  # fmt: skip

    found = suspects(compare.run(slow(100, 20 * MS), slow(0, 0)))
    assert [(f.kind, f.subject, f.impact) for f in found] == [
        ("suspect_service_time", {"service": "postgres"}, "high")
    ]
    assert found[0].evidence["change_ns"] == 20 * MS
    assert "more_calls_from" not in found[0].evidence
    assert compare.call_volume_split([1.0, 1.0], [5 * MS, 25 * MS]) == (0.0, 20 * MS)


def balanced_trace(trace: str, start: int, node: str, *, stalled: str | None) -> list[SpanRecord]:
    """gateway → payment on ``node`` (1 ms of work, wires 0.5 ms); with ``stalled``, a first
    attempt to that node is held 300 ms (its server span 1 ms: the process froze with the
    answer unsent) and fails with a timeout before the gateway fails over to ``node``."""
    half = WIRE_NS // 2
    spans = [SpanRecord(trace, "gs", None, "pay", "server", start, 0, "gateway")]
    begin = start + MS
    if stalled:
        peer = {"peer.service": "payment", "hopscope.peer.node": stalled, "error.type": "timeout"}
        spans += [
            SpanRecord(trace, "g1", "gs", "POST", "client", begin, begin + 300 * MS, "gateway",
                       status="error", attributes=peer),
            SpanRecord(trace, "p1", "g1", "pay", "server", begin + half, begin + half + MS,
                       "payment", node=stalled),
        ]  # fmt: skip
        begin += 300 * MS
    peer = {"peer.service": "payment", "hopscope.peer.node": node}
    spans += [
        SpanRecord(trace, "g2", "gs", "POST", "client", begin, begin + MS + WIRE_NS, "gateway",
                   attributes=peer),
        SpanRecord(trace, "p2", "g2", "pay", "server", begin + half, begin + half + MS,
                   "payment", node=node),
    ]  # fmt: skip
    spans[0] = dataclasses.replace(spans[0], end_ns=begin + MS + WIRE_NS + MS)
    return spans


def test_a_wire_grown_in_the_payments_that_failed_over_charges_the_stalled_node() -> None:
    # Every other payment first waits 300 ms on payment-2, then fails over to payment-1 or -3:
    # the gateway → payment wire grows 0.5 → 150 ms per payment, all of it in those 20.
    def balanced(offset: int, stall: bool) -> Dataset:
        return dataset_from_records([
            span
            for k in range(40)
            for span in balanced_trace(
                f"{offset + k:032x}", START + (offset + k) * 400 * MS, f"payment-{1 + 2 * (k % 2)}",
                stalled="payment-2" if stall and k % 4 < 2 else None,
            )
        ])  # fmt: skip

    result = compare.run(balanced(100, True), balanced(0, False))
    first = suspects(result)[0]
    assert first.kind == "suspect_network"
    assert first.subject["service"] == "payment" and first.subject["node"] == "payment-2"
    assert first.title.startswith(
        "payment-2 (payment) stopped answering: gateway → payment: network"
    )
    assert first.impact == "high"
    # The held attempt's wire is 300 − 1 ms (its server span): 20 · 299 ms / 40 more.
    assert first.evidence["change_ns"] == 149_500_000
    assert first.evidence["failed_over_payments"] == [0, 20]
    # The 20 payments carry all of it: (20 · 299.5 ms − 20 · 0.5 ms) / 40 = 149.5 ms.
    assert first.evidence["stalled_node_share"] == 1.0
    assert "payment-2 stopped answering in time" in first.recommendation
    # The timed-out attempts are where payment's errors start: all 20 are in those payments.
    (errors,) = [f for f in suspects(result) if f.kind == "suspect_errors"]
    assert errors.subject == {"service": "payment", "node": "payment-2"}
    assert errors.evidence["stalled_node_share"] == 1.0
    # When the payments fail over away from every node alike (here payment-2 and payment-4),
    # the cause is downstream of them all: the wire is not charged to one node.
    spread = dataset_from_records([
        span
        for k in range(40)
        for span in balanced_trace(
            f"{100 + k:032x}", START + (100 + k) * 400 * MS, f"payment-{1 + 2 * (k % 2)}",
            stalled=("payment-2" if k % 4 == 0 else "payment-4") if k % 4 < 2 else None,
        )
    ])  # fmt: skip
    found = suspects(compare.run(spread, balanced(0, False)))
    assert not [f for f in found if "node" in f.subject]
    # Without failovers the same kind of growth stays with the wire.
    plain = compare.run(window(20, wire_cd=20 * MS, offset=100), window(20))
    assert "node" not in suspects(plain)[0].subject


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


def fan_trace(trace: str, start: int, request_d: int, request_e: int) -> list[SpanRecord]:
    """c calls d, then e: each callee works 1 ms; the request legs are given, each response
    leg 0.25 ms."""
    spans = []
    begin = start + SELF_NS
    for callee, request in (("d", request_d), ("e", request_e)):
        call_ns = request + SELF_NS + WIRE_NS // 2
        spans.append(SpanRecord(trace, f"{callee}s", f"{callee}c", f"{callee}/op", "server",
                                begin + request, begin + request + SELF_NS, callee))  # fmt: skip
        spans.append(SpanRecord(trace, f"{callee}c", "cs", f"{callee}/op", "client", begin,
                                begin + call_ns, "c"))  # fmt: skip
        begin += call_ns
    spans.append(SpanRecord(trace, "cs", None, "c/op", "server", start, begin, "c"))
    return spans


def fan_window(traces: int, offset: int, request_d: int, request_e: int) -> Dataset:
    spans = [
        span
        for k in range(traces)
        for span in fan_trace(
            f"{offset + k:032x}", START + (offset + k) * 100 * MS, request_d, request_e
        )
    ]
    return dataset_from_records(spans, [])


def test_a_late_request_leg_to_one_callee_only_names_the_callee() -> None:
    # c's requests to e leave on time, those to d arrive 20 ms late: the path to d or d's
    # door (a proxy in front of it), not c's egress.
    before = fan_window(20, 0, WIRE_NS // 2, WIRE_NS // 2)
    after = fan_window(20, 100, 20 * MS, WIRE_NS // 2)
    (finding,) = suspects(compare.run(after, before))
    assert finding.subject["edge"] == "c → d" and finding.subject["service"] == "d"
    assert finding.evidence["delayed_at"] == "path"
    assert finding.evidence["quiet_wires_to"] == ["e"]
    assert "in front of d" in finding.recommendation


def test_late_requests_to_every_callee_name_the_caller() -> None:
    before = fan_window(20, 0, WIRE_NS // 2, WIRE_NS // 2)
    after = fan_window(20, 100, 20 * MS, 20 * MS)
    found = suspects(compare.run(after, before))
    assert {f.subject["edge"] for f in found} == {"c → d", "c → e"}
    assert all(f.subject["service"] == "c" and "delayed_at" not in f.evidence for f in found)
