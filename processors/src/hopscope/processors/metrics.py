"""Prometheus metrics of one processor, served on ``--metrics-port``.

Each :class:`ProcessorMetrics` has its own registry, so several processors (tests, a scaled-out
group in one process) never collide on metric names.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from hopscope.processors.slo import DEFAULT_SLOS, SLO

# Hop latencies in payment systems range from sub-millisecond to bank timeouts of seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
                   5, 10, 30)  # fmt: skip


@dataclass
class ProcessorCounts:
    """Records written per kind, dead letters, retries: what ``--drain`` prints.

    The in-process tally of what :class:`ProcessorMetrics` exports, summed over the run.
    """

    messages: int = 0
    indexed: Tally[str] = field(default_factory=Tally)
    dead_letters: int = 0
    retries: int = 0
    late_spans: int = 0
    incomplete_traces: int = 0
    commit_retries: int = 0
    # Records indexed with a sanitization flag, by reason (hopscope.processors.sanitize), and
    # spans of evicted traces indexed without being derived.
    sanitized: Tally[str] = field(default_factory=Tally)
    unassembled_spans: int = 0


@dataclass(frozen=True, slots=True)
class _SloSeries:
    """An SLO's three counters, and its latency threshold in the hops' unit."""

    threshold_ns: float
    calls: Any
    slow: Any
    failed: Any


@dataclass(frozen=True, slots=True)
class _EdgeSeries:
    """The series a hop of one edge (source, target) updates."""

    client: Any
    slos: tuple[_SloSeries, ...]


class ProcessorMetrics:
    """Lag, throughput, open traces, bulk latency, retries, dead letters, hop latency."""

    def __init__(self, slos: Sequence[SLO] = DEFAULT_SLOS) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.lag = Gauge("hopscope_consumer_lag", "Messages behind the end of the partition",
                         ["topic", "partition"], registry=r)  # fmt: skip
        self.messages = Counter("hopscope_messages", "Kafka messages consumed", ["topic"],
                                registry=r)  # fmt: skip
        self.indexed = Counter("hopscope_records_indexed", "Documents acknowledged by "
                               "Elasticsearch", ["kind"], registry=r)  # fmt: skip
        self.open_traces = Gauge("hopscope_open_traces", "Traces being assembled", registry=r)
        self.open_spans = Gauge("hopscope_open_spans", "Spans held by open traces", registry=r)
        self.bulk_seconds = Histogram("hopscope_bulk_seconds", "Elasticsearch bulk latency",
                                      buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.retries = Counter("hopscope_sink_retries", "Bulk or dead-letter retries while "
                               "Elasticsearch or Kafka was unavailable", registry=r)  # fmt: skip
        self.commit_failures = Counter("hopscope_commit_failures", "Offset commits deferred "
                                       "(broker away, group rebalancing)", registry=r)  # fmt: skip
        self.dead_letters = Counter("hopscope_dead_letters", "Messages or documents sent to "
                                    "the dead-letter topic", ["reason"], registry=r)  # fmt: skip
        self.incomplete = Counter("hopscope_incomplete_traces", "Traces flushed before "
                                  "completing (memory bound)", registry=r)  # fmt: skip
        self.hop_client = Histogram("hopscope_hop_client_seconds", "Client-side hop latency",
                                    ["source", "target"], buckets=LATENCY_BUCKETS,
                                    registry=r)  # fmt: skip
        self.hop_network = Histogram("hopscope_hop_network_seconds", "Network time of paired "
                                     "hops (client minus server)", ["source", "target"],
                                     buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        # Bad input and memory bounds (hopscope.processors.sanitize, .assembly).
        self.sanitized = Counter("hopscope_sanitized", "Records indexed with a sanitization "
                                 "flag, per record kind (spans, logs, traces) and reason",
                                 ["kind", "reason"], registry=r)  # fmt: skip
        self.unassembled_spans = Counter("hopscope_unassembled_spans", "Spans of traces "
                                         "evicted by a memory bound: indexed, not derived",
                                         registry=r)  # fmt: skip
        self.held_bytes = Gauge("hopscope_held_bytes", "Estimated bytes of open traces and "
                                "of flushed ones kept for late spans", registry=r)  # fmt: skip
        # The bounds themselves, so an alert can say "near the bound" without knowing the
        # processor's settings (0: no bound configured).
        self.open_spans_limit = Gauge("hopscope_open_spans_limit", "max_open_spans: open "
                                      "spans past which the oldest traces are evicted",
                                      registry=r)  # fmt: skip
        self.held_bytes_limit = Gauge("hopscope_held_bytes_limit", "max_open_bytes (0: "
                                      "unbounded)", registry=r)  # fmt: skip
        # Alerting (hopscope.dashboards.alerts, docs/RUNBOOK.md). SLI counters per SLO name
        # only: a handful of series, however many nodes and operations the edge has.
        self.slo_calls = Counter("hopscope_slo_calls", "Client-side calls on an SLO's edge",
                                 ["slo"], registry=r)  # fmt: skip
        self.slo_slow_calls = Counter("hopscope_slo_slow_calls", "Calls on an SLO's edge "
                                      "slower than its latency threshold", ["slo"],
                                      registry=r)  # fmt: skip
        self.slo_failed_calls = Counter("hopscope_slo_failed_calls", "Calls on an SLO's edge "
                                        "that failed (error status)", ["slo"],
                                        registry=r)  # fmt: skip
        # Per node: bounded by the fleet, and "which node" is the first question of a page.
        self.failovers = Counter("hopscope_failovers", "Failovers away from a node (the "
                                 "caller gave up on from_node and tried another)",
                                 ["service", "from_node"], registry=r)  # fmt: skip
        self.coordination = Histogram("hopscope_coordination_seconds", "Time spent waiting "
                                      "to coordinate (lock waits, 2PC phases, consensus "
                                      "appends, queues), per kind", ["kind"],
                                      buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self._slos_by_edge: dict[tuple[str, str], list[SLO]] = {}
        # The labelled series of each edge, looked up once: prometheus_client's labels()
        # validates and locks on every call, which cost about as much as the observations.
        self._edges: dict[tuple[str, str], _EdgeSeries] = {}
        self._network: dict[tuple[str, str], Any] = {}
        for slo in slos:
            self._slos_by_edge.setdefault((slo.source, slo.target), []).append(slo)
            # Zero from the start: a burn rate over an idle edge is 0/0 (no alert), not an
            # absent series that a typo in a rule would hide as well.
            for counter in (self.slo_calls, self.slo_slow_calls, self.slo_failed_calls):
                counter.labels(slo.name)

    def serve(self, port: int, addr: str = "127.0.0.1") -> Any:
        """Serve ``/metrics`` on ``addr:port`` from a daemon thread; returns the server."""
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return server

    def observe_records(self, records: Any) -> None:
        """Hops, SLIs, failovers and coordination waits of one trace's derived records."""
        self.observe_hops(records.hops)
        for failover in records.failovers:
            self.failovers.labels(failover.service, failover.from_node or "unknown").inc()
        for delay in records.coordination:
            self.coordination.labels(delay.kind).observe(delay.duration_ns / 1e9)

    def observe_hops(self, hops: Iterable[Any]) -> None:
        for hop in hops:
            labels = (hop.source_service, hop.target_service or "unknown")
            edge = self._edges.get(labels) or self._edge(labels)
            edge.client.observe(hop.client_ns / 1e9)
            for slo in edge.slos:
                slo.calls.inc()
                if hop.client_ns > slo.threshold_ns:
                    slo.slow.inc()
                if hop.error:
                    slo.failed.inc()
            if hop.network_ns is not None:
                network = self._network.get(labels)
                if network is None:
                    network = self._network[labels] = self.hop_network.labels(*labels)
                network.observe(max(0, hop.network_ns) / 1e9)

    def _edge(self, labels: tuple[str, str]) -> _EdgeSeries:
        slos = tuple(
            _SloSeries(
                slo.threshold_s * 1e9,
                self.slo_calls.labels(slo.name),
                self.slo_slow_calls.labels(slo.name),
                self.slo_failed_calls.labels(slo.name),
            )
            for slo in self._slos_by_edge.get(labels, ())
        )
        edge = self._edges[labels] = _EdgeSeries(self.hop_client.labels(*labels), slos)
        return edge
