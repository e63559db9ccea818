"""The bounded queue between the payment path and the exporter."""

import logging
import threading
import time
from collections.abc import Sequence

import pytest

from hopscope.ingest.batching import BatchQueue


def test_everything_put_is_exported_in_batches() -> None:
    batches: list[list[int]] = []
    queue: BatchQueue[int] = BatchQueue(
        lambda b: batches.append(list(b)) is None, name="t", max_queue=1000, max_batch=100
    )
    for i in range(950):
        queue.put(i)
    assert queue.force_flush(5)
    queue.shutdown(5)
    assert sorted(x for b in batches for x in b) == list(range(950))
    assert max(len(b) for b in batches) <= 100
    assert queue.stats.exported == 950 and queue.stats.dropped_queue_full == 0


def test_full_queue_drops_oldest_counts_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()
    exported: list[int] = []

    def stuck(batch: Sequence[int]) -> bool:
        release.wait(10)
        exported.extend(batch)
        return True

    queue: BatchQueue[int] = BatchQueue(stuck, name="t", max_queue=100, max_batch=10,
                                        delay_s=0.01, warn_interval_s=60)  # fmt: skip
    queue.put(-1)
    time.sleep(0.1)  # the worker takes item -1 and blocks in the exporter
    with caplog.at_level(logging.WARNING, logger="hopscope.ingest.batching"):
        for i in range(5000):
            queue.put(i)
    assert len(queue) == 100
    assert queue.stats.dropped_queue_full == 4900
    assert len([r for r in caplog.records if "queue full" in r.message]) == 1
    release.set()
    queue.shutdown(5)
    # The newest items survive: 4900..4999.
    assert exported[0] == -1 and exported[1:] == list(range(4900, 5000))


def test_shutdown_returns_within_timeout_when_export_never_succeeds() -> None:
    def failing(batch: Sequence[int]) -> bool:
        time.sleep(0.05)
        return False

    queue: BatchQueue[int] = BatchQueue(failing, name="t", max_queue=10_000, max_batch=10)
    for i in range(10_000):
        queue.put(i)
    started = time.monotonic()
    queue.shutdown(0.5)
    assert time.monotonic() - started < 0.5 + 0.2  # the deadline plus one export call
    time.sleep(0.2)  # the batch in flight at the deadline is counted when its call returns
    stats = queue.stats
    assert stats.exported == 0
    assert stats.dropped_export_failed == 10_000
    queue.put(1)
    assert stats.dropped_after_shutdown == 1


def test_exporter_exception_does_not_kill_the_worker() -> None:
    calls: list[int] = []

    def flaky(batch: Sequence[int]) -> bool:
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return True

    queue: BatchQueue[int] = BatchQueue(flaky, name="t", max_batch=5, delay_s=0.01)
    for i in range(5):
        queue.put(i)
    time.sleep(0.1)
    for i in range(5):
        queue.put(i)
    queue.shutdown(5)
    assert queue.stats.dropped_export_failed == 5 and queue.stats.exported == 5


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"max_queue": 0}, "max_queue"),
    ({"max_queue": 10, "max_batch": 11}, "max_batch"),
    ({"delay_s": 0}, "delay_s"),
])  # fmt: skip
def test_invalid_arguments_name_the_parameter(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BatchQueue(lambda b: True, name="t", **kwargs)  # type: ignore[arg-type]
