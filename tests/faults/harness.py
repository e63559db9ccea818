"""The fault suite's machinery: steady traffic, processors as real processes, lag sampling,
and the ledger that every case ends with.

The ledger counts records, not messages: what the input topics hold (read back from the
broker, so a batch the simulator lost to a broker restart is not counted as produced),
against what Elasticsearch holds and what the dead-letter topic holds.

    produced = indexed + dead-lettered, every id once, derived records as a clean replay's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch
from kafka import KafkaConsumer, TopicPartition
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from hopscope.core.settings import ENV_ES_URL, ENV_KAFKA_BOOTSTRAP
from hopscope.ingest.simulator import SimulationConfig, parse_iso8601_ns, simulate_to_kafka
from tests.integration.processor_support import (
    Topics,
    count,
    drain,
    ids_by_kind,
    read_topic,
    refresh,
)

# One day for all traffic: the daily indices exist before a fault blocks them.
START = parse_iso8601_ns("2026-05-04T09:00:00Z")
SECOND = 1_000_000_000


# -- traffic -------------------------------------------------------------------------------


class SteadyTraffic:
    """Simulated payments into the input topics at a steady rate, in a thread, until stopped.

    Every ``tick_s`` one simulator run of ``rate * tick_s`` payments (a new seed, so new ids,
    and a start ``tick_s`` later in simulated time). A run the broker refused (restarting) is
    counted in ``failed_runs`` and traffic goes on; what reached the topics is what counts.
    """

    def __init__(
        self, bootstrap: str, topics: Topics, *, rate: float, seed: int, tick_s: float = 2.0
    ) -> None:
        self.bootstrap, self.topics = bootstrap, topics
        self.per_tick = max(1, round(rate * tick_s))
        self.tick_s, self.seed = tick_s, seed
        self.runs = self.failed_runs = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    def _run(self) -> None:
        tick = 0
        while not self._stop.is_set():
            began = time.monotonic()
            config = SimulationConfig(
                start_ns=START + round(tick * self.tick_s * SECOND),
                seed=self.seed * 100_000 + tick,
                traces=self.per_tick,
            )
            try:
                simulate_to_kafka(
                    config,
                    bootstrap=self.bootstrap,
                    spans_topic=self.topics.spans,
                    logs_topic=self.topics.logs,
                    flush_timeout_s=10.0,
                )
                self.runs += 1
            except Exception as error:  # the broker is away: keep the rate, count the loss
                self.failed_runs += 1
                self.errors.append(f"{type(error).__name__}: {error}"[:300])
            tick += 1
            self._stop.wait(max(0.0, self.tick_s - (time.monotonic() - began)))

    def __enter__(self) -> SteadyTraffic:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=120)
        assert not self._thread.is_alive(), "the traffic thread did not stop"

    def __exit__(self, *_exc: object) -> None:
        self.stop()


# -- processors ----------------------------------------------------------------------------


class ProcessorProcess:
    """``hopscope process`` as a real OS process (so it can be SIGKILLed and SIGTERMed).

    ``workers``: one processor in this process (the default), or a supervisor of that many
    worker processes (``--workers``), whose pids :meth:`worker_pids` lists.
    """

    def __init__(
        self,
        env: dict[str, str],
        group: str,
        log: Path,
        *,
        trace_idle_s: float = 1.0,
        workers: int = 1,
    ) -> None:
        self.log = log
        command = [
            sys.executable, "-m", "hopscope.cli", "process", "--group", group,
            "--trace-idle", str(trace_idle_s), "--workers", str(workers),
        ]  # fmt: skip
        self._log_file = log.open("ab")
        self.proc = subprocess.Popen(
            command, env=env, stdout=self._log_file, stderr=subprocess.STDOUT
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def worker_pids(self) -> list[int]:
        """The pids of the supervisor's worker processes running now (its children)."""
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            return [int(pid) for pid in path.read_text().split()]
        except OSError:
            return []

    def kill(self) -> int:
        """SIGKILL: no flush, no commit, no goodbye."""
        self.proc.kill()
        return self._wait(30)

    def terminate(self, timeout_s: float) -> tuple[int, float]:
        """SIGTERM; (exit code, seconds to exit). Killed (and failing) past ``timeout_s``."""
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"the processor did not exit within {timeout_s:.0f} s of SIGTERM; "
                f"log tail:\n{self.tail()}"
            ) from None
        finally:
            self._log_file.close()
        return code, time.monotonic() - began

    def _wait(self, timeout_s: float) -> int:
        code = self.proc.wait(timeout=timeout_s)
        self._log_file.close()
        return code

    def close(self) -> None:
        """Kill if still running; always release the log file."""
        if self.alive():
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._log_file.close()

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


def processor_env(bootstrap: str, es_url: str, topics: Topics, prefix: str) -> dict[str, str]:
    return {
        **os.environ,
        ENV_KAFKA_BOOTSTRAP: bootstrap,
        ENV_ES_URL: es_url,
        "HOPSCOPE_SPANS_TOPIC": topics.spans,
        "HOPSCOPE_LOGS_TOPIC": topics.logs,
        "HOPSCOPE_DLQ_TOPIC": topics.dlq,
        "HOPSCOPE_INDEX_PREFIX": prefix,
        "NO_COLOR": "1",
        # Timestamped diagnostics and tracebacks in each processor's log, for the failures.
        "HOPSCOPE_LOG_LEVEL": "info",
        "HOPSCOPE_DEBUG": "1",
    }


# -- lag -----------------------------------------------------------------------------------


class LagSampler:
    """Samples the group's lag (end offsets minus committed offsets, summed) once a second.

    ``recovery_s(cleared_at)``: seconds from the moment a fault cleared until the group had
    committed past every message that existed at that moment (the backlog of the fault).
    """

    def __init__(self, bootstrap: str, group: str, topics: Iterable[str]) -> None:
        self.bootstrap, self.group, self.topics = bootstrap, group, list(topics)
        self.samples: list[tuple[float, dict[Any, int], dict[Any, int]]] = []
        self._partitions: list[TopicPartition] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lag", daemon=True)

    def _consumer(self) -> KafkaConsumer:
        return KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group,
            enable_auto_commit=False,
            request_timeout_ms=7000,
            session_timeout_ms=6000,
            heartbeat_interval_ms=2000,
        )

    def sample(self, consumer: KafkaConsumer) -> tuple[dict[Any, int], dict[Any, int]]:
        if not self._partitions:  # the topics are created up front: their partitions stay
            self._partitions = [
                TopicPartition(t, p)
                for t in self.topics
                for p in consumer.partitions_for_topic(t) or ()
            ]
        partitions = self._partitions
        # Bounded calls: without a timeout they wait for a broker that is restarting.
        ends = consumer.end_offsets(partitions, timeout_ms=5000)
        committed = {tp: consumer.committed(tp, timeout_ms=5000) or 0 for tp in partitions}
        return committed, ends

    def _run(self) -> None:
        consumer = None
        while not self._stop.is_set():
            try:
                consumer = consumer or self._consumer()
                committed, ends = self.sample(consumer)
                self.samples.append((time.monotonic(), committed, ends))
            except Exception:  # the broker is restarting: no sample this second
                if consumer is not None:
                    consumer.close()
                consumer = None
            self._stop.wait(1.0)
        if consumer is not None:
            consumer.close()

    def __enter__(self) -> LagSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    @property
    def max_lag(self) -> int:
        return max(
            (sum(ends[tp] - committed.get(tp, 0) for tp in ends) for _t, committed, ends in
             self.samples),
            default=0,
        )  # fmt: skip

    def committed_now(self) -> dict[Any, int]:
        """The group's committed offsets, read now (not from the samples)."""
        consumer = self._consumer()
        try:
            return self.sample(consumer)[0]
        finally:
            consumer.close()

    def ends_at(self, moment: float) -> dict[Any, int]:
        """The end offsets of the first sample at or after ``moment``."""
        for at, _committed, ends in sorted(self.samples, key=lambda sample: sample[0]):
            if at >= moment:
                return ends
        raise AssertionError("no lag sample after the fault cleared")

    def recovery_s(self, cleared_at: float) -> float:
        backlog = self.ends_at(cleared_at)
        for at, committed, _ends in sorted(self.samples, key=lambda sample: sample[0]):
            if at >= cleared_at and all(committed.get(tp, 0) >= o for tp, o in backlog.items()):
                return at - cleared_at
        raise AssertionError("the group never caught up with the backlog of the fault")

    def wait_caught_up(self, timeout_s: float) -> None:
        """Block until a sample shows every partition committed to its end (traffic stopped)."""
        deadline = time.monotonic() + timeout_s
        consumer = self._consumer()
        try:
            while True:
                try:
                    committed, ends = self.sample(consumer)
                    # Also a sample: the thread's consumer may still be reconnecting after a
                    # broker restart, and the recovery needs a sample after the fault.
                    self.samples.append((time.monotonic(), committed, ends))
                    if ends and all(committed[tp] >= end for tp, end in ends.items()):
                        return
                    lag = {f"{tp.topic}[{tp.partition}]": end - committed[tp]
                           for tp, end in ends.items()}  # fmt: skip
                except Exception as error:
                    lag = {"error": str(error)}  # type: ignore[dict-item]
                if time.monotonic() > deadline:
                    raise AssertionError(f"not caught up within {timeout_s:.0f} s: lag {lag}")
                time.sleep(1.0)
        finally:
            consumer.close()


# -- the ledger ----------------------------------------------------------------------------


def read_up_to(bootstrap: str, topic: str, offsets: dict[Any, int]) -> list[Any]:
    """The messages of ``topic`` below ``offsets`` per partition, while traffic goes on (a
    read "until idle" would never end)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        wanted = {tp: o for tp, o in offsets.items() if tp.topic == topic and o > 0}
        if not wanted:
            return []
        consumer.assign(list(wanted))
        consumer.seek_to_beginning(*wanted)
        messages: list[Any] = []
        deadline = time.monotonic() + 120
        while any(consumer.position(tp) < end for tp, end in wanted.items()):
            assert time.monotonic() < deadline, f"could not read {topic} up to {wanted}"
            for tp, batch in consumer.poll(timeout_ms=1000).items():
                messages += [m for m in batch if m.offset < wanted[tp]]
        return messages
    finally:
        consumer.close()


def assert_committed_were_indexed(
    es: Elasticsearch, bootstrap: str, topics: Topics, prefix: str, committed: dict[Any, int]
) -> int:
    """Every span below the committed offsets is in Elasticsearch, with its trace's summary:
    a commit never runs ahead of what Elasticsearch acknowledged (docs/DESIGN.md §4). Returns the
    number of spans checked."""
    below = [
        m
        for m in read_up_to(bootstrap, topics.spans, committed)
        if m.offset < committed.get(TopicPartition(m.topic, m.partition), 0)
    ]
    ids = sorted({
        f"{s.trace_id.hex()}-{s.span_id.hex()}"
        for m in below
        for r in ExportTraceServiceRequest.FromString(m.value).resource_spans
        for scope in r.scope_spans
        for s in scope.spans
    })  # fmt: skip
    traces = sorted({i.split("-")[0] for i in ids})
    refresh(es, prefix)
    for kind, wanted in (("spans", ids), ("traces", traces)):
        for start in range(0, len(wanted), 5000):  # a terms query has a size limit
            chunk = wanted[start : start + 5000]
            found = count(es, prefix, kind, {"ids": {"values": chunk}})
            assert found == len(chunk), (
                f"{kind} below the committed offsets: {found} of {len(chunk)}"
            )
    return len(ids)


@dataclass
class LedgerRow:
    """One row of docs/RELIABILITY.md."""

    case: str
    produced: int
    indexed: int
    dlq: int
    duplicates: int
    max_lag: int
    recovery_s: float
    notes: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


def produced_records(bootstrap: str, topics: Topics) -> tuple[list[str], int, set[str]]:
    """(span document ids, log record count, trace ids) of what the input topics hold,
    decoded with the opentelemetry-proto classes, not the processor's decoder."""
    span_ids: list[str] = []
    for message in read_topic(bootstrap, topics.spans):
        request = ExportTraceServiceRequest.FromString(message.value)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                span_ids += [f"{s.trace_id.hex()}-{s.span_id.hex()}" for s in scope_spans.spans]
    logs = 0
    for message in read_topic(bootstrap, topics.logs):
        request_logs = ExportLogsServiceRequest.FromString(message.value)
        for resource_logs in request_logs.resource_logs:
            logs += sum(len(scope.log_records) for scope in resource_logs.scope_logs)
    return span_ids, logs, {i.split("-")[0] for i in span_ids}


def dead_lettered(bootstrap: str, topics: Topics) -> int:
    """Records in the dead-letter topic: an OTLP message counts its spans, a rejected
    document counts one."""
    records = 0
    for message in read_topic(bootstrap, topics.dlq, idle_ms=1500):
        try:
            request = ExportTraceServiceRequest.FromString(message.value)
            spans = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
        except Exception:
            spans = 0
        records += spans or 1
    return records


def settle_ledger(
    es: Elasticsearch,
    bootstrap: str,
    es_url: str,
    topics: Topics,
    prefix: str,
    *,
    case: str,
    lag: LagSampler,
    cleared_at: float,
    notes: str = "",
) -> LedgerRow:
    """Count, check and return the case's row. Fails the case on any loss, duplicate, or
    derived record that differs from a clean replay of the same topics."""
    span_ids, logs, trace_ids = produced_records(bootstrap, topics)
    assert len(span_ids) == len(set(span_ids)), "the input topics hold a span twice"
    found = ids_by_kind(es, prefix)
    duplicates = sum(len(ids) - len(set(ids)) for ids in found.values())
    dlq = dead_lettered(bootstrap, topics)
    indexed = len(set(found["spans"])) + len(set(found["logs"]))
    row = LedgerRow(
        case=case,
        produced=len(span_ids) + logs,
        indexed=indexed,
        dlq=dlq,
        duplicates=duplicates,
        max_lag=lag.max_lag,
        recovery_s=round(lag.recovery_s(cleared_at), 1),
        notes=notes,
        detail={
            "spans": len(span_ids),
            "logs": logs,
            "traces": len(trace_ids),
            "indexed": {kind: len(set(ids)) for kind, ids in found.items()},
        },
    )

    missing = sorted(set(span_ids) - set(found["spans"]))
    assert not missing, f"{case}: {len(missing)} spans never indexed, e.g. {missing[:3]}"
    assert set(found["spans"]) <= set(span_ids), f"{case}: spans indexed that nobody produced"
    assert len(set(found["logs"])) == logs, f"{case}: logs {len(set(found['logs']))} != {logs}"
    assert set(found["traces"]) == trace_ids, f"{case}: trace summaries differ from the traces"
    assert duplicates == 0, f"{case}: {duplicates} documents indexed twice"
    assert row.produced == row.indexed + row.dlq, asdict(row)

    # The derived records: exactly those of a clean, fault-free replay of the same topics.
    replay_prefix = f"{prefix}-replay"
    run = uuid.uuid4().hex[:8]
    try:
        replay = drain(
            bootstrap, es_url, Topics(topics.spans, topics.logs, f"{topics.dlq}-replay-{run}"),
            replay_prefix, f"replay-{run}",
        )  # fmt: skip
        assert replay.dead_letters == 0
        clean = ids_by_kind(es, replay_prefix)
    finally:
        es.indices.delete(
            index=f"{replay_prefix}-*", ignore_unavailable=True, allow_no_indices=True
        )
    for kind in ("hops", "traces", "failovers", "coordination"):
        assert set(found[kind]) == set(clean[kind]), (
            f"{case}: {kind} differ from a clean replay: "
            f"{len(set(found[kind]) - set(clean[kind]))} extra, "
            f"{len(set(clean[kind]) - set(found[kind]))} missing"
        )
    return row


# -- the report ----------------------------------------------------------------------------


def write_rows(path: Path, rows: list[LedgerRow]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([asdict(r) for r in rows], indent=2))


def kinds_indexed(rows: Iterable[LedgerRow]) -> Counter[str]:
    total: Counter[str] = Counter()
    for row in rows:
        total.update(row.detail.get("indexed", {}))
    return total
