"""``configure()``: hopscope in a payment service, in three lines.

    >>> from hopscope.ingest import configure           # doctest: +SKIP
    >>> telemetry = configure("payment-gateway", "gw-1") # doctest: +SKIP
    >>> ...; telemetry.shutdown()                        # doctest: +SKIP

It installs global tracer and logger providers whose records go through OpenTelemetry's batch
processors (bounded queues that keep working in the child of a fork) to Kafka (OTLP protobuf,
the Collector's Kafka exporter format), and bridges stdlib ``logging`` so every
log record carries the current trace and span ids and its ``extra`` fields as attributes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry._logs import set_logger_provider
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator

from hopscope.core.env import env_bool, env_int, env_optional, env_str
from hopscope.core.errors import SettingsError
from hopscope.core.kafka_security import kafka_client_options
from hopscope.core.settings import ENV_KAFKA_BOOTSTRAP
from hopscope.ingest import conventions as c
from hopscope.ingest.pipeline import ExportSettings, KafkaPipeline
from hopscope.ingest.providers import node_providers

logger = logging.getLogger(__name__)

ENV_ENVIRONMENT = "HOPSCOPE_ENVIRONMENT"
ENV_REGION = "HOPSCOPE_REGION"
ENV_SPANS_TOPIC = "HOPSCOPE_SPANS_TOPIC"
ENV_LOGS_TOPIC = "HOPSCOPE_LOGS_TOPIC"
ENV_REDACT_PANS = "HOPSCOPE_REDACT_PANS"
ENV_MAX_QUEUE = "HOPSCOPE_MAX_QUEUE_SIZE"

# Loggers whose records never enter the bridge: our own export machinery and the Kafka client
# (logging about a failing export would feed the export it is about).
_NOT_BRIDGED = ("hopscope.ingest", "kafka", "opentelemetry")


class _NotOurOwn(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(_NOT_BRIDGED)


@dataclass
class Telemetry:
    """What :func:`configure` installed; ``shutdown()`` flushes everything to Kafka."""

    tracer_provider: TracerProvider
    logger_provider: LoggerProvider
    pipeline: KafkaPipeline
    logging_handler: LoggingHandler | None = None
    _shut: bool = field(default=False, repr=False)

    def tracer(self, name: str = "hopscope.ingest") -> trace.Tracer:
        """A tracer of this service's provider."""
        return self.tracer_provider.get_tracer(name)

    def force_flush(self, timeout_s: float = 30.0) -> bool:
        """Send everything recorded so far; True when it all reached Kafka in time."""
        return self.pipeline.force_flush(timeout_s)

    def stats(self) -> dict[str, Any]:
        """Export counters (records exported and dropped, Kafka messages and bytes)."""
        return self.pipeline.stats()

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Flush and stop; returns within ``timeout_s`` even when Kafka is down."""
        if self._shut:
            return
        self._shut = True
        if self.logging_handler is not None:
            logging.getLogger().removeHandler(self.logging_handler)
        self.pipeline.shutdown(timeout_s)
        self.tracer_provider.shutdown()
        self.logger_provider.shutdown()


def configure(
    service_name: str,
    node_id: str,
    *,
    kafka_bootstrap: str | None = None,
    environment: str | None = None,
    region: str | None = None,
    spans_topic: str | None = None,
    logs_topic: str | None = None,
    redact_pans: bool | None = None,
    max_queue_size: int | None = None,
    bridge_logging: bool = True,
    log_level: int = logging.INFO,
    set_global: bool = True,
    id_generator: IdGenerator | None = None,
    producer_options: Mapping[str, Any] | None = None,
) -> Telemetry:
    """Send this service's traces and logs to Kafka.

    Every setting left ``None`` comes from the environment: ``HOPSCOPE_KAFKA_BOOTSTRAP`` (required:
    a service never falls back to a dev stack), ``HOPSCOPE_ENVIRONMENT``, ``HOPSCOPE_REGION``,
    ``HOPSCOPE_SPANS_TOPIC``, ``HOPSCOPE_LOGS_TOPIC``, ``HOPSCOPE_REDACT_PANS`` (default true),
    ``HOPSCOPE_MAX_QUEUE_SIZE`` (both queues; else OpenTelemetry's ``OTEL_BSP_*`` for spans
    and ``OTEL_BLRP_*`` for logs, which also set the batch size and the schedule delay). A
    malformed variable is logged and its default used.

    Safe before ``os.fork()`` (gunicorn ``--preload``, uWSGI): the child gets its own export
    threads and Kafka producer, and :meth:`Telemetry.stats` in the child count its records.

    Kafka security (TLS, SASL) comes from the ``HOPSCOPE_KAFKA_SECURITY_PROTOCOL`` and
    ``HOPSCOPE_KAFKA_SASL_*`` / ``HOPSCOPE_KAFKA_SSL_*`` variables
    (:mod:`hopscope.core.kafka_security`);
    these are checked at once, since a security setting that is wrong should stop the service
    rather than drop its telemetry: :class:`hopscope.core.kafka_security.KafkaSecurityError`.

    Parameters
    ----------
    service_name, node_id:
        ``service.name`` and ``service.instance.id`` of every record.
    bridge_logging:
        Attach a handler to the root logger so stdlib log records are exported too.
    set_global:
        Install the providers as OpenTelemetry's global ones (what instrumentation libraries
        and the span helpers use by default). OpenTelemetry allows this once per process.
    producer_options:
        Extra ``KafkaProducer`` settings, applied over those of the environment.
    """
    if not service_name or not node_id:
        raise ValueError("service_name and node_id must be non-empty")
    bootstrap = kafka_bootstrap or env_optional(ENV_KAFKA_BOOTSTRAP)
    if not bootstrap:
        # No dev-stack fallback here: a production service must say where its Kafka is.
        raise SettingsError(
            f"no Kafka bootstrap servers: pass kafka_bootstrap= or set {ENV_KAFKA_BOOTSTRAP}"
        )
    settings = ExportSettings(
        kafka_bootstrap=bootstrap,
        spans_topic=spans_topic or env_str(ENV_SPANS_TOPIC, c.TOPIC_SPANS),
        logs_topic=logs_topic or env_str(ENV_LOGS_TOPIC, c.TOPIC_LOGS),
        redact_pans=redact_pans if redact_pans is not None else env_bool(ENV_REDACT_PANS, True),
        # Unset: OpenTelemetry's OTEL_BSP_MAX_QUEUE_SIZE / OTEL_BLRP_MAX_QUEUE_SIZE, else 20,000.
        max_queue_size=max_queue_size or env_int(ENV_MAX_QUEUE, None, minimum=1),
        producer_options=kafka_client_options(producer_options),
    )
    pipeline = KafkaPipeline(settings)
    tracer_provider, logger_provider = node_providers(
        service_name,
        node_id,
        span_processors=[pipeline.span_processor],
        log_processors=[pipeline.log_processor],
        environment=environment or env_optional(ENV_ENVIRONMENT),
        region=region or env_optional(ENV_REGION),
        id_generator=id_generator,
    )
    if set_global:
        trace.set_tracer_provider(tracer_provider)
        set_logger_provider(logger_provider)
    handler = None
    if bridge_logging:
        handler = LoggingHandler(level=log_level, logger_provider=logger_provider)
        handler.addFilter(_NotOurOwn())
        root = logging.getLogger()
        root.addHandler(handler)
        if root.level > log_level or root.level == logging.NOTSET:
            root.setLevel(log_level)
    return Telemetry(tracer_provider, logger_provider, pipeline, handler)
