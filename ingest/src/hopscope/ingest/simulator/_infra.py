"""The payment network's shared machinery: worker pools, load balancers, the ledger's shards.

State here is what outlives one request: how busy each payment node is, which nodes a
gateway has ejected, which ledger replica lags and until when each row stays locked. All
times are the shared virtual clock's (ns), never a skewed node's.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Collection, Mapping
from typing import Final

from hopscope.ingest import conventions as c
from hopscope.ingest.simulator._clock import NS_PER_S
from hopscope.ingest.simulator._config import MAX_REPLICA_STALENESS_NS
from hopscope.ingest.simulator._nodes import Node

LEDGER_DB: Final = "ledger"

# Passive health checks (Envoy-style outlier detection).
EJECT_AFTER_FAILURES: Final = 3
BASE_EJECTION_NS: Final = 5 * NS_PER_S  # doubled, tripled… on each further ejection

# Admissions reach a pool almost in time order (a retried request at most about a second
# late); end times older than this cannot matter any more.
POOL_HORIZON_NS: Final = 2 * NS_PER_S


class WorkerPool:
    """A payment node's workers: how many requests are in flight, and the queue when all are
    busy. Holds the end times (base virtual ns) of admitted requests."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ends: list[int] = []

    def in_flight(self, now: int) -> int:
        """Requests admitted before ``now`` and still running at ``now``."""
        return sum(1 for end in self._ends if end > now)

    def admit(self, now: int) -> tuple[int, int]:
        """Admit a request at ``now``: (queue wait ns, requests in flight once it runs)."""
        horizon = now - POOL_HORIZON_NS
        if self._ends and min(self._ends) < horizon:
            self._ends = [end for end in self._ends if end > horizon]
        busy = sorted(end for end in self._ends if end > now)
        if len(busy) < self.capacity:
            return 0, len(busy)
        # All workers busy: wait for the earliest to finish and take its place.
        freed = busy[len(busy) - self.capacity]
        self._ends.remove(freed)
        return freed - now, self.capacity - 1

    def release(self, end: int) -> None:
        """The request admitted last finished at ``end``."""
        self._ends.append(end)


class LoadBalancer:
    """A gateway's view of the payment nodes: strategy, passive health checks, ejection.

    After :data:`EJECT_AFTER_FAILURES` consecutive failed attempts (timeouts, UNAVAILABLE) a
    node is ejected for :data:`BASE_EJECTION_NS` times its ejection count, then tried again.
    """

    def __init__(self, strategy: str, nodes: list[Node], pools: Mapping[str, WorkerPool]) -> None:
        self.strategy = strategy
        self.nodes = nodes
        self.pools = pools
        self._next = 0
        self._failures: dict[str, int] = {}
        self._ejected_until: dict[str, int] = {}
        self.ejections: dict[str, int] = {}

    def healthy(self, node_id: str, now: int) -> bool:
        return now >= self._ejected_until.get(node_id, 0)

    def pick(self, client_ip: str, now: int, exclude: Collection[str] = ()) -> Node:
        """The node for the next attempt, avoiding ejected and already-tried nodes."""
        candidates = [
            n for n in self.nodes if n.node_id not in exclude and self.healthy(n.node_id, now)
        ]
        if not candidates:
            # Panic mode (as Envoy's): with no healthy choice left, spread over all untried.
            candidates = [n for n in self.nodes if n.node_id not in exclude] or self.nodes
        if self.strategy == c.IP_HASH:
            # crc32, not hash(): Python's string hash is salted per process.
            start = zlib.crc32(client_ip.encode()) % len(self.nodes)
            for offset in range(len(self.nodes)):
                node = self.nodes[(start + offset) % len(self.nodes)]
                if node in candidates:
                    return node
        if self.strategy == c.LEAST_CONN:
            self._next += 1
            rotation = self._next
            return min(
                candidates,
                key=lambda n: (
                    self.pools[n.node_id].in_flight(now),
                    (self.nodes.index(n) - rotation) % len(self.nodes),
                ),
            )
        node = candidates[self._next % len(candidates)]
        self._next += 1
        return node

    def record(self, node_id: str, ok: bool, now: int) -> bool:
        """Count an attempt's outcome; True when this failure ejects the node."""
        if ok:
            self._failures[node_id] = 0
            return False
        failures = self._failures.get(node_id, 0) + 1
        if failures < EJECT_AFTER_FAILURES:
            self._failures[node_id] = failures
            return False
        self._failures[node_id] = 0
        self.ejections[node_id] = self.ejections.get(node_id, 0) + 1
        self._ejected_until[node_id] = now + BASE_EJECTION_NS * self.ejections[node_id]
        return True

    def ejected_until(self, node_id: str) -> int:
        return self._ejected_until.get(node_id, 0)


class Ledger:
    """The ledger's PostgreSQL shards: one primary and some replicas each, row locks.

    Reads go to a replica unless it lags more than :data:`MAX_REPLICA_STALENESS_NS`, then to
    the shard's primary. Row locks are held from the prepare until the commit or abort; a
    waiter gives up after the clearing's lock timeout.
    """

    def __init__(self, shards: int, replicas: int) -> None:
        self.shards = shards
        self.replicas = replicas
        self.lagging: dict[str, tuple[int, int]] = {}  # replica -> (from ns, lag ns)
        self._locked_until: dict[str, int] = {}

    @staticmethod
    def shard_name(shard: int) -> str:
        return f"{LEDGER_DB}-{shard}"

    def shard_of(self, account: int) -> int:
        return account % self.shards

    def primary(self, shard: int) -> str:
        return f"{self.shard_name(shard)}-primary"

    def replica(self, shard: int, index: int) -> str:
        return f"{self.shard_name(shard)}-replica-{index}"

    def database_nodes(self) -> list[str]:
        nodes = []
        for shard in range(self.shards):
            nodes.append(self.primary(shard))
            nodes.extend(self.replica(shard, r) for r in range(1, self.replicas + 1))
        return nodes

    def route_read(self, shard: int, now: int, rng: random.Random) -> tuple[str, str, str | None]:
        """(database node, role, the replica skipped because it lags or None)."""
        replica = self.replica(shard, rng.randrange(1, self.replicas + 1))
        lag = self.lagging.get(replica)
        if lag is not None and now >= lag[0] and lag[1] > MAX_REPLICA_STALENESS_NS:
            return self.primary(shard), c.PRIMARY, replica
        return replica, c.REPLICA, None

    def lock_wait_ns(self, resource: str, now: int) -> int:
        return max(0, self._locked_until.get(resource, 0) - now)

    def release(self, resource: str, at: int) -> None:
        self._locked_until[resource] = max(self._locked_until.get(resource, 0), at)
