"""What every service of the reference payment system shares: its configuration and its
OpenTelemetry set-up.

Only the standard OpenTelemetry SDK, the OTLP/HTTP exporters and the standard instrumentations
are used (no hopscope helper): the lab proves that hopscope reads what ordinary services emit.
The stable HTTP and database semantic conventions are opted into
(``OTEL_SEMCONV_STABILITY_OPT_IN=http,database``), so spans carry ``server.address``,
``server.port``, ``db.namespace`` and ``db.query.text``, as current instrumentations default to.

The configuration is one JSON file written by ``hopscope lab`` (``--config``): ports, the
Collector's OTLP/HTTP endpoint, database and Redis addresses; a service gets its node name
with ``--node``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http,database")

from opentelemetry import _logs, trace
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.logging import LoggingInstrumentor
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

log = logging.getLogger("payments")


def parse_args(service: str) -> tuple[dict[str, Any], str]:
    """``--config FILE --node NAME``: the lab's configuration and this process's node name."""
    parser = argparse.ArgumentParser(prog=service)
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--node", default=f"{service}-1")
    args = parser.parse_args()
    return json.loads(args.config.read_text(encoding="utf-8")), args.node


def setup_telemetry(service: str, node: str, config: dict[str, Any]) -> TracerProvider:
    """The SDK's tracer and logger providers, exporting OTLP/HTTP to the lab's Collector.

    ``service.instance.id`` names the node. Log records of the stdlib ``logging`` module go
    to the Collector through the logging bridge, with the active trace and span ids.
    """
    endpoint = config["otlp_http_endpoint"].rstrip("/")
    resource = Resource.create(
        {
            "service.name": service,
            "service.instance.id": node,
            "deployment.environment.name": "lab",
            "hopscope.run.id": config.get("run_id", ""),
        }
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces"), schedule_delay_millis=500
        )
    )
    trace.set_tracer_provider(provider)
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(
            OTLPLogExporter(endpoint=f"{endpoint}/v1/logs"), schedule_delay_millis=500
        )
    )
    _logs.set_logger_provider(logger_provider)
    LoggingInstrumentor().instrument(set_logging_format=False)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    logging.getLogger().addHandler(
        LoggingHandler(level=logging.INFO, logger_provider=logger_provider)
    )
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    def _stop(signum: int, frame: object) -> None:
        provider.shutdown()
        logger_provider.shutdown()
        sys.exit(0)

    signal.signal(signal.SIGTERM, _stop)
    return provider


def serve(app: Any, port: int) -> None:
    """Serve a Flask app on 127.0.0.1:port, one thread per request."""
    app.run(host="127.0.0.1", port=port, threaded=True, use_reloader=False)
