"""The payment-network simulator, into in-memory exporters: structure, conventions, counts,
determinism and the effect of every scenario. No Kafka, no sleeping (virtual time)."""

from __future__ import annotations

import doctest
import functools
import json
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from hopscope.ingest import conventions as c
from hopscope.ingest.simulator import (
    Scenario,
    SeededIdGenerator,
    SimulationConfig,
    SimulationResult,
    Topology,
    VirtualClock,
    _clock,
    _config,
    _ids,
    _pans,
    _simulate,
    format_ns_iso,
    format_pan,
    generate_pan,
    is_luhn_valid,
    parse_iso8601_ns,
    simulate,
)
from hopscope.ingest.spans import strip_sql_parameters

START = parse_iso8601_ns("2025-03-01T12:00:00Z")
TRACES = 48
CARELESS_KEYS = ("http.request.body.card", "payment.card_number")


@dataclass(frozen=True)
class Run:
    result: SimulationResult
    spans: tuple[ReadableSpan, ...]
    logs: tuple[ReadableLogRecord, ...]

    @property
    def truth(self) -> dict[str, Any]:
        return self.result.ground_truth


def event_name(record: Any) -> str | None:
    """The logging bridge moves ``extra={"event.name": ...}`` into the record's event_name."""
    return record.event_name or (record.attributes or {}).get(c.EVENT_NAME)


# Pinned with the seed: only the two together reproduce a run (an unpinned run id is random).
RUN_ID = "unit-test-run"


def run(
    scenario: Scenario | str = Scenario.BASELINE,
    *,
    seed: int = 7,
    run_id: str | None = RUN_ID,
    traces: int = TRACES,
    rate: float = 100.0,
    start_ns: int = START,
    lb_strategy: str | None = None,
) -> Run:
    span_exporter = InMemorySpanExporter()
    log_exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    config = SimulationConfig(
        start_ns=start_ns, scenario=Scenario(scenario), seed=seed, run_id=run_id, traces=traces,
        rate=rate, lb_strategy=lb_strategy,
    )  # fmt: skip
    result = simulate(
        config,
        span_processors=[SimpleSpanProcessor(span_exporter)],
        log_processors=[SimpleLogRecordProcessor(log_exporter)],
    )
    return Run(result, span_exporter.get_finished_spans(), log_exporter.get_finished_logs())


@functools.cache
def cached(scenario: Scenario, seed: int = 7, traces: int = TRACES, rate: float = 100.0) -> Run:
    """One run per scenario and parameters, shared by the tests that only read it."""
    return run(scenario, seed=seed, traces=traces, rate=rate)


# -- helpers -------------------------------------------------------------------------------


def service(span: ReadableSpan) -> str:
    return str(span.resource.attributes[c.SERVICE_NAME])


def node(span: ReadableSpan) -> str:
    return str(span.resource.attributes[c.SERVICE_INSTANCE_ID])


def attr(span: ReadableSpan, key: str) -> Any:
    return (span.attributes or {}).get(key)


def span_id(span: ReadableSpan) -> int:
    return span.get_span_context().span_id  # type: ignore[union-attr]


def trace_id(span: ReadableSpan) -> int:
    return span.get_span_context().trace_id  # type: ignore[union-attr]


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def start(span: ReadableSpan) -> int:
    assert span.start_time is not None
    return span.start_time


def end(span: ReadableSpan) -> int:
    assert span.end_time is not None
    return span.end_time


def by_id(spans: Iterable[ReadableSpan]) -> dict[tuple[int, int], ReadableSpan]:
    return {(trace_id(s), span_id(s)): s for s in spans}


def hops(spans: Iterable[ReadableSpan]) -> list[tuple[ReadableSpan, ReadableSpan]]:
    """(client, server) pairs: docs/DESIGN.md §3's hop."""
    spans = list(spans)
    index = by_id(spans)
    pairs = []
    for s in spans:
        if s.kind is SpanKind.SERVER and s.parent is not None:
            pairs.append((index[(trace_id(s), s.parent.span_id)], s))
    return pairs


def canonical(r: Run) -> str:
    """Everything exported, ids and timestamps included, in a stable order."""
    spans = [
        {
            "trace": trace_id(s), "span": span_id(s), "parent": parent_id(s), "name": s.name,
            "kind": s.kind.name, "start": s.start_time, "end": s.end_time,
            "status": [s.status.status_code.name, s.status.description],
            "attributes": sorted((k, repr(v)) for k, v in (s.attributes or {}).items()),
            "events": [[e.name, e.timestamp, sorted((e.attributes or {}).items())]
                       for e in s.events],
            "resource": sorted(s.resource.attributes.items()),
        }
        for s in r.spans
    ]  # fmt: skip
    logs = [
        {
            "timestamp": g.log_record.timestamp,
            "observed": g.log_record.observed_timestamp,
            "trace": g.log_record.trace_id, "span": g.log_record.span_id,
            "severity": g.log_record.severity_text, "body": g.log_record.body,
            "attributes": sorted((k, repr(v)) for k, v in (g.log_record.attributes or {}).items()),
            "resource": sorted(g.resource.attributes.items()),
        }
        for g in r.logs
    ]  # fmt: skip
    return json.dumps({"spans": spans, "logs": logs, "truth": r.truth}, default=repr)


def assert_structure(r: Run, *, skewed_node: str | None = None) -> None:
    """The invariants every scenario keeps (docs/DESIGN.md §3)."""
    spans = r.spans
    index = by_id(spans)
    traces: dict[int, list[ReadableSpan]] = defaultdict(list)
    for s in spans:
        traces[trace_id(s)].append(s)
        assert start(s) <= end(s), s.name
        assert node(s).startswith(service(s) + "-")
    assert len(traces) == r.result.traces

    for members in traces.values():
        roots = [s for s in members if s.parent is None]
        assert len(roots) == 1
        root = roots[0]
        assert root.kind is SpanKind.SERVER and service(root) == "gateway"
        for s in members:
            if s is root:
                continue
            parent = index.get((trace_id(s), s.parent.span_id))  # type: ignore[union-attr]
            assert parent is not None, f"{s.name}: parent missing from its trace"
            if s.kind is SpanKind.SERVER:
                assert parent.kind is SpanKind.CLIENT
                assert service(parent) != service(s)
                assert attr(parent, c.PEER_SERVICE) == service(s)
                assert attr(parent, c.SERVER_ADDRESS) == node(s)
                if node(s) != skewed_node:
                    assert start(parent) < start(s) and end(s) < end(parent), s.name
            else:
                # Same node, same clock: a child lies within its parent.
                assert node(parent) == node(s)
                assert start(parent) <= start(s) and end(s) <= end(parent), s.name

    for s in spans:
        attributes = s.attributes or {}
        if s.kind is SpanKind.CLIENT and c.RPC_SYSTEM in attributes:
            for key in (c.PEER_SERVICE, c.SERVER_ADDRESS, c.RPC_SYSTEM, c.RPC_SERVICE,
                        c.RPC_METHOD, c.HTTP_RESEND_COUNT):  # fmt: skip
                assert key in attributes, (s.name, key)
            if service(s) == "gateway":
                assert attributes[c.LB_STRATEGY] in c.LB_STRATEGIES
        if c.DB_SYSTEM in attributes:
            assert s.kind is SpanKind.CLIENT
            assert attributes[c.DB_SYSTEM] == "postgresql"
            assert attributes[c.DB_ROLE] in c.DB_ROLES
            assert attributes[c.DB_OPERATION] and attributes[c.SERVER_ADDRESS]
            text = str(attributes[c.DB_QUERY_TEXT])
            assert strip_sql_parameters(text) == text and "'" not in text
            assert not re.search(r"\d", text), text
        if c.COORDINATION_KIND in attributes:
            assert attributes[c.COORDINATION_KIND] in c.COORDINATION_KINDS
            assert attributes[c.COORDINATION_RESOURCE]
            if str(attributes[c.COORDINATION_KIND]).startswith("2pc."):
                assert str(attributes[c.COORDINATION_PARTICIPANT]).startswith("ledger-")
        if s.name.startswith("cache "):
            assert isinstance(attributes[c.CACHE_HIT], bool)

    for log in r.logs:
        record = log.log_record
        assert record.observed_timestamp == record.timestamp  # virtual, not the wall clock
        if record.trace_id:
            owner = index.get((record.trace_id, record.span_id))
            assert owner is not None, record.body
            assert node(owner) == log.resource.attributes[c.SERVICE_INSTANCE_ID]
            assert record.timestamp is not None
            # A float of seconds carries the time to about 0.25 µs.
            assert start(owner) - 1_000 <= record.timestamp <= end(owner) + 1_000
        else:
            assert event_name(record) in c.CLUSTER_EVENTS

    counts = r.truth["counts"]
    assert counts == {"traces": len(traces), "spans": len(spans), "log_records": len(r.logs)}
    assert (r.result.spans, r.result.log_records) == (len(spans), len(r.logs))


# -- every scenario ------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", list(Scenario), ids=str)
def test_structure_conventions_and_counts(scenario: Scenario) -> None:
    r = cached(scenario)
    skewed = r.truth["injected"][0]["node"] if scenario is Scenario.CLOCK_SKEW else None
    assert_structure(r, skewed_node=skewed)
    assert r.truth["scenario"] == scenario.value and r.truth["seed"] == 7
    assert r.truth["start"] == "2025-03-01T12:00:00.000000000Z"
    assert (r.truth["injected"] == []) == (scenario is Scenario.BASELINE)
    # Every span is in virtual time, from the start to the reported end (a skewed node's
    # clock runs behind: its spans may start before the start).
    on_time = [s for s in r.spans if node(s) != skewed]
    assert min(start(s) for s in on_time) == START
    assert max(end(s) for s in on_time) <= r.truth["end_ns"]


@pytest.mark.parametrize("scenario", list(Scenario), ids=str)
def test_same_seed_and_run_id_same_telemetry(scenario: Scenario) -> None:
    assert canonical(run(scenario, seed=7, run_id=RUN_ID)) == canonical(cached(scenario))


def test_different_seed_start_or_run_id_different_telemetry() -> None:
    base = canonical(cached(Scenario.BASELINE))
    assert canonical(run(seed=8)) != base
    assert canonical(run(start_ns=START + 1)) != base
    assert canonical(run(run_id="another-run")) != base


def test_unpinned_runs_share_no_trace_id() -> None:
    """Without a run id, the same seed gives the same traffic under new ids: a second run
    never overwrites the first's documents (their ids are built from the trace ids)."""
    first, second = run(seed=7, run_id=None), run(seed=7, run_id=None)
    assert first.truth["run_id"] != second.truth["run_id"]
    assert first.result.run_id == first.truth["run_id"]
    assert not {trace_id(s) for s in first.spans} & {trace_id(s) for s in second.spans}
    # Only the ids (and the run id on the resources) differ: the seed still fixes the traffic.
    assert first.truth["counts"] == second.truth["counts"]
    assert [s.name for s in first.spans] == [s.name for s in second.spans]


def test_the_run_id_is_on_every_resource() -> None:
    r = cached(Scenario.BASELINE)
    assert {s.resource.attributes[c.RUN_ID] for s in r.spans} == {RUN_ID}
    assert {g.resource.attributes[c.RUN_ID] for g in r.logs} == {RUN_ID}
    assert r.truth["run_id"] == RUN_ID


@pytest.mark.parametrize("run_id", ["", "-leading-dash", "has space", "x" * 65, "a/b"])
def test_a_bad_run_id_is_refused(run_id: str) -> None:
    with pytest.raises(ValueError, match="run_id must be"):
        SimulationConfig(start_ns=START, run_id=run_id)


def test_nodes_and_services() -> None:
    r = cached(Scenario.BASELINE)
    nodes = {(service(s), node(s)) for s in r.spans}
    services = {s for s, _ in nodes}
    assert services == {"gateway", "payment", "risk", "clearing", "bank-adapter"}
    assert {n for s, n in nodes if s == "payment"} == {"payment-1", "payment-2", "payment-3"}
    resource = r.spans[0].resource.attributes
    assert resource[c.DEPLOYMENT_ENVIRONMENT] == "simulation" and c.CLOUD_REGION in resource


def test_trace_shape_of_a_payment() -> None:
    r = cached(Scenario.BASELINE)
    names = Counter(s.name for s in r.spans)
    assert names["gateway/POST /v1/payments"] == TRACES
    for name in ("payment/Authorize", "risk/Score", "cache risk-profiles", "clearing/Settle",
                 "bank-adapter/Authorize", "issuer/authorize"):  # fmt: skip
        assert names[name] > 0, name
    kinds = Counter(attr(s, c.COORDINATION_KIND) for s in r.spans)
    assert kinds[c.TWO_PC_PREPARE] > 0 and kinds[c.TWO_PC_COMMIT] > 0
    assert kinds[c.LOCK_WAIT] > 0 and kinds[c.CONSENSUS_APPEND] > 0
    # One prepare and one commit per participant shard, all on the same transaction id.
    for s in r.spans:
        if attr(s, c.COORDINATION_KIND) == c.TWO_PC_COMMIT:
            assert str(attr(s, c.COORDINATION_RESOURCE)).startswith("tx-")
    locks = [s for s in r.spans if attr(s, c.COORDINATION_KIND) == c.LOCK_WAIT]
    assert all(str(attr(s, c.COORDINATION_RESOURCE)).startswith("account:") for s in locks)
    # Reads on replicas, writes on primaries; the issuer is a one-sided hop.
    for s in r.spans:
        if attr(s, c.DB_OPERATION) == "SELECT":
            assert attr(s, c.DB_ROLE) == c.REPLICA
        elif attr(s, c.DB_SYSTEM):
            assert attr(s, c.DB_ROLE) == c.PRIMARY
    issuer = [s for s in r.spans if s.name == "issuer/authorize"]
    assert all(s.kind is SpanKind.CLIENT and attr(s, c.PEER_SERVICE) == "issuer" for s in issuer)


def test_headers_carry_the_trace_context() -> None:
    # A SERVER span's parent is the CLIENT span whose traceparent it extracted.
    r = cached(Scenario.BASELINE)
    pairs = hops(r.spans)
    assert len(pairs) == sum(1 for s in r.spans if s.kind is SpanKind.SERVER) - TRACES
    assert all(trace_id(client) == trace_id(server) for client, server in pairs)


def test_logs_look_like_a_service_logging() -> None:
    r = cached(Scenario.BASELINE)
    with_trace = [g for g in r.logs if g.log_record.trace_id]
    assert len(with_trace) >= 4 * TRACES
    payment_ids = {attr(s, c.PAYMENT_ID) for s in r.spans if s.parent is None}
    logged = {(g.log_record.attributes or {}).get(c.PAYMENT_ID) for g in with_trace}
    assert payment_ids <= logged
    severities = Counter(g.log_record.severity_text for g in r.logs)
    assert severities["INFO"] > 0
    leader = [g for g in r.logs if event_name(g.log_record) == c.LOG_LEADER_ELECTED]
    assert len(leader) == 1 and not leader[0].log_record.trace_id


def test_careless_services_leak_luhn_valid_pans() -> None:
    r = cached(Scenario.BASELINE)
    pans = r.truth["seeded_pans"]
    texts = set(r.truth["seeded_pan_texts"])
    assert pans and all(len(p) == 16 and is_luhn_valid(p) for p in pans)
    assert {t.replace(" ", "").replace("-", "") for t in texts} == set(pans)
    roots = [s for s in r.spans if s.parent is None]
    leaked = [next(attr(s, k) for k in CARELESS_KEYS if attr(s, k)) for s in roots]
    assert set(leaked) <= texts and len(leaked) == TRACES
    assert {k for s in roots for k in CARELESS_KEYS if attr(s, k)} == set(CARELESS_KEYS)
    in_logs = [g for g in r.logs if any(t in str(g.log_record.body) for t in texts)]
    assert in_logs, "some log lines quote a card number"
    styles = {("-" in t) + 2 * (" " in t) for t in texts}
    assert styles == {0, 1, 2}  # plain, dashes, spaces
    # Conventions are still kept where they must be: payment.* carries no card number.
    assert not any(str(attr(s, c.PAYMENT_METHOD)) in texts for s in roots)


# -- the scenarios' effects ----------------------------------------------------------------


def test_node_failure_fails_over_after_the_failure() -> None:
    r = run(Scenario.NODE_FAILURE, traces=150, rate=100.0)
    assert_structure(r)
    injected = r.truth["injected"][0]
    dead, at = injected["node"], injected["at"]
    assert injected["kind"] == "node_failure" and dead == "payment-2"
    # Calls made to the dead node from the failure on get no server span (requests it had
    # accepted before finish).
    assert not [sv for cl, sv in hops(r.spans) if node(sv) == dead and start(cl) >= at]
    # Attempts to it time out; later attempts under the same parent go to another node.
    gateway_calls = [s for s in r.spans if s.kind is SpanKind.CLIENT and service(s) == "gateway"]
    timeouts = [s for s in gateway_calls if attr(s, c.SERVER_ADDRESS) == dead
                and start(s) >= at]  # fmt: skip
    assert timeouts and all(attr(s, c.ERROR_TYPE) == "timeout" for s in timeouts)
    assert all(s.status.status_code is StatusCode.ERROR for s in timeouts)
    siblings: dict[tuple[int, int | None], list[ReadableSpan]] = defaultdict(list)
    for s in gateway_calls:
        siblings[(trace_id(s), parent_id(s))].append(s)
    failed_over = 0
    for calls in siblings.values():
        calls.sort(key=start)
        first = calls[0]
        if (
            first is not calls[-1]
            and attr(first, c.SERVER_ADDRESS) == dead
            and attr(first, c.ERROR_TYPE) == "timeout"
        ):
            last = calls[-1]
            assert attr(last, c.HTTP_RESEND_COUNT) > 0 and attr(last, c.SERVER_ADDRESS) != dead
            assert start(last) >= at
            failed_over += 1
    assert failed_over == r.truth["effect"]["failovers"] > 0
    events = [e for s in r.spans for e in s.events if e.name == c.EVENT_FAILOVER]
    assert len(events) == failed_over
    assert {e.attributes[c.FAILOVER_FROM] for e in events} == {dead}  # type: ignore[index]
    to = {e.attributes[c.FAILOVER_TO] for e in events}  # type: ignore[index]
    assert to == set(injected["failover_to"]) and dead not in to
    cluster = Counter(event_name(g.log_record) for g in r.logs)
    assert cluster[c.LOG_FAILOVER] == failed_over
    assert cluster[c.LOG_NODE_DOWN] == len(r.truth["effect"]["ejections"]) >= 1
    down = [g for g in r.logs if event_name(g.log_record) == c.LOG_NODE_DOWN]
    assert all((g.log_record.attributes or {})[c.SERVER_ADDRESS] == dead for g in down)
    assert all(g.log_record.timestamp >= at for g in down)


def mean_network_ns(r: Run, source: str, target: str) -> float:
    return statistics.fmean(
        (end(cl) - start(cl)) - (end(sv) - start(sv))
        for cl, sv in hops(r.spans)
        if service(cl) == source and service(sv) == target
    )


def test_slow_hop_adds_the_delay_to_that_edge_only() -> None:
    slow, base = cached(Scenario.SLOW_HOP), cached(Scenario.BASELINE)
    injected = slow.truth["injected"][0]
    assert injected["edge"] == {"source": "payment", "target": "risk"}
    added = injected["added_delay_ns"]
    increase = mean_network_ns(slow, "payment", "risk") - mean_network_ns(base, "payment", "risk")
    assert abs(increase - added) < 0.05 * added
    other = mean_network_ns(slow, "payment", "clearing") - mean_network_ns(
        base, "payment", "clearing"
    )
    assert abs(other) < 0.01 * added


def lock_wait_by_resource(r: Run) -> Counter[str]:
    waits: Counter[str] = Counter()
    for s in r.spans:
        if attr(s, c.COORDINATION_KIND) == c.LOCK_WAIT:
            waits[str(attr(s, c.COORDINATION_RESOURCE))] += end(s) - start(s)
    return waits


def test_lock_contention_concentrates_on_the_hot_rows() -> None:
    r = run(Scenario.LOCK_CONTENTION, traces=60, rate=300.0)
    assert_structure(r)
    hot = set(r.truth["injected"][0]["resources"])
    waits = lock_wait_by_resource(r)
    on_hot = sum(ns for res, ns in waits.items() if res in hot)
    assert on_hot > 0.8 * sum(waits.values())
    assert r.truth["effect"]["lock_wait_ns_on_hot_resources"] == on_hot
    assert max(waits[res] for res in hot) > 50 * 1_000_000  # long waits, not acquisitions
    base = lock_wait_by_resource(cached(Scenario.BASELINE))
    assert max(base.values()) < 1_000_000


def test_slow_replica_sends_reads_to_the_primary() -> None:
    r, base = cached(Scenario.SLOW_REPLICA), cached(Scenario.BASELINE)
    injected = r.truth["injected"][0]
    reads = [s for s in r.spans if attr(s, c.DB_OPERATION) == "SELECT"]
    on_primary = [s for s in reads if attr(s, c.DB_ROLE) == c.PRIMARY]
    assert on_primary and all(attr(s, c.SERVER_ADDRESS) == injected["primary"] for s in on_primary)
    assert len(on_primary) == r.truth["effect"]["reads_on_primary"]
    assert not [s for s in reads if attr(s, c.SERVER_ADDRESS) == injected["replica"]]
    assert not [s for s in base.spans if attr(s, c.DB_OPERATION) == "SELECT"
                and attr(s, c.DB_ROLE) == c.PRIMARY]  # fmt: skip
    warnings = [g for g in r.logs if injected["replica"] in str(g.log_record.body)]
    assert warnings and all(g.log_record.severity_text == "WARN" for g in warnings)


def test_cache_degradation_lowers_the_hit_ratio_after_the_fault() -> None:
    r = run(Scenario.CACHE_DEGRADATION, traces=90)
    at = r.truth["injected"][0]["at"]
    lookups = [s for s in r.spans if s.name == "cache risk-profiles"]
    before = [attr(s, c.CACHE_HIT) for s in lookups if start(s) < at]
    after = [attr(s, c.CACHE_HIT) for s in lookups if start(s) >= at]
    assert before and after
    ratio_before, ratio_after = sum(before) / len(before), sum(after) / len(after)
    assert ratio_after < ratio_before - 0.3
    effect = r.truth["effect"]
    assert effect["observed_hit_ratio_after"] == round(ratio_after, 4)
    # A miss reads the ledger from the risk service.
    miss_ids = {(trace_id(s), parent_id(s)) for s in lookups if not attr(s, c.CACHE_HIT)}
    risk_reads = {(trace_id(s), parent_id(s)) for s in r.spans
                  if service(s) == "risk" and attr(s, c.DB_SYSTEM)}  # fmt: skip
    assert miss_ids == risk_reads


def test_lb_skew_overloads_one_node() -> None:
    r = run(Scenario.LB_SKEW, traces=80, rate=200.0)
    assert_structure(r)
    injected = r.truth["injected"][0]
    hot = injected["overloaded_node"]
    assert injected["strategy"] == c.IP_HASH
    served = Counter(node(s) for s in r.spans if s.name == "payment/Authorize"
                     and s.kind is SpanKind.SERVER)  # fmt: skip
    assert served.most_common(1)[0][0] == hot
    assert served[hot] > 0.6 * sum(served.values())
    self_ns = r.truth["effect"]["mean_self_ns_by_node"]
    assert self_ns[hot] > 1.5 * max(v for n, v in self_ns.items() if n != hot)
    base = Counter(node(s) for s in cached(Scenario.BASELINE).spans
                   if s.name == "payment/Authorize" and s.kind is SpanKind.SERVER)  # fmt: skip
    assert max(base.values()) < 0.5 * sum(base.values())


def test_clock_skew_shifts_one_nodes_timestamps() -> None:
    r = cached(Scenario.CLOCK_SKEW)
    injected = r.truth["injected"][0]
    skewed, offset = injected["node"], injected["offset_ns"]
    legs = [(start(sv) - start(cl), node(sv)) for cl, sv in hops(r.spans)]
    shifted = [leg for leg, n in legs if n == skewed]
    assert shifted and all(leg < 0 for leg in shifted)  # server starts before its client
    assert abs(statistics.median(shifted) - offset) < 1_000_000
    assert all(leg > 0 for leg, n in legs if n != skewed)
    # Durations are read on one clock: network time stays positive and small.
    for cl, sv in hops(r.spans):
        if node(sv) == skewed:
            assert 0 < (end(cl) - start(cl)) - (end(sv) - start(sv)) < 5_000_000
    skewed_logs = [g for g in r.logs if g.resource.attributes[c.SERVICE_INSTANCE_ID] == skewed]
    assert skewed_logs  # shifted too: checked within their spans by assert_structure


@pytest.mark.parametrize("strategy", sorted(c.LB_STRATEGIES))
def test_lb_strategy_is_recorded_and_spreads_load(strategy: str) -> None:
    r = run(traces=30, lb_strategy=strategy)
    calls = [s for s in r.spans if service(s) == "gateway" and s.kind is SpanKind.CLIENT]
    assert {attr(s, c.LB_STRATEGY) for s in calls} == {strategy}
    assert r.truth["lb_strategy"] == strategy
    assert len({attr(s, c.SERVER_ADDRESS) for s in calls}) == 3


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    scenario=st.sampled_from(list(Scenario)),
    traces=st.integers(min_value=1, max_value=16),
)
def test_structure_holds_for_any_seed(seed: int, scenario: Scenario, traces: int) -> None:
    r = run(scenario, seed=seed, traces=traces, rate=200.0)
    skewed = r.truth["injected"][0]["node"] if scenario is Scenario.CLOCK_SKEW else None
    assert_structure(r, skewed_node=skewed)


# -- configuration and building blocks -----------------------------------------------------


def test_duration_gives_rate_times_duration_traces() -> None:
    config = SimulationConfig(start_ns=START, rate=20.0, duration_s=1.5)
    assert config.trace_count == 30
    assert SimulationConfig(start_ns=START).trace_count == _config.DEFAULT_TRACES


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"traces": 0}, "traces must be >= 1"),
        ({"traces": 5, "duration_s": 2.0}, "not both"),
        ({"rate": 0.0}, "rate must be > 0"),
        ({"lb_strategy": "random"}, "lb_strategy must be one of"),
        ({"scenario": "lb-skew", "lb_strategy": "round_robin"}, "needs lb_strategy"),
        ({"scenario": "meltdown"}, "meltdown"),
        ({"fault_at_ns": START - 1}, "fault_at_ns"),
    ],
)
def test_bad_config_is_a_value_error(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimulationConfig(start_ns=START, **kwargs)


def test_topology_needs_a_second_payment_node() -> None:
    with pytest.raises(ValueError, match="payment_nodes must be >= 2"):
        Topology(payment_nodes=1)


def test_bigger_topology() -> None:
    span_exporter = InMemorySpanExporter()
    config = SimulationConfig(
        start_ns=START, traces=10, topology=Topology(payment_nodes=5, ledger_shards=4),
        consensus=False,
    )  # fmt: skip
    result = simulate(config, span_processors=[SimpleSpanProcessor(span_exporter)])
    spans = span_exporter.get_finished_spans()
    assert result.spans == len(spans) and result.log_records > 0  # counted without exporter
    assert not [s for s in spans if attr(s, c.COORDINATION_KIND) == c.CONSENSUS_APPEND]
    assert len(result.ground_truth["topology"]["databases"]["ledger"]) == 4 * 3


def test_virtual_clock() -> None:
    clock = VirtualClock(5)
    assert clock.advance(10) == 15 and clock() == clock.now() == 15
    clock.set(3)
    assert clock() == 3
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_iso_times() -> None:
    assert parse_iso8601_ns("2025-03-01T12:00:00") == START  # naive means UTC
    assert format_ns_iso(START + 5) == "2025-03-01T12:00:00.000000005Z"
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_iso8601_ns("yesterday")


def test_seeded_ids_repeat_and_are_valid() -> None:
    a, b = SeededIdGenerator(1), SeededIdGenerator(1)
    ids = [a.generate_span_id() for _ in range(100)]
    assert ids == [b.generate_span_id() for _ in range(100)]
    assert all(0 < i < 2**64 for i in ids) and len(set(ids)) == 100
    assert 0 < SeededIdGenerator(2).generate_trace_id() < 2**128


def test_pans() -> None:
    import random

    rng = random.Random(3)
    pans = [generate_pan(rng) for _ in range(200)]
    assert all(is_luhn_valid(p) and len(p) == 16 for p in pans)
    assert {p[0] for p in pans} >= {"4", "5", "2"}
    assert format_pan(pans[0], "dashes").count("-") == 3
    assert is_luhn_valid(format_pan(pans[0], "spaces"))
    assert not is_luhn_valid("4111 1111 1111 1112") and not is_luhn_valid("12ab")
    with pytest.raises(ValueError):
        format_pan(pans[0], "dots")


@pytest.mark.parametrize(
    "module", [_clock, _config, _ids, _pans, _simulate], ids=lambda m: m.__name__
)
def test_docstring_examples(module: Any) -> None:
    failures, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert failures == 0


def test_progress_is_reported() -> None:
    seen: list[int] = []
    simulate(
        SimulationConfig(start_ns=START, traces=5),
        span_processors=[SimpleSpanProcessor(InMemorySpanExporter())],
        progress=seen.append,
    )
    assert seen == [1, 2, 3, 4, 5]
