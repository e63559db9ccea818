"""The export pipeline: bounded queues feeding the Kafka exporters, for spans and for logs.

One :class:`KafkaPipeline` serves every provider of a process (``configure()`` has one node;
the simulator has many nodes sharing one pipeline, as many processes share one cluster).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk._logs import LogRecordProcessor, ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExportResult

from hopscope.ingest import conventions as c
from hopscope.ingest.batching import BatchQueue
from hopscope.ingest.kafka_exporter import (
    DEFAULT_MAX_MESSAGE_BYTES,
    KafkaLogExporter,
    KafkaSpanExporter,
    KafkaWriter,
)


@dataclass(frozen=True)
class ExportSettings:
    """Where and how telemetry goes to Kafka.

    ``producer_options`` are extra ``KafkaProducer`` settings (TLS, SASL) and are never logged.
    """

    kafka_bootstrap: str
    spans_topic: str = c.TOPIC_SPANS
    logs_topic: str = c.TOPIC_LOGS
    redact_pans: bool = True
    max_queue_size: int = 20_000
    max_export_batch: int = 2_000
    schedule_delay_s: float = 0.2
    send_timeout_s: float = 10.0
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    producer_options: Mapping[str, Any] = field(default_factory=dict, repr=False)


class QueueSpanProcessor(SpanProcessor):
    """Hands finished spans to a :class:`BatchQueue`; nothing else on the request thread."""

    def __init__(self, queue: BatchQueue[ReadableSpan]) -> None:
        self.queue = queue

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        self.queue.put(span)

    def shutdown(self) -> None:
        return None  # the pipeline owns the queue and shuts it down once for all providers

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.queue.force_flush(timeout_millis / 1000)


class QueueLogProcessor(LogRecordProcessor):
    """Hands emitted log records to a :class:`BatchQueue` as immutable readable records."""

    def __init__(self, queue: BatchQueue[ReadableLogRecord]) -> None:
        self.queue = queue

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        # A shallow copy without the context: the context can hold large objects, and the
        # record outlives the request.
        api_record = copy.copy(log_record.log_record)
        api_record.context = Context()
        self.queue.put(
            ReadableLogRecord(
                log_record=api_record,
                resource=log_record.resource or Resource({}),
                instrumentation_scope=log_record.instrumentation_scope,
                limits=log_record.limits,
            )
        )

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.queue.force_flush(timeout_millis / 1000)


class KafkaPipeline:
    """Span and log queues, exporters and one shared Kafka producer."""

    def __init__(self, settings: ExportSettings) -> None:
        self.settings = settings
        self.writer = KafkaWriter(
            settings.kafka_bootstrap,
            max_message_bytes=settings.max_message_bytes,
            send_timeout_s=settings.send_timeout_s,
            producer_options=settings.producer_options,
        )
        self.span_exporter = KafkaSpanExporter(
            self.writer, settings.spans_topic, redact=settings.redact_pans
        )
        self.log_exporter = KafkaLogExporter(
            self.writer, settings.logs_topic, redact=settings.redact_pans
        )
        queue_args: dict[str, Any] = {
            "max_queue": settings.max_queue_size,
            "max_batch": settings.max_export_batch,
            "delay_s": settings.schedule_delay_s,
        }
        self.span_queue: BatchQueue[ReadableSpan] = BatchQueue(
            lambda batch: self.span_exporter.export(batch) is SpanExportResult.SUCCESS,
            name="spans",
            **queue_args,
        )
        self.log_queue: BatchQueue[ReadableLogRecord] = BatchQueue(
            lambda batch: self.log_exporter.export(batch) is LogRecordExportResult.SUCCESS,
            name="logs",
            **queue_args,
        )
        self.span_processor = QueueSpanProcessor(self.span_queue)
        self.log_processor = QueueLogProcessor(self.log_queue)
        self._shut = False

    def force_flush(self, timeout_s: float = 30.0) -> bool:
        """Export everything queued so far."""
        spans = self.span_queue.force_flush(timeout_s)
        return self.log_queue.force_flush(timeout_s) and spans

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Flush both queues within ``timeout_s`` in all, then close the producer."""
        if self._shut:
            return
        self._shut = True
        deadline = time.monotonic() + timeout_s
        self.span_queue.shutdown(max(0.0, (deadline - time.monotonic()) * 0.6))
        self.log_queue.shutdown(max(0.0, deadline - time.monotonic() - 0.5))
        self.writer.close(max(0.1, deadline - time.monotonic()))

    def stats(self) -> dict[str, Any]:
        """Counters: queued, exported and dropped records, Kafka messages and bytes."""
        return {
            "spans": asdict(self.span_queue.stats),
            "logs": asdict(self.log_queue.stats),
            "span_messages": asdict(self.span_exporter.stats),
            "log_messages": asdict(self.log_exporter.stats),
        }
