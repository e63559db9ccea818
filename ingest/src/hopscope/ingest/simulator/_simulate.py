"""The simulator's entry point: build the nodes, run the arrivals, count, report the truth.

Steps (matched by ``Step N`` comments in :func:`simulate`):

1. Seed the model's random numbers (by the seed) and, separately, the trace/span ids (by the
   seed and the run id: the same traffic under another run id gets ids of its own).
2. Build one node (TracerProvider + LoggerProvider + logger) per service instance, all
   feeding the caller's processors behind a counter; a skewed node gets its own clock view.
3. Run the arrivals: Poisson, at ``rate`` per virtual second, one trace each (with
   ``foreign_pans``, the other SDKs' services answer every issuer call into ``foreign_sink``).
4. Detach the nodes (the processors stay the caller's to flush and shut down) and assemble
   the ground truth with the exact counts of what reached the processors.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk._logs import LogRecordProcessor
from opentelemetry.sdk.trace import SpanProcessor

from hopscope.ingest.simulator._clock import (
    NS_PER_S,
    SkewedClock,
    VirtualClock,
    format_ns_iso,
)
from hopscope.ingest.simulator._config import (
    CLOCK_SKEW_OFFSET_NS,
    SimulationConfig,
)
from hopscope.ingest.simulator._foreign import ForeignServices, ForeignSink
from hopscope.ingest.simulator._ids import SeededIdGenerator
from hopscope.ingest.simulator._model import (
    BANK_ADAPTER,
    CLEARING,
    GATEWAY,
    PAYMENT,
    RISK,
    PaymentNetwork,
)
from hopscope.ingest.simulator._nodes import (
    LogCounter,
    Node,
    SpanCounter,
    VirtualObservedTime,
    build_node,
)
from hopscope.ingest.simulator._truth import effect, injected, summary
from hopscope.ingest.spans import Clock

Progress = Callable[[int], None]


@dataclass(frozen=True)
class SimulationResult:
    """What one run emitted, and the ground truth an analysis is checked against."""

    traces: int
    spans: int
    log_records: int
    start_ns: int
    end_ns: int
    ground_truth: dict[str, Any]
    run_id: str

    def ground_truth_json(self) -> str:
        """The ground truth as indented JSON (what ``--ground-truth FILE`` writes)."""
        return json.dumps(self.ground_truth, indent=2) + "\n"


def _node_counts(config: SimulationConfig) -> dict[str, int]:
    topology = config.topology
    return {
        GATEWAY: topology.gateway_nodes,
        PAYMENT: topology.payment_nodes,
        RISK: topology.risk_nodes,
        CLEARING: topology.clearing_nodes,
        BANK_ADAPTER: topology.bank_adapter_nodes,
    }


def simulate(
    config: SimulationConfig,
    *,
    span_processors: Sequence[SpanProcessor],
    log_processors: Sequence[LogRecordProcessor] = (),
    progress: Progress | None = None,
    foreign_sink: ForeignSink | None = None,
) -> SimulationResult:
    """Simulate ``config.trace_count`` payments through the modelled network.

    Every span and log record goes to ``span_processors`` / ``log_processors`` through the
    OpenTelemetry SDK, time-stamped in virtual time from ``config.start_ns``. The processors
    are not flushed or shut down: they belong to the caller.

    Parameters
    ----------
    config:
        Scenario, seed, start, number of traces and arrival rate.
    span_processors, log_processors:
        Where the telemetry goes (an export pipeline, or in-memory exporters in tests).
    progress:
        Called with the number of traces done after each trace.
    foreign_sink:
        Required with ``config.foreign_pans``: receives the other SDKs' telemetry as raw
        OTLP Kafka messages (:class:`~._foreign.ForeignMessage`), one spans and one logs
        message per issuer call.

    Returns
    -------
    SimulationResult
        Counts of traces, spans and log records handed to the processors, and the ground
        truth (scenario, what was injected where and when, the expected effect, the leaked
        card numbers; with ``foreign_pans`` also ``foreign``: the other SDKs' counts and
        every card number they carry).

    Examples
    --------
    >>> from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    >>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    >>> exporter = InMemorySpanExporter()
    >>> config = SimulationConfig(start_ns=1_740_830_400 * 10**9, seed=7, traces=3)
    >>> result = simulate(config, span_processors=[SimpleSpanProcessor(exporter)])
    >>> result.traces, result.spans == len(exporter.get_finished_spans())
    (3, True)
    """
    if config.foreign_pans and foreign_sink is None:
        raise ValueError(
            "foreign_pans needs a foreign_sink: the other SDKs' telemetry goes straight to "
            "Kafka, not through span or log processors"
        )
    # Step 1: one generator for the model's decisions, another for the ids. The run id goes
    # into the ids' seed only: ids repeated across runs would make a later run overwrite an
    # earlier one's documents in Elasticsearch, while the traffic itself may well repeat.
    rng = random.Random(config.seed)  # noqa: S311 (a model's randomness, seeded on purpose)
    id_generator = SeededIdGenerator(f"hopscope-simulator-ids/{config.seed}/{config.run}")
    clock = VirtualClock(config.start_ns)

    # Step 2: the nodes, all feeding the caller's processors behind the counters.
    span_counter, log_counter = SpanCounter(), LogCounter()
    span_chain: list[SpanProcessor] = [span_counter, *span_processors]
    log_chain: list[LogRecordProcessor] = [VirtualObservedTime(), log_counter, *log_processors]
    skewed = config.skewed_node
    nodes: dict[str, list[Node]] = {}
    for service, count in _node_counts(config).items():
        nodes[service] = []
        for index in range(1, count + 1):
            node_id = f"{service}-{index}"
            node_clock: Clock = (
                SkewedClock(clock, CLOCK_SKEW_OFFSET_NS) if node_id == skewed else clock
            )
            nodes[service].append(
                build_node(
                    service,
                    node_id,
                    clock=node_clock,
                    span_processors=span_chain,
                    log_processors=log_chain,
                    id_generator=id_generator,
                    environment=config.environment,
                    region=config.region,
                    run_id=config.run,
                )
            )

    # Step 3: Poisson arrivals, the first one at the start.
    network = PaymentNetwork(config, clock, rng, nodes)
    foreign: ForeignServices | None = None
    if config.foreign_pans and foreign_sink is not None:
        foreign = ForeignServices(
            config.seed, foreign_sink, environment=config.environment, region=config.region,
            run_id=config.run,
        )  # fmt: skip
        network.issuer_observer = foreign.issuer_call
    traces = config.trace_count
    arrival = config.start_ns
    try:
        network.start()
        for done in range(1, traces + 1):
            network.run_trace(arrival)
            arrival += max(1, round(rng.expovariate(config.rate) * NS_PER_S))
            if progress is not None:
                progress(done)
    finally:
        # Step 4: detach the nodes; the processors stay open for their owner.
        for service_nodes in nodes.values():
            for node in service_nodes:
                node.close()

    ground_truth: dict[str, Any] = {
        "scenario": config.scenario.value,
        "seed": config.seed,
        "run_id": config.run,
        "start": format_ns_iso(config.start_ns),
        "start_ns": config.start_ns,
        "end_ns": network.end_ns,
        "rate_per_s": config.rate,
        "lb_strategy": config.strategy,
        "topology": {
            "services": {s: [n.node_id for n in ns] for s, ns in nodes.items()},
            "databases": {"ledger": network.ledger.database_nodes()},
        },
        "injected": injected(network),
        "effect": effect(network),
        "summary": summary(network),
        "counts": {
            "traces": traces,
            "spans": span_counter.count,
            "log_records": log_counter.count,
        },
        "seeded_pans": network.seeded_pans(),
        "seeded_pan_texts": network.seeded_pan_texts(),
    }
    if foreign is not None:
        ground_truth["foreign"] = foreign.truth()
    return SimulationResult(
        traces=traces,
        spans=span_counter.count,
        log_records=log_counter.count,
        start_ns=config.start_ns,
        end_ns=network.end_ns,
        ground_truth=ground_truth,
        run_id=config.run,
    )
