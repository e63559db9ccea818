"""The processor: a consumer-group member turning OTLP from Kafka into Elasticsearch documents.

A short loop over seams, each replaceable in tests:

- the consumer (:mod:`hopscope.processors.consumer`: Kafka, or an in-memory double);
- the pure pipeline (:mod:`hopscope.processors.pipeline`): message → documents, holds and
  dead letters; assembled trace → derived documents;
- the checkpoint (:mod:`hopscope.processors.checkpoint`): write a batch to the sinks
  (Elasticsearch, then the Parquet archive), flush the dead letters, commit what that freed;
  while a sink is unavailable, partitions paused and the same batch retried with jittered
  backoff (:mod:`hopscope.processors.retry`), nothing dropped, nothing committed past.

One loop iteration: poll a batch of messages from ``otlp_spans`` and ``otlp_logs``; take each
through the pipeline; derive the traces idle for ``trace_idle_s`` (or evicted by the memory
bound); checkpoint. A poll of large messages, or traces past the memory bound, checkpoint
within the poll, so memory stays bounded.

SIGTERM (or :meth:`Processor.stop`) ends the loop after the current iteration; what was written
is committed, open traces stay uncommitted for the next owner to rebuild, and the run exits 0.
``drain=True`` processes until the group has caught up with the end of the topics, derives every
open trace, commits and returns.
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass

from hopscope.core.kafka_security import explained_connect_errors
from hopscope.core.kafka_topics import ensure_topics
from hopscope.processors import core
from hopscope.processors.assembly import OpenTrace, TraceAssembler
from hopscope.processors.checkpoint import Checkpoint
from hopscope.processors.consumer import Consumer, KafkaSource, Message, TopicPartition
from hopscope.processors.dlq import DeadLetters, DeadLetterSink
from hopscope.processors.errors import (
    NeverReachedError,
    SinkUnavailableError,
    SinkUnreachableError,
)
from hopscope.processors.metrics import ProcessorCounts, ProcessorMetrics
from hopscope.processors.pipeline import Batch, DerivedTrace, derive_trace, take_message
from hopscope.processors.retry import Backoff
from hopscope.processors.sanitize import received_ns
from hopscope.processors.settings import ProcessorSettings
from hopscope.processors.sink import ElasticsearchSink, Sink

__all__ = ["Processor", "ProcessorCounts", "Seams", "connect_services", "tune_allocator"]

logger = logging.getLogger(__name__)

# How long one poll waits for messages: short, so a stop request is seen within it.
POLL_TIMEOUT_S = 0.5
# The loop allocates some hundred objects per span, next to none in reference cycles, while
# the open traces keep tens of thousands alive: with the default thresholds (a young pass every
# 700 allocations, older passes walking the open traces) collection cost ~9 % of the loop's
# CPU. These run it ~70x less often; garbage in cycles waits a little longer.
GC_THRESHOLDS = (50_000, 20, 100)


# glibc's malloc options (malloc.h) and the values the processor sets: every bulk request
# allocates and frees megabytes (documents, the NDJSON body, the answer), and with the default
# dynamic thresholds glibc gives those pages back to the kernel after each request and faults
# them in again for the next: ~13 µs of system time per span, more than serializing costs.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
TRIM_THRESHOLD_BYTES = 128 * 1024 * 1024
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's maximum on 64-bit systems


def tune_allocator() -> bool:
    """Keep freed heap memory for reuse instead of returning it to the kernel per request.

    For the process that runs the processor (``hopscope process`` calls it): allocations up
    to :data:`MMAP_THRESHOLD_BYTES` come from the heap, and the heap is trimmed only past
    :data:`TRIM_THRESHOLD_BYTES` free at its top, so the resident size stays near its peak
    rather than shrinking after each bulk. Returns whether it applied (Linux with glibc);
    elsewhere it does nothing.
    """
    if sys.platform != "linux":
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's C library; musl has none
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )


@dataclass
class Seams:
    """What a processor reads from and writes to: ``sinks[0]`` is the primary sink (its
    acknowledgement frees offsets); the others get what it acknowledged."""

    consumer: Consumer
    sinks: Sequence[Sink]
    dead_letters: DeadLetterSink


# Opens the seams for the settings, registering their clean-up on the stack.
Connect = Callable[[ProcessorSettings, ExitStack], Seams]


def connect_services(settings: ProcessorSettings, stack: ExitStack) -> Seams:
    """The production seams: Elasticsearch (and the Parquet archive), the dead-letter
    producer, the Kafka consumer. What opened is closed by ``stack`` if a later one fails:
    an unreachable broker, wrong Kafka credentials or CA raise ``KafkaConnectError`` after
    ``startup_timeout_s``, with the reason."""
    # Kafka first, briefly: a broker that does not answer is reported within
    # startup_timeout_s, and the topics exist before the consumer subscribes to them.
    ensure_topics(settings.kafka_bootstrap,
                  (settings.spans_topic, settings.logs_topic, settings.dlq_topic),
                  settings.kafka_options, what="the processor",
                  timeout_s=settings.startup_timeout_s)  # fmt: skip
    sinks: list[Sink] = [ElasticsearchSink.connect(settings.es_url, settings.es_security,
                                                   settings.index_prefix)]  # fmt: skip
    stack.callback(sinks[0].close)
    if settings.archive_dir is not None:
        from hopscope.processors.archive import ParquetArchive

        sinks.append(ParquetArchive(settings.archive_dir))
    kafka_options = dict(settings.kafka_options)
    dead_letters = DeadLetters(settings.kafka_bootstrap, settings.dlq_topic, kafka_options)
    stack.callback(dead_letters.close)
    with explained_connect_errors(settings.kafka_bootstrap, kafka_options,
                                  "the processor's consumer"):  # fmt: skip
        consumer = KafkaSource(
            settings.kafka_bootstrap, settings.group,
            max_poll_records=settings.max_poll_records,
            max_partition_fetch_bytes=settings.fetch_partition_bytes,
            session_timeout_ms=round(settings.session_timeout_s * 1000),
            heartbeat_interval_ms=max(500, round(settings.session_timeout_s * 1000 / 3)),
            **kafka_options,
        )  # fmt: skip
    stack.callback(consumer.close)
    return Seams(consumer, sinks, dead_letters)


class Processor:
    """One consumer-group member. Use as a context manager, then :meth:`run`.

    ``connect`` opens the seams on entry (default: Kafka and Elasticsearch,
    :func:`connect_services`); unit tests pass in-memory doubles. Production code builds it
    with :meth:`from_settings`.
    """

    def __init__(self, settings: ProcessorSettings, *, connect: Connect | None = None) -> None:
        self.settings = settings
        self.counts = ProcessorCounts()
        self.metrics = ProcessorMetrics(settings.slos)
        self._connect = connect or connect_services
        self._stop = threading.Event()
        self._assembler = TraceAssembler(
            trace_idle_s=settings.trace_idle_s, max_open_spans=settings.max_open_spans,
            max_open_bytes=settings.max_open_bytes, max_trace_spans=settings.max_trace_spans,
        )  # fmt: skip
        self.metrics.open_spans_limit.set(settings.max_open_spans)
        self.metrics.held_bytes_limit.set(settings.max_open_bytes or 0)
        self._stack = ExitStack()
        self._needs_seek: set[TopicPartition] = set()
        self._checkpoint: Checkpoint | None = None

    @classmethod
    def from_settings(cls, settings: ProcessorSettings) -> Processor:
        """A processor on the Kafka cluster and the Elasticsearch cluster ``settings`` name."""
        return cls(settings, connect=connect_services)

    # -- lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> Processor:
        settings = self.settings
        core.log_choice()
        try:
            if settings.metrics_port is not None:
                server = self.metrics.serve(settings.metrics_port, settings.metrics_addr)
                self._stack.callback(server.shutdown)
            seams = self._connect(settings, self._stack)
            self._checkpoint = Checkpoint(
                seams.consumer, seams.sinks, seams.dead_letters, stop=self._stop,
                backoff=Backoff(settings.backoff_initial_s, settings.backoff_max_s),
                metrics=self.metrics, counts=self.counts,
                in_flight=settings.max_bulks_in_flight,
            )  # fmt: skip
            # Closed before the sinks (registered after them): the write in flight ends first.
            self._stack.callback(self._checkpoint.close)
            for sink in seams.sinks:
                # Wrong credentials or CA fail here (SinkAccessError), before anything is
                # consumed; an overloaded Elasticsearch is waited for, a silent one briefly.
                self._set_up(sink)
        except BaseException:
            # The with statement does not call __exit__ for a failed __enter__.
            self._stack.close()
            raise
        seams.consumer.subscribe((settings.spans_topic, settings.logs_topic),
                                 on_assigned=self._assigned, on_revoked=self._revoked)  # fmt: skip
        return self

    def _set_up(self, sink: Sink) -> None:
        """``sink.setup()``, retried. A sink that never answered for ``startup_timeout_s``
        raises :class:`NeverReachedError` (a wrong URL, a node not running); one that answers
        but is not ready (503, 429) is waited for, as during an outage after the start."""
        checkpoint = self._started()
        try:
            # Quiet meanwhile: the outcome is one line either way.
            checkpoint.retry(sink.setup, deadline_s=self.settings.startup_timeout_s,
                             level=logging.INFO)  # fmt: skip
            return
        except SinkUnreachableError as error:
            if self._stop.is_set():
                raise
            raise NeverReachedError(
                f"{error} for {self.settings.startup_timeout_s:.0f} s since the start: is it "
                f"running, and is HOPSCOPE_ES_URL right?"
            ) from None
        except SinkUnavailableError:
            if self._stop.is_set():
                raise
        checkpoint.retry(sink.setup)

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def stop(self) -> None:
        """Request a stop (signal handlers call this); the loop ends after its iteration."""
        self._stop.set()

    # -- the loop -------------------------------------------------------------------------
    def run(self, *, drain: bool = False, progress: Callable[[ProcessorCounts], None] | None = None
            ) -> ProcessorCounts:  # fmt: skip
        """Process until stopped (or, with ``drain``, until caught up).

        While it runs, the garbage collector's thresholds are :data:`GC_THRESHOLDS` (the
        process's own are restored on return).
        """
        saved = gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLDS)
        try:
            return self._run(drain, progress)
        finally:
            gc.set_threshold(*saved)

    def _run(self, drain: bool, progress: Callable[[ProcessorCounts], None] | None
             ) -> ProcessorCounts:  # fmt: skip
        checkpoint = self._started()
        while not self._stop.is_set():
            polled, reassigned = self._poll(checkpoint.consumer)
            batch = Batch()
            try:
                for messages in polled.values():
                    for message in messages:
                        batch = self._take(message, batch)
                # Never "caught up" in the poll that (re)assigned partitions: what it fetched
                # was dropped for the seek, and the positions settle only on the next poll.
                caught_up = drain and not polled and not reassigned and self._caught_up()
                traces = self._assembler.flush_all(complete=True) if caught_up else []
                checkpoint.commit(self._derive(traces + self._assembler.due(), batch))
                if caught_up:
                    checkpoint.finish()
            except SinkUnavailableError:
                if not self._stop.is_set():
                    raise
                # Stopped while a sink is unavailable: what was not written keeps its offsets
                # uncommitted, so the next owner reads it again. A clean stop.
                logger.warning("stopping during an outage: %d documents left to the next owner",
                               len(batch.documents))  # fmt: skip
                break
            self._observe(polled)
            if progress is not None:
                progress(self.counts)
            if caught_up:
                break
        try:
            # What is still being written is committed once acknowledged, as in an iteration.
            checkpoint.finish()
        except SinkUnavailableError:
            if not self._stop.is_set():
                raise
            logger.warning("stopping during an outage: %d batches left to the next owner",
                           checkpoint.in_flight)  # fmt: skip
        checkpoint.commit_offsets()
        self.counts.late_spans = self._assembler.late_spans
        return self.counts

    def _started(self) -> Checkpoint:
        if self._checkpoint is None:
            raise RuntimeError("Processor.run() outside its with statement")
        return self._checkpoint

    def _poll(self, consumer: Consumer) -> tuple[dict[TopicPartition, list[Message]], bool]:
        """Poll; seek partitions (re)assigned since the last poll to their committed offsets,
        dropping what was fetched for them from the old position. Also says whether any were.

        A partition revoked and handed back to this same consumer keeps its read position in
        the client, but its open traces were dropped on revocation: without the seek they
        would never be read again. The seek happens here, not in the rebalance callback: that
        runs inside the client's poll, where blocking calls such as ``committed()`` are not
        allowed.
        """
        reassigned = bool(self._needs_seek)
        polled = consumer.poll(POLL_TIMEOUT_S)
        sought, self._needs_seek = self._needs_seek, set()
        for tp in sought:
            # Nothing committed yet (None): from the start, as auto_offset_reset says.
            consumer.seek(tp, consumer.committed(tp))
        kept = {tp: messages for tp, messages in polled.items() if tp not in sought}
        return kept, reassigned or bool(sought)

    def _take(self, message: Message, batch: Batch) -> Batch:
        """One message through the pipeline into ``batch``; checkpoint when the batch is full."""
        checkpoint = self._started()
        self.counts.messages += 1
        source = (message.topic, message.partition, message.offset)
        checkpoint.offsets.seen(*source)
        taken = take_message(
            message.value or b"", source=source, key=message.key,
            kind="spans" if message.topic == self.settings.spans_topic else "logs",
            # The Kafka timestamp, not the clock: a replay sanitizes times the same way.
            received_ns=received_ns(message.timestamp),
            assembler=self._assembler, prefix=self.settings.index_prefix,
        )  # fmt: skip
        if taken.holds:
            checkpoint.offsets.hold(*source, count=taken.holds)
        for (kind, flag), count in taken.sanitized.items():
            self.counts.sanitized[flag] += count
            self.metrics.sanitized.labels(kind, flag).inc(count)
        batch.add_message(source, taken)
        if batch.bytes >= self.settings.max_batch_bytes or self._assembler.over_bound():
            # Large messages, or traces past the memory bound: what this poll gave so far is
            # written now, so memory stays bounded within a poll.
            checkpoint.commit(self._derive(self._assembler.due(), batch))
            return Batch()
        return batch

    def _derive(self, traces: list[OpenTrace], batch: Batch) -> Batch:
        """Derive ``traces`` into ``batch``, checkpointing whenever the batch is full: a
        drain's last flush, or a burst of evictions, is a whole bound's worth of traces, and
        their documents must not pile up on top of them."""
        traces.reverse()  # popped oldest first, so each trace is freed once derived
        while traces:
            derived = derive_trace(traces.pop(), self.settings.index_prefix)
            self._count(derived)
            batch.add_trace(derived)
            if batch.bytes >= self.settings.max_batch_bytes:
                self._started().commit(batch)
                batch = Batch()
        return batch

    def _count(self, derived: DerivedTrace) -> None:
        if not derived.complete:
            self.counts.incomplete_traces += 1
            self.metrics.incomplete.inc()
        for flag in derived.records.summary.anomalies:
            self.counts.sanitized[flag] += 1
            self.metrics.sanitized.labels("traces", flag).inc()
        self.metrics.observe_records(derived.records)

    def _observe(self, polled: Mapping[TopicPartition, list[Message]]) -> None:
        """Gauges that are cheap to read every iteration; lag from the last polled offsets."""
        self.metrics.open_traces.set(self._assembler.open_traces)
        self.metrics.open_spans.set(self._assembler.open_spans)
        self.metrics.held_bytes.set(self._assembler.held_bytes)
        unassembled = self._assembler.unassembled_spans - self.counts.unassembled_spans
        if unassembled:
            self.counts.unassembled_spans += unassembled
            self.metrics.unassembled_spans.inc(unassembled)
        consumer = self._started().consumer
        for (topic, partition), messages in polled.items():
            self.metrics.messages.labels(topic).inc(len(messages))
            highwater = consumer.highwater((topic, partition))
            if highwater is not None and messages:
                self.metrics.lag.labels(topic, str(partition)).set(
                    max(0, highwater - messages[-1].offset - 1)
                )

    def _caught_up(self) -> bool:
        consumer = self._started().consumer
        assignment = consumer.assignment()
        if not assignment:
            return False
        ends = consumer.end_offsets(assignment)
        return all(consumer.position(tp) >= ends[tp] for tp in assignment)

    # -- rebalance callbacks (inside poll) ------------------------------------------------
    def _assigned(self, partitions: Iterable[TopicPartition]) -> None:
        """Mark assigned partitions to restart at their committed offsets (see :meth:`_poll`)."""
        self._needs_seek.update(partitions)
        logger.info("assigned %s", ", ".join(sorted(f"{t}[{p}]" for t, p in partitions))
                    or "nothing")  # fmt: skip

    def _revoked(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop the state of revoked partitions: their offsets were not committed past it."""
        keys = set(partitions)
        dropped = self._assembler.drop_partitions(keys)
        self._started().forget(keys)
        if dropped:
            logger.info("rebalance: dropped %d open traces of %d revoked partitions",
                        dropped, len(keys))  # fmt: skip
