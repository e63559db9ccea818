"""The processor: a consumer-group member turning OTLP from Kafka into Elasticsearch documents.

One loop iteration:

1. Poll a batch of messages from ``otlp_spans`` and ``otlp_logs``.
2. Decode each message; an undecodable one goes to the dead-letter topic with the reason.
3. Spans and logs become documents at once; spans also feed the trace assembler.
4. Traces idle for ``trace_idle_s`` (or evicted by the memory bound) become derived records.
5. Write all documents in one bulk request. When Elasticsearch is unreachable or overloaded,
   pause every partition and retry the same documents with exponential backoff: nothing is
   dropped, nothing committed past. Documents Elasticsearch rejects go to the dead-letter topic.
6. Commit, per partition, up to the lowest message not fully acknowledged.

SIGTERM (or :meth:`Processor.stop`) ends the loop after the current iteration; what was written
is committed, open traces stay uncommitted for the next owner to rebuild, and the run exits 0.
``drain=True`` processes until the group has caught up with the end of the topics, derives every
open trace, commits and returns.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import ConsumerRebalanceListener

from hopscope.core.es_security import EsSecurity, es_client
from hopscope.core.kafka_security import explained_connect_errors
from hopscope.ingest import conventions as c
from hopscope.processors.archive import ParquetArchive
from hopscope.processors.assembly import (
    LOG_BYTES,
    OpenTrace,
    TopicPartitionOffset,
    TraceAssembler,
    footprint,
)
from hopscope.processors.decode import decode_logs, decode_span_message
from hopscope.processors.derive import derive_all
from hopscope.processors.derive.failovers import derive_failovers
from hopscope.processors.dlq import DeadLetters
from hopscope.processors.documents import (
    Document,
    derived_documents,
    failover_document,
    log_document,
    span_document,
)
from hopscope.processors.errors import DecodeError, SinkUnavailableError
from hopscope.processors.metrics import ProcessorMetrics
from hopscope.processors.offsets import OffsetTracker
from hopscope.processors.records import LogRecord, SpanRecord
from hopscope.processors.sanitize import received_ns
from hopscope.processors.sink import ElasticsearchSink

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProcessorSettings:
    """Where to read, where to write, and the bounds."""

    kafka_bootstrap: str
    es_url: str
    group: str = "hopscope-processors"
    spans_topic: str = c.TOPIC_SPANS
    logs_topic: str = c.TOPIC_LOGS
    dlq_topic: str = c.TOPIC_DLQ
    index_prefix: str = "hopscope"
    trace_idle_s: float = 5.0
    max_open_spans: int = 200_000
    max_poll_records: int = 500
    # A member that died without leaving (SIGKILL, lost host) holds its partitions until its
    # session expires: kafka-python's 45 s default would stall them that long.
    session_timeout_s: float = 10.0
    backoff_initial_s: float = 0.5
    # Short enough that a node back from an outage is found within seconds.
    backoff_max_s: float = 10.0
    metrics_port: int | None = None
    # Loopback by default: metrics are not for the world. A container sets 0.0.0.0.
    metrics_addr: str = "127.0.0.1"
    archive_dir: Path | None = None
    # kafka-python security settings (TLS, SASL) for the consumer and the dead-letter producer,
    # from hopscope.core.kafka_security; they hold the SASL password, hence no repr.
    kafka_options: Mapping[str, Any] = field(default_factory=dict, repr=False)
    # Credentials and CA for Elasticsearch (secrets kept out of repr); None: from the
    # HOPSCOPE_ES_* variables when the processor starts (hopscope.core.es_security).
    es_security: EsSecurity | None = None
    # Memory bounds besides max_open_spans (hopscope.processors.assembly; docs/BAD_INPUT.md):
    # estimated bytes of the open traces (None: no byte bound; assembly.memory_bounds derives
    # it from a process budget), spans per trace, and estimated record bytes per bulk write
    # (a poll of large messages is written in parts).
    max_open_bytes: int | None = None
    max_trace_spans: int = 100_000
    max_batch_bytes: int = 8 * 1024 * 1024


@dataclass
class ProcessorCounts:
    """Records written per kind, dead letters, retries: what ``--drain`` prints."""

    messages: int = 0
    indexed: Counter[str] = field(default_factory=Counter)
    dead_letters: int = 0
    retries: int = 0
    late_spans: int = 0
    incomplete_traces: int = 0
    commit_retries: int = 0
    # Records indexed with a sanitization flag, by reason (hopscope.processors.sanitize), and
    # spans of evicted traces indexed without being derived.
    sanitized: Counter[str] = field(default_factory=Counter)
    unassembled_spans: int = 0


@dataclass
class _Pending:
    """Documents of this iteration and the holds their acknowledgement releases."""

    documents: list[Document] = field(default_factory=list)
    releases: list[TopicPartitionOffset] = field(default_factory=list)
    trace_releases: list[set[TopicPartitionOffset]] = field(default_factory=list)
    bytes: int = 0  # estimated bytes of the records taken (assembly.footprint)


class Processor:
    """One consumer-group member. Use as a context manager, then :meth:`run`."""

    def __init__(self, settings: ProcessorSettings) -> None:
        self.settings = settings
        self.counts = ProcessorCounts()
        self._stop = threading.Event()
        self._assembler = TraceAssembler(
            trace_idle_s=settings.trace_idle_s, max_open_spans=settings.max_open_spans,
            max_open_bytes=settings.max_open_bytes, max_trace_spans=settings.max_trace_spans,
        )  # fmt: skip
        self._offsets = OffsetTracker()
        self._consumer: Any = None
        self._needs_seek: set[Any] = set()
        self._just_reseeked = False
        self._sink: ElasticsearchSink | None = None
        self._dlq: DeadLetters | None = None
        self._es: Any = None
        self.metrics = ProcessorMetrics()
        self._archive = ParquetArchive(settings.archive_dir) if settings.archive_dir else None
        self._metrics_server: Any = None

    # -- lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> Processor:
        from kafka import KafkaConsumer

        settings = self.settings
        if settings.metrics_port is not None:
            self._metrics_server = self.metrics.serve(settings.metrics_port, settings.metrics_addr)
        self._es = es_client(settings.es_url, settings.es_security, request_timeout=60)
        self._sink = ElasticsearchSink(self._es, settings.index_prefix, url=settings.es_url)
        try:
            self._with_backoff(self._sink.install_templates)
        except BaseException:
            # Wrong credentials or CA fail here, before anything is consumed: close what
            # was opened (the with statement does not call __exit__ for a failed __enter__).
            self.__exit__(None, None, None)
            raise
        kafka_options = dict(settings.kafka_options)
        try:
            # A wrong password or CA fails here, after the client's bootstrap timeout, with
            # the reason (KafkaConnectError); close what was opened, as above.
            self._dlq = DeadLetters(settings.kafka_bootstrap, settings.dlq_topic, kafka_options)
            with explained_connect_errors(settings.kafka_bootstrap, kafka_options,
                                          "the processor's consumer"):  # fmt: skip
                self._consumer = KafkaConsumer(
                    bootstrap_servers=settings.kafka_bootstrap,
                    group_id=settings.group,
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",
                    max_poll_records=settings.max_poll_records,
                    session_timeout_ms=round(settings.session_timeout_s * 1000),
                    heartbeat_interval_ms=max(500, round(settings.session_timeout_s * 1000 / 3)),
                    **kafka_options,
                )
        except BaseException:
            self.__exit__(None, None, None)
            raise
        self._consumer.subscribe(
            [settings.spans_topic, settings.logs_topic], listener=_Rebalance(self)
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._consumer is not None:
            self._consumer.close(autocommit=False)
        if self._dlq is not None:
            self._dlq.close()
        if self._es is not None:
            self._es.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()

    def stop(self) -> None:
        """Request a stop (signal handlers call this); the loop ends after its iteration."""
        self._stop.set()

    # -- the loop -------------------------------------------------------------------------
    def run(self, *, drain: bool = False, progress: Callable[[ProcessorCounts], None] | None = None
            ) -> ProcessorCounts:  # fmt: skip
        """Process until stopped (or, with ``drain``, until caught up)."""
        while not self._stop.is_set():
            reassigned = bool(self._needs_seek)
            polled = self._reseek(self._consumer.poll(timeout_ms=500))
            reassigned = reassigned or self._just_reseeked
            pending = _Pending()
            try:
                for tp, messages in polled.items():
                    for message in messages:
                        self._take(tp.topic, tp.partition, message, pending)
                        if (
                            pending.bytes >= self.settings.max_batch_bytes
                            or self._assembler.over_bound()
                        ):
                            # Large messages, or traces past the memory bound: what this poll
                            # gave so far is written now, so memory stays bounded within a poll.
                            pending = self._write_part(pending)
                # Never "caught up" in the poll that (re)assigned partitions: what it fetched
                # was dropped for the seek, and the positions settle only on the next poll.
                caught_up = drain and not polled and not reassigned and self._caught_up()
                traces = self._assembler.flush_all(complete=True) if caught_up else []
                traces += self._assembler.due()
                pending = self._derive_traces(traces, pending)
                self._write(pending)
            except SinkUnavailableError:
                if not self._stop.is_set():
                    raise
                # Stopped while Elasticsearch is unavailable: what was not written keeps its
                # offsets uncommitted, so the next owner reads it again. A clean stop.
                logger.warning("stopping during an outage: %d documents left to the next owner",
                               len(pending.documents))  # fmt: skip
                break
            self._commit()
            self._observe(polled)
            if progress is not None:
                progress(self.counts)
            if caught_up:
                break
        self._commit()
        self.counts.late_spans = self._assembler.late_spans
        return self.counts

    def _write_part(self, pending: _Pending) -> _Pending:
        """Derive the traces due, write, commit; a fresh batch for the rest of the poll."""
        pending = self._derive_traces(self._assembler.due(), pending)
        self._write(pending)
        self._commit()
        return _Pending()

    def _derive_traces(self, traces: list[OpenTrace], pending: _Pending) -> _Pending:
        """Derive ``traces`` into ``pending``, writing and committing whenever the batch is
        full: a drain's last flush, or a burst of evictions, is a whole bound's worth of
        traces, and their documents must not pile up on top of them."""
        traces.reverse()  # popped oldest first, so each trace is freed once derived
        while traces:
            self._derive(traces.pop(), pending)
            if pending.bytes >= self.settings.max_batch_bytes:
                self._write(pending)
                self._commit()
                pending = _Pending()
        return pending

    def _observe(self, polled: dict[Any, list[Any]]) -> None:
        """Gauges that are cheap to read every iteration; lag from the last polled offsets."""
        self.metrics.open_traces.set(self._assembler.open_traces)
        self.metrics.open_spans.set(self._assembler.open_spans)
        self.metrics.held_bytes.set(self._assembler.held_bytes)
        unassembled = self._assembler.unassembled_spans - self.counts.unassembled_spans
        if unassembled:
            self.counts.unassembled_spans += unassembled
            self.metrics.unassembled_spans.inc(unassembled)
        for tp, messages in polled.items():
            self.metrics.messages.labels(tp.topic).inc(len(messages))
            highwater = self._consumer.highwater(tp)
            if highwater is not None and messages:
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(
                    max(0, highwater - messages[-1].offset - 1)
                )

    def _caught_up(self) -> bool:
        assignment = self._consumer.assignment()
        if not assignment:
            return False
        ends = self._consumer.end_offsets(list(assignment))
        return all(self._consumer.position(tp) >= ends[tp] for tp in assignment)

    def _take(self, topic: str, partition: int, message: Any, pending: _Pending) -> None:
        self.counts.messages += 1
        source = (topic, partition, message.offset)
        self._offsets.seen(topic, partition, message.offset)
        # The Kafka timestamp, not the clock: a replay sanitizes times the same way.
        received = received_ns(getattr(message, "timestamp", None))
        try:
            if topic == self.settings.spans_topic:
                decoded = decode_span_message(message.value or b"", received_ns=received)
                spans, logs = decoded.spans, []
                for rejected in decoded.rejected:  # one unusable span, not its whole message
                    self._dead_letter(rejected.payload, rejected.reason, message.key, source)
            else:
                logs = decode_logs(message.value or b"", received_ns=received)
                spans = []
        except DecodeError as error:
            self._dead_letter(message.value or b"", str(error), message.key, source)
            return
        self._count_sanitized(spans, logs, pending)
        prefix = self.settings.index_prefix
        docs = [span_document(s, prefix) for s in spans] + [log_document(g, prefix) for g in logs]
        for trace_id in self._assembler.add_spans(spans, source):
            del trace_id  # one hold per trace fed: released when its derived records land
            self._offsets.hold(*source)
        for log in logs:
            if log.trace_id:
                attached = self._assembler.add_log(log, source)
                if attached == "new_source":
                    self._offsets.hold(*source)
                if attached != "not_open":
                    continue
            if log.event_name == c.LOG_FAILOVER and not log.trace_id:
                # A cluster event outside any trace is a failover record of its own.
                docs += [failover_document(f, prefix) for f in derive_failovers((), (log,))]
        if docs:
            self._offsets.hold(*source)
            pending.documents += docs
            pending.releases.append(source)

    def _count_sanitized(
        self, spans: list[SpanRecord], logs: list[LogRecord], pending: _Pending
    ) -> None:
        """Count flagged records per reason; add the records' estimated bytes to the batch."""
        for kind, records in (("spans", spans), ("logs", logs)):
            for record in records:
                for flag in record.flags:
                    self.counts.sanitized[flag] += 1
                    self.metrics.sanitized.labels(kind, flag).inc()
        pending.bytes += sum(map(footprint, spans)) + LOG_BYTES * len(logs)

    def _derive(self, trace: OpenTrace, pending: _Pending) -> None:
        if not trace.complete:
            self.counts.incomplete_traces += 1
        derived = derive_all(
            trace.spans.values(), trace.logs, complete=trace.complete, anomalies=trace.flags
        )
        for flag in derived.summary.anomalies:
            self.counts.sanitized[flag] += 1
            self.metrics.sanitized.labels("traces", flag).inc()
        # Derived documents, estimated: about as many as the trace's spans, ~1 KB each.
        pending.bytes += 1024 * (len(trace.spans) + 1)
        self.metrics.observe_hops(derived.hops)
        if not trace.complete:
            self.metrics.incomplete.inc()
        pending.documents += derived_documents(derived, self.settings.index_prefix)
        pending.trace_releases.append(trace.sources)

    def _write(self, pending: _Pending) -> None:
        assert self._sink is not None
        if pending.documents:
            outcome = self._with_backoff(lambda: self._sink.write(pending.documents))  # type: ignore[union-attr]
            self.metrics.bulk_seconds.observe(outcome.took_s)
            for doc, reason in outcome.rejected:
                self._dead_letter(json.dumps(doc.body, default=str).encode(),
                                  f"elasticsearch rejected {doc.kind} {doc.id}: {reason}",
                                  doc.id.encode(), None)  # fmt: skip
            if self._archive is not None:
                # Durable in Elasticsearch now; archived before the offsets move.
                rejected_ids = {id(doc) for doc, _ in outcome.rejected}
                self._archive.write([d for d in pending.documents if id(d) not in rejected_ids])
            written = Counter(d.kind for d in pending.documents)
            written.subtract(doc.kind for doc, _ in outcome.rejected)
            self.counts.indexed.update(written)
            for kind, count in written.items():
                self.metrics.indexed.labels(kind).inc(count)
        for source in pending.releases:
            self._offsets.release(*source)
        for sources in pending.trace_releases:
            self._offsets.release_trace(sources)

    def _dead_letter(
        self, value: bytes, reason: str, key: bytes | None, source: TopicPartitionOffset | None
    ) -> None:
        assert self._dlq is not None
        topic, partition, offset = source if source else (None, None, None)
        self._with_backoff(lambda: self._dlq.send(  # type: ignore[union-attr]
            value, reason, key=key, topic=topic, partition=partition, offset=offset))  # fmt: skip
        self.counts.dead_letters += 1
        self.metrics.dead_letters.labels("decode" if source else "rejected").inc()

    def _with_backoff(self, call: Callable[[], Any]) -> Any:
        """Retry ``call`` while the sink is unavailable, partitions paused, waking on stop.

        Even a stop request does not abandon the documents: they are retried until written, so
        that what was read is never lost (the runtime would otherwise commit nothing for them,
        which is also safe, but a clean SIGTERM should leave nothing half-done).
        """
        delay = self.settings.backoff_initial_s
        paused = False
        try:
            while True:
                try:
                    return call()
                except SinkUnavailableError as error:
                    self.counts.retries += 1
                    self.metrics.retries.inc()
                    if self._consumer is not None and not paused:
                        self._consumer.pause(*self._consumer.assignment())
                        paused = True
                    logger.warning("%s; retrying in %.1f s (partitions paused)", error, delay)
                    if self._stop.wait(delay):
                        # Stopping: give up on this batch; its offsets stay uncommitted.
                        raise
                    delay = min(delay * 2, self.settings.backoff_max_s)
        finally:
            if paused and self._consumer is not None:
                self._consumer.resume(*self._consumer.paused())

    def _commit(self) -> None:
        from kafka.errors import KafkaError
        from kafka.structs import OffsetAndMetadata, TopicPartition

        moved = self._offsets.committable()
        if not moved:
            return
        try:
            self._consumer.commit(
                {TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in moved.items()}
            )
        except KafkaError as error:
            # The broker restarting, the coordinator moving, the group rebalancing: not
            # committing now loses nothing. The same offsets stay committable for the next
            # iteration, or the next owner re-reads from the last commit.
            self.counts.commit_retries += 1
            self.metrics.commit_failures.inc()
            logger.warning("offset commit deferred: %s: %s", type(error).__name__, error)
            return
        self._offsets.committed(moved)

    def assigned(self, partitions: Iterable[Any]) -> None:
        """Mark assigned partitions to restart at their committed offsets (see :meth:`_reseek`).

        A partition revoked and handed back to this same consumer keeps its read position in
        the client, but its open traces were dropped on revocation: without the seek they would
        never be read again. The seek happens in the loop: the listener runs on the client's
        network thread, where blocking calls such as ``committed()`` are not allowed.
        """
        self._needs_seek.update(partitions)
        logger.info(
            "assigned %s",
            ", ".join(sorted(f"{tp.topic}[{tp.partition}]" for tp in partitions)) or "nothing",
        )

    def _reseek(self, polled: dict[Any, list[Any]]) -> dict[Any, list[Any]]:
        """Seek newly assigned partitions to their committed offsets; drop what was fetched
        for them from the old position."""
        self._just_reseeked = bool(self._needs_seek)
        if not self._needs_seek:
            return polled
        partitions, self._needs_seek = set(self._needs_seek), set()
        for tp in partitions:
            committed = self._consumer.committed(tp)
            if committed is None:
                # Nothing committed yet: from the start, as auto_offset_reset="earliest" says.
                self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, committed)
        return {tp: messages for tp, messages in polled.items() if tp not in partitions}

    def revoked(self, partitions: Iterable[Any]) -> None:
        keys = {(tp.topic, tp.partition) for tp in partitions}
        dropped = self._assembler.drop_partitions(keys)
        self._offsets.forget(keys)
        if dropped:
            logger.info("rebalance: dropped %d open traces of %d revoked partitions",
                        dropped, len(keys))  # fmt: skip


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Drops the state of revoked partitions (their offsets were not committed)."""

    def __init__(self, processor: Processor) -> None:
        self.processor = processor

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.processor.revoked(revoked)

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.processor.assigned(assigned)
