"""The processor loop through its seams: in-memory consumer, sink and dead-letter topic.

Each test drives :class:`~hopscope.processors.runtime.Processor` the way the fault suite drives
it against real services (an Elasticsearch outage, a rebalance, a stop during an outage, traces
split over messages, dead letters), in milliseconds: the doubles never wait and the backoff is
a few milliseconds.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path

import pytest

from hopscope.processors.archive import ParquetArchive
from hopscope.processors.checkpoint import OffsetTracker
from hopscope.processors.consumer import InMemoryConsumer
from hopscope.processors.dlq import InMemoryDeadLetters
from hopscope.processors.documents import Document
from hopscope.processors.errors import (
    NeverReachedError,
    SinkAccessError,
    SinkUnavailableError,
    SinkUnreachableError,
)
from hopscope.processors.pipeline import DeadLetter, decode, documents_from_records
from hopscope.processors.retry import Backoff, retry
from hopscope.processors.runtime import Processor, ProcessorCounts, Seams
from hopscope.processors.settings import ProcessorSettings
from hopscope.processors.sink import InMemorySink, Sink
from tests.otlp_builders import otlp_logs, otlp_spans

SPANS, LOGS = "otlp_spans", "otlp_logs"
MS = 1_000_000
NOW_MS = time.time_ns() // MS
START = (NOW_MS - 60_000) * MS  # a minute before the messages' Kafka timestamps
rng = random.Random(12)
TRACE_A, TRACE_B = rng.randbytes(16), rng.randbytes(16)
ROOT, CHILD, GRANDCHILD = rng.randbytes(8), rng.randbytes(8), rng.randbytes(8)


def span(span_id: bytes, parent: bytes | None = None, offset_ms: int = 0) -> dict[str, object]:
    start = START + offset_ms * MS
    return {"span_id": span_id, "parent": parent, "start": start, "end": start + 5 * MS}


def spans_message(trace: bytes, *specs: dict[str, object]) -> bytes:
    return otlp_spans(trace, list(specs), service="payments")


def log_message(body: str) -> bytes:
    return otlp_logs([{"time": START, "body": body}], service="payments")


class Rig:
    """An in-memory consumer, sink and dead-letter topic, and processors over them."""

    def __init__(self, partitions: int = 1) -> None:
        self.consumer = InMemoryConsumer()
        self.sink = InMemorySink()
        self.dead_letters = InMemoryDeadLetters()
        self.partitions = partitions
        self.others: list[Sink] = []  # sinks after the primary one (the archive)

    def produce(self, topic: str, value: bytes, partition: int = 0) -> None:
        self.consumer.produce(topic, value, partition=partition, timestamp=NOW_MS)

    def processor(self, **overrides: object) -> Processor:
        options: dict[str, object] = {
            "kafka_bootstrap": "unused:9092", "es_url": "http://unused:9200",
            # Traces complete when the drain catches up, never by the wall clock.
            "trace_idle_s": 3600.0, "backoff_initial_s": 0.001, "backoff_max_s": 0.004,
        }  # fmt: skip
        options.update(overrides)

        def connect(settings: ProcessorSettings, stack: ExitStack) -> Seams:
            del settings, stack  # the doubles hold nothing to close
            return Seams(self.consumer, [self.sink, *self.others], self.dead_letters)

        return Processor(ProcessorSettings(**options), connect=connect)  # type: ignore[arg-type]

    def drain(self, **overrides: object) -> ProcessorCounts:
        with self.processor(**overrides) as processor:
            return processor.run(drain=True)

    def traces(self) -> dict[str, Document]:
        return {d.id: d for d in self.sink.documents.values() if d.kind == "traces"}

    def written(self, kind: str) -> list[Document]:
        return [d for batch in self.sink.writes for d in batch if d.kind == kind]


def span_count(document: Document) -> object:
    return document.body["hopscope.trace.span_count"]


# -- the happy path and the shared pipeline ----------------------------------------------------


def test_drain_indexes_what_the_file_loader_derives_and_commits_to_the_end() -> None:
    rig = Rig()
    payloads = [
        spans_message(TRACE_A, span(ROOT)),
        spans_message(TRACE_A, span(CHILD, ROOT, 1)),
        spans_message(TRACE_B, span(ROOT)),
    ]
    for payload in payloads:
        rig.produce(SPANS, payload)
    counts = rig.drain()
    assert counts.messages == 3
    assert rig.consumer.commits == {(SPANS, 0): 3}
    # The stream and the file loader run the same pipeline: the same documents.
    records = [s for p in payloads for s in decode("spans", p, received_ns=NOW_MS * MS).spans]
    expected = {(d.index, d.id): d.body for d in documents_from_records(records)}
    assert {key: d.body for key, d in rig.sink.documents.items()} == expected
    assert rig.sink.set_up and rig.sink.closed is False


# -- Elasticsearch outage: pause, retry, never commit past, never drop ------------------------


def test_outage_pauses_partitions_retries_and_commits_nothing_unacknowledged() -> None:
    rig = Rig()
    for body in ("approved", "declined", "approved"):
        rig.produce(LOGS, log_message(body))
    rig.sink.unavailable = True
    seen_during_outage: list[tuple[set[tuple[str, int]], dict[tuple[str, int], int]]] = []

    def during(documents: Sequence[Document]) -> None:
        del documents
        if rig.sink.unavailable:
            seen_during_outage.append((set(rig.consumer.paused), dict(rig.consumer.commits)))
            if rig.sink.attempts == 5:
                rig.sink.unavailable = False  # the node is back

    rig.sink.on_write = during
    counts = rig.drain()
    # Paused from the first failure on (the first attempt comes before any pause), and
    # nothing committed while the documents were unacknowledged.
    assert [paused for paused, _ in seen_during_outage[1:]] == [{(LOGS, 0)}] * 4
    assert all(commits == {} for _, commits in seen_during_outage)
    assert counts.retries == 4
    assert rig.consumer.paused == set()  # resumed
    assert len(rig.written("logs")) == 3 and counts.indexed["logs"] == 3  # nothing dropped
    assert rig.consumer.commits == {(LOGS, 0): 3}


def test_stop_during_an_outage_exits_and_commits_only_what_was_acknowledged() -> None:
    rig = Rig()
    for body in ("first", "second", "third"):
        rig.produce(LOGS, log_message(body))
    rig.consumer.max_poll_records = 1  # one message per iteration
    processor = rig.processor()

    def outage_after_the_first(documents: Sequence[Document]) -> None:
        del documents
        if rig.sink.writes:  # the first batch got through; now the node is gone
            rig.sink.unavailable = True
        if rig.sink.attempts == 4:
            processor.stop()  # SIGTERM while retrying

    rig.sink.on_write = outage_after_the_first
    started = time.perf_counter()
    with processor:
        counts = processor.run()
    assert time.perf_counter() - started < 5  # exits: the backoff sleep wakes on stop
    assert len(rig.written("logs")) == 1
    assert rig.consumer.commits == {(LOGS, 0): 1}  # only the acknowledged message
    assert counts.indexed["logs"] == 1
    # The next owner reads the rest again: nothing lost.
    rig.sink.unavailable, rig.sink.on_write = False, None
    rig.consumer.rebalance([(LOGS, 0)])
    rig.drain()
    assert len({d.id for d in rig.written("logs")}) == 3
    assert rig.consumer.commits == {(LOGS, 0): 3}


def test_an_access_error_stops_the_processor_with_nothing_committed() -> None:
    rig = Rig()
    rig.produce(LOGS, log_message("approved"))

    def denied(documents: Sequence[Document]) -> None:
        raise SinkAccessError("403: the processor role is missing")

    rig.sink.on_write = denied
    with pytest.raises(SinkAccessError), rig.processor() as processor:
        processor.run(drain=True)
    assert rig.consumer.commits == {}


# -- rebalance: revoked state dropped, re-seek to the committed offset ------------------------


@pytest.mark.parametrize("in_flight", [0, 1], ids=["synchronous", "pipelined"])
def test_rebalance_drops_revoked_state_and_rereads_from_the_committed_offset(
    in_flight: int,
) -> None:
    rig = Rig()
    rig.produce(SPANS, spans_message(TRACE_A, span(ROOT)), partition=0)
    rig.produce(LOGS, log_message("approved"), partition=0)
    rebalanced = False

    def progress(counts: ProcessorCounts) -> None:
        nonlocal rebalanced
        if counts.messages == 2 and not rebalanced:
            # The open trace holds its message: the spans partition is not committed past it.
            assert rig.consumer.commits.get((SPANS, 0), 0) == 0
            # Written synchronously, the log's document is acknowledged and its offset
            # committed within the iteration; pipelined, its write is still in flight when
            # the partitions are revoked, so nothing of it is released and the log is re-read.
            assert rig.consumer.commits.get((LOGS, 0)) == (1 if in_flight == 0 else None)
            # The trace's second part arrives while the partition moves away and comes back:
            # the client keeps its read position (past the first part).
            rig.produce(SPANS, spans_message(TRACE_A, span(CHILD, ROOT, 1)), partition=0)
            rig.consumer.rebalance([(SPANS, 0), (LOGS, 0)])
            rebalanced = True

    with rig.processor(max_bulks_in_flight=in_flight) as processor:
        counts = processor.run(drain=True, progress=progress)
    assert rebalanced
    # Re-read from the committed offset: the first part again, then the second (and the
    # log when its offset was not committed before the rebalance).
    assert counts.messages == (4 if in_flight == 0 else 5)
    # The trace, rebuilt from both parts after its state was dropped, derived once.
    (trace,) = rig.traces().values()
    assert span_count(trace) == 2
    assert len(rig.written("traces")) == 1
    # The dropped holds of the first read do not block the commit.
    assert rig.consumer.commits == {(SPANS, 0): 2, (LOGS, 0): 1}


# -- pipelined writes: the loop goes on while a bulk is in flight, commits stay behind it ------


def test_a_pipelined_write_overlaps_the_loop_and_its_offsets_wait_for_the_acknowledgement(
) -> None:  # fmt: skip
    rig = Rig()
    rig.produce(LOGS, log_message("approved"))
    acknowledge = threading.Event()
    while_in_flight: list[dict[tuple[str, int], int]] = []
    # The write waits (on the writer thread) until the loop has finished its iteration.
    rig.sink.on_write = lambda documents: acknowledge.wait(timeout=60)

    def progress(counts: ProcessorCounts) -> None:
        if not acknowledge.is_set():
            while_in_flight.append(dict(rig.consumer.commits))
            acknowledge.set()

    with rig.processor(max_bulks_in_flight=1) as processor:
        processor.run(drain=True, progress=progress)
    assert while_in_flight == [{}]  # the iteration ended with the write unacknowledged
    assert rig.consumer.commits == {(LOGS, 0): 1}
    assert len(rig.written("logs")) == 1


def test_a_pipelined_write_that_fails_is_retried_and_nothing_committed_meanwhile() -> None:
    rig = Rig()
    rig.produce(LOGS, log_message("approved"))
    rig.produce(LOGS, log_message("declined"))
    commits_during_outage: list[dict[tuple[str, int], int]] = []

    def outage_once(documents: Sequence[Document]) -> None:
        if rig.sink.attempts == 1:
            commits_during_outage.append(dict(rig.consumer.commits))
            raise SinkUnavailableError("429 on the writer thread")

    rig.sink.on_write = outage_once
    with rig.processor(max_bulks_in_flight=1) as processor:
        counts = processor.run(drain=True)
    assert commits_during_outage == [{}] and counts.retries == 1
    assert rig.consumer.commits == {(LOGS, 0): 2}
    assert len(rig.written("logs")) == 2


def test_bulks_in_flight_must_not_be_negative() -> None:
    rig = Rig()
    with pytest.raises(ValueError, match="in_flight must be >= 0"):
        rig.processor(max_bulks_in_flight=-1).__enter__()


def test_a_failed_commit_is_deferred_not_lost() -> None:
    rig = Rig()
    rig.produce(LOGS, log_message("approved"))
    rig.consumer.fail_commits = 1
    counts = rig.drain()
    assert counts.commit_retries == 1
    assert rig.consumer.commits == {(LOGS, 0): 1}


# -- traces split over messages; late spans ---------------------------------------------------


def test_a_split_trace_is_derived_once_and_no_commit_falls_between_its_messages() -> None:
    rig = Rig()
    rig.produce(SPANS, spans_message(TRACE_A, span(ROOT)))
    rig.produce(SPANS, spans_message(TRACE_B, span(ROOT)))
    rig.produce(SPANS, spans_message(TRACE_A, span(CHILD, ROOT, 1)))
    rig.drain()
    traces = rig.traces()
    assert {span_count(d) for d in traces.values()} == {1, 2}
    assert len(rig.written("traces")) == 2
    assert rig.consumer.commits == {(SPANS, 0): 3}


def test_split_trace_offsets_never_commit_between_its_parts() -> None:
    tracker = OffsetTracker()
    for offset in range(3):
        tracker.hold(SPANS, 0, offset)
    tracker.release(SPANS, 0, 1)  # an unrelated message in between
    # Trace over offsets 0 and 2; offset 2's own documents still unacknowledged.
    tracker.release_trace({(SPANS, 0, 0), (SPANS, 0, 2)})
    tracker.hold(SPANS, 0, 2)
    assert tracker.committable() == {(SPANS, 0): 0}
    tracker.release(SPANS, 0, 2)
    assert tracker.committable() == {(SPANS, 0): 3}


def test_a_late_span_is_indexed_and_its_trace_recomputed() -> None:
    rig = Rig()
    rig.produce(SPANS, spans_message(TRACE_A, span(ROOT), span(CHILD, ROOT, 1)))
    with rig.processor() as processor:
        processor.run(drain=True)
        assert span_count(next(iter(rig.traces().values()))) == 2
        rig.produce(SPANS, spans_message(TRACE_A, span(GRANDCHILD, CHILD, 2)))
        counts = processor.run(drain=True)
    assert counts.late_spans == 1
    assert len(rig.written("spans")) == 3
    (trace,) = rig.traces().values()
    assert span_count(trace) == 3  # recomputed with the late span, same id: overwritten
    assert rig.consumer.commits == {(SPANS, 0): 2}


# -- dead letters: batched, flushed before the commit -----------------------------------------


class WatchedDeadLetters(InMemoryDeadLetters):
    """Records the consumer's commits at each flush, to show the flush comes first."""

    def __init__(self, consumer: InMemoryConsumer) -> None:
        super().__init__()
        self.consumer = consumer
        self.commits_at_flush: list[dict[tuple[str, int], int]] = []

    def flush(self) -> int:
        if self.queued:
            self.commits_at_flush.append(dict(self.consumer.commits))
        return super().flush()


def test_dead_letters_are_flushed_before_the_commit_passes_them() -> None:
    rig = Rig()
    rig.dead_letters = watched = WatchedDeadLetters(rig.consumer)
    rig.produce(SPANS, b"{not json")
    rig.produce(SPANS, spans_message(TRACE_A, span(ROOT)))
    watched.unavailable = True
    attempts = 0

    def flush_when_back() -> int:
        nonlocal attempts
        attempts += bool(watched.queued)
        if attempts == 3:
            watched.unavailable = False
        return WatchedDeadLetters.flush(watched)

    watched.flush = flush_when_back  # type: ignore[method-assign]
    counts = rig.drain()
    (letter,) = watched.letters
    assert letter.source == (SPANS, 0, 0) and "invalid OTLP/JSON" in letter.reason
    # Every flush of the letter happened before any commit.
    assert watched.commits_at_flush == [{}, {}, {}]
    assert counts.dead_letters == 1 and counts.retries == 2
    assert rig.consumer.commits == {(SPANS, 0): 2}


def test_documents_the_sink_rejects_are_dead_lettered_and_the_rest_committed() -> None:
    rig = Rig()
    rig.sink.reject = lambda doc: "mapper_parsing_exception" if doc.kind == "logs" else None
    rig.produce(LOGS, log_message("approved"))
    counts = rig.drain()
    (letter,) = rig.dead_letters.letters
    assert letter.source is None and letter.kind == "rejected"
    assert letter.reason.startswith("elasticsearch rejected logs ")
    assert counts.dead_letters == 1 and counts.indexed["logs"] == 0
    assert rig.consumer.commits == {(LOGS, 0): 1}


def test_the_archive_gets_only_what_the_primary_sink_acknowledged(tmp_path: Path) -> None:
    rig = Rig()
    rig.others = [ParquetArchive(tmp_path)]
    rig.sink.reject = lambda doc: "mapper_parsing_exception" if doc.kind == "logs" else None
    rig.produce(LOGS, log_message("approved"))
    rig.produce(SPANS, spans_message(TRACE_A, span(ROOT)))
    rig.drain()
    archived = {path.parts[len(tmp_path.parts)] for path in tmp_path.rglob("*.parquet")}
    assert archived == {"spans", "traces"}  # the rejected log document is not archived


def test_an_undecodable_message_is_held_until_its_dead_letter_is_flushed() -> None:
    rig = Rig()
    rig.produce(SPANS, b"")
    rig.dead_letters.unavailable = True
    processor = rig.processor()
    flushes = 0
    original = rig.dead_letters.flush

    def flush() -> int:
        nonlocal flushes
        flushes += 1
        if flushes == 3:
            processor.stop()
        return original()

    rig.dead_letters.flush = flush  # type: ignore[method-assign]
    with processor:
        processor.run()
    # Nothing past the undecodable message is committed while its dead letter is not durable.
    assert rig.dead_letters.letters == [] and rig.consumer.commits.get((SPANS, 0), 0) == 0


# -- retry: full jitter, deadline, stop -------------------------------------------------------


def failing(times: int) -> Callable[[], str]:
    calls = 0

    def call() -> str:
        nonlocal calls
        calls += 1
        if calls <= times:
            raise SinkUnavailableError(f"attempt {calls}")
        return "done"

    return call


def test_retry_uses_full_jitter_under_an_exponential_ceiling() -> None:
    delays: list[float] = []
    policy = Backoff(initial_s=0.001, max_s=0.004)
    stop = threading.Event()
    result = retry(failing(6), policy, stop, on_retry=lambda _e, d: delays.append(d),
                   rng=random.Random(3))  # fmt: skip
    assert result == "done"
    ceilings = [0.001, 0.002, 0.004, 0.004, 0.004, 0.004]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == len(delays)  # jittered, not a fixed schedule
    samples = [policy.delay(5, random.Random(seed)) for seed in range(200)]
    assert min(samples) < 0.001 and max(samples) > 0.003  # spread over the whole window


def test_retry_gives_up_at_the_deadline() -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 1.0
        return now[0]

    with pytest.raises(SinkUnavailableError, match="attempt"):
        retry(failing(100), Backoff(0.001, 0.002, deadline_s=3.0), threading.Event(),
              clock=clock)  # fmt: skip


def test_retry_sleep_wakes_on_stop() -> None:
    stop = threading.Event()
    threading.Timer(0.05, stop.set).start()
    started = time.perf_counter()
    with pytest.raises(SinkUnavailableError):
        retry(failing(100), Backoff(initial_s=60, max_s=60), stop, rng=random.Random(1))
    assert time.perf_counter() - started < 5


def test_retry_does_not_retry_what_cannot_be_fixed() -> None:
    def denied() -> None:
        raise SinkAccessError("401")

    with pytest.raises(SinkAccessError):
        retry(denied, Backoff(), threading.Event())


@pytest.mark.parametrize(
    ("options", "rule"),
    [({"initial_s": 0}, "initial_s"), ({"initial_s": 2, "max_s": 1}, "max_s"),
     ({"deadline_s": 0}, "deadline_s")],
)  # fmt: skip
def test_backoff_validates_its_arguments(options: dict[str, float], rule: str) -> None:
    with pytest.raises(ValueError, match=rule):
        Backoff(**options)


def test_dead_letter_kind_names_the_metric_label() -> None:
    assert DeadLetter(b"x", "bad", source=(SPANS, 0, 1)).kind == "decode"
    assert DeadLetter(b"{}", "rejected").kind == "rejected"


# -- a sink never reached since the start ------------------------------------------------------


class _SilentAtStart(InMemorySink):
    """A sink whose ``setup`` fails ``failures`` times with ``error`` (None: for ever)."""

    def __init__(self, error: SinkUnavailableError, failures: int | None = None) -> None:
        super().__init__()
        self.error = error
        self.failures = failures
        self.setup_attempts = 0

    def setup(self) -> None:
        self.setup_attempts += 1
        if self.failures is None or self.setup_attempts <= self.failures:
            raise self.error
        super().setup()


def test_a_sink_that_never_answers_at_the_start_stops_the_processor_with_one_message() -> None:
    rig = Rig()
    rig.sink = sink = _SilentAtStart(
        SinkUnreachableError("Elasticsearch at http://x:1 unreachable")
    )
    with pytest.raises(NeverReachedError, match=r"http://x:1 unreachable .* since the start"):
        rig.drain(startup_timeout_s=0.05)
    assert sink.setup_attempts > 1  # retried briefly before giving up


def test_a_sink_that_answers_but_is_not_ready_at_the_start_is_waited_for() -> None:
    rig = Rig()
    # 503 for longer than the start-up wait: reachable, so waited for as during an outage.
    rig.sink = _SilentAtStart(SinkUnavailableError("Elasticsearch answered 503"), failures=40)
    rig.produce(SPANS, spans_message(TRACE_A, span(ROOT)))
    counts = rig.drain(startup_timeout_s=0.01)
    assert rig.sink.set_up and counts.messages == 1


def test_an_unreachable_sink_that_comes_back_within_the_start_up_wait_is_used() -> None:
    rig = Rig()
    rig.sink = _SilentAtStart(SinkUnreachableError("unreachable"), failures=3)
    rig.produce(SPANS, spans_message(TRACE_A, span(ROOT)))
    assert rig.drain(startup_timeout_s=30.0).messages == 1
