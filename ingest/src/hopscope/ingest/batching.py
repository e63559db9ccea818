"""A bounded queue with one export worker, shared by the span and the log pipeline.

The payment path only ever appends to a deque: no lock, no I/O, no allocation beyond the
append. When the queue is full the *oldest* item is dropped (fresh telemetry is worth more
during an incident), the drop is counted, and a warning is logged at most once per
``warn_interval_s``. One worker thread wakes on a timer or when a full batch is waiting, and
hands batches to the exporter. Shutdown is idempotent: stop flag, wake, timed join, one last
drain within the remaining time.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

logger = logging.getLogger(__name__)


@dataclass
class QueueStats:
    """Counters of one queue: what was offered, exported, dropped and why."""

    offered: int = 0
    exported: int = 0
    dropped_queue_full: int = 0
    dropped_export_failed: int = 0
    dropped_after_shutdown: int = 0


class BatchQueue(Generic[T]):
    """Bounded deque + one worker calling ``export(batch) -> bool`` (True when delivered).

    Parameters
    ----------
    export:
        Called on the worker thread with up to ``max_batch`` items; returns True when the
        batch was delivered. It must return within its own deadline (the Kafka exporter bounds
        every wait).
    name:
        Used for the thread name and in warnings ("spans", "logs").
    """

    def __init__(
        self,
        export: Callable[[Sequence[T]], bool],
        *,
        name: str,
        max_queue: int = 20_000,
        max_batch: int = 2_000,
        delay_s: float = 0.2,
        warn_interval_s: float = 10.0,
    ) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, got {max_queue}")
        if not 1 <= max_batch <= max_queue:
            raise ValueError(f"max_batch must be in [1, max_queue={max_queue}], got {max_batch}")
        if delay_s <= 0:
            raise ValueError(f"delay_s must be positive, got {delay_s}")
        self._export = export
        self._name = name
        self.max_batch = max_batch
        self._delay_s = delay_s
        self._warn_interval_s = warn_interval_s
        self._queue: collections.deque[T] = collections.deque(maxlen=max_queue)
        self._max_queue = max_queue
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._stopped = False
        self._deadline: float | None = None  # set by shutdown: the worker drains until then
        self._last_warning = 0.0
        self._drops_since_warning = 0
        self.stats = QueueStats()
        self._worker = threading.Thread(target=self._run, name=f"hopscope-{name}", daemon=True)
        self._worker.start()

    # -- the payment path ------------------------------------------------------------------
    def put(self, item: T) -> None:
        """Queue one item (called on the request thread: must stay cheap)."""
        if self._stopped:
            self.stats.dropped_after_shutdown += 1
            return
        self.stats.offered += 1
        queue = self._queue
        if len(queue) >= self._max_queue:
            self._count_drop()
        queue.append(item)
        if len(queue) >= self.max_batch:
            self._wake.set()

    def _count_drop(self) -> None:
        self.stats.dropped_queue_full += 1
        self._drops_since_warning += 1
        now = time.monotonic()
        if now - self._last_warning >= self._warn_interval_s:
            self._last_warning = now
            logger.warning(
                "hopscope %s queue full (%d): dropped %d oldest item(s) since last warning; "
                "is Kafka reachable?",
                self._name,
                self._max_queue,
                self._drops_since_warning,
            )
            self._drops_since_warning = 0

    # -- the worker ------------------------------------------------------------------------
    def _take_batch(self) -> list[T]:
        batch: list[T] = []
        queue = self._queue
        while queue and len(batch) < self.max_batch:
            batch.append(queue.popleft())
        return batch

    def _export_batch(self, batch: list[T]) -> None:
        try:
            delivered = self._export(batch)
        except Exception:  # an exporter bug must not kill the worker
            logger.exception("hopscope %s exporter raised", self._name)
            delivered = False
        if delivered:
            self.stats.exported += len(batch)
        else:
            self.stats.dropped_export_failed += len(batch)

    def _run(self) -> None:
        while not self._stopped:
            self._wake.wait(self._delay_s)
            self._wake.clear()
            self._drain()
        self._drain()  # what arrived between the last drain and the stop flag

    def _drain(self) -> None:
        self._idle.clear()
        try:
            while self._queue and (self._deadline is None or time.monotonic() < self._deadline):
                self._export_batch(self._take_batch())
        finally:
            self._idle.set()

    # -- flush and shutdown ----------------------------------------------------------------
    def force_flush(self, timeout_s: float = 30.0) -> bool:
        """Export everything queued so far; True when the queue emptied within the timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self._queue and self._idle.is_set():
                return True
            self._wake.set()
            time.sleep(0.005)
        return not self._queue and self._idle.is_set()

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Stop accepting items, export what is queued within ``timeout_s``, stop the worker.

        Returns within ``timeout_s`` (plus the exporter's current call) even when the exporter
        cannot deliver: what is left is counted as dropped.
        """
        if self._stopped:
            return
        self._deadline = time.monotonic() + timeout_s
        self._stopped = True
        self._wake.set()
        # The worker's last drain stops at the deadline; an export call in flight is bounded
        # by the exporter's own timeouts.
        self._worker.join(max(0.0, self._deadline - time.monotonic()))
        if not self._worker.is_alive():
            self._drain()
        left = len(self._queue)
        if left:
            self.stats.dropped_export_failed += left
            self._queue.clear()
            logger.warning("hopscope %s: %d item(s) not exported at shutdown", self._name, left)

    def __len__(self) -> int:
        return len(self._queue)
