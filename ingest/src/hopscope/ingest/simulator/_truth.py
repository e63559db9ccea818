"""The ground truth of a run: what was injected, where and when, and what an analysis must find.

Figures come from the model's own counters (:class:`~._model.Stats`), kept as the telemetry
was emitted; nothing here is estimated.
"""

from __future__ import annotations

from typing import Any

from hopscope.ingest import conventions as c
from hopscope.ingest.simulator._clock import NS_PER_MS
from hopscope.ingest.simulator._config import (
    CACHE_HIT_RATIO,
    CLOCK_SKEW_OFFSET_NS,
    CONNECT_TIMEOUT_NS,
    DEGRADED_CACHE_HIT_RATIO,
    HOT_ACCOUNT_SHARE,
    MAX_REPLICA_STALENESS_NS,
    REPLICA_LAG_NS,
    SKEWED_CLIENT_SHARE,
    SLOW_HOP_ADDED_NS,
    SLOW_HOP_EDGE,
    Scenario,
)
from hopscope.ingest.simulator._infra import EJECT_AFTER_FAILURES
from hopscope.ingest.simulator._model import (
    CLEARING,
    LOCK_TIMEOUT_NS,
    PAYMENT,
    RISK,
    RISK_CACHE,
    PaymentNetwork,
)


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def injected(net: PaymentNetwork) -> list[dict[str, Any]]:
    """What was injected, where and from when (absolute virtual ns)."""
    at = net.fault_at
    scenario = net.scenario
    if scenario is Scenario.NODE_FAILURE:
        return [{
            "kind": "node_failure", "service": PAYMENT, "node": net.dead_node, "at": at,
            "failure": "stops accepting at `at` (accepted requests finish), then silent: "
            "connect attempts time out",
            "connect_timeout_ns": CONNECT_TIMEOUT_NS,
            "failover_to": sorted({f["to"] for f in net.stats.failovers}),
        }]  # fmt: skip
    if scenario is Scenario.SLOW_HOP:
        return [{
            "kind": "slow_hop", "edge": {"source": SLOW_HOP_EDGE[0],
                                         "target": SLOW_HOP_EDGE[1]},
            "added_delay_ns": SLOW_HOP_ADDED_NS,
            "request_leg_added_ns": SLOW_HOP_ADDED_NS // 2,
            "response_leg_added_ns": SLOW_HOP_ADDED_NS - SLOW_HOP_ADDED_NS // 2, "at": at,
        }]  # fmt: skip
    if scenario is Scenario.LOCK_CONTENTION:
        return [{
            "kind": "lock_contention", "service": CLEARING,
            "resources": [f"account:{a}" for a in net.hot_accounts],
            "share_of_payments": HOT_ACCOUNT_SHARE, "lock_timeout_ns": LOCK_TIMEOUT_NS,
            "cause": "row locks held across the issuer call", "at": at,
        }]  # fmt: skip
    if scenario is Scenario.SLOW_REPLICA:
        return [{
            "kind": "slow_replica", "replica": net.lagging_replica,
            "shard": net.ledger.shard_name(0), "primary": net.ledger.primary(0),
            "lag_ns": REPLICA_LAG_NS, "max_staleness_ns": MAX_REPLICA_STALENESS_NS,
            "at": at,
        }]  # fmt: skip
    if scenario is Scenario.CACHE_DEGRADATION:
        return [{
            "kind": "cache_degradation", "service": RISK, "cache": RISK_CACHE, "at": at,
            "hit_ratio_before": CACHE_HIT_RATIO, "hit_ratio_after": DEGRADED_CACHE_HIT_RATIO,
        }]  # fmt: skip
    if scenario is Scenario.LB_SKEW:
        return [{
            "kind": "lb_skew", "strategy": net.config.strategy,
            "overloaded_node": net.overloaded_node, "client_addresses": net.skewed_ips,
            "share_of_traffic": SKEWED_CLIENT_SHARE, "at": at,
        }]  # fmt: skip
    if scenario is Scenario.CLOCK_SKEW:
        return [{
            "kind": "clock_skew", "service": RISK, "node": net.skewed_node,
            "offset_ns": CLOCK_SKEW_OFFSET_NS, "at": at,
        }]  # fmt: skip
    return []


def effect(net: PaymentNetwork) -> dict[str, Any]:
    """What a correct analysis must find, with the model's own counts."""
    stats = net.stats
    scenario = net.scenario
    if scenario is Scenario.NODE_FAILURE:
        to: dict[str, int] = {}
        for record in stats.failovers:
            to[record["to"]] = to.get(record["to"], 0) + 1
        return {
            "description": f"{net.dead_node} stops answering; gateways retry it once, "
            "fail over to the other payment nodes and eject it after "
            f"{EJECT_AFTER_FAILURES} consecutive failures",
            "failovers": len(stats.failovers), "failover_to": to,
            "failover_traces": [f["trace_id"] for f in stats.failovers],
            "retries": stats.retries, "timeouts": stats.dead_node_timeouts,
            "ejections": stats.ejections,
        }  # fmt: skip
    if scenario is Scenario.SLOW_HOP:
        return {
            "description": f"hops {SLOW_HOP_EDGE[0]} → {SLOW_HOP_EDGE[1]} take "
            f"{SLOW_HOP_ADDED_NS / NS_PER_MS:.0f} ms more network time (client minus "
            "server duration); server times unchanged",
            "hop": {"source": SLOW_HOP_EDGE[0], "target": SLOW_HOP_EDGE[1]},
            "calls": stats.slow_hop_calls, "network_ns_increase": SLOW_HOP_ADDED_NS,
        }  # fmt: skip
    if scenario is Scenario.LOCK_CONTENTION:
        hot = {f"account:{a}" for a in net.hot_accounts}
        total = sum(stats.lock_wait_ns.values())
        on_hot = sum(ns for r, ns in stats.lock_wait_ns.items() if r in hot)
        top = sorted(stats.lock_wait_ns.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
        return {
            "description": "lock_wait time in clearing concentrates on the hot merchant "
            "accounts, whose rows stay locked across the issuer call",
            "lock_wait_ns_total": total, "lock_wait_ns_on_hot_resources": on_hot,
            "hot_share_of_lock_wait": _ratio(on_hot, total),
            "top_resources": [{"resource": r, "lock_wait_ns": ns,
                               "lock_waits": stats.lock_waits[r]} for r, ns in top],
            "lock_timeouts": stats.lock_timeouts,
        }  # fmt: skip
    if scenario is Scenario.SLOW_REPLICA:
        return {
            "description": f"{net.lagging_replica} lags; reads routed to it go to "
            f"{net.ledger.primary(0)} instead (SELECTs with hopscope.db.role primary)",
            "reads_on_primary": stats.reads[c.PRIMARY],
            "reads_on_replicas": stats.reads[c.REPLICA],
            "redirected_reads": stats.redirected_reads,
        }  # fmt: skip
    if scenario is Scenario.CACHE_DEGRADATION:
        return {
            "description": f"the {RISK_CACHE} hit ratio in {RISK} drops after the fault; "
            "misses add feature computation and a ledger replica read",
            "observed_hit_ratio_before": _ratio(stats.cache_hits[0], stats.cache_lookups[0]),
            "observed_hit_ratio_after": _ratio(stats.cache_hits[1], stats.cache_lookups[1]),
            "lookups_before": stats.cache_lookups[0], "lookups_after": stats.cache_lookups[1],
        }  # fmt: skip
    if scenario is Scenario.LB_SKEW:
        total = sum(stats.payment_requests.values())
        return {
            "description": f"ip_hash sends the skewed clients to {net.overloaded_node}; "
            "its share and its self time (and queue_wait when saturated) grow with load",
            "share_by_node": {n: _ratio(k, total) for n, k in
                              sorted(stats.payment_requests.items())},
            "mean_self_ns_by_node": {
                n: stats.payment_self_ns.get(n, 0) // k
                for n, k in sorted(stats.payment_requests.items())
            },
            "queue_wait_ns_by_node": dict(sorted(stats.payment_queue_ns.items())),
        }  # fmt: skip
    if scenario is Scenario.CLOCK_SKEW:
        return {
            "description": f"{net.skewed_node}'s timestamps are "
            f"{CLOCK_SKEW_OFFSET_NS / NS_PER_MS:+.0f} ms off: its server spans start "
            "before their client spans (clock_skew_suspected); network_ns unaffected",
            "server_spans_on_node": stats.skewed_server_spans,
            "request_leg_shift_ns": CLOCK_SKEW_OFFSET_NS,
        }  # fmt: skip
    return {"description": "no fault injected"}


def summary(net: PaymentNetwork) -> dict[str, Any]:
    """Figures of every run: outcomes, retries, cache, reads, locks."""
    stats = net.stats
    return {
        "outcomes": dict(sorted(stats.outcomes.items())),
        "payment_requests_by_node": dict(sorted(stats.payment_requests.items())),
        "retries": stats.retries,
        "failovers": len(stats.failovers),
        "bank_timeouts": stats.bank_timeouts,
        "cache_hit_ratio": _ratio(sum(stats.cache_hits), sum(stats.cache_lookups)),
        "ledger_reads": dict(stats.reads),
        "lock_timeouts": stats.lock_timeouts,
    }
