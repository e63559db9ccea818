"""OpenTelemetry exporters that write OTLP protobuf to Kafka, as the Collector's Kafka exporter.

Each export call groups its batch by trace id and writes one message per trace (key: the trace
id in lowercase hex, so a trace stays in one partition), splitting a trace's records over several
messages when one would exceed the broker's message size. Card numbers are masked in every
message before it is sent (:mod:`hopscope.ingest.redaction`).

The producer is idempotent with ``acks=all``. It is created lazily on the export thread, so a
service starts even while Kafka is down; after a failure the exporter backs off and answers
FAILURE at once until the backoff ends, so a dead broker costs the payment path nothing and
shutdown stays fast. A producer does not survive ``os.fork()`` (its sender thread stays in the
parent, its sockets would be shared): the child of a fork forgets the parent's producer and
creates its own on its first export.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from hopscope.core.kafka_security import KafkaConnectError, explained_connect_errors
from hopscope.core.kafka_topics import COMPRESSION
from hopscope.ingest import conventions as c
from hopscope.ingest._fork import reset_in_forked_child
from hopscope.ingest.otlp_wire import encode_screened
from hopscope.ingest.redaction import may_contain_pan, redact_export_request

logger = logging.getLogger(__name__)


# The broker's default message.max.bytes is 1 MiB + 12 bytes; leave room for the record
# overhead (headers, key, batch framing) of one message in its own batch.
DEFAULT_MAX_MESSAGE_BYTES = 1_000_000


@dataclass
class ExporterStats:
    """What one exporter sent: Kafka messages and bytes, masked strings, oversized records."""

    messages: int = 0
    bytes: int = 0
    redacted_strings: int = 0
    oversized_dropped: int = 0
    failed_batches: int = 0


class KafkaWriter:
    """One lazily created, idempotent Kafka producer and the bookkeeping around it.

    Parameters
    ----------
    bootstrap:
        ``host:port[,host:port]`` of the brokers.
    producer_options:
        Extra ``KafkaProducer`` settings (TLS, SASL), applied last.
    send_timeout_s:
        Upper bound for bootstrapping, for one blocked ``send`` and for the delivery wait of
        one export call.
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        send_timeout_s: float = 10.0,
        retry_backoff_s: float = 5.0,
        producer_options: Mapping[str, Any] | None = None,
    ) -> None:
        if max_message_bytes < 1024:
            raise ValueError(f"max_message_bytes must be at least 1024, got {max_message_bytes}")
        self.bootstrap = bootstrap
        self.max_message_bytes = max_message_bytes
        self._send_timeout_s = send_timeout_s
        self._retry_backoff_s = retry_backoff_s
        self._options = dict(producer_options or {})
        self._producer: Any = None
        self._not_before = 0.0
        self._lock = threading.Lock()
        self._closed = False
        self.last_error: str | None = None
        reset_in_forked_child(self._forget_in_child)

    def _forget_in_child(self) -> None:
        # The parent's producer is neither closed nor used here: closing it would flush and
        # shut sockets the parent still writes to. The lock may have been held by the parent's
        # export thread at the fork, and that thread does not exist here.
        self._producer = None
        self._lock = threading.Lock()
        self._not_before = 0.0

    def _get_producer(self) -> Any:
        if self._producer is not None or self._closed:
            return self._producer
        if time.monotonic() < self._not_before:
            return None
        from kafka.errors import KafkaError

        try:
            with explained_connect_errors(self.bootstrap, self._options, "the telemetry producer"):
                self._producer = self._new_producer()
        except KafkaConnectError as error:
            # Says why (refused credentials, untrusted certificate...), never the password.
            self._not_before = time.monotonic() + self._retry_backoff_s
            self.last_error = str(error)
            logger.warning(
                "hopscope: %s; telemetry is dropped, retrying in %.0f s",
                error,
                self._retry_backoff_s,
            )
        except (KafkaError, OSError) as error:
            self._not_before = time.monotonic() + self._retry_backoff_s
            self.last_error = f"Kafka at {self.bootstrap} unreachable: {type(error).__name__}"
            logger.warning(
                "hopscope: Kafka at %s unreachable (%s); telemetry is dropped, retrying in %.0f s",
                self.bootstrap,
                type(error).__name__,
                self._retry_backoff_s,
            )
        return self._producer

    def _new_producer(self) -> Any:
        from kafka import KafkaProducer

        timeout_ms = int(self._send_timeout_s * 1000)
        return KafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            enable_idempotence=True,
            compression_type=COMPRESSION,
            linger_ms=20,
            batch_size=256 * 1024,
            # A request carries at least one message of up to max_message_bytes.
            max_request_size=self.max_message_bytes + 64 * 1024,
            bootstrap_timeout_ms=timeout_ms,
            max_block_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
            delivery_timeout_ms=max(3 * timeout_ms, 30_000),
            **self._options,
        )

    def send(self, topic: str, messages: Iterable[tuple[bytes | None, bytes]]) -> bool:
        """Send ``(key, value)`` messages and wait until the broker acknowledged all of them."""
        from kafka.errors import KafkaError

        with self._lock:
            producer = self._get_producer()
            if producer is None:
                return False
            try:
                futures = [producer.send(topic, key=key, value=value) for key, value in messages]
                producer.flush(timeout=self._send_timeout_s)
                for future in futures:
                    future.get(timeout=0.001)
            except (KafkaError, OSError) as error:
                self._not_before = time.monotonic() + self._retry_backoff_s
                self.last_error = f"sending to {topic} failed: {type(error).__name__}"
                logger.warning(
                    "hopscope: sending to Kafka topic %s failed (%s); retrying in %.0f s",
                    topic,
                    type(error).__name__,
                    self._retry_backoff_s,
                )
                return False
            finally:
                if self._closed and self._producer is not None:
                    self._producer.close(timeout=1)
                    self._producer = None
            self.last_error = None
            return True

    def close(self, timeout_s: float = 10.0) -> None:
        """Close the producer (idempotent); returns within ``timeout_s``.

        When an export is still blocked (bootstrapping a dead broker), the lock is not waited
        for: the export thread sees the closed flag and closes the producer when it returns.
        """
        self._closed = True
        if not self._lock.acquire(timeout=max(0.0, timeout_s)):
            return
        try:
            if self._producer is not None:
                self._producer.close(timeout=timeout_s)
                self._producer = None
        finally:
            self._lock.release()


def _encode_groups(
    groups: Mapping[bytes | None, list[Any]],
    encode: Callable[[Sequence[Any]], tuple[bytes, bool]],
    parse: Callable[[bytes], Any],
    max_bytes: int,
    redact: bool,
    stats: ExporterStats,
) -> list[tuple[bytes | None, bytes]]:
    """One message per group, split in halves while a message is over ``max_bytes``.

    ``encode`` returns a message and whether it may hold a card number; redaction parses
    only those (the fast path).
    """
    messages: list[tuple[bytes | None, bytes]] = []
    pending: list[tuple[bytes | None, list[Any]]] = list(groups.items())
    while pending:
        key, items = pending.pop()
        payload, suspect = encode(items)
        if redact and suspect:
            request = parse(payload)
            changed = redact_export_request(request)
            if changed:
                stats.redacted_strings += changed
                payload = request.SerializeToString()
        if len(payload) <= max_bytes:
            messages.append((key, payload))
        elif len(items) > 1:
            half = len(items) // 2
            pending.extend([(key, items[:half]), (key, items[half:])])
        else:
            stats.oversized_dropped += 1
            logger.warning(
                "hopscope: one record of %d bytes exceeds the %d-byte message limit; dropped",
                len(payload),
                max_bytes,
            )
    return messages


def _encode_logs(records: Sequence[ReadableLogRecord]) -> tuple[bytes, bool]:
    payload = bytes(encode_logs(records).SerializeToString())
    return payload, may_contain_pan(payload)


class KafkaSpanExporter(SpanExporter):
    """Spans to ``topic`` as OTLP ``ExportTraceServiceRequest`` messages, keyed by trace id."""

    def __init__(self, writer: KafkaWriter, topic: str = c.TOPIC_SPANS, *, redact: bool = True):
        self.writer, self.topic, self.redact = writer, topic, redact
        self.stats = ExporterStats()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        groups: dict[bytes | None, list[ReadableSpan]] = {}
        for span in spans:
            context = span.context
            key = format(context.trace_id, "032x").encode() if context else None
            groups.setdefault(key, []).append(span)
        messages = _encode_groups(
            groups,
            encode_screened,
            ExportTraceServiceRequest.FromString,
            self.writer.max_message_bytes,
            self.redact,
            self.stats,
        )
        if not self.writer.send(self.topic, messages):
            self.stats.failed_batches += 1
            return SpanExportResult.FAILURE
        self.stats.messages += len(messages)
        self.stats.bytes += sum(len(value) for _, value in messages)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.writer.close()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True  # export() waits for delivery: nothing is ever buffered here


class KafkaLogExporter(LogRecordExporter):
    """Log records to ``topic`` as OTLP ``ExportLogsServiceRequest`` messages, keyed by trace id
    when the record has one (records outside any trace share one unkeyed message)."""

    def __init__(self, writer: KafkaWriter, topic: str = c.TOPIC_LOGS, *, redact: bool = True):
        self.writer, self.topic, self.redact = writer, topic, redact
        self.stats = ExporterStats()

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        groups: dict[bytes | None, list[ReadableLogRecord]] = {}
        for record in batch:
            trace_id = record.log_record.trace_id
            key = format(trace_id, "032x").encode() if trace_id else None
            groups.setdefault(key, []).append(record)
        messages = _encode_groups(
            groups,
            _encode_logs,
            ExportLogsServiceRequest.FromString,
            self.writer.max_message_bytes,
            self.redact,
            self.stats,
        )
        if not self.writer.send(self.topic, messages):
            self.stats.failed_batches += 1
            return LogRecordExportResult.FAILURE
        self.stats.messages += len(messages)
        self.stats.bytes += sum(len(value) for _, value in messages)
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        self.writer.close()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True
