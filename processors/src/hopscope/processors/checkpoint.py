"""The checkpoint: write a batch, then commit what it frees. Commit last, never past a loss.

**Which offsets may be committed** (:class:`OffsetTracker`): up to the lowest message not yet
fully acknowledged. Every message is *held* while any record that came from it (its spans and
logs, and the derived records of the traces it fed) is not acknowledged by Elasticsearch, and
while its dead letters are not acknowledged by the dead-letter topic. A partition's commit
offset is its lowest held offset, or one past the highest offset seen when nothing is held.

A trace split over several messages of one partition adds a rule: the commit offset must never
fall between its messages, or a restart would re-read only the later part and overwrite the
trace's derived records with partial ones. So when such a trace is written, its earlier
messages stay held (*deferred*) until everything up to its last message is releasable.

**How a batch is written and committed** (:meth:`Checkpoint.commit`):

1. Write the batch's documents to the primary sink (Elasticsearch). While it is unavailable,
   pause every partition and retry with jittered backoff (:mod:`hopscope.processors.retry`):
   nothing is dropped; a stop request gives up, leaving the batch uncommitted.
2. Queue the documents the primary sink rejected as dead letters, with its reason, after the
   batch's own (undecodable messages, unusable spans).
3. Flush the dead letters, retrying the same way: no offset moves past a dead letter the
   broker has not acknowledged.
4. Write what the primary sink acknowledged to the other sinks (the Parquet archive), so they
   hold durable records only.
5. Release the holds of the batch's messages and traces.
6. Commit, per partition, up to the lowest message still held. A failed commit (broker
   restarting, group rebalancing) loses nothing: the same offsets stay committable.

**Pipelined writes** (``in_flight``, the setting ``max_bulks_in_flight``): step 1 of a batch
runs on a writer thread while the loop decodes the next messages; steps 2-6 of a batch run on
the loop's thread once its write is acknowledged, in commit order, before more than
``in_flight`` writes would be outstanding (and at :meth:`Checkpoint.finish`). A failed write
is retried on the loop's thread as in step 1, so no offset ever passes an unacknowledged
document. Partitions revoked meanwhile are forgotten in the batches in flight too: their
holds are not released and their dead letters not sent, since the next owner re-reads them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import threading
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from hopscope.processors.consumer import CommitError, Consumer
from hopscope.processors.dlq import DeadLetterSink
from hopscope.processors.errors import SinkUnavailableError
from hopscope.processors.metrics import ProcessorCounts, ProcessorMetrics
from hopscope.processors.pipeline import Batch, DeadLetter, written
from hopscope.processors.retry import Backoff, retry
from hopscope.processors.sink import Sink, WriteOutcome

logger = logging.getLogger(__name__)

T = TypeVar("T")


class OffsetTracker:
    """Hold counts per (topic, partition, offset)."""

    def __init__(self) -> None:
        self._held: dict[tuple[str, int], Counter[int]] = {}
        self._seen: dict[tuple[str, int], int] = {}
        self._committed: dict[tuple[str, int], int] = {}
        # (topic, partition) -> [(earlier offset, last offset of the same trace)]
        self._deferred: dict[tuple[str, int], list[tuple[int, int]]] = {}

    def seen(self, topic: str, partition: int, offset: int) -> None:
        key = (topic, partition)
        self._seen[key] = max(self._seen.get(key, -1), offset)

    def hold(self, topic: str, partition: int, offset: int, count: int = 1) -> None:
        self.seen(topic, partition, offset)
        self._held.setdefault((topic, partition), Counter())[offset] += count

    def release(self, topic: str, partition: int, offset: int, count: int = 1) -> None:
        held = self._held.get((topic, partition))
        if held is None or held[offset] < count:
            raise ValueError(f"release without hold: {topic}[{partition}]@{offset}")
        held[offset] -= count
        if held[offset] == 0:
            del held[offset]

    def release_trace(self, sources: set[tuple[str, int, int]]) -> None:
        """Release the holds of a written trace, deferring its earlier messages per partition
        until the commit offset can pass its last one."""
        last: dict[tuple[str, int], int] = {}
        for topic, partition, offset in sources:
            key = (topic, partition)
            last[key] = max(last.get(key, -1), offset)
        for topic, partition, offset in sources:
            self.release(topic, partition, offset)
            final = last[(topic, partition)]
            if offset < final:
                self._deferred.setdefault((topic, partition), []).append((offset, final))

    def _target(self, key: tuple[str, int]) -> int:
        held = self._held.get(key)
        target = min(held) if held else self._seen[key] + 1
        deferred = self._deferred.get(key)
        if deferred:
            # A deferred earlier message blocks the commit while its trace's last message is
            # at or past the target; once the target has passed the last one, it is free.
            changed = True
            while changed:
                changed = False
                for earlier, final in deferred:
                    if earlier < target <= final:
                        target = earlier
                        changed = True
            self._deferred[key] = [(e, f) for e, f in deferred if f >= target]
        return target

    def committable(self) -> dict[tuple[str, int], int]:
        """Partitions whose commit offset moved since the last call, with that offset."""
        moved = {}
        for key in self._seen:
            target = self._target(key)
            if target > self._committed.get(key, -1):
                moved[key] = target
        return moved

    def committed(self, offsets: dict[tuple[str, int], int]) -> None:
        self._committed.update(offsets)

    def forget(self, partitions: set[tuple[str, int]]) -> None:
        """Drop the state of revoked partitions."""
        for key in partitions:
            self._held.pop(key, None)
            self._seen.pop(key, None)
            self._committed.pop(key, None)
            self._deferred.pop(key, None)

    def held_count(self) -> int:
        return sum(sum(c.values()) for c in self._held.values())


class Checkpoint:
    """Writes batches to the sinks and commits the consumer's offsets (steps in the module
    docstring); owns the :class:`OffsetTracker`.

    ``sinks[0]`` is the primary sink (its acknowledgement frees offsets, its rejections are
    dead-lettered); the others get what it acknowledged. ``stop`` ends a retry at once.
    """

    def __init__(
        self,
        consumer: Consumer,
        sinks: Sequence[Sink],
        dead_letters: DeadLetterSink,
        *,
        backoff: Backoff,
        stop: threading.Event,
        metrics: ProcessorMetrics,
        counts: ProcessorCounts,
        rng: random.Random | None = None,
        in_flight: int = 0,
    ) -> None:
        if not sinks:
            raise ValueError("sinks must name at least the primary sink")
        if in_flight < 0:
            raise ValueError(f"in_flight must be >= 0 (0: synchronous writes), got {in_flight}")
        # Writes overlap the decoding of the next messages: one writer thread, at most
        # ``in_flight`` batches written and not yet completed (steps 2-6).
        self._max_in_flight = in_flight
        self._in_flight: deque[tuple[Batch, Future[WriteOutcome]]] = deque()
        self._writer = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="hopscope-bulk")
            if in_flight else None
        )  # fmt: skip
        self.consumer = consumer
        self.sinks = tuple(sinks)
        self.dead_letters = dead_letters
        self.offsets = OffsetTracker()
        self.backoff = backoff
        self._stop = stop
        self._metrics = metrics
        self._counts = counts
        self._rng = rng or random.Random()  # noqa: S311 (jitter, not secrets)

    def retry(
        self, call: Callable[[], T], *, deadline_s: float | None = None,
        level: int = logging.WARNING,
    ) -> T:  # fmt: skip
        """``call`` retried while a sink is unavailable, every partition paused meanwhile.

        ``deadline_s``: give up after this long (the start-up wait); None: until it works.
        ``level``: of the one log line per back-off step.

        Raises :class:`SinkUnavailableError` only when stopped or past ``deadline_s``: the
        caller leaves the batch uncommitted for the next owner.
        """
        paused = False

        def on_retry(error: SinkUnavailableError, delay: float) -> None:
            nonlocal paused
            self._counts.retries += 1
            self._metrics.retries.inc()
            if not paused:
                self.consumer.pause_all()
                paused = True
            logger.log(level, "%s; retrying in %.1f s (partitions paused)", error, delay)

        policy = self.backoff
        if deadline_s is not None:
            policy = dataclasses.replace(policy, deadline_s=deadline_s)
        try:
            return retry(call, policy, self._stop, on_retry=on_retry, rng=self._rng)
        finally:
            if paused:
                self.consumer.resume_all()

    def commit(self, batch: Batch) -> None:
        """Steps 1-6 of the module docstring for ``batch``.

        With ``in_flight`` > 0, step 1 of a batch with documents starts on the writer thread
        and this returns at once; its steps 2-6 run on this thread once the write is
        acknowledged, when the bound of writes in flight is reached, or at :meth:`finish`.
        Batches finish in the order they were committed, so an offset is still committed only
        after everything before it was acknowledged.
        """
        if self._writer is None or not batch.documents:
            # In order: the batches in flight before this one (dead letters only, or
            # pipelining off).
            self.finish()
            self._complete(batch, self.retry(self._first_write(batch)))
            return
        while len(self._in_flight) >= self._max_in_flight:
            self._finish_oldest()
        future = self._writer.submit(self.sinks[0].write, batch.documents)
        self._in_flight.append((batch, future))

    @property
    def in_flight(self) -> int:
        """Batches whose write started and whose steps 2-6 have not run yet."""
        return len(self._in_flight)

    def finish(self) -> None:
        """Steps 2-6 of every batch in flight, waiting for (and retrying) their writes."""
        while self._in_flight:
            self._finish_oldest()

    def forget(self, partitions: set[tuple[str, int]]) -> None:
        """Drop the state of revoked partitions, in the tracker and in the batches in flight.

        Their documents may still be written (ids are deterministic: the next owner
        overwrites them), but no hold of theirs is released and none of their dead letters is
        sent: the next owner reads those messages again from the last commit.
        """
        for batch, _future in self._in_flight:
            batch.releases = [s for s in batch.releases if s[:2] not in partitions]
            batch.trace_releases = [
                kept for kept in ({s for s in sources if s[:2] not in partitions}
                                  for sources in batch.trace_releases) if kept
            ]  # fmt: skip
            batch.dead_letters = [
                d for d in batch.dead_letters if d.source is None or d.source[:2] not in partitions
            ]
        self.offsets.forget(partitions)

    def close(self) -> None:
        """Wait for the write in flight, if any, and end the writer thread (idempotent)."""
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None

    def _first_write(self, batch: Batch, started: Future[WriteOutcome] | None = None
                     ) -> Callable[[], WriteOutcome]:  # fmt: skip
        """Step 1 as :meth:`retry` calls it: the outcome of the write already ``started`` on
        the writer thread first (its error is the first failure), then writes of its own."""
        primary = self.sinks[0]
        first = [started] if started is not None else []

        def write() -> WriteOutcome:
            if not batch.documents:
                return WriteOutcome()
            if first:
                return first.pop().result()
            return primary.write(batch.documents)

        return write

    def _finish_oldest(self) -> None:
        batch, future = self._in_flight[0]
        # Step 1, continued: an unavailable sink is retried here, partitions paused, as
        # without pipelining. A stop gives up with the batch still in flight (uncommitted).
        outcome = self.retry(self._first_write(batch, future))
        self._in_flight.popleft()
        self._complete(batch, outcome)

    def _complete(self, batch: Batch, outcome: WriteOutcome) -> None:
        """Steps 2-6 for ``batch``, whose documents the primary sink answered with
        ``outcome``."""
        others = self.sinks[1:]
        if batch.documents:
            self._metrics.bulk_seconds.observe(outcome.took_s)
        # Step 2: dead letters, the batch's own and the primary sink's rejections.
        letters = list(batch.dead_letters)
        for doc, reason in outcome.rejected:
            letters.append(DeadLetter(json.dumps(doc.body, default=str).encode(),
                                      f"elasticsearch rejected {doc.kind} {doc.id}: {reason}",
                                      doc.id.encode()))  # fmt: skip
        for letter in letters:
            self.dead_letters.add(letter)
        # Step 3: flushed before anything is committed past them.
        self.flush_dead_letters()
        for letter in letters:
            self._counts.dead_letters += 1
            self._metrics.dead_letters.labels(letter.kind).inc()
        if batch.documents:
            # Step 4: the other sinks get the durable records only.
            rejected = {id(doc) for doc, _ in outcome.rejected}
            durable = [d for d in batch.documents if id(d) not in rejected]
            for sink in others:
                sink.write(durable)
            indexed = written(batch.documents, (doc for doc, _ in outcome.rejected))
            self._counts.indexed.update(indexed)
            for kind, count in indexed.items():
                self._metrics.indexed.labels(kind).inc(count)
        # Step 5: what the batch held is acknowledged everywhere.
        for source in batch.releases:
            self.offsets.release(*source)
        for sources in batch.trace_releases:
            self.offsets.release_trace(sources)
        # Step 6.
        self.commit_offsets()

    def flush_dead_letters(self) -> None:
        """Step 3 alone: every queued dead letter acknowledged (retried; raises when stopped)."""
        self.retry(self.dead_letters.flush)

    def commit_offsets(self) -> None:
        """Step 6 alone: commit what moved; a failed commit is deferred, not lost."""
        moved = self.offsets.committable()
        if not moved:
            return
        try:
            self.consumer.commit(moved)
        except CommitError as error:
            # The broker restarting, the coordinator moving, the group rebalancing: not
            # committing now loses nothing. The same offsets stay committable for the next
            # iteration, or the next owner re-reads from the last commit.
            self._counts.commit_retries += 1
            self._metrics.commit_failures.inc()
            logger.warning("offset commit deferred: %s", error)
            return
        self.offsets.committed(moved)
