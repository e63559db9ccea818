"""Simulated nodes: one TracerProvider and LoggerProvider each, a stdlib logger bridged to
OpenTelemetry, and the processors that count and time-stamp what the nodes emit.

Each node logs the way an instrumented service does: ``logging`` calls, an OpenTelemetry
``LoggingHandler`` on the node's LoggerProvider, trace and span ids taken from the active span.
Two things differ, both for reproducibility: a :class:`VirtualTimeFilter` stamps records with
the node's virtual clock instead of the wall clock, and :class:`VirtualObservedTime` replaces
the handler's wall-clock ``observed_timestamp`` by the record's (virtual) timestamp.
"""

from __future__ import annotations

import atexit
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import (
    LoggerProvider,
    LogRecordProcessor,
    ReadWriteLogRecord,
)
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import Tracer

from hopscope.ingest import conventions as c
from hopscope.ingest.providers import node_providers
from hopscope.ingest.spans import SCOPE, Clock

# Where the simulated services' code "lives" in the code.file.path log attribute: a fixed
# package-relative path, not the checkout's absolute one, so output is the same on every host.
_CODE_PATH = "hopscope/ingest/simulator"


class VirtualTimeFilter(logging.Filter):
    """Stamps log records with a node's virtual clock (and a host-independent code path).

    ``created`` is a float of seconds, as in ``logging``: at today's epoch a double resolves
    about 0.25 µs, so a log's timestamp may differ from the virtual time by that much.
    """

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self._clock = clock

    def filter(self, record: logging.LogRecord) -> bool:
        ns = self._clock()
        record.created = ns / 1e9
        record.msecs = (ns % 1_000_000_000) / 1e6
        record.relativeCreated = 0.0
        record.pathname = f"{_CODE_PATH}/{record.filename}"
        return True


class VirtualObservedTime(LogRecordProcessor):
    """Sets ``observed_timestamp`` to the record's timestamp.

    The SDK's LoggingHandler stamps the wall clock there; in a simulation the record is observed
    when it is emitted, in virtual time. Must come before processors that copy the record.
    """

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        record = log_record.log_record
        if record.timestamp is not None:
            record.observed_timestamp = record.timestamp

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class SpanCounter(SpanProcessor):
    """Counts ended spans (what reached the export processors)."""

    def __init__(self) -> None:
        self.count = 0

    def on_end(self, span: ReadableSpan) -> None:
        self.count += 1


class LogCounter(LogRecordProcessor):
    """Counts emitted log records (what reached the export processors)."""

    def __init__(self) -> None:
        self.count = 0

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        self.count += 1

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


@dataclass(eq=False)
class Node:
    """One process of one service: its tracer, logger and clock."""

    service: str
    node_id: str
    tracer: Tracer
    logger: logging.Logger
    clock: Clock
    tracer_provider: TracerProvider
    logger_provider: LoggerProvider
    handler: logging.Handler

    def close(self) -> None:
        """Detach the logging handler and the providers' exit hooks.

        The providers never own the processors (the caller does, and shuts them down), so
        nothing is shut down here; without this, every node of every run would stay
        referenced from ``atexit`` and ``logging`` until the interpreter exits.
        """
        self.logger.removeHandler(self.handler)
        self.handler.close()
        atexit.unregister(self.tracer_provider.shutdown)
        atexit.unregister(self.logger_provider.shutdown)


def build_node(
    service: str,
    node_id: str,
    *,
    clock: Clock,
    span_processors: Sequence[SpanProcessor],
    log_processors: Sequence[LogRecordProcessor],
    id_generator: IdGenerator,
    environment: str,
    region: str,
    run_id: str,
) -> Node:
    """A node whose spans and logs go to the given processors, time-stamped by ``clock``.

    Its resource carries ``run_id`` (``hopscope.run.id``), so each run's telemetry can be
    selected exactly among others in the same indices.
    """
    tracer_provider, logger_provider = node_providers(
        service,
        node_id,
        span_processors=span_processors,
        log_processors=log_processors,
        environment=environment,
        region=region,
        id_generator=id_generator,
        extra_resource={c.RUN_ID: run_id},
    )
    tracer = tracer_provider.get_tracer(SCOPE)
    # An unmanaged Logger (not logging.getLogger): nodes of many runs must not accumulate in
    # the logging module's registry, and nothing must propagate to the root logger.
    logger = logging.Logger(service, logging.INFO)
    logger.propagate = False
    logger.addFilter(VirtualTimeFilter(clock))
    # The same bridge configure() installs: extra fields become attributes, and event.name
    # becomes the record's event_name.
    handler = LoggingHandler(logger_provider=logger_provider)
    logger.addHandler(handler)
    return Node(
        service=service,
        node_id=node_id,
        tracer=tracer,
        logger=logger,
        clock=clock,
        tracer_provider=tracer_provider,
        logger_provider=logger_provider,
        handler=handler,
    )
