"""The fault suite: each case runs steady payment traffic through the real broker, real
processors (OS processes) and real Elasticsearch, injects one fault mid-stream, and ends with
the ledger (tests/faults/harness.py): produced = indexed + DLQ, no duplicate ids, derived
records equal to a clean replay's. Each case adds its row to docs/RELIABILITY.md
(``make reliability``).

docs/DESIGN.md §4: at-least-once from Kafka plus deterministic ids; commits only after
Elasticsearch acknowledged; 429/5xx/connection errors pause and retry, never drop; a rebalance
drops the state of revoked partitions and the new owner rebuilds; SIGTERM flushes, commits and
exits 0.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch
from kafka.admin import KafkaAdminClient, NewTopic

from hopscope import stack
from hopscope.core.settings import default_cache_dir
from tests.faults.harness import (
    LagSampler,
    LedgerRow,
    ProcessorProcess,
    SteadyTraffic,
    assert_committed_were_indexed,
    processor_env,
    settle_ledger,
)
from tests.integration.processor_support import Topics, refresh, wait_for_count

pytestmark = [pytest.mark.integration, pytest.mark.stack, pytest.mark.faults]

WAIT_S = 240.0  # generous: Elasticsearch shares two cores with everything else
SIGTERM_TIMEOUT_S = 30.0  # what an orchestrator grants before SIGKILL (Kubernetes' default)


class Case:
    """One fault case: its topics, index prefix, group, traffic, lag samples, processors."""

    def __init__(
        self,
        name: str,
        fault_stack: tuple[Path, stack.StackState],
        waits: dict[str, float],
        tmp_path: Path,
        *,
        partitions: int = 2,
        seed: int = 1,
        replication: int = 1,
        workers: int = 1,
    ) -> None:
        self.name, self.waits, self.tmp_path = name, waits, tmp_path
        self.state_dir, state = fault_stack
        self.bootstrap, self.es_url = state.kafka_bootstrap, state.es_url
        run = uuid.uuid4().hex[:8]
        self.topics = Topics(f"f-{name}-spans-{run}", f"f-{name}-logs-{run}", f"f-{name}-dlq-{run}")
        self.prefix, self.group = f"hopscope-fault-{run}", f"fault-{name}-{run}"
        self.env = processor_env(self.bootstrap, self.es_url, self.topics, self.prefix)
        # Every node of a cluster: the suite's own reads move off a node that is down.
        self.es = Elasticsearch(self.es_url.split(","), request_timeout=60, max_retries=5)
        self.workers = workers
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            admin.create_topics([NewTopic(t, partitions, replication) for t in self.topics.inputs])
        finally:
            admin.close()
        self.lag = LagSampler(self.bootstrap, self.group, self.topics.inputs)
        self.traffic = SteadyTraffic(self.bootstrap, self.topics, rate=waits["rate"], seed=seed)
        self.processors: list[ProcessorProcess] = []

    def processor(self) -> ProcessorProcess:
        number = len(self.processors) + 1
        process = ProcessorProcess(
            self.env, self.group, self.tmp_path / f"processor-{number}.log", workers=self.workers
        )
        self.processors.append(process)
        return process

    def start(self) -> ProcessorProcess:
        """Traffic, lag sampling and one processor; returns once it indexed and committed."""
        self.lag.__enter__()
        self.traffic.__enter__()
        first = self.processor()
        assert wait_for_count(self.es, self.prefix, "traces", 1, WAIT_S) >= 1, first.tail()
        deadline = time.monotonic() + WAIT_S
        while not any(sum(c.values()) for _t, c, _e in self.lag.samples):
            assert first.alive(), first.tail()
            assert time.monotonic() < deadline, "nothing committed while all was well"
            time.sleep(0.5)
        return first

    def finish(
        self, running: list[ProcessorProcess], cleared_at: float, notes: str = ""
    ) -> LedgerRow:
        """More traffic after the fault, then stop it, wait until the group caught up, stop
        the processors (SIGTERM, exit 0) and settle the ledger."""
        time.sleep(self.waits["settle_s"])
        self.traffic.stop()
        for process in running:
            assert process.alive(), f"a processor died:\n{process.tail()}"
        self.lag.wait_caught_up(WAIT_S)
        time.sleep(1.5)  # one more lag sample after the catch-up
        self.lag.__exit__(None, None, None)
        for process in running:
            code, _took = process.terminate(SIGTERM_TIMEOUT_S)
            assert code == 0, process.tail()
        assert self.traffic.runs > 0
        return settle_ledger(
            self.es, self.bootstrap, self.es_url, self.topics, self.prefix,
            case=self.name, lag=self.lag, cleared_at=cleared_at, notes=notes,
        )  # fmt: skip

    def close(self) -> None:
        self.traffic.stop()
        self.lag.__exit__(None, None, None)
        for process in self.processors:
            process.close()
        self.es.indices.delete(index=f"{self.prefix}-*", ignore_unavailable=True,
                               allow_no_indices=True)  # fmt: skip
        self.es.close()


@pytest.fixture
def case_factory(
    fault_stack: tuple[Path, stack.StackState], waits: dict[str, float], tmp_path: Path
) -> Iterator[Callable[..., Case]]:
    """``case_factory(name, partitions=…, seed=…)``; every case is cleaned up afterwards."""
    made: list[Case] = []

    def make(name: str, **options: int) -> Case:
        made.append(Case(name, fault_stack, waits, tmp_path, **options))
        return made[-1]

    yield make
    for case in made:
        case.close()


def test_elasticsearch_outage(
    case_factory: Callable[..., Case], fault_stack: tuple[Path, stack.StackState],
    waits: dict[str, float], ledger: list[LedgerRow],
) -> None:  # fmt: skip
    case = case_factory("elasticsearch-outage", seed=11)
    processor = case.start()
    stack.stop_service(case.state_dir, "elasticsearch")
    time.sleep(2.0)  # a commit of what was acknowledged just before the stop may still land
    committed = case.lag.committed_now()
    time.sleep(max(0.0, waits["outage_s"] - 2.0))
    # Nothing can be acknowledged by a stopped node, so nothing was committed meanwhile.
    assert case.lag.committed_now() == committed
    stack.start_service(case.state_dir, "elasticsearch", default_cache_dir())
    cleared_at = time.monotonic()
    assert processor.alive(), processor.tail()
    assert "retrying" in processor.tail(20_000), "the processor never noticed the outage"
    ledger.append(case.finish([processor], cleared_at))


def test_elasticsearch_429(
    case_factory: Callable[..., Case], waits: dict[str, float], ledger: list[LedgerRow]
) -> None:
    case = case_factory("elasticsearch-429", seed=12)
    processor = case.start()
    indices = f"{case.prefix}-*"
    # Real 429s from a real node: the block Elasticsearch itself sets when a disk passes the
    # flood-stage watermark. Every bulk item for these indices is answered 429 until lifted.
    case.es.indices.put_settings(
        index=indices, settings={"index.blocks.read_only_allow_delete": True}
    )
    try:
        time.sleep(waits["block_s"])
    finally:
        case.es.indices.put_settings(
            index=indices, settings={"index.blocks.read_only_allow_delete": None}
        )
    cleared_at = time.monotonic()
    assert "429" in processor.tail(50_000), "the processor never saw a 429"
    ledger.append(case.finish([processor], cleared_at))


def test_processor_sigkill(case_factory: Callable[..., Case], ledger: list[LedgerRow]) -> None:
    case = case_factory("processor-sigkill", seed=13)
    processor = case.start()
    rng = random.Random(13)
    moments = []
    for _ in range(3):
        pause = rng.uniform(2.0, 9.0)
        time.sleep(pause)
        assert processor.kill() == -9
        moments.append(f"{pause:.1f}")
        # What the killed processor committed had been acknowledged by Elasticsearch.
        assert_committed_were_indexed(
            case.es, case.bootstrap, case.topics, case.prefix, case.lag.committed_now()
        )
        processor = case.processor()
    cleared_at = time.monotonic()
    note = f"Killed after {', '.join(moments)} s of running."
    ledger.append(case.finish([processor], cleared_at, notes=note))


def test_kafka_restart(
    case_factory: Callable[..., Case], waits: dict[str, float], ledger: list[LedgerRow]
) -> None:
    case = case_factory("kafka-restart", seed=14)
    processor = case.start()
    stack.stop_service(case.state_dir, "kafka")
    time.sleep(waits["broker_s"])
    stack.start_service(case.state_dir, "kafka", default_cache_dir())
    cleared_at = time.monotonic()
    lost = case.traffic.failed_runs
    ledger.append(
        case.finish(
            [processor], cleared_at,
            notes=f"{lost} simulator runs were refused while the broker was away (not produced).",
        )
    )  # fmt: skip


def test_rebalance(
    case_factory: Callable[..., Case], waits: dict[str, float], ledger: list[LedgerRow]
) -> None:
    case = case_factory("rebalance", partitions=4, seed=15)
    first = case.start()
    time.sleep(waits["settle_s"])
    second = case.processor()  # joins: the group rebalances, partitions move to it
    time.sleep(2 * waits["settle_s"])
    code, took = first.terminate(SIGTERM_TIMEOUT_S)  # leaves: its partitions move back
    assert code == 0, first.tail()
    cleared_at = time.monotonic()
    refresh(case.es, case.prefix)
    ledger.append(
        case.finish([second], cleared_at, notes=f"The leaving member exited 0 in {took:.1f} s.")
    )


def test_processor_sigterm(
    case_factory: Callable[..., Case], waits: dict[str, float], ledger: list[LedgerRow]
) -> None:
    case = case_factory("processor-sigterm", seed=16)
    processor = case.start()
    time.sleep(waits["settle_s"])
    code, took = processor.terminate(SIGTERM_TIMEOUT_S)
    assert code == 0, processor.tail()
    assert "processed" in processor.tail(), processor.tail()
    successor = case.processor()
    cleared_at = time.monotonic()
    ledger.append(
        case.finish(
            [successor], cleared_at,
            notes=f"Exited 0 in {took:.1f} s of SIGTERM (timeout {SIGTERM_TIMEOUT_S:.0f} s).",
        )
    )  # fmt: skip
