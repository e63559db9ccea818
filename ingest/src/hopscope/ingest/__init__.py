"""hopscope.ingest: instrumentation for payment services (OpenTelemetry SDK → Kafka, OTLP).

Three lines in a service::

    from hopscope.ingest import configure
    telemetry = configure("payment-gateway", "gw-1")
    ...  # spans via the helpers below or any OpenTelemetry instrumentation; logs via logging
    telemetry.shutdown()

The names below are imported on first use: the stream processors import only
``hopscope.ingest.conventions`` and the exporter, and each of their worker processes would
otherwise pay for the SDK's instrumentation modules at start-up (a fifth of a second).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# Public name → the module that defines it.
_HOMES = {
    "ExportSettings": "pipeline",
    "KafkaPipeline": "pipeline",
    "Telemetry": "telemetry",
    "cache_lookup": "spans",
    "configure": "telemetry",
    "coordination": "spans",
    "db_call": "spans",
    "failover": "spans",
    "lock_wait": "spans",
    "mark_error": "spans",
    "mask_pans": "redaction",
    "node_providers": "providers",
    "node_resource": "providers",
    "rpc_call": "spans",
    "rpc_server": "spans",
    "strip_sql_parameters": "spans",
}

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


def __getattr__(name: str) -> Any:
    if name == "conventions":
        return importlib.import_module("hopscope.ingest.conventions")
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'hopscope.ingest' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"hopscope.ingest.{home}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
