"""Tracer and logger providers for one node of one service.

:func:`hopscope.ingest.configure` uses this for the process it runs in; the simulator uses it
once per simulated node, all nodes sharing one export pipeline (processors), as separate
processes would share one Kafka cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator

from hopscope.ingest import conventions as c


def node_resource(
    service_name: str,
    node_id: str,
    *,
    environment: str | None = None,
    region: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Resource:
    """The resource of one node: service name, node id, environment, region."""
    attrs: dict[str, Any] = {c.SERVICE_NAME: service_name, c.SERVICE_INSTANCE_ID: node_id}
    if environment:
        attrs[c.DEPLOYMENT_ENVIRONMENT] = environment
    if region:
        attrs[c.CLOUD_REGION] = region
    attrs.update(extra or {})
    # Resource() rather than Resource.create(): no process/SDK detectors, so the same inputs
    # give the same resource on every machine (the simulator's output must be reproducible).
    return Resource(attrs)


def node_providers(
    service_name: str,
    node_id: str,
    *,
    span_processors: Sequence[SpanProcessor],
    log_processors: Sequence[LogRecordProcessor] = (),
    environment: str | None = None,
    region: str | None = None,
    id_generator: IdGenerator | None = None,
    extra_resource: Mapping[str, Any] | None = None,
) -> tuple[TracerProvider, LoggerProvider]:
    """Providers for one node, feeding the given processors. Nothing global is changed."""
    resource = node_resource(
        service_name, node_id, environment=environment, region=region, extra=extra_resource
    )
    tracer_provider = TracerProvider(resource=resource, id_generator=id_generator)
    for span_processor in span_processors:
        tracer_provider.add_span_processor(span_processor)
    logger_provider = LoggerProvider(resource=resource)
    for log_processor in log_processors:
        logger_provider.add_log_record_processor(log_processor)
    return tracer_provider, logger_provider
