"""The export pipeline: OpenTelemetry's batch processors feeding the Kafka exporters.

One :class:`KafkaPipeline` serves every provider of a process (``configure()`` has one node;
the simulator has many nodes sharing one pipeline, as many processes share one cluster). The
queues are OpenTelemetry's ``BatchSpanProcessor`` and ``BatchLogRecordProcessor`` (bounded,
drop-oldest, re-created in the child of a fork); :mod:`hopscope.ingest.bounded` keeps the
counts, the full-queue warning and the shutdown deadline around them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from hopscope.ingest import conventions as c
from hopscope.ingest._fork import reset_in_forked_child
from hopscope.ingest.bounded import BatchLimits, BoundedLogProcessor, BoundedSpanProcessor
from hopscope.ingest.kafka_exporter import (
    DEFAULT_MAX_MESSAGE_BYTES,
    ExporterStats,
    KafkaLogExporter,
    KafkaSpanExporter,
    KafkaWriter,
)


@dataclass(frozen=True)
class ExportSettings:
    """Where and how telemetry goes to Kafka.

    The queue bounds left ``None`` come from OpenTelemetry's variables, ``OTEL_BSP_*`` for
    spans and ``OTEL_BLRP_*`` for logs, else hopscope's defaults (20,000 records, batches of
    2,000, 0.2 s): :meth:`hopscope.ingest.bounded.BatchLimits.resolve`. A value given here
    applies to both signals. ``producer_options`` are extra ``KafkaProducer`` settings (TLS,
    SASL) and are never logged.
    """

    kafka_bootstrap: str
    spans_topic: str = c.TOPIC_SPANS
    logs_topic: str = c.TOPIC_LOGS
    redact_pans: bool = True
    max_queue_size: int | None = None
    max_export_batch: int | None = None
    schedule_delay_s: float | None = None
    send_timeout_s: float = 10.0
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    producer_options: Mapping[str, Any] = field(default_factory=dict, repr=False)


class KafkaPipeline:
    """Span and log batch processors, their exporters and one shared Kafka producer.

    Attach :attr:`span_processor` and :attr:`log_processor` to any number of providers; the
    pipeline owns them and :meth:`shutdown` closes them once. After ``os.fork()`` the child
    keeps exporting with its own worker threads and producer, and its :meth:`stats` count its
    own records from zero.
    """

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
        delay_ms = None if settings.schedule_delay_s is None else settings.schedule_delay_s * 1000
        bounds: dict[str, Any] = {
            "max_queue_size": settings.max_queue_size,
            "max_export_batch_size": settings.max_export_batch,
            "schedule_delay_millis": delay_ms,
        }
        describe: dict[str, Any] = {
            "failure_reason": lambda: self.writer.last_error,
            "endpoint": f"Kafka at {settings.kafka_bootstrap}",
        }
        self.span_processor = BoundedSpanProcessor(
            self.span_exporter, BatchLimits.resolve("spans", **bounds), **describe
        )
        self.log_processor = BoundedLogProcessor(
            self.log_exporter, BatchLimits.resolve("logs", **bounds), **describe
        )
        self._shut = False
        reset_in_forked_child(self._reset_in_child)

    def _reset_in_child(self) -> None:
        # The processors' books and the writer reset themselves; the message counters are the
        # exporters', which know nothing of processes.
        self.span_exporter.stats = ExporterStats()
        self.log_exporter.stats = ExporterStats()

    @property
    def limits(self) -> dict[str, BatchLimits]:
        """The queue bounds in force, per signal (``"spans"``, ``"logs"``)."""
        return {"spans": self.span_processor.limits, "logs": self.log_processor.limits}

    def force_flush(self, timeout_s: float = 30.0) -> bool:
        """Export everything queued so far; True when all of it reached Kafka in time."""
        deadline = time.monotonic() + timeout_s
        spans = self.span_processor.flush(timeout_s)
        return self.log_processor.flush(max(0.0, deadline - time.monotonic())) and spans

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Flush both processors within ``timeout_s`` in all, then close the producer.

        What is still queued at the deadline is counted as dropped (``dropped_export_failed``)
        and a warning says how much.
        """
        if self._shut:
            return
        self._shut = True
        deadline = time.monotonic() + timeout_s
        # Both signals drain at once (the producer serialises their sends); a margin is kept
        # for closing the producer.
        drain_s = max(0.0, timeout_s - min(0.5, timeout_s / 4))
        closers = [
            threading.Thread(target=processor.close, args=(drain_s,), daemon=True)
            for processor in (self.span_processor, self.log_processor)
        ]
        for closer in closers:
            closer.start()
        for closer in closers:
            closer.join(max(0.0, deadline - time.monotonic()))
        self.writer.close(max(0.1, deadline - time.monotonic()))

    def stats(self) -> dict[str, Any]:
        """Counters: records offered, exported, dropped and queued; Kafka messages and bytes."""
        return {
            "spans": asdict(self.span_processor.books.stats()),
            "logs": asdict(self.log_processor.books.stats()),
            "span_messages": asdict(self.span_exporter.stats),
            "log_messages": asdict(self.log_exporter.stats),
        }
