"""What to simulate: the scenario, how many traces, the topology and the injected faults.

The fault magnitudes are module constants with their rationale; the ground truth repeats the
values used, so an analysis is checked against what was injected, not against these names.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from hopscope.ingest import conventions as c
from hopscope.ingest.simulator._clock import NS_PER_MS, NS_PER_S

# A run id goes into trace/span id seeds and a resource attribute (a keyword in Elasticsearch):
# short, printable, and safe in a shell command the user copies back.
RUN_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# 64 random bits: two unpinned runs sharing ids is as likely as two SDK trace ids colliding.
RUN_ID_BYTES: Final = 8


def new_run_id() -> str:
    """A fresh random run id (16 hex digits).

    >>> len(new_run_id()), new_run_id() != new_run_id()
    (16, True)
    """
    return secrets.token_hex(RUN_ID_BYTES)


class Scenario(StrEnum):
    """The faults the simulator can inject (``baseline``: none)."""

    BASELINE = "baseline"
    NODE_FAILURE = "node-failure"
    SLOW_HOP = "slow-hop"
    LOCK_CONTENTION = "lock-contention"
    SLOW_REPLICA = "slow-replica"
    CACHE_DEGRADATION = "cache-degradation"
    LB_SKEW = "lb-skew"
    CLOCK_SKEW = "clock-skew"


DEFAULT_TRACES: Final = 1000
# Traces per virtual second: enough concurrency that load balancing, queues and row locks
# matter, low enough that the baseline has no queueing.
DEFAULT_RATE: Final = 100.0

# node-failure: a dead host does not refuse, it stays silent; the caller's connect timeout
# decides how long each attempt to it costs.
CONNECT_TIMEOUT_NS: Final = 250 * NS_PER_MS
# slow-hop: a misrouted path between two services (e.g. across regions): +40 ms per call,
# half on the request leg and half on the response leg.
SLOW_HOP_EDGE: Final = ("payment", "risk")
SLOW_HOP_ADDED_NS: Final = 40 * NS_PER_MS
# lock-contention: a few merchant accounts (a marketplace, a PSP) receive a quarter of all
# credits, and their rows stay locked across the slow bank call (~190 ms on average). At the
# default rate each hot row is wanted ~8 times a second: more than it can serve, so waits
# grow to the lock timeout and some payments abort. The effect scales with the rate.
HOT_ACCOUNTS: Final = 3
HOT_ACCOUNT_SHARE: Final = 0.25
# slow-replica: replication to one replica lags far beyond what the read router tolerates.
REPLICA_LAG_NS: Final = 8 * NS_PER_S
MAX_REPLICA_STALENESS_NS: Final = 1 * NS_PER_S
# cache-degradation: the risk-profile cache is flushed by a bad deploy and refills slowly.
CACHE_HIT_RATIO: Final = 0.92
DEGRADED_CACHE_HIT_RATIO: Final = 0.35
# lb-skew: a merchant aggregator's few NAT addresses carry most traffic; with ip_hash they
# all land on one payment node.
SKEWED_CLIENT_IPS: Final = 4
SKEWED_CLIENT_SHARE: Final = 0.75
# clock-skew: one node's clock runs 45 ms behind (NTP unreachable for a while): far more than
# a network leg, so its server spans start before their client spans.
CLOCK_SKEW_OFFSET_NS: Final = -45 * NS_PER_MS


@dataclass(frozen=True)
class Topology:
    """How many nodes each service runs; the ledger's shards and replicas per shard.

    Node ids are ``<service>-<n>`` from 1 (``payment-2``); ledger database nodes are
    ``ledger-<shard>-primary`` and ``ledger-<shard>-replica-<n>``.
    """

    gateway_nodes: int = 2
    payment_nodes: int = 3
    risk_nodes: int = 2
    clearing_nodes: int = 3
    bank_adapter_nodes: int = 2
    ledger_shards: int = 2
    replicas_per_shard: int = 2

    def __post_init__(self) -> None:
        for name in (
            "gateway_nodes",
            "risk_nodes",
            "clearing_nodes",
            "bank_adapter_nodes",
            "ledger_shards",
            "replicas_per_shard",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.payment_nodes < 2:
            # A failover needs somewhere to go.
            raise ValueError(f"payment_nodes must be >= 2, got {self.payment_nodes}")


@dataclass(frozen=True)
class SimulationConfig:
    """One simulation run.

    Parameters
    ----------
    start_ns:
        Virtual time of the first arrival window (ns since the epoch).
    scenario:
        The fault to inject (a :class:`Scenario` or its name).
    seed:
        Seeds every random choice of the model: same seed and start, same traffic.
    run_id:
        Names the run: it seeds the trace/span ids together with ``seed`` and is stamped on
        every node's resource as ``hopscope.run.id``, so a run's telemetry can be told apart
        and two runs never share a document id in Elasticsearch. ``None`` (the default) draws
        a fresh random id, so runs are unique unless both ``seed`` and ``run_id`` are pinned;
        pinning both (and the start) reproduces the same telemetry exactly, ids included.
    traces, duration_s, rate:
        Either ``traces`` (arrivals at ``rate`` per virtual second) or ``duration_s`` (then
        ``round(rate * duration_s)`` traces); neither means :data:`DEFAULT_TRACES`.
        Inter-arrival times are exponential (Poisson arrivals).
    lb_strategy:
        How gateways pick a payment node; ``None``: ``ip_hash`` for lb-skew, else
        ``round_robin``.
    fault_at_ns:
        When the fault starts (absolute virtual ns). ``None``: a third into the arrivals for
        node-failure and cache-degradation (so there is a before and an after), the start for
        the other scenarios.
    consensus:
        Whether clearing appends each commit decision to its replicated log
        (``consensus.append`` spans).
    foreign_pans:
        Besides the network's own telemetry, write that of two services instrumented with other
        OpenTelemetry SDKs (Java, Go) straight to Kafka as raw OTLP, with Luhn-valid card
        numbers in every place telemetry has (see :mod:`._foreign`): the card-number audit's
        traffic, which never passes hopscope's redaction. Off by default; turning it on leaves
        the network's own telemetry unchanged.
    """

    start_ns: int
    scenario: Scenario = Scenario.BASELINE
    seed: int = 0
    run_id: str | None = None
    traces: int | None = None
    rate: float = DEFAULT_RATE
    duration_s: float | None = None
    lb_strategy: str | None = None
    fault_at_ns: int | None = None
    consensus: bool = True
    environment: str = "simulation"
    region: str = "eu-central-1"
    topology: Topology = field(default_factory=Topology)
    foreign_pans: bool = False

    def __post_init__(self) -> None:
        # Accept the scenario's name too (the CLI and JSON configs speak strings).
        object.__setattr__(self, "scenario", Scenario(self.scenario))
        # The id is fixed here, once, so every part of the run (ids, resources, ground truth)
        # agrees on it; the dataclass is frozen, hence object.__setattr__.
        if self.run_id is None:
            object.__setattr__(self, "run_id", new_run_id())
        elif not RUN_ID_PATTERN.fullmatch(self.run_id):
            raise ValueError(
                "run_id must be 1-64 letters, digits, '.', '_' or '-', starting with a letter "
                f"or digit, got {self.run_id!r}"
            )
        if self.start_ns < 0:
            raise ValueError(f"start_ns must be >= 0, got {self.start_ns}")
        if not self.rate > 0:
            raise ValueError(f"rate must be > 0 traces per second, got {self.rate}")
        if self.traces is not None and self.duration_s is not None:
            raise ValueError("give traces or duration_s, not both")
        if self.traces is not None and self.traces < 1:
            raise ValueError(f"traces must be >= 1, got {self.traces}")
        if self.duration_s is not None and round(self.rate * self.duration_s) < 1:
            raise ValueError(
                f"rate * duration_s must give at least one trace, got {self.rate} * "
                f"{self.duration_s}"
            )
        if self.lb_strategy is not None and self.lb_strategy not in c.LB_STRATEGIES:
            raise ValueError(
                f"lb_strategy must be one of {sorted(c.LB_STRATEGIES)}, got {self.lb_strategy!r}"
            )
        if self.scenario is Scenario.LB_SKEW and self.lb_strategy not in (None, c.IP_HASH):
            raise ValueError(
                f"scenario lb-skew needs lb_strategy {c.IP_HASH!r} (the skew comes from hashing "
                f"client addresses), got {self.lb_strategy!r}"
            )
        if self.fault_at_ns is not None and self.fault_at_ns < self.start_ns:
            raise ValueError(
                f"fault_at_ns must not be before start_ns, got {self.fault_at_ns} < {self.start_ns}"
            )

    @property
    def run(self) -> str:
        """The run id in effect (never ``None`` once constructed)."""
        assert self.run_id is not None  # set in __post_init__
        return self.run_id

    @property
    def trace_count(self) -> int:
        """How many traces the run produces."""
        if self.traces is not None:
            return self.traces
        if self.duration_s is not None:
            return round(self.rate * self.duration_s)
        return DEFAULT_TRACES

    @property
    def strategy(self) -> str:
        """The load-balancing strategy in effect."""
        if self.lb_strategy is not None:
            return self.lb_strategy
        return c.IP_HASH if self.scenario is Scenario.LB_SKEW else c.ROUND_ROBIN

    @property
    def fault_at(self) -> int:
        """When the injected fault starts (absolute virtual ns)."""
        if self.fault_at_ns is not None:
            return self.fault_at_ns
        if self.scenario in (Scenario.NODE_FAILURE, Scenario.CACHE_DEGRADATION):
            expected_span_ns = self.trace_count / self.rate * NS_PER_S
            return self.start_ns + round(expected_span_ns / 3)
        return self.start_ns

    @property
    def failed_node(self) -> str | None:
        """The node that dies in node-failure: the second payment node."""
        return "payment-2" if self.scenario is Scenario.NODE_FAILURE else None

    @property
    def skewed_node(self) -> str | None:
        """The node whose clock is off in clock-skew: the last risk node."""
        if self.scenario is Scenario.CLOCK_SKEW:
            return f"risk-{self.topology.risk_nodes}"
        return None
