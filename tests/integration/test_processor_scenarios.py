"""Every simulator scenario through Kafka and the processor into Elasticsearch, checked there.

One simulation per scenario (fixed seed and start) is shared by the module's tests:

- every span, log record and trace is indexed exactly once (the ground truth's counts);
- every cross-service call (a CLIENT span with a SERVER child of another service) has its hop
  document, paired with that server span;
- the injected fault is visible in the derived records where docs/DESIGN.md §3 puts it, with the
  ground truth's figures (``hopscope.ingest.simulator._truth``).

Everything is asserted with real Elasticsearch queries (counts, aggregations, scans).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from hopscope.ingest.simulator import (
    Scenario,
    SimulationConfig,
    parse_iso8601_ns,
    simulate_to_kafka,
)
from hopscope.processors.documents import timestamp
from hopscope.processors.runtime import ProcessorCounts
from tests.conftest import Services
from tests.integration.processor_support import (
    Topics,
    aggregate,
    all_of,
    count,
    drain,
    hits,
    refresh,
    term,
)

pytestmark = pytest.mark.integration

START = parse_iso8601_ns("2026-04-01T08:00:00Z")
SEED = 7
TRACES = 150
# Arrivals per virtual second. The simulator's default rate shows most faults; row locks and
# the ip_hash skew need more concurrency to show clearly (as in tests/unit/test_simulator.py).
RATES = {Scenario.LOCK_CONTENTION: 300.0, Scenario.LB_SKEW: 200.0}
MS = 1_000_000

HOP = "hopscope.hop"
RPC_HOP = term(f"{HOP}.kind", "rpc")


@dataclass(frozen=True)
class ScenarioRun:
    """One scenario simulated into Kafka and processed into its own index prefix."""

    scenario: Scenario
    truth: dict[str, Any]
    prefix: str
    counts: ProcessorCounts

    @property
    def injected(self) -> dict[str, Any]:
        return dict(self.truth["injected"][0])

    @property
    def effect(self) -> dict[str, Any]:
        return dict(self.truth["effect"])


class ScenarioRuns:
    """Runs each scenario once, on first use; deletes their indices at the end."""

    def __init__(self, services: Services, es: Elasticsearch) -> None:
        self.services = services
        self.es = es
        self._runs: dict[Scenario, ScenarioRun] = {}
        self._prefixes: list[str] = []

    def __call__(self, scenario: Scenario) -> ScenarioRun:
        if scenario not in self._runs:
            self._runs[scenario] = self._run(scenario)
        return self._runs[scenario]

    def _run(self, scenario: Scenario) -> ScenarioRun:
        name = f"t-scenario-{scenario.value}-{uuid.uuid4().hex[:8]}"
        topics = Topics(f"{name}-spans", f"{name}-logs", f"{name}-dlq")
        prefix = f"hopscope-test-{uuid.uuid4().hex[:10]}"
        self._prefixes.append(prefix)
        config = SimulationConfig(
            start_ns=START,
            scenario=scenario,
            seed=SEED,
            traces=TRACES,
            rate=RATES.get(scenario, 100.0),
        )
        bootstrap = self.services.kafka_bootstrap
        kafka_run = simulate_to_kafka(
            config, bootstrap=bootstrap, spans_topic=topics.spans, logs_topic=topics.logs
        )
        counts = drain(bootstrap, self.services.es_url, topics, prefix, f"{name}-group")
        refresh(self.es, prefix)
        return ScenarioRun(scenario, kafka_run.result.ground_truth, prefix, counts)

    def close(self) -> None:
        for prefix in self._prefixes:
            self.es.indices.delete(
                index=f"{prefix}-*", ignore_unavailable=True, allow_no_indices=True
            )


@pytest.fixture(scope="module")
def es(services: Services) -> Iterator[Elasticsearch]:
    client = Elasticsearch(services.es_url, request_timeout=60)
    yield client
    client.close()


@pytest.fixture(scope="module")
def scenario_runs(services: Services, es: Elasticsearch) -> Iterator[ScenarioRuns]:
    runs = ScenarioRuns(services, es)
    try:
        yield runs
    finally:
        runs.close()


# -- (a) everything once -------------------------------------------------------------------


@pytest.mark.parametrize("scenario", list(Scenario), ids=str)
def test_every_span_log_and_trace_is_indexed_once(
    scenario_runs: ScenarioRuns, es: Elasticsearch, scenario: Scenario
) -> None:
    run = scenario_runs(scenario)
    expected = run.truth["counts"]
    assert run.counts.dead_letters == 0 and run.counts.incomplete_traces == 0

    spans = hits(es, run.prefix, "spans", fields=["trace.id", "span.id"])
    ids = [h["_id"] for h in spans]
    assert len(ids) == len(set(ids)) == expected["spans"]
    assert all(h["_id"] == f"{h['_source']['trace.id']}-{h['_source']['span.id']}" for h in spans)
    assert run.counts.indexed["spans"] == expected["spans"]  # written once, nothing rejected

    logs = [h["_id"] for h in hits(es, run.prefix, "logs", fields=["trace.id"])]
    assert len(logs) == len(set(logs)) == expected["log_records"]

    traces = hits(es, run.prefix, "traces", fields=["trace.id", "hopscope.trace.complete"])
    assert len({h["_id"] for h in traces}) == len(traces) == expected["traces"]
    assert {h["_id"] for h in traces} == {h["_source"]["trace.id"] for h in spans}
    assert all(h["_source"]["hopscope.trace.complete"] for h in traces)


# -- (b) every call is a hop ---------------------------------------------------------------


@pytest.mark.parametrize("scenario", list(Scenario), ids=str)
def test_every_cross_service_call_has_a_hop(
    scenario_runs: ScenarioRuns, es: Elasticsearch, scenario: Scenario
) -> None:
    run = scenario_runs(scenario)
    fields = ["trace.id", "span.id", "parent.id", "service.name"]
    clients = {
        (h["_source"]["trace.id"], h["_source"]["span.id"]): h["_source"]["service.name"]
        for h in hits(es, run.prefix, "spans", term("span.kind", "client"), fields)
    }
    servers = hits(
        es,
        run.prefix,
        "spans",
        {
            "bool": {
                "filter": [term("span.kind", "server")],
                "must": [{"exists": {"field": "parent.id"}}],
            }
        },
        fields,
    )
    # hop document id (<trace id>-<client span id>) -> (caller, callee, server span id)
    calls: dict[str, tuple[str, str, str]] = {}
    for server in (h["_source"] for h in servers):
        caller = clients.get((server["trace.id"], server["parent.id"]))
        if caller is not None and caller != server["service.name"]:
            hop_id = f"{server['trace.id']}-{server['parent.id']}"
            calls[hop_id] = (caller, server["service.name"], server["span.id"])
    # The simulator's every non-root SERVER span answers a CLIENT span of another service.
    assert (
        len(calls)
        == len(servers)
        == count(es, run.prefix, "spans", term("span.kind", "server")) - TRACES
    )

    hop_fields = [f"{HOP}.{f}" for f in ("source_service", "target_service", "server_span_id")]
    hops = {h["_id"]: h["_source"] for h in hits(es, run.prefix, "hops", fields=hop_fields)}
    missing = sorted(set(calls) - set(hops))
    assert not missing, f"{len(missing)} of {len(calls)} calls have no hop, e.g. {missing[:3]}"
    paired = {
        doc_id: (
            hop[f"{HOP}.source_service"],
            hop[f"{HOP}.target_service"],
            hop[f"{HOP}.server_span_id"],
        )
        for doc_id, hop in hops.items()
        if doc_id in calls
    }
    assert paired == calls


# -- (c) the injected fault, where the derived records put it --------------------------------


def _node_failure(run: ScenarioRun, es: Elasticsearch, _runs: ScenarioRuns) -> None:
    injected, effect = run.injected, run.effect
    dead, at = injected["node"], injected["at"]
    failovers = [h["_source"] for h in hits(es, run.prefix, "failovers")]
    assert len(failovers) == effect["failovers"] > 0
    assert {f["hopscope.failover.from_node"] for f in failovers} == {dead}
    assert all(f["hopscope.failover.time_ns"] >= at for f in failovers)
    assert count(es, run.prefix, "failovers", {"range": {"@timestamp": {"lt": timestamp(at)}}}) == 0
    targets = aggregate(
        es, run.prefix, "failovers", {"to": {"terms": {"field": "hopscope.failover.to_node"}}}
    )
    to = {b["key"]: b["doc_count"] for b in targets["to"]["buckets"]}
    assert to == effect["failover_to"] and set(to) == set(injected["failover_to"])
    assert dead not in to
    # After the failure no call to the dead node reached it: one-sided hops that timed out.
    # A hop's start is queried as @timestamp: hopscope.hop.start_ns is a _source-only copy.
    since = {"range": {"@timestamp": {"gte": timestamp(at)}}}
    to_dead = all_of(term(f"{HOP}.target_node", dead), since)
    assert count(es, run.prefix, "hops", to_dead) == effect["timeouts"] > 0
    answered = all_of(to_dead, {"exists": {"field": f"{HOP}.server_span_id"}})
    assert count(es, run.prefix, "hops", answered) == 0
    failed = all_of(to_dead, term(f"{HOP}.error", True))
    assert count(es, run.prefix, "hops", failed) == effect["timeouts"]


def _median_network_by_edge(es: Elasticsearch, prefix: str) -> dict[tuple[str, str], float]:
    aggs = {
        "source": {
            "terms": {"field": f"{HOP}.source_service"},
            "aggs": {
                "target": {
                    "terms": {"field": f"{HOP}.target_service"},
                    "aggs": {
                        "network": {"percentiles": {"field": f"{HOP}.network_ns", "percents": [50]}}
                    },
                }
            },
        }
    }
    answer = aggregate(es, prefix, "hops", aggs, RPC_HOP)
    return {
        (source["key"], target["key"]): target["network"]["values"]["50.0"]
        for source in answer["source"]["buckets"]
        for target in source["target"]["buckets"]
    }


def _slow_hop(run: ScenarioRun, es: Elasticsearch, runs: ScenarioRuns) -> None:
    injected = run.injected
    edge = (injected["edge"]["source"], injected["edge"]["target"])
    added = injected["added_delay_ns"]
    assert run.effect["calls"] > 0
    slow = _median_network_by_edge(es, run.prefix)
    base = _median_network_by_edge(es, runs(Scenario.BASELINE).prefix)
    assert slow[edge] >= 0.8 * added
    # About the injected delay more than the same edge without the fault...
    assert abs((slow[edge] - base[edge]) - added) < 0.1 * added
    # ...while every other edge keeps a sub-millisecond network time.
    others = {e: ns for e, ns in slow.items() if e != edge}
    assert len(others) >= 3 and all(ns < 0.05 * added for ns in others.values()), others
    assert all(abs(ns - base[e]) < 0.01 * added for e, ns in others.items())


def _lock_contention(run: ScenarioRun, es: Elasticsearch, _runs: ScenarioRuns) -> None:
    hot = set(run.injected["resources"])
    aggs = {
        "resource": {
            "terms": {"field": "hopscope.coordination.resource", "size": 10_000},
            "aggs": {"wait": {"sum": {"field": "hopscope.coordination.duration_ns"}}},
        }
    }
    answer = aggregate(
        es, run.prefix, "coordination", aggs, term("hopscope.coordination.kind", "lock_wait")
    )
    waits = {b["key"]: int(b["wait"]["value"]) for b in answer["resource"]["buckets"]}
    on_hot = sum(ns for resource, ns in waits.items() if resource in hot)
    elsewhere = sum(ns for resource, ns in waits.items() if resource not in hot)
    assert on_hot > elsewhere and on_hot > 0.8 * (on_hot + elsewhere)
    # The derived durations are the model's own lock waits, to the nanosecond.
    assert on_hot == run.effect["lock_wait_ns_on_hot_resources"]
    assert on_hot + elsewhere == run.effect["lock_wait_ns_total"]
    top = sorted(waits.items(), key=lambda kv: (-kv[1], kv[0]))[: len(hot)]
    assert {resource for resource, _ in top} == hot


def _slow_replica(run: ScenarioRun, es: Elasticsearch, _runs: ScenarioRuns) -> None:
    injected, effect = run.injected, run.effect
    lagging, primary = injected["replica"], injected["primary"]
    select = term("attributes.db.operation.name", "SELECT")
    on_primary = all_of(select, term("attributes.hopscope.db.role", "primary"))
    assert count(es, run.prefix, "spans", on_primary) == effect["reads_on_primary"] > 0
    on_the_shards_primary = all_of(on_primary, term("attributes.server.address", primary))
    assert count(es, run.prefix, "spans", on_the_shards_primary) == effect["reads_on_primary"]
    on_replicas = all_of(select, term("attributes.hopscope.db.role", "replica"))
    assert count(es, run.prefix, "spans", on_replicas) == effect["reads_on_replicas"]
    # The router avoids the lagging replica entirely: its reads land on the primary.
    assert count(es, run.prefix, "hops", term(f"{HOP}.target_node", lagging)) == 0
    assert count(es, run.prefix, "spans", term("attributes.server.address", lagging)) == 0
    # The db hops show it: reads on the primary exist and are slower than reads on replicas.
    reads = all_of(term(f"{HOP}.kind", "db"), term(f"{HOP}.operation", "SELECT ledger"))
    aggs = {
        "node": {
            "terms": {"field": f"{HOP}.target_node"},
            "aggs": {"client": {"percentiles": {"field": f"{HOP}.client_ns", "percents": [50]}}},
        }
    }
    answer = aggregate(es, run.prefix, "hops", aggs, reads)
    p50 = {b["key"]: b["client"]["values"]["50.0"] for b in answer["node"]["buckets"]}
    counts = {b["key"]: b["doc_count"] for b in answer["node"]["buckets"]}
    assert counts[primary] == effect["reads_on_primary"]
    replicas = {node: ns for node, ns in p50.items() if "replica" in node}
    assert replicas and all(p50[primary] > ns for ns in replicas.values()), p50
    warned = {"match_phrase": {"message": lagging}}
    assert count(es, run.prefix, "logs", all_of(warned, term("log.level", "WARN"))) > 0


def _cache_degradation(run: ScenarioRun, es: Elasticsearch, _runs: ScenarioRuns) -> None:
    at, effect = run.injected["at"], run.effect
    aggs = {
        "when": {
            "filters": {
                "filters": {
                    "before": {"range": {"@timestamp": {"lt": timestamp(at)}}},
                    "after": {"range": {"@timestamp": {"gte": timestamp(at)}}},
                }
            },
            "aggs": {"hits": {"filter": term("attributes.hopscope.cache.hit", True)}},
        }
    }
    lookups = all_of(
        term("span.name", "cache risk-profiles"),
        {"exists": {"field": "attributes.hopscope.cache.hit"}},
    )
    answer = aggregate(es, run.prefix, "spans", aggs, lookups)["when"]["buckets"]
    before, after = answer["before"], answer["after"]
    assert before["doc_count"] == effect["lookups_before"] > 0
    assert after["doc_count"] == effect["lookups_after"] > 0
    ratio_before = before["hits"]["doc_count"] / before["doc_count"]
    ratio_after = after["hits"]["doc_count"] / after["doc_count"]
    assert round(ratio_before, 4) == effect["observed_hit_ratio_before"]
    assert round(ratio_after, 4) == effect["observed_hit_ratio_after"]
    assert ratio_after < ratio_before - 0.3


def _lb_skew(run: ScenarioRun, es: Elasticsearch, _runs: ScenarioRuns) -> None:
    hot = run.injected["overloaded_node"]
    calls = all_of(
        RPC_HOP, term(f"{HOP}.source_service", "gateway"), term(f"{HOP}.target_service", "payment")
    )
    answer = aggregate(
        es, run.prefix, "hops", {"node": {"terms": {"field": f"{HOP}.target_node"}}}, calls
    )
    served = {b["key"]: b["doc_count"] for b in answer["node"]["buckets"]}
    total = sum(served.values())
    # One hop per request a payment node served: exactly the model's own counts.
    assert served == run.truth["summary"]["payment_requests_by_node"]
    assert max(served, key=served.__getitem__) == hot
    assert served[hot] / total > 0.6
    assert round(served[hot] / total, 4) == run.effect["share_by_node"][hot]


def _clock_skew(run: ScenarioRun, es: Elasticsearch, _runs: ScenarioRuns) -> None:
    skewed, offset = run.injected["node"], run.injected["offset_ns"]
    to_skewed = all_of(RPC_HOP, term(f"{HOP}.target_node", skewed))
    suspected = term(f"{HOP}.clock_skew_suspected", True)
    total = count(es, run.prefix, "hops", to_skewed)
    assert total == run.effect["server_spans_on_node"] > 0
    assert count(es, run.prefix, "hops", all_of(to_skewed, suspected)) == total
    others = all_of(RPC_HOP, {"bool": {"must_not": [term(f"{HOP}.target_node", skewed)]}})
    assert count(es, run.prefix, "hops", others) > total
    assert count(es, run.prefix, "hops", all_of(others, suspected)) == 0
    # Durations are read on one clock: network time stays small; the legs are split evenly.
    fields = [
        f"{HOP}.{f}"
        for f in (
            "network_ns",
            "request_leg_ns",
            "adjusted_request_leg_ns",
            "adjusted_response_leg_ns",
        )
    ]
    for hop in (h["_source"] for h in hits(es, run.prefix, "hops", to_skewed, fields)):
        network = hop[f"{HOP}.network_ns"]
        assert 0 < network < 5 * MS
        request_leg = hop[f"{HOP}.request_leg_ns"]
        assert request_leg < 0 and abs(request_leg - offset) < 5 * MS  # the server starts early
        assert hop[f"{HOP}.adjusted_request_leg_ns"] == network // 2
        assert hop[f"{HOP}.adjusted_response_leg_ns"] == network - network // 2


def _baseline(run: ScenarioRun, es: Elasticsearch, _runs: ScenarioRuns) -> None:
    assert run.truth["injected"] == [] and run.truth["summary"]["failovers"] == 0
    assert count(es, run.prefix, "failovers") == 0
    assert count(es, run.prefix, "hops", term(f"{HOP}.clock_skew_suspected", True)) == 0
    primary_reads = all_of(
        term("attributes.db.operation.name", "SELECT"),
        term("attributes.hopscope.db.role", "primary"),
    )
    assert count(es, run.prefix, "spans", primary_reads) == 0
    waits = aggregate(
        es,
        run.prefix,
        "coordination",
        {"longest": {"max": {"field": "hopscope.coordination.duration_ns"}}},
        term("hopscope.coordination.kind", "lock_wait"),
    )
    assert waits["longest"]["value"] < 1 * MS  # acquisitions, never waits


EFFECTS: dict[Scenario, Callable[[ScenarioRun, Elasticsearch, ScenarioRuns], None]] = {
    Scenario.BASELINE: _baseline,
    Scenario.NODE_FAILURE: _node_failure,
    Scenario.SLOW_HOP: _slow_hop,
    Scenario.LOCK_CONTENTION: _lock_contention,
    Scenario.SLOW_REPLICA: _slow_replica,
    Scenario.CACHE_DEGRADATION: _cache_degradation,
    Scenario.LB_SKEW: _lb_skew,
    Scenario.CLOCK_SKEW: _clock_skew,
}


@pytest.mark.parametrize("scenario", list(Scenario), ids=str)
def test_the_injected_fault_shows_in_the_derived_records(
    scenario_runs: ScenarioRuns, es: Elasticsearch, scenario: Scenario
) -> None:
    assert set(EFFECTS) == set(Scenario), "every scenario needs its check"
    run = scenario_runs(scenario)
    assert run.truth["scenario"] == scenario.value
    EFFECTS[scenario](run, es, scenario_runs)
