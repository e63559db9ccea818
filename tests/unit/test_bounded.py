"""OpenTelemetry's batch processors with hopscope's books: bounds, drop counts, warnings, fork.

The exporters here are in-memory doubles; the Kafka path is in tests/integration/test_sdk_kafka.py.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import pytest
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from hopscope.ingest import ExportSettings, KafkaPipeline
from hopscope.ingest.bounded import (
    BatchLimits,
    BoundedLogProcessor,
    BoundedSpanProcessor,
    ExportBooks,
)
from tests.fork_support import in_forked_child

LOGGER = "hopscope.ingest.bounded"


class ListExporter(SpanExporter):
    """Keeps the names of exported spans; ``gate`` holds each export until set."""

    def __init__(self, *, fail: bool = False, raise_first: bool = False) -> None:
        self.names: list[str] = []
        self.batches: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail, self.raise_first = fail, raise_first

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.gate.wait(10)
        if self.raise_first:
            self.raise_first = False
            raise RuntimeError("boom")
        if self.fail:
            return SpanExportResult.FAILURE
        self.batches.append(len(spans))
        self.names.extend(span.name for span in spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


@pytest.fixture
def make_processor() -> Iterator[Callable[..., tuple[BoundedSpanProcessor, TracerProvider]]]:
    """A processor on its own provider; every one is closed at the end of the test."""
    made: list[BoundedSpanProcessor] = []

    def make(
        exporter: SpanExporter, **limits: float
    ) -> tuple[BoundedSpanProcessor, TracerProvider]:
        processor = BoundedSpanProcessor(
            exporter, BatchLimits.resolve("spans", **limits), endpoint="the test exporter"
        )
        made.append(processor)
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(processor)
        return processor, provider

    yield make
    for processor in made:
        processor.close(1)


def emit(provider: TracerProvider, count: int, prefix: str = "s") -> None:
    tracer = provider.get_tracer("test")
    for i in range(count):
        with tracer.start_as_current_span(f"{prefix}{i}"):
            pass


def test_everything_offered_is_exported_in_bounded_batches(
    make_processor: Callable[..., tuple[BoundedSpanProcessor, TracerProvider]],
) -> None:
    exporter = ListExporter()
    processor, provider = make_processor(exporter, max_queue_size=1000, max_export_batch_size=100)
    emit(provider, 950)
    assert processor.flush(5)
    assert sorted(exporter.names) == sorted(f"s{i}" for i in range(950))
    assert max(exporter.batches) <= 100
    stats = processor.books.stats()
    assert (stats.offered, stats.exported, stats.dropped_queue_full, stats.queued) == (
        950, 950, 0, 0
    )  # fmt: skip


def test_full_queue_drops_oldest_counts_and_warns_once_with_the_cause(
    make_processor: Callable[..., tuple[BoundedSpanProcessor, TracerProvider]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    exporter = ListExporter()
    exporter.gate.clear()  # the first export hangs, as on a broker that does not answer
    processor, provider = make_processor(
        exporter, max_queue_size=100, max_export_batch_size=10, schedule_delay_millis=10
    )
    emit(provider, 1, "first")
    deadline = time.monotonic() + 5
    while processor.books.stats().in_flight == 0 and time.monotonic() < deadline:
        time.sleep(0.005)  # the worker takes "first0" and blocks in the exporter
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        emit(provider, 5000)
    stats = processor.books.stats()
    assert stats.queued == 100 and stats.in_flight == 1
    assert stats.dropped_queue_full == 4900
    assert stats.offered == stats.exported + stats.dropped_queue_full + stats.queued + 1
    warnings = [r.getMessage() for r in caplog.records if "queue full" in r.getMessage()]
    assert len(warnings) == 1
    assert "an export has been waiting on the test exporter" in warnings[0]
    assert "is Kafka reachable" not in warnings[0]
    exporter.gate.set()
    assert processor.flush(5)  # what was still queued gets through
    # The newest survive: s4900..s4999.
    assert exporter.names[0] == "first0"
    assert sorted(exporter.names[1:]) == sorted(f"s{i}" for i in range(4900, 5000))


def test_warning_names_failing_exports(caplog: pytest.LogCaptureFixture) -> None:
    books = ExportBooks(
        "spans", 2, endpoint="Kafka at k:9092", failure_reason=lambda: "Kafka at k:9092 refused"
    )
    assert books.offer()
    assert books.export(["a"], lambda batch: False) is False
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for _ in range(3):
            assert books.offer()
    (warning,) = [r.getMessage() for r in caplog.records if "queue full" in r.getMessage()]
    assert "dropped 1 oldest" in warning
    assert "exports to Kafka at k:9092 are failing (Kafka at k:9092 refused)" in warning
    stats = books.stats()
    assert (stats.offered, stats.dropped_export_failed, stats.dropped_queue_full) == (4, 1, 1)


def test_warning_says_when_no_export_ever_started(caplog: pytest.LogCaptureFixture) -> None:
    books = ExportBooks("logs", 1, endpoint="Kafka at k:9092")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        books.offer()
        books.offer()
    (warning,) = [r.getMessage() for r in caplog.records if "queue full" in r.getMessage()]
    assert f"no export has started in this process (pid {os.getpid()})" in warning


def test_close_returns_on_time_when_the_export_hangs_and_counts_the_rest(
    make_processor: Callable[..., tuple[BoundedSpanProcessor, TracerProvider]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    exporter = ListExporter()
    exporter.gate.clear()
    processor, provider = make_processor(
        exporter, max_queue_size=10_000, max_export_batch_size=10, schedule_delay_millis=10
    )
    emit(provider, 1000)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        processor.close(0.5)
    assert time.monotonic() - started < 0.5 + 0.2
    assert any("not exported at shutdown" in r.getMessage() for r in caplog.records)
    stats = processor.books.stats()
    assert stats.in_flight == 10 and stats.dropped_export_failed == 990 and stats.queued == 0
    emit(provider, 1)
    assert processor.books.stats().dropped_after_shutdown == 1
    exporter.gate.set()  # the batch in flight is counted when its call returns
    deadline = time.monotonic() + 5
    while processor.books.stats().in_flight and time.monotonic() < deadline:
        time.sleep(0.005)
    stats = processor.books.stats()
    assert stats.exported == 10 and stats.dropped_export_failed == 990
    assert exporter.names == [f"s{i}" for i in range(10)]  # nothing sent after the deadline


def test_close_flushes_what_is_queued(
    make_processor: Callable[..., tuple[BoundedSpanProcessor, TracerProvider]],
) -> None:
    exporter = ListExporter()
    processor, provider = make_processor(exporter, schedule_delay_millis=60_000)
    emit(provider, 30)
    processor.close(5)
    assert len(exporter.names) == 30 and processor.books.stats().exported == 30
    assert processor.flush(1) is False  # nothing can be flushed after close


def test_exporter_exception_is_counted_and_the_worker_survives(
    make_processor: Callable[..., tuple[BoundedSpanProcessor, TracerProvider]],
) -> None:
    exporter = ListExporter(raise_first=True)
    processor, provider = make_processor(exporter, max_export_batch_size=5)
    emit(provider, 5)
    assert processor.flush(5) is False
    emit(provider, 5)
    assert processor.flush(5) is True
    stats = processor.books.stats()
    assert stats.dropped_export_failed == 5 and stats.exported == 5


def test_unsampled_spans_are_neither_exported_nor_counted() -> None:
    exporter = ListExporter()
    processor = BoundedSpanProcessor(exporter)
    provider = TracerProvider(sampler=ALWAYS_OFF, shutdown_on_exit=False)
    provider.add_span_processor(processor)
    emit(provider, 10)
    processor.close(5)
    assert exporter.names == [] and processor.books.stats().offered == 0


class LogList(LogRecordExporter):
    def __init__(self) -> None:
        self.bodies: list[object] = []

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        self.bodies.extend(record.log_record.body for record in batch)
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def test_log_records_go_through_the_same_books() -> None:
    exporter = LogList()
    processor = BoundedLogProcessor(
        exporter, BatchLimits(max_queue_size=10, max_export_batch_size=10)
    )
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(processor)
    log = provider.get_logger("test")
    for i in range(25):
        log.emit(body=f"b{i}")
    processor.close(5)
    stats = processor.books.stats()
    assert stats.offered == 25 and stats.exported + stats.dropped_queue_full == 25
    assert stats.exported == len(exporter.bodies) >= 10


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_the_child_of_a_fork_keeps_exporting(
    make_processor: Callable[..., tuple[BoundedSpanProcessor, TracerProvider]],
) -> None:
    exporter = ListExporter()
    processor, provider = make_processor(exporter, schedule_delay_millis=10)
    emit(provider, 3, "parent")
    assert processor.flush(5)

    def child() -> str:
        exporter.names.clear()
        emit(provider, 5000, "child")  # more than one batch: the worker must run
        time.sleep(0.5)
        flushed = processor.flush(5)
        stats = processor.books.stats()
        return f"{flushed} {stats.offered} {stats.exported} {len(exporter.names)}"

    _, report = in_forked_child(child)
    # The child's books start from zero; its worker delivered everything it emitted.
    assert report == "True 5000 5000 5000"
    assert processor.books.stats().offered == 3  # the parent's books are its own


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"max_queue_size": 0}, "max_queue_size"),
    ({"max_queue_size": 10, "max_export_batch_size": 11}, "max_export_batch_size"),
    ({"schedule_delay_millis": 0}, "schedule_delay_millis"),
])  # fmt: skip
def test_invalid_limits_name_the_parameter(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BatchLimits.resolve("spans", **kwargs)  # type: ignore[arg-type]


def test_otel_environment_variables_are_honoured_per_signal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "500")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "1000")
    monkeypatch.setenv("OTEL_BLRP_MAX_QUEUE_SIZE", "4000")
    monkeypatch.setenv("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "64")
    assert BatchLimits.resolve("spans") == BatchLimits(500, 500, 1000)
    assert BatchLimits.resolve("logs") == BatchLimits(4000, 64, 200)
    # An argument wins over the environment.
    assert BatchLimits.resolve("spans", max_queue_size=50).max_queue_size == 50
    processor = BoundedSpanProcessor(ListExporter())
    try:
        assert processor.limits.max_queue_size == 500
    finally:
        processor.close(1)


def test_malformed_environment_variable_is_logged_and_the_default_used(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "lots")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "-3")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert BatchLimits.resolve("spans") == BatchLimits()
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "OTEL_BSP_MAX_QUEUE_SIZE='lots'" in logged and "OTEL_BSP_MAX_EXPORT_BATCH_SIZE" in logged


def test_the_pipeline_takes_its_bounds_from_settings_then_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "256")
    monkeypatch.setenv("OTEL_BLRP_SCHEDULE_DELAY", "1000")
    # No export runs, so the unreachable address is never dialled.
    pipeline = KafkaPipeline(ExportSettings(kafka_bootstrap="127.0.0.1:9", max_queue_size=4000))
    try:
        assert pipeline.limits == {
            "spans": BatchLimits(4000, 256, 200),
            "logs": BatchLimits(4000, 2000, 1000),
        }
        assert set(pipeline.stats()["spans"]) == {
            "offered", "exported", "dropped_queue_full", "dropped_export_failed",
            "dropped_after_shutdown", "queued", "in_flight",
        }  # fmt: skip
    finally:
        pipeline.shutdown(5)
