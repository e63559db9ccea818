"""OpenTelemetry's batch processors with hopscope's books: bounds, drop counts, truthful warnings.

The queue and its worker are OpenTelemetry's own (``BatchSpanProcessor``,
``BatchLogRecordProcessor``): a bounded deque that drops the *oldest* record when full, one
worker thread woken by a timer or a full batch, and a worker that is re-created in the child
after ``os.fork()``, so a pre-fork server (gunicorn ``--preload``, uWSGI) keeps exporting.

What OpenTelemetry does not offer through its public API, this module adds around it:

- :class:`ExportBooks` counts what was offered, exported and dropped (and why), keeping a
  mirror of the queue's length from both ends (records offered on the request thread, records
  handed to the exporter on the worker thread), since the SDK exposes neither;
- a warning at most once per ``warn_interval_s`` when the queue is full, with the number
  dropped and the *actual* cause (an export stuck waiting on Kafka, failing exports, or records
  arriving faster than a healthy Kafka takes them);
- a shutdown and a flush bounded by a timeout (the SDK's ``shutdown()`` takes none and its
  ``force_flush`` ignores its own): records still queued at the deadline are counted as
  dropped, and a flush reports False unless everything queued before it reached the exporter
  successfully.

Hierarchy of the pieces::

    BoundedSpanProcessor / BoundedLogProcessor   (what the providers call)
      -> ExportBooks.offer                       (request thread: counters, full-queue check)
      -> BatchSpanProcessor / BatchLogRecordProcessor  (OpenTelemetry: deque + worker)
           -> _CountedSpanExporter / _CountedLogExporter -> ExportBooks.export -> our exporter
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, TypeVar

from opentelemetry.context import Context
from opentelemetry.sdk._logs import LogRecordProcessor, ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.sdk.environment_variables import (
    OTEL_BLRP_MAX_EXPORT_BATCH_SIZE,
    OTEL_BLRP_MAX_QUEUE_SIZE,
    OTEL_BLRP_SCHEDULE_DELAY,
    OTEL_BSP_MAX_EXPORT_BATCH_SIZE,
    OTEL_BSP_MAX_QUEUE_SIZE,
    OTEL_BSP_SCHEDULE_DELAY,
)
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from hopscope.core.env import env_int
from hopscope.ingest._fork import reset_in_forked_child

logger = logging.getLogger(__name__)

T = TypeVar("T")

# hopscope's defaults, kept from before the switch to OpenTelemetry's processors (whose own
# are 2,048 / 512 / 5 s): a payment service at a few thousand records per second rides out a
# few seconds of broker failover, and a record reaches Kafka within a fifth of a second.
DEFAULT_MAX_QUEUE_SIZE = 20_000
DEFAULT_MAX_EXPORT_BATCH_SIZE = 2_000
DEFAULT_SCHEDULE_DELAY_MILLIS = 200.0

_ENV = {
    "spans": (OTEL_BSP_MAX_QUEUE_SIZE, OTEL_BSP_MAX_EXPORT_BATCH_SIZE, OTEL_BSP_SCHEDULE_DELAY),
    "logs": (OTEL_BLRP_MAX_QUEUE_SIZE, OTEL_BLRP_MAX_EXPORT_BATCH_SIZE, OTEL_BLRP_SCHEDULE_DELAY),
}


@dataclass(frozen=True)
class BatchLimits:
    """Bounds of one signal's batch processor.

    Build it with :meth:`resolve` to honour OpenTelemetry's environment variables.
    """

    max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE
    max_export_batch_size: int = DEFAULT_MAX_EXPORT_BATCH_SIZE
    schedule_delay_millis: float = DEFAULT_SCHEDULE_DELAY_MILLIS

    def __post_init__(self) -> None:
        if self.max_queue_size < 1:
            raise ValueError(f"max_queue_size must be at least 1, got {self.max_queue_size}")
        if not 1 <= self.max_export_batch_size <= self.max_queue_size:
            raise ValueError(
                f"max_export_batch_size must be in [1, max_queue_size={self.max_queue_size}], "
                f"got {self.max_export_batch_size}"
            )
        if self.schedule_delay_millis <= 0:
            raise ValueError(
                f"schedule_delay_millis must be positive, got {self.schedule_delay_millis}"
            )

    @classmethod
    def resolve(
        cls,
        signal: Literal["spans", "logs"],
        *,
        max_queue_size: int | None = None,
        max_export_batch_size: int | None = None,
        schedule_delay_millis: float | None = None,
    ) -> BatchLimits:
        """Each bound from the argument, else the environment, else hopscope's default.

        The environment is OpenTelemetry's: ``OTEL_BSP_MAX_QUEUE_SIZE``,
        ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE`` and ``OTEL_BSP_SCHEDULE_DELAY`` (milliseconds) for
        spans, the ``OTEL_BLRP_*`` ones for logs. A malformed value is logged and the default
        used. A default batch size larger than a configured queue is cut to the queue size;
        a batch size that was asked for and does not fit raises ``ValueError``.

        Examples
        --------
        >>> BatchLimits.resolve("spans", max_queue_size=100)
        BatchLimits(max_queue_size=100, max_export_batch_size=100, schedule_delay_millis=200.0)
        """
        queue_env, batch_env, delay_env = _ENV[signal]
        queue = (
            max_queue_size if max_queue_size is not None else env_int(queue_env, None, minimum=1)
        )
        batch = (
            max_export_batch_size
            if max_export_batch_size is not None
            else env_int(batch_env, None, minimum=1)
        )
        delay = (
            schedule_delay_millis
            if schedule_delay_millis is not None
            else env_int(delay_env, None, minimum=1)
        )
        queue = DEFAULT_MAX_QUEUE_SIZE if queue is None else queue
        batch = min(DEFAULT_MAX_EXPORT_BATCH_SIZE, queue) if batch is None else batch
        delay = DEFAULT_SCHEDULE_DELAY_MILLIS if delay is None else delay
        return cls(int(queue), int(batch), float(delay))


@dataclass
class QueueStats:
    """Counters of one signal: records offered, exported, dropped and why.

    ``offered == exported + dropped_queue_full + dropped_export_failed + queued + in_flight``
    (``dropped_after_shutdown`` counts records offered after shutdown began, outside
    ``offered``).
    """

    offered: int = 0
    exported: int = 0
    dropped_queue_full: int = 0
    dropped_export_failed: int = 0
    dropped_after_shutdown: int = 0
    queued: int = 0
    in_flight: int = 0


class ExportBooks:
    """The books of one batch processor: counters, a mirror of its queue, the last outcome.

    The request thread calls :meth:`offer` before handing a record to the processor; the
    worker calls :meth:`export` with each batch it took from the queue. Both sides take one
    uncontended lock for a few additions (exact counts with many request threads).

    The mirror may run ahead of the real queue by the batch the worker is taking at that
    moment (OpenTelemetry pops a batch, then calls the exporter): a record offered in that
    window can be counted as dropped when it was not. The window is a few microseconds.
    """

    def __init__(
        self,
        name: str,
        max_queue_size: int,
        *,
        warn_interval_s: float = 10.0,
        failure_reason: Callable[[], str | None] = lambda: None,
        endpoint: str = "the exporter",
    ) -> None:
        if max_queue_size < 1:
            raise ValueError(f"max_queue_size must be at least 1, got {max_queue_size}")
        self.name = name
        self.max_queue_size = max_queue_size
        self._warn_interval_s = warn_interval_s
        self._failure_reason = failure_reason
        self._endpoint = endpoint
        self._reset()
        # The child of a fork starts with an empty queue (OpenTelemetry clears it) and counts
        # its own records.
        reset_in_forked_child(self._reset_in_child)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._stats = QueueStats()
        self._accepting = True
        self._written_off = False
        self._taken = 0  # records handed to the exporter, ever
        self._last_warning = -float("inf")
        self._drops_since_warning = 0
        # One export at a time: OpenTelemetry holds its export lock around every call.
        self._export_started: float | None = None
        self._last_outcome: tuple[bool, int, float] | None = None  # ok, records, seconds
        self._started = time.monotonic()

    def _reset_in_child(self) -> None:
        accepting = self._accepting
        self._reset()
        self._accepting = accepting  # a processor shut down before the fork stays shut

    # -- the request thread ----------------------------------------------------------------
    def offer(self) -> bool:
        """Count one record about to be queued; False when shutdown began (do not queue it)."""
        with self._lock:
            stats = self._stats
            if not self._accepting:
                stats.dropped_after_shutdown += 1
                return False
            stats.offered += 1
            queued = stats.offered - stats.dropped_queue_full - self._taken
            if queued <= self.max_queue_size:
                return True
            # The processor's deque drops its oldest record to take this one.
            stats.dropped_queue_full += 1
            self._drops_since_warning += 1
            now = time.monotonic()
            if now - self._last_warning < self._warn_interval_s:
                return True
            self._last_warning = now
            dropped, self._drops_since_warning = self._drops_since_warning, 0
        logger.warning(
            "hopscope %s queue full (%d): dropped %d oldest record(s) since the last warning; %s",
            self.name,
            self.max_queue_size,
            dropped,
            self.cause(),
        )
        return True

    def cause(self) -> str:
        """Why the queue is not draining, from what the exports did (for the full warning)."""
        now = time.monotonic()
        started, outcome = self._export_started, self._last_outcome
        if started is not None:
            reason = self._failure_reason()
            return f"an export has been waiting on {self._endpoint} for {now - started:.1f} s" + (
                f" (last error: {reason})" if reason else ""
            )
        if outcome is not None and not outcome[0]:
            reason = self._failure_reason() or "see the warnings above"
            return f"exports to {self._endpoint} are failing ({reason})"
        if outcome is None:
            # A worker that never ran (a thread that did not survive a fork) looks like this;
            # say what is known rather than guess at the network.
            return (
                f"no export has started in this process (pid {os.getpid()}) in the "
                f"{now - self._started:.1f} s since it was set up"
            )
        _, records, seconds = outcome
        return (
            f"records arrive faster than {self._endpoint} takes them (the last export "
            f"delivered {records} in {seconds:.2f} s); raise the queue size or the batch size"
        )

    # -- the worker thread -----------------------------------------------------------------
    def export(self, batch: Sequence[T], send: Callable[[Sequence[T]], bool]) -> bool:
        """Hand ``batch`` to ``send`` (True when delivered) and count the outcome."""
        count = len(batch)
        with self._lock:
            self._taken += count
            if self._written_off:
                # Counted as dropped when the shutdown deadline passed; never sent after it.
                return False
            self._stats.in_flight += count
            started = self._export_started = time.monotonic()
        try:
            delivered = send(batch)
        except Exception:  # an exporter bug must not lose the count
            logger.exception("hopscope %s exporter raised", self.name)
            delivered = False
        seconds = time.monotonic() - started
        with self._lock:
            self._export_started = None
            self._stats.in_flight -= count
            if delivered:
                self._stats.exported += count
            else:
                self._stats.dropped_export_failed += count
            self._last_outcome = (delivered, count, seconds)
        return delivered

    # -- flush and shutdown ----------------------------------------------------------------
    def failures(self) -> int:
        """Records lost so far (queue full or export failed): a flush compares before/after."""
        with self._lock:
            return self._stats.dropped_queue_full + self._stats.dropped_export_failed

    def stop_accepting(self) -> None:
        """Shutdown began: records offered from now on are counted and not queued."""
        with self._lock:
            self._accepting = False

    def write_off(self) -> int:
        """The shutdown deadline passed: count what is still queued as dropped; later exports
        are refused. Returns the number written off."""
        with self._lock:
            if self._written_off:
                return 0
            self._written_off = True
            stats = self._stats
            left = max(0, stats.offered - stats.dropped_queue_full - self._taken)
            stats.dropped_export_failed += left
        if left:
            logger.warning("hopscope %s: %d record(s) not exported at shutdown", self.name, left)
        return left

    def stats(self) -> QueueStats:
        """A consistent copy of the counters."""
        with self._lock:
            stats = QueueStats(**asdict(self._stats))
            stats.queued = max(0, stats.offered - stats.dropped_queue_full - self._taken)
            if self._written_off:
                stats.queued = 0
            return stats


def _bounded_call(target: Callable[[], Any], timeout_s: float, name: str) -> bool:
    """Run ``target`` on a daemon thread; True when it returned a true value within
    ``timeout_s`` (``None`` counts as true: ``shutdown()`` returns nothing).

    OpenTelemetry's ``shutdown()`` joins its worker for up to 30 s and its ``force_flush``
    exports on the caller's thread without a deadline; an export stuck on a dead broker must
    not hold the service's shutdown that long. The thread finishes on its own later.
    """
    results: list[Any] = []
    thread = threading.Thread(
        target=lambda: results.append(target()), name=f"hopscope-{name}", daemon=True
    )
    thread.start()
    thread.join(max(0.0, timeout_s))
    return bool(results) and results[0] is not False


class _CountedSpanExporter(SpanExporter):
    """The exporter OpenTelemetry's processor calls: counts, then our exporter sends."""

    def __init__(self, exporter: SpanExporter, books: ExportBooks) -> None:
        self._exporter, self._books = exporter, books

    def _send(self, spans: Sequence[ReadableSpan]) -> bool:
        return self._exporter.export(spans) is SpanExportResult.SUCCESS

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        delivered = self._books.export(spans, self._send)
        return SpanExportResult.SUCCESS if delivered else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        return None  # the exporter belongs to whoever built it (a shared Kafka producer)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._exporter.force_flush(timeout_millis)


class _CountedLogExporter(LogRecordExporter):
    """The log twin of :class:`_CountedSpanExporter`."""

    def __init__(self, exporter: LogRecordExporter, books: ExportBooks) -> None:
        self._exporter, self._books = exporter, books

    def _send(self, batch: Sequence[ReadableLogRecord]) -> bool:
        return self._exporter.export(batch) is LogRecordExportResult.SUCCESS

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        delivered = self._books.export(batch, self._send)
        return LogRecordExportResult.SUCCESS if delivered else LogRecordExportResult.FAILURE

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class _Bounded:
    """What the span and the log processor share: the books, a bounded flush and close."""

    books: ExportBooks
    _flush: Callable[[], Any]
    _shutdown: Callable[[], Any]

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Export what is queued; True when all of it reached the exporter successfully
        within ``timeout_s`` (OpenTelemetry's own flush reports True even when exports failed,
        False only after shutdown)."""
        before = self.books.failures()
        done = _bounded_call(self._flush, timeout_s, f"{self.books.name}-flush")
        return done and self.books.failures() == before

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop taking records, export what is queued within ``timeout_s``, count the rest.

        Idempotent. Returns within ``timeout_s`` even when the exporter is stuck; an export
        in flight at the deadline is counted when it returns, and nothing is sent after it.
        """
        self.books.stop_accepting()
        _bounded_call(self._shutdown, timeout_s, f"{self.books.name}-shutdown")
        self.books.write_off()


class BoundedSpanProcessor(_Bounded, SpanProcessor):
    """OpenTelemetry's ``BatchSpanProcessor`` around ``exporter``, with :class:`ExportBooks`.

    Shared by many providers (the simulator's nodes): ``shutdown()``, which every provider
    calls, does nothing; the owner calls :meth:`close`. Unsampled spans are not exported, as
    with the SDK's processor.

    Parameters
    ----------
    exporter:
        Any ``SpanExporter``; its ``export`` must return within its own deadline.
    limits:
        Queue and batch bounds (:meth:`BatchLimits.resolve` for the environment's).
    failure_reason, endpoint:
        Describe the exporter's last error and destination in the full-queue warning.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        limits: BatchLimits | None = None,
        *,
        failure_reason: Callable[[], str | None] = lambda: None,
        endpoint: str = "the exporter",
    ) -> None:
        limits = limits or BatchLimits.resolve("spans")
        # The books come first: their fork hook must run before the SDK's re-created worker.
        self.books = ExportBooks(
            "spans", limits.max_queue_size, failure_reason=failure_reason, endpoint=endpoint
        )
        self.limits = limits
        self.batch_processor = BatchSpanProcessor(
            _CountedSpanExporter(exporter, self.books),
            max_queue_size=limits.max_queue_size,
            schedule_delay_millis=limits.schedule_delay_millis,
            max_export_batch_size=limits.max_export_batch_size,
        )
        self._flush = self.batch_processor.force_flush
        self._shutdown = self.batch_processor.shutdown

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if not (span.context and span.context.trace_flags.sampled):
            return  # the SDK's processor skips these: they must not enter the books either
        if self.books.offer():
            self.batch_processor.on_end(span)

    def shutdown(self) -> None:
        return None  # the owner closes the processor once, for every provider

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.flush(timeout_millis / 1000)


class BoundedLogProcessor(_Bounded, LogRecordProcessor):
    """OpenTelemetry's ``BatchLogRecordProcessor`` around ``exporter``, with books.

    The same contract as :class:`BoundedSpanProcessor`, for log records.
    """

    def __init__(
        self,
        exporter: LogRecordExporter,
        limits: BatchLimits | None = None,
        *,
        failure_reason: Callable[[], str | None] = lambda: None,
        endpoint: str = "the exporter",
    ) -> None:
        limits = limits or BatchLimits.resolve("logs")
        self.books = ExportBooks(
            "logs", limits.max_queue_size, failure_reason=failure_reason, endpoint=endpoint
        )
        self.limits = limits
        self.batch_processor = BatchLogRecordProcessor(
            _CountedLogExporter(exporter, self.books),
            schedule_delay_millis=limits.schedule_delay_millis,
            max_export_batch_size=limits.max_export_batch_size,
            max_queue_size=limits.max_queue_size,
        )
        self._flush = self.batch_processor.force_flush
        self._shutdown = self.batch_processor.shutdown

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        if self.books.offer():
            self.batch_processor.on_emit(log_record)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.flush(timeout_millis / 1000)
