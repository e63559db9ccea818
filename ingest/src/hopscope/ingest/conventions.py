"""Payment semantic conventions: every attribute, event and value hopscope reads or writes.

OpenTelemetry's own semantic conventions come first (docs/DESIGN.md §3); the ``payment.*`` and
``hopscope.*`` names below are ours. Producers (the SDK helpers, the simulator) and consumers
(the processors, the analysis) import these constants instead of spelling names, so a rename is
one change.
"""

from __future__ import annotations

from typing import Final

# Resource: who emitted the telemetry.
SERVICE_NAME: Final = "service.name"
SERVICE_INSTANCE_ID: Final = "service.instance.id"  # the node
DEPLOYMENT_ENVIRONMENT: Final = "deployment.environment.name"
CLOUD_REGION: Final = "cloud.region"
# The simulator's run (resource.hopscope.run.id in Elasticsearch): tells one run's telemetry
# from every other's in the same indices.
RUN_ID: Final = "hopscope.run.id"

# Calls between services.
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
PEER_SERVICE: Final = "peer.service"
RPC_SYSTEM: Final = "rpc.system"
RPC_SERVICE: Final = "rpc.service"
RPC_METHOD: Final = "rpc.method"
HTTP_RESEND_COUNT: Final = "http.request.resend_count"  # retry/attempt number, 0 for the first
ERROR_TYPE: Final = "error.type"

# Databases.
DB_SYSTEM: Final = "db.system"
DB_OPERATION: Final = "db.operation.name"
DB_QUERY_TEXT: Final = "db.query.text"  # parameters stripped
DB_NAMESPACE: Final = "db.namespace"

# Messaging.
MESSAGING_SYSTEM: Final = "messaging.system"
MESSAGING_DESTINATION: Final = "messaging.destination.name"

# Payments (never a card number: see hopscope.ingest.redaction).
PAYMENT_ID: Final = "payment.id"
PAYMENT_AMOUNT: Final = "payment.amount"
PAYMENT_CURRENCY: Final = "payment.currency"
PAYMENT_METHOD: Final = "payment.method"

# hopscope: coordination, load balancing, caches, database roles.
COORDINATION_KIND: Final = "hopscope.coordination.kind"
COORDINATION_RESOURCE: Final = "hopscope.coordination.resource"
COORDINATION_PARTICIPANT: Final = "hopscope.coordination.participant"
LB_STRATEGY: Final = "hopscope.lb.strategy"
CACHE_HIT: Final = "hopscope.cache.hit"
DB_ROLE: Final = "hopscope.db.role"
CACHE_NAME: Final = "hopscope.cache.name"
# The peer's node name where the call records only an address (inferred from an endpoint map).
PEER_NODE: Final = "hopscope.peer.node"

# Values of hopscope.coordination.kind.
LOCK_WAIT: Final = "lock_wait"
TWO_PC_PREPARE: Final = "2pc.prepare"
TWO_PC_COMMIT: Final = "2pc.commit"
TWO_PC_ABORT: Final = "2pc.abort"
CONSENSUS_APPEND: Final = "consensus.append"
CONSENSUS_COMMIT: Final = "consensus.commit"
QUORUM_READ: Final = "quorum.read"
QUEUE_WAIT: Final = "queue_wait"
LEADER_ELECTION: Final = "leader_election"
COORDINATION_KINDS: Final = frozenset(
    {
        LOCK_WAIT,
        TWO_PC_PREPARE,
        TWO_PC_COMMIT,
        TWO_PC_ABORT,
        CONSENSUS_APPEND,
        CONSENSUS_COMMIT,
        QUORUM_READ,
        QUEUE_WAIT,
        LEADER_ELECTION,
    }
)

# Values of hopscope.lb.strategy.
ROUND_ROBIN: Final = "round_robin"
LEAST_CONN: Final = "least_conn"
IP_HASH: Final = "ip_hash"
LB_STRATEGIES: Final = frozenset({ROUND_ROBIN, LEAST_CONN, IP_HASH})

# Values of hopscope.db.role.
PRIMARY: Final = "primary"
REPLICA: Final = "replica"
DB_ROLES: Final = frozenset({PRIMARY, REPLICA})

# Span events and their attributes.
EVENT_FAILOVER: Final = "hopscope.failover"
EVENT_CIRCUIT_OPEN: Final = "hopscope.circuit_open"
FAILOVER_FROM: Final = "from"
FAILOVER_TO: Final = "to"
FAILOVER_REASON: Final = "reason"

# Log records with these event names are cluster events, even without a trace.
EVENT_NAME: Final = "event.name"
LOG_FAILOVER: Final = "hopscope.failover"
LOG_LEADER_ELECTED: Final = "hopscope.leader_elected"
LOG_NODE_DOWN: Final = "hopscope.node_down"
CLUSTER_EVENTS: Final = frozenset({LOG_FAILOVER, LOG_LEADER_ELECTED, LOG_NODE_DOWN})

# Kafka topics (names configurable; these are the defaults).
TOPIC_SPANS: Final = "otlp_spans"
TOPIC_LOGS: Final = "otlp_logs"
TOPIC_DLQ: Final = "hopscope.dlq"
