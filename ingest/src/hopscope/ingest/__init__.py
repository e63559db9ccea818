"""hopscope.ingest: instrumentation for payment services (OpenTelemetry SDK → Kafka, OTLP).

Three lines in a service::

    from hopscope.ingest import configure
    telemetry = configure("payment-gateway", "gw-1")
    ...  # spans via the helpers below or any OpenTelemetry instrumentation; logs via logging
    telemetry.shutdown()
"""

from hopscope.ingest import conventions
from hopscope.ingest.pipeline import ExportSettings, KafkaPipeline
from hopscope.ingest.providers import node_providers, node_resource
from hopscope.ingest.redaction import mask_pans
from hopscope.ingest.spans import (
    cache_lookup,
    coordination,
    db_call,
    failover,
    lock_wait,
    mark_error,
    rpc_call,
    rpc_server,
    strip_sql_parameters,
)
from hopscope.ingest.telemetry import Telemetry, configure

__all__ = [
    "ExportSettings",
    "KafkaPipeline",
    "Telemetry",
    "cache_lookup",
    "configure",
    "conventions",
    "coordination",
    "db_call",
    "failover",
    "lock_wait",
    "mark_error",
    "mask_pans",
    "node_providers",
    "node_resource",
    "rpc_call",
    "rpc_server",
    "strip_sql_parameters",
]
