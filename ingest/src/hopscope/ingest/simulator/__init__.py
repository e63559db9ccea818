"""The payment-network simulator: realistic traces and logs, reproducibly, in virtual time.

A modelled network (gateway → load balancer → payment → risk, ledger, clearing with
two-phase commit → bank adapter → issuer) emits, per simulated payment, the spans and logs
its instrumented services would, through the real OpenTelemetry SDK and the helpers of
:mod:`hopscope.ingest.spans`. Scenarios inject one fault each (a dead node, a slow hop, hot
rows, a lagging replica, a cold cache, a skewed load balancer, a wrong clock) and the ground
truth says what a correct analysis must find. Same seed and start, same telemetry, ids and
timestamps included.

The services are careless with card numbers on purpose (span attributes, log lines); the
export pipeline's redaction must remove them. The ground truth lists them (``seeded_pans``).
``foreign_pans=True`` adds services of other SDKs that write raw OTLP straight to Kafka with
card numbers in every field (the processors must mask them; ``ground_truth["foreign"]``).

::

    config = SimulationConfig(start_ns=parse_iso8601_ns("2025-03-01T12:00:00Z"),
                              scenario=Scenario.NODE_FAILURE, seed=7, traces=1000)
    result = simulate(config, span_processors=[...], log_processors=[...])
    result.ground_truth["injected"]
"""

from hopscope.ingest.simulator._clock import (
    SkewedClock,
    VirtualClock,
    default_start_ns,
    format_ns_iso,
    parse_iso8601_ns,
)
from hopscope.ingest.simulator._config import (
    DEFAULT_RATE,
    DEFAULT_TRACES,
    Scenario,
    SimulationConfig,
    Topology,
)
from hopscope.ingest.simulator._foreign import ForeignMessage
from hopscope.ingest.simulator._ids import SeededIdGenerator
from hopscope.ingest.simulator._kafka import KafkaRun, simulate_to_kafka
from hopscope.ingest.simulator._pans import format_pan, generate_pan, is_luhn_valid
from hopscope.ingest.simulator._simulate import SimulationResult, simulate
from hopscope.ingest.simulator.exceptions import ExportIncompleteError, SimulatorError

__all__ = [
    "DEFAULT_RATE",
    "DEFAULT_TRACES",
    "ExportIncompleteError",
    "ForeignMessage",
    "KafkaRun",
    "Scenario",
    "SeededIdGenerator",
    "SimulationConfig",
    "SimulationResult",
    "SimulatorError",
    "SkewedClock",
    "Topology",
    "VirtualClock",
    "default_start_ns",
    "format_ns_iso",
    "format_pan",
    "generate_pan",
    "is_luhn_valid",
    "parse_iso8601_ns",
    "simulate",
    "simulate_to_kafka",
]
