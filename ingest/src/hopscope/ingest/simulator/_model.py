"""The payment network: how each service handles a request, and the injected faults.

One request (a trace) walks the network depth-first on the virtual clock::

    gateway ──(load balancer)──► payment ──► risk (cache; on a miss a ledger replica read)
                                   │   └──► ledger replica read (balance)
                                   └──► clearing: 2PC prepare on each ledger shard (row locks)
                                            ├──► bank-adapter ──► issuer (external, slow)
                                            ├── consensus.append (commit decision)
                                            └── 2PC commit / abort on each shard

Every call between services is a CLIENT span on the caller's node and a SERVER span on the
callee's node (W3C ``traceparent`` in a headers dict), with a positive network leg each way.
The ledger's PostgreSQL nodes and the issuer are not instrumented: calls to them are one-sided
CLIENT spans. Time only moves through ``self.clock.advance``; parallel branches (the 2PC
phases) rewind the clock to the phase start for each participant and continue at the latest end.

Traces are simulated one after the other in arrival order, while in virtual time they overlap.
Shared state (worker pools, row locks, load-balancer health) therefore sees the earlier
arrivals' complete effect: a FIFO approximation of the real interleaving, exact for queues
served in arrival order.
"""

from __future__ import annotations

import logging
import math
import random
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry.trace import Span, format_trace_id

from hopscope.ingest import conventions as c
from hopscope.ingest.simulator._clock import NS_PER_MS, NS_PER_S, NS_PER_US, VirtualClock
from hopscope.ingest.simulator._config import (
    CACHE_HIT_RATIO,
    CONNECT_TIMEOUT_NS,
    DEGRADED_CACHE_HIT_RATIO,
    HOT_ACCOUNT_SHARE,
    HOT_ACCOUNTS,
    MAX_REPLICA_STALENESS_NS,
    REPLICA_LAG_NS,
    SKEWED_CLIENT_IPS,
    SKEWED_CLIENT_SHARE,
    SLOW_HOP_ADDED_NS,
    SLOW_HOP_EDGE,
    Scenario,
    SimulationConfig,
)
from hopscope.ingest.simulator._infra import (
    EJECT_AFTER_FAILURES,
    LEDGER_DB,
    Ledger,
    LoadBalancer,
    WorkerPool,
)
from hopscope.ingest.simulator._nodes import Node
from hopscope.ingest.simulator._pans import PAN_STYLES, format_pan, generate_pan
from hopscope.ingest.spans import (
    cache_lookup,
    coordination,
    db_call,
    failover,
    lock_wait,
    mark_error,
    rpc_call,
    rpc_server,
)

# Services (service.name) and their gRPC ports.
GATEWAY: Final = "gateway"
PAYMENT: Final = "payment"
RISK: Final = "risk"
CLEARING: Final = "clearing"
BANK_ADAPTER: Final = "bank-adapter"
SERVICES: Final = (GATEWAY, PAYMENT, RISK, CLEARING, BANK_ADAPTER)
PORTS: Final = {PAYMENT: 50051, RISK: 50052, CLEARING: 50053, BANK_ADAPTER: 50054}
ISSUER: Final = "issuer"
ISSUER_HOST: Final = "issuer-gw.cardnet.example"
POSTGRES_PORT: Final = 5432
RISK_CACHE: Final = "risk-profiles"
CLEARING_LOG: Final = "clearing-log"
GATEWAY_ROUTE: Final = "POST /v1/payments"

# The SQL statements below are built with their values inlined (noqa S608): they are never
# executed, and db_call strips the literals before they reach a span, as for a real driver.

# Careless on purpose: the gateway copies the card number from the request body into a span
# attribute under one of these keys (two code paths, two spellings). Redaction downstream must
# catch them; docs/DESIGN.md §3 says payment attributes never carry a card number.
CARELESS_CARD_ATTRIBUTES: Final = ("http.request.body.card", "payment.card_number")
CARELESS_LOG_P: Final = 0.1  # share of requests whose "received" log line quotes the card

# Reply statuses.
APPROVED: Final = "approved"
DECLINED: Final = "declined"
FAILED: Final = "failed"

# Error types (error.type): client-side timeouts, gRPC status names from servers.
TIMEOUT: Final = "timeout"
UNAVAILABLE: Final = "UNAVAILABLE"
DEADLINE_EXCEEDED: Final = "DEADLINE_EXCEEDED"
ABORTED: Final = "ABORTED"
LOCK_TIMEOUT_ERROR: Final = "lock_timeout"
HTTP_STATUS: Final = {
    APPROVED: 201,
    DECLINED: 402,
    TIMEOUT: 503,
    UNAVAILABLE: 503,
    DEADLINE_EXCEEDED: 504,
    ABORTED: 409,
}

# Latencies: (median ns, lognormal sigma). Same-zone gRPC legs, a busy but healthy PostgreSQL,
# an issuer answering in ~150 ms with a heavy tail.
NET_LEG: Final = (180 * NS_PER_US, 0.35)
GATEWAY_PRE: Final = (400 * NS_PER_US, 0.3)
GATEWAY_POST: Final = (150 * NS_PER_US, 0.3)
PAYMENT_PRE: Final = (1_500 * NS_PER_US, 0.3)
PAYMENT_POST: Final = (800 * NS_PER_US, 0.3)
CACHE_LOOKUP: Final = (60 * NS_PER_US, 0.25)
RISK_FEATURES: Final = (3 * NS_PER_MS, 0.35)  # recomputing a profile on a cache miss
RISK_MODEL: Final = (900 * NS_PER_US, 0.25)
DB_READ: Final = (1_200 * NS_PER_US, 0.4)
PRIMARY_READ_FACTOR: Final = 1.4  # the primary also takes every write
DB_UPDATE: Final = (1_500 * NS_PER_US, 0.35)
DB_PREPARE: Final = (2 * NS_PER_MS, 0.3)  # an fsync
DB_FINISH: Final = (1_800 * NS_PER_US, 0.3)
LOCK_ACQUIRE: Final = (40 * NS_PER_US, 0.3)
CLEARING_SELF: Final = (300 * NS_PER_US, 0.3)
CONSENSUS_APPEND: Final = (2_500 * NS_PER_US, 0.3)  # a quorum round trip plus fsync
BANK_SELF: Final = (600 * NS_PER_US, 0.3)  # ISO 8583 message building
ISSUER_LATENCY: Final = (140 * NS_PER_MS, 0.45)
ISSUER_TAIL_P: Final = 0.05  # share of issuer calls from the Pareto tail
ISSUER_TAIL_ALPHA: Final = 1.0
BANK_TIMEOUT_NS: Final = 2 * NS_PER_S
RETRY_BACKOFF: Final = (25 * NS_PER_MS, 0.3)
LOCK_TIMEOUT_NS: Final = 1 * NS_PER_S  # PostgreSQL lock_timeout of the clearing role

# Outcome probabilities.
PAYMENT_UNAVAILABLE_P: Final = 0.004  # a node shedding load: answered UNAVAILABLE, retried
RISK_DECLINE_P: Final = 0.015
INSUFFICIENT_FUNDS_P: Final = 0.01
ISSUER_DECLINE_P: Final = 0.03
NEW_CARD_P: Final = 0.6  # otherwise a returning card

# Gateway retry policy (the health checks are the load balancer's, in _infra).
MAX_ATTEMPTS: Final = 3
ATTEMPTS_PER_NODE: Final = 2  # a failed node is retried once, then the call fails over

# Payment node worker pools: requests beyond the capacity queue; busy nodes run slower
# (CPU and connection-pool contention): self time x (1 + in_flight / LOAD_SLOWDOWN_IN_FLIGHT).
WORKERS_PER_PAYMENT_NODE: Final = 16
LOAD_SLOWDOWN_IN_FLIGHT: Final = 6.0

# Accounts: payers are many; merchants fewer; hot merchants only in lock-contention.
PAYER_ACCOUNTS: Final = (100_000, 1_000_000)
MERCHANT_ACCOUNTS: Final = (9_000_000, 9_050_000)

# Client addresses: the three documentation ranges (RFC 5737).
CLIENT_ADDRESSES: Final = tuple(
    f"{net}.{host}" for net in ("192.0.2", "198.51.100", "203.0.113") for host in range(1, 255)
)

Latency = tuple[int, float]


@dataclass(frozen=True, slots=True)
class Reply:
    """What a handler answered: a status, the error type when it failed, retry-worthiness."""

    status: str
    error_type: str | None = None
    retryable: bool = False


OK: Final = Reply(APPROVED)
DECLINE: Final = Reply(DECLINED)


@dataclass(slots=True)
class Payment:
    """One payment request, as the gateway received it."""

    payment_id: str
    amount: float
    currency: str
    pan: str
    pan_text: str
    payer_account: int
    merchant_account: int
    client_ip: str


Handler = Callable[[Node, Span, Payment], Reply]


@dataclass
class Stats:
    """What the model did, for the ground truth (counted as it happens, never estimated)."""

    outcomes: dict[str, int] = field(default_factory=dict)
    payment_requests: dict[str, int] = field(default_factory=dict)
    payment_self_ns: dict[str, int] = field(default_factory=dict)
    payment_queue_ns: dict[str, int] = field(default_factory=dict)
    failovers: list[dict[str, Any]] = field(default_factory=list)
    retries: int = 0
    dead_node_timeouts: int = 0
    ejections: list[dict[str, Any]] = field(default_factory=list)
    cache_lookups: list[int] = field(default_factory=lambda: [0, 0])  # before, after fault
    cache_hits: list[int] = field(default_factory=lambda: [0, 0])
    reads: dict[str, int] = field(default_factory=lambda: {c.PRIMARY: 0, c.REPLICA: 0})
    redirected_reads: int = 0
    lock_wait_ns: dict[str, int] = field(default_factory=dict)
    lock_waits: dict[str, int] = field(default_factory=dict)
    lock_timeouts: int = 0
    slow_hop_calls: int = 0
    skewed_server_spans: int = 0
    bank_timeouts: int = 0


@contextmanager
def _outside_any_trace() -> Iterator[None]:
    """Log a cluster event with no trace context (a health checker, an election)."""
    token = otel_context.attach(otel_context.Context())
    try:
        yield
    finally:
        otel_context.detach(token)


class PaymentNetwork:
    """The modelled services on their nodes, the shared state and the injected fault."""

    def __init__(
        self,
        config: SimulationConfig,
        clock: VirtualClock,
        rng: random.Random,
        nodes: Mapping[str, list[Node]],
    ) -> None:
        self.config = config
        self.clock = clock
        self.rng = rng
        self.nodes = nodes
        self.stats = Stats()
        self.scenario = config.scenario
        self.fault_at = config.fault_at
        topology = config.topology
        self.ledger = Ledger(topology.ledger_shards, topology.replicas_per_shard)
        self.pools = {n.node_id: WorkerPool(WORKERS_PER_PAYMENT_NODE) for n in nodes[PAYMENT]}
        self.balancers = {
            gw.node_id: LoadBalancer(config.strategy, nodes[PAYMENT], self.pools)
            for gw in nodes[GATEWAY]
        }
        self._lb_attributes = {c.LB_STRATEGY: config.strategy}
        self.leader = nodes[CLEARING][0]
        self.end_ns = config.start_ns
        self._cards: list[str] = []
        self._used_pans: dict[str, None] = {}  # insertion-ordered set
        self._pan_texts: set[str] = set()
        self._last_lag_warning: dict[str, int] = {}
        # Told of every issuer call (trace id, CLIENT span id, start, end): the services of
        # other SDKs that handle it when the run includes them (SimulationConfig.foreign_pans).
        self.issuer_observer: Callable[[int, int, int, int], None] | None = None

        # The fault, resolved to concrete nodes, accounts and addresses.
        scenario = config.scenario
        self.dead_node = config.failed_node
        self.slow_edge = SLOW_HOP_EDGE if scenario is Scenario.SLOW_HOP else None
        self.hot_accounts: list[int] = []
        if scenario is Scenario.LOCK_CONTENTION:
            self.hot_accounts = rng.sample(range(*MERCHANT_ACCOUNTS), HOT_ACCOUNTS)
        self.lagging_replica: str | None = None
        if scenario is Scenario.SLOW_REPLICA:
            self.lagging_replica = self.ledger.replica(0, topology.replicas_per_shard)
            self.ledger.lagging[self.lagging_replica] = (self.fault_at, REPLICA_LAG_NS)
        self.skewed_ips: list[str] = []
        self.overloaded_node: str | None = None
        if scenario is Scenario.LB_SKEW:
            self.overloaded_node = nodes[PAYMENT][0].node_id
            addresses = list(CLIENT_ADDRESSES)
            rng.shuffle(addresses)
            # The aggregator's addresses all hash to the first payment node.
            self.skewed_ips = [
                ip for ip in addresses if zlib.crc32(ip.encode()) % len(nodes[PAYMENT]) == 0
            ][:SKEWED_CLIENT_IPS]
        self.skewed_node = config.skewed_node

    # -- randomness ------------------------------------------------------------------------

    def _draw(self, latency: Latency) -> int:
        median, sigma = latency
        return int(median * math.exp(sigma * self.rng.gauss(0.0, 1.0)))

    def _legs(self, source: str, target: str) -> tuple[int, int]:
        """Request and response network legs of one call (always > 0)."""
        request = self._draw(NET_LEG) + 1
        response = self._draw(NET_LEG) + 1
        if self.slow_edge == (source, target) and self.clock.now() >= self.fault_at:
            self.stats.slow_hop_calls += 1
            request += SLOW_HOP_ADDED_NS // 2
            response += SLOW_HOP_ADDED_NS - SLOW_HOP_ADDED_NS // 2
        return request, response

    def _new_payment(self) -> Payment:
        rng = self.rng
        if not self._cards or rng.random() < NEW_CARD_P:
            self._cards.append(generate_pan(rng))
            pan = self._cards[-1]
        else:
            pan = rng.choice(self._cards)
        pan_text = format_pan(pan, rng.choice(PAN_STYLES))
        self._used_pans[pan] = None
        self._pan_texts.add(pan_text)
        if self.hot_accounts and rng.random() < HOT_ACCOUNT_SHARE:
            merchant = rng.choice(self.hot_accounts)
        else:
            merchant = rng.randrange(*MERCHANT_ACCOUNTS)
        if self.skewed_ips and rng.random() < SKEWED_CLIENT_SHARE:
            client_ip = rng.choice(self.skewed_ips)
        else:
            client_ip = rng.choice(CLIENT_ADDRESSES)
        currency = rng.choices(("EUR", "USD", "GBP"), weights=(6, 3, 1))[0]
        return Payment(
            payment_id=f"pay_{rng.getrandbits(64):016x}",
            amount=round(rng.lognormvariate(3.4, 0.9), 2),
            currency=currency,
            pan=pan,
            pan_text=pan_text,
            payer_account=rng.randrange(*PAYER_ACCOUNTS),
            merchant_account=merchant,
            client_ip=client_ip,
        )

    # -- the call between two nodes --------------------------------------------------------

    def _call(
        self,
        caller: Node,
        callee: Node,
        method: str,
        payment: Payment,
        handler: Handler,
        *,
        attempt: int = 0,
        attributes: Mapping[str, Any] | None = None,
    ) -> Reply:
        """A CLIENT span on ``caller``, the SERVER span on ``callee`` inside it."""
        clock = self.clock
        headers: dict[str, str] = {}
        port = PORTS[callee.service]
        with rpc_call(
            callee.service,
            callee.node_id,
            method,
            attempt=attempt,
            port=port,
            headers=headers,
            attributes=attributes,
            tracer=caller.tracer,
            clock=caller.clock,
        ) as client:
            if callee.node_id == self.dead_node and clock.now() >= self.fault_at:
                # The node stopped accepting at the fault (requests it had accepted
                # finished) and is silent since: the connect attempt times out.
                self.stats.dead_node_timeouts += 1
                clock.advance(CONNECT_TIMEOUT_NS)
                mark_error(
                    client,
                    TIMEOUT,
                    f"connect to {callee.node_id}:{port} timed out after "
                    f"{CONNECT_TIMEOUT_NS // NS_PER_MS} ms",
                )
                return Reply(FAILED, TIMEOUT, retryable=True)
            request_leg, response_leg = self._legs(caller.service, callee.service)
            clock.advance(request_leg)
            if callee.node_id == self.skewed_node:
                self.stats.skewed_server_spans += 1
            with rpc_server(
                callee.service,
                method,
                headers=headers,
                attributes={c.PAYMENT_ID: payment.payment_id},
                tracer=callee.tracer,
                clock=callee.clock,
            ) as server:
                reply = handler(callee, server, payment)
                if reply.error_type:
                    mark_error(server, reply.error_type)
            clock.advance(response_leg)
            if reply.error_type:
                mark_error(client, reply.error_type)
        return reply

    # -- gateway ---------------------------------------------------------------------------

    def start(self) -> None:
        """Cluster events before the first request: the clearing log's leader election."""
        if not self.config.consensus:
            return
        self.clock.set(self.config.start_ns)
        with _outside_any_trace():
            self.leader.logger.info(
                "%s elected leader of %s for term %d",
                self.leader.node_id,
                CLEARING_LOG,
                1,
                extra={
                    c.EVENT_NAME: c.LOG_LEADER_ELECTED,
                    c.COORDINATION_RESOURCE: CLEARING_LOG,
                    "consensus.term": 1,
                },
            )

    def run_trace(self, arrival_ns: int) -> None:
        """Simulate one payment arriving at ``arrival_ns``: one trace."""
        rng, clock = self.rng, self.clock
        clock.set(arrival_ns)
        payment = self._new_payment()
        gateway = self.nodes[GATEWAY][rng.randrange(len(self.nodes[GATEWAY]))]
        attributes = {
            c.PAYMENT_ID: payment.payment_id,
            c.PAYMENT_AMOUNT: payment.amount,
            c.PAYMENT_CURRENCY: payment.currency,
            c.PAYMENT_METHOD: "card",
            "client.address": payment.client_ip,
            "http.request.method": "POST",
            "url.path": "/v1/payments",
            rng.choice(CARELESS_CARD_ATTRIBUTES): payment.pan_text,
        }
        extra = {c.PAYMENT_ID: payment.payment_id}
        with rpc_server(
            GATEWAY,
            GATEWAY_ROUTE,
            rpc_system="http",
            attributes=attributes,
            tracer=gateway.tracer,
            clock=gateway.clock,
        ) as root:
            if rng.random() < CARELESS_LOG_P:
                gateway.logger.info(
                    "received payment %s for card %s, %.2f %s",
                    payment.payment_id,
                    payment.pan_text,
                    payment.amount,
                    payment.currency,
                    extra=extra,
                )
            clock.advance(self._draw(GATEWAY_PRE))
            reply = self._authorize_with_failover(gateway, root, payment)
            clock.advance(self._draw(GATEWAY_POST))
            status = HTTP_STATUS[reply.error_type or reply.status]
            root.set_attribute("http.response.status_code", status)
            if reply.error_type:
                mark_error(root, reply.error_type)
            gateway.logger.log(
                logging.ERROR if status >= 500 else logging.INFO,
                "%s %d in %.1f ms",
                GATEWAY_ROUTE,
                status,
                (clock.now() - arrival_ns) / NS_PER_MS,
                extra={**extra, "http.response.status_code": status},
            )
        outcome = reply.error_type or reply.status
        self.stats.outcomes[outcome] = self.stats.outcomes.get(outcome, 0) + 1
        self.end_ns = max(self.end_ns, clock.now())

    def _authorize_with_failover(self, gateway: Node, root: Span, payment: Payment) -> Reply:
        """Gateway → payment: retry a failed node once, then fail over to another node."""
        clock, stats = self.clock, self.stats
        balancer = self.balancers[gateway.node_id]
        node = balancer.pick(payment.client_ip, clock.now())
        tried = [node.node_id]
        attempts_on_node = 0
        attempt = 0
        while True:
            reply = self._call(
                gateway,
                node,
                "Authorize",
                payment,
                self._payment_authorize,
                attempt=attempt,
                attributes=self._lb_attributes,
            )
            attempts_on_node += 1
            if balancer.record(node.node_id, not reply.retryable, clock.now()):
                self._log_ejection(gateway, balancer, node.node_id)
            if not reply.retryable or attempt + 1 >= MAX_ATTEMPTS:
                return reply
            attempt += 1
            clock.advance(self._draw(RETRY_BACKOFF))
            now = clock.now()
            if attempts_on_node < ATTEMPTS_PER_NODE and balancer.healthy(node.node_id, now):
                stats.retries += 1
                continue
            target = balancer.pick(payment.client_ip, now, exclude=tried)
            if target is node:
                stats.retries += 1
                continue
            reason = reply.error_type or FAILED
            failover(node.node_id, target.node_id, reason, span=root, clock=gateway.clock)
            trace_id = format_trace_id(root.get_span_context().trace_id)
            stats.failovers.append(
                {"at": now, "from": node.node_id, "to": target.node_id, "reason": reason,
                 "gateway": gateway.node_id, "trace_id": trace_id, "attempt": attempt}
            )  # fmt: skip
            gateway.logger.warning(
                "failing over payment %s from %s to %s after %s",
                payment.payment_id,
                node.node_id,
                target.node_id,
                reason,
                extra={
                    c.EVENT_NAME: c.LOG_FAILOVER,
                    c.FAILOVER_FROM: node.node_id,
                    c.FAILOVER_TO: target.node_id,
                    c.FAILOVER_REASON: reason,
                    c.PAYMENT_ID: payment.payment_id,
                },
            )
            node = target
            tried.append(node.node_id)
            attempts_on_node = 0

    def _log_ejection(self, gateway: Node, balancer: LoadBalancer, node_id: str) -> None:
        now = self.clock.now()
        until = balancer.ejected_until(node_id)
        self.stats.ejections.append(
            {"at": now, "node": node_id, "by": gateway.node_id, "until": until}
        )
        with _outside_any_trace():
            gateway.logger.error(
                "%s ejected from the payment pool after %d consecutive failures for %.0f s",
                node_id,
                EJECT_AFTER_FAILURES,
                (until - now) / NS_PER_S,
                extra={
                    c.EVENT_NAME: c.LOG_NODE_DOWN,
                    c.PEER_SERVICE: PAYMENT,
                    c.SERVER_ADDRESS: node_id,
                },
            )

    # -- payment ---------------------------------------------------------------------------

    def _payment_authorize(self, node: Node, span: Span, payment: Payment) -> Reply:
        clock, rng, stats = self.clock, self.rng, self.stats
        pool = self.pools[node.node_id]
        wait, in_flight = pool.admit(clock.now())
        extra = {c.PAYMENT_ID: payment.payment_id}
        try:
            if wait:
                with coordination(
                    c.QUEUE_WAIT,
                    f"{node.node_id}/workers",
                    tracer=node.tracer,
                    clock=node.clock,
                ):
                    clock.advance(wait)
                stats.payment_queue_ns[node.node_id] = (
                    stats.payment_queue_ns.get(node.node_id, 0) + wait
                )
            stats.payment_requests[node.node_id] = stats.payment_requests.get(node.node_id, 0) + 1
            if rng.random() < PAYMENT_UNAVAILABLE_P:
                clock.advance(self._draw(CACHE_LOOKUP))
                node.logger.warning(
                    "shedding payment %s: node draining", payment.payment_id, extra=extra
                )
                return Reply(FAILED, UNAVAILABLE, retryable=True)
            slowdown = 1.0 + in_flight / LOAD_SLOWDOWN_IN_FLIGHT
            own = int(self._draw(PAYMENT_PRE) * slowdown)
            clock.advance(own)
            reply = self._call(node, self._pick(RISK), "Score", payment, self._risk_score)
            if reply.status == APPROVED:
                payer = payment.payer_account
                self._ledger_read(
                    node,
                    self.ledger.shard_of(payer),
                    f"SELECT balance, currency FROM accounts WHERE id = {payer}",  # noqa: S608
                )
                if rng.random() < INSUFFICIENT_FUNDS_P:
                    # Careless on purpose: the card number in a log line.
                    node.logger.warning(
                        "card %s declined: insufficient funds", payment.pan_text, extra=extra
                    )
                    reply = DECLINE
                else:
                    reply = self._call(
                        node, self._pick(CLEARING), "Settle", payment, self._clearing_settle
                    )
            post = int(self._draw(PAYMENT_POST) * slowdown)
            clock.advance(post)
            stats.payment_self_ns[node.node_id] = (
                stats.payment_self_ns.get(node.node_id, 0) + own + post
            )
            node.logger.info(
                "payment %s %s",
                payment.payment_id,
                reply.status if reply.error_type is None else f"failed: {reply.error_type}",
                extra=extra,
            )
            return reply
        finally:
            pool.release(clock.now())

    def _pick(self, service: str) -> Node:
        nodes = self.nodes[service]
        return nodes[self.rng.randrange(len(nodes))]

    def _ledger_read(self, caller: Node, shard: int, statement: str) -> None:
        """A read on the shard: a replica, or the primary when the replica lags."""
        clock = self.clock
        now = clock.now()
        db_node, role, skipped = self.ledger.route_read(shard, now, self.rng)
        if skipped is not None:
            self.stats.redirected_reads += 1
            # Rate-limited like a real service's warning: once per second per node.
            if now - self._last_lag_warning.get(caller.node_id, -NS_PER_S) >= NS_PER_S:
                self._last_lag_warning[caller.node_id] = now
                caller.logger.warning(
                    "replica %s is %.1f s behind (max %.1f s); reading from %s",
                    skipped,
                    self.ledger.lagging[skipped][1] / NS_PER_S,
                    MAX_REPLICA_STALENESS_NS / NS_PER_S,
                    db_node,
                    extra={c.DB_SYSTEM: "postgresql", c.SERVER_ADDRESS: skipped},
                )
        self.stats.reads[role] += 1
        duration = self._draw(DB_READ)
        if role == c.PRIMARY:
            duration = int(duration * PRIMARY_READ_FACTOR)
        with db_call(
            "postgresql",
            "SELECT",
            statement,
            role=role,
            node=db_node,
            namespace=LEDGER_DB,
            attributes={c.SERVER_PORT: POSTGRES_PORT},
            tracer=caller.tracer,
            clock=caller.clock,
        ):
            clock.advance(duration)

    # -- risk ------------------------------------------------------------------------------

    def _hit_ratio(self, now: int) -> float:
        if self.scenario is Scenario.CACHE_DEGRADATION and now >= self.fault_at:
            return DEGRADED_CACHE_HIT_RATIO
        return CACHE_HIT_RATIO

    def _risk_score(self, node: Node, span: Span, payment: Payment) -> Reply:
        clock, rng, stats = self.clock, self.rng, self.stats
        now = clock.now()
        hit = rng.random() < self._hit_ratio(now)
        after = 1 if now >= self.fault_at else 0
        stats.cache_lookups[after] += 1
        stats.cache_hits[after] += hit
        with cache_lookup(RISK_CACHE, hit=hit, tracer=node.tracer, clock=node.clock):
            clock.advance(self._draw(CACHE_LOOKUP))
        if not hit:
            clock.advance(self._draw(RISK_FEATURES))
            payer = payment.payer_account
            self._ledger_read(
                node,
                self.ledger.shard_of(payer),
                f"SELECT count(*), sum(amount) FROM postings WHERE account_id = {payer} "  # noqa: S608
                f"AND posted_at > now() - interval '1 hour'",
            )
        clock.advance(self._draw(RISK_MODEL))
        declined = rng.random() < RISK_DECLINE_P
        score = rng.randrange(90, 100) if declined else rng.randrange(0, 60)
        node.logger.info(
            "risk score %d for payment %s (profile cache %s)",
            score,
            payment.payment_id,
            "hit" if hit else "miss",
            extra={c.PAYMENT_ID: payment.payment_id, "risk.score": score, c.CACHE_HIT: hit},
        )
        return DECLINE if declined else OK

    # -- clearing --------------------------------------------------------------------------

    def _clearing_settle(self, node: Node, span: Span, payment: Payment) -> Reply:
        """Two-phase commit of the debit and the credit across the ledger shards, holding the
        row locks across the issuer's authorization (the design flaw lock-contention shows)."""
        clock, ledger = self.clock, self.ledger
        txid = f"tx-{self.rng.getrandbits(64):016x}"
        clock.advance(self._draw(CLEARING_SELF))
        postings: dict[int, list[tuple[int, float]]] = {}
        for account, delta in (
            (payment.payer_account, -payment.amount),
            (payment.merchant_account, payment.amount),
        ):
            postings.setdefault(ledger.shard_of(account), []).append((account, delta))
        locked: dict[int, list[str]] = {}

        # Phase 1, in parallel on every participant shard.
        phase_start, ends, prepared = clock.now(), [], []
        for shard, shard_postings in sorted(postings.items()):
            clock.set(phase_start)
            if self._prepare(node, txid, shard, shard_postings, locked):
                prepared.append(shard)
            ends.append(clock.now())
        clock.set(max(ends))

        if len(prepared) == len(postings):
            reply = self._call(
                node, self._pick(BANK_ADAPTER), "Authorize", payment, self._bank_authorize
            )
        else:
            reply = Reply(FAILED, ABORTED)
        commit = reply.status == APPROVED
        if commit and self.config.consensus:
            with coordination(
                c.CONSENSUS_APPEND,
                CLEARING_LOG,
                participant=self.leader.node_id,
                tracer=node.tracer,
                clock=node.clock,
            ):
                clock.advance(self._draw(CONSENSUS_APPEND))

        # Phase 2, in parallel: commit or abort everywhere; the row locks go with it.
        kind = c.TWO_PC_COMMIT if commit else c.TWO_PC_ABORT
        phase_start, ends = clock.now(), []
        for shard in sorted(postings):
            clock.set(phase_start)
            if commit:
                operation, statement = "COMMIT", f"COMMIT PREPARED '{txid}'"
            elif shard in prepared:
                operation, statement = "ROLLBACK", f"ROLLBACK PREPARED '{txid}'"
            else:
                operation, statement = "ROLLBACK", "ROLLBACK"
            with (
                coordination(
                    kind,
                    txid,
                    participant=ledger.shard_name(shard),
                    tracer=node.tracer,
                    clock=node.clock,
                ),
                db_call(
                    "postgresql",
                    operation,
                    statement,
                    role=c.PRIMARY,
                    node=ledger.primary(shard),
                    namespace=LEDGER_DB,
                    attributes={c.SERVER_PORT: POSTGRES_PORT},
                    tracer=node.tracer,
                    clock=node.clock,
                ),
            ):
                clock.advance(self._draw(DB_FINISH))
            for resource in locked.get(shard, ()):
                ledger.release(resource, clock.now())
            ends.append(clock.now())
        clock.set(max(ends))

        extra = {c.PAYMENT_ID: payment.payment_id, c.COORDINATION_RESOURCE: txid}
        if commit:
            node.logger.info("%s committed on %d shards", txid, len(postings), extra=extra)
        else:
            node.logger.warning(
                "%s aborted on %d shards (%s)",
                txid,
                len(postings),
                reply.error_type or reply.status,
                extra=extra,
            )
        return reply

    def _prepare(
        self,
        node: Node,
        txid: str,
        shard: int,
        postings: list[tuple[int, float]],
        locked: dict[int, list[str]],
    ) -> bool:
        """One participant's prepare: lock the rows, update, PREPARE TRANSACTION."""
        clock, ledger, stats = self.clock, self.ledger, self.stats
        primary = ledger.primary(shard)
        db_attributes = {c.SERVER_PORT: POSTGRES_PORT}
        with coordination(
            c.TWO_PC_PREPARE,
            txid,
            participant=ledger.shard_name(shard),
            tracer=node.tracer,
            clock=node.clock,
        ) as prepare:
            # Rows in id order, as every transaction does: no deadlocks, only waits.
            for account, delta in sorted(postings):
                resource = f"account:{account}"
                wait = ledger.lock_wait_ns(resource, clock.now())
                timed_out = wait > LOCK_TIMEOUT_NS
                waited = LOCK_TIMEOUT_NS if timed_out else wait + self._draw(LOCK_ACQUIRE)
                with lock_wait(resource, tracer=node.tracer, clock=node.clock) as span:
                    clock.advance(waited)
                    if timed_out:
                        mark_error(span, LOCK_TIMEOUT_ERROR, "canceling statement: lock timeout")
                stats.lock_wait_ns[resource] = stats.lock_wait_ns.get(resource, 0) + waited
                stats.lock_waits[resource] = stats.lock_waits.get(resource, 0) + 1
                if timed_out:
                    stats.lock_timeouts += 1
                    mark_error(prepare, LOCK_TIMEOUT_ERROR)
                    node.logger.warning(
                        "%s: lock on %s not granted within %d ms",
                        txid,
                        resource,
                        LOCK_TIMEOUT_NS // NS_PER_MS,
                        extra={c.COORDINATION_RESOURCE: resource},
                    )
                    return False
                locked.setdefault(shard, []).append(resource)
                sign = "-" if delta < 0 else "+"
                with db_call(
                    "postgresql",
                    "UPDATE",
                    f"UPDATE accounts SET balance = balance {sign} {abs(delta):.2f} "  # noqa: S608
                    f"WHERE id = {account}",
                    role=c.PRIMARY,
                    node=primary,
                    namespace=LEDGER_DB,
                    attributes=db_attributes,
                    tracer=node.tracer,
                    clock=node.clock,
                ):
                    clock.advance(self._draw(DB_UPDATE))
            with db_call(
                "postgresql",
                "PREPARE",
                f"PREPARE TRANSACTION '{txid}'",
                role=c.PRIMARY,
                node=primary,
                namespace=LEDGER_DB,
                attributes=db_attributes,
                tracer=node.tracer,
                clock=node.clock,
            ):
                clock.advance(self._draw(DB_PREPARE))
        return True

    # -- bank adapter ----------------------------------------------------------------------

    def _bank_authorize(self, node: Node, span: Span, payment: Payment) -> Reply:
        """Ask the issuer (external, not instrumented): slow, heavy-tailed, can time out."""
        clock, rng = self.clock, self.rng
        clock.advance(self._draw(BANK_SELF))
        latency = self._draw(ISSUER_LATENCY)
        if rng.random() < ISSUER_TAIL_P:
            latency = int(latency * rng.paretovariate(ISSUER_TAIL_ALPHA))
        timed_out = latency > BANK_TIMEOUT_NS
        extra = {c.PAYMENT_ID: payment.payment_id}
        with rpc_call(
            ISSUER,
            ISSUER_HOST,
            "authorize",
            rpc_system="http",
            port=443,
            headers={},
            attributes=extra,
            tracer=node.tracer,
            clock=node.clock,
        ) as call:
            call_start = node.clock()
            if timed_out:
                clock.advance(BANK_TIMEOUT_NS)
                mark_error(call, TIMEOUT, f"no answer within {BANK_TIMEOUT_NS // NS_PER_MS} ms")
            else:
                clock.advance(latency)
        if self.issuer_observer is not None:
            context = call.get_span_context()
            self.issuer_observer(context.trace_id, context.span_id, call_start, node.clock())
        if timed_out:
            self.stats.bank_timeouts += 1
            node.logger.error(
                "issuer did not answer within %d ms for payment %s",
                BANK_TIMEOUT_NS // NS_PER_MS,
                payment.payment_id,
                extra=extra,
            )
            return Reply(FAILED, DEADLINE_EXCEEDED)
        if rng.random() < ISSUER_DECLINE_P:
            code = rng.choice(("05", "51", "54", "61"))
            # Careless on purpose: the card number in a log line.
            node.logger.warning(
                "card %s declined by issuer (response code %s)",
                payment.pan_text,
                code,
                extra=extra,
            )
            return DECLINE
        node.logger.info(
            "issuer approved payment %s (auth code %06d)",
            payment.payment_id,
            rng.randrange(1_000_000),
            extra=extra,
        )
        return OK

    # -- what leaked -----------------------------------------------------------------------

    def seeded_pans(self) -> list[str]:
        """Every card number the services leaked, digits only, in order of first use."""
        return list(self._used_pans)

    def seeded_pan_texts(self) -> list[str]:
        """The card numbers exactly as written (with spaces or dashes), sorted."""
        return sorted(self._pan_texts)
