"""The processor under hand-made faults: poison messages, rejected documents, a restart
between the parts of a split trace, a rebalance while traces are open. The injected outages
and kills under steady traffic are the fault suite's (tests/faults/).

docs/DESIGN.md §4: at-least-once from Kafka plus deterministic ids gives every record exactly once
in Elasticsearch; a partition's offset is committed only up to the lowest message whose records
are not all acknowledged; 5xx and connection errors are retried, never dropped; undecodable
messages and per-document rejections go to the dead-letter topic with the reason.

Each test ends by comparing what was produced with what was indexed (plus the dead letters):
span document ids against the ids decoded from the topic with the opentelemetry-proto classes,
logs and traces against the simulator's ground truth, derived records against a clean replay of
the same topics, and every id exactly once.
"""

from __future__ import annotations

import random
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from elasticsearch import Elasticsearch
from kafka import KafkaProducer, TopicPartition
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from hopscope.ingest.simulator import SimulationConfig, parse_iso8601_ns, simulate_to_kafka
from hopscope.processors.runtime import Processor, ProcessorCounts
from tests.conftest import Services
from tests.integration.processor_support import (
    Topics,
    all_of,
    assert_once_each,
    count,
    create_topics,
    drain,
    headers,
    hits,
    ids_by_kind,
    offsets,
    processor_settings,
    read_topic,
    refresh,
    span_doc_ids,
    term,
    wait_for_count,
)

pytestmark = pytest.mark.integration

START = parse_iso8601_ns("2026-04-01T08:00:00Z")
SECOND = 1_000_000_000
# Generous deadlines: a loaded CI machine runs Elasticsearch on two cores.
WAIT_S = 180.0


@pytest.fixture
def topics(unique_name: Callable[[str], str]) -> Topics:
    return Topics(unique_name("spans"), unique_name("logs"), unique_name("dlq"))


@dataclass
class Produced:
    """What the tests sent: the simulator's counts, summed over its runs."""

    spans: int = 0
    logs: int = 0
    traces: int = 0

    def simulate(
        self, bootstrap: str, topics: Topics, *, seed: int, traces: int, offset_s: int = 0
    ) -> None:
        """Simulate ``traces`` payments (another seed: other ids) into the topics."""
        config = SimulationConfig(start_ns=START + offset_s * SECOND, seed=seed, traces=traces)
        run = simulate_to_kafka(
            config, bootstrap=bootstrap, spans_topic=topics.spans, logs_topic=topics.logs
        )
        counts = run.result.ground_truth["counts"]
        self.spans += counts["spans"]
        self.logs += counts["log_records"]
        self.traces += counts["traces"]


def assert_exactly_once(
    es: Elasticsearch,
    bootstrap: str,
    es_url: str,
    topics: Topics,
    prefix: str,
    produced: Produced,
    *,
    rejected_spans: frozenset[str] = frozenset(),
    poison: frozenset[bytes] = frozenset(),
) -> dict[str, list[str]]:
    """Everything produced is indexed once (bar ``rejected_spans``, dead-lettered); the
    derived records are those of a clean replay of the same topics. Returns the ids.

    ``poison``: message values on the spans topic that are no OTLP (skipped when decoding).
    """
    found = ids_by_kind(es, prefix)
    assert_once_each(found)
    messages = [m for m in read_topic(bootstrap, topics.spans) if m.value not in poison]
    expected_spans = span_doc_ids(messages)
    assert len(expected_spans) == len(set(expected_spans)) == produced.spans + len(rejected_spans)
    assert set(found["spans"]) == set(expected_spans) - rejected_spans
    assert len(found["logs"]) == produced.logs
    assert len(found["traces"]) == produced.traces

    replay_prefix = f"{prefix}-replay"
    try:
        run = uuid.uuid4().hex[:8]
        replay_topics = Topics(topics.spans, topics.logs, f"{topics.dlq}-replay-{run}")
        replay = drain(bootstrap, es_url, replay_topics, replay_prefix, f"replay-{run}")
        assert replay.incomplete_traces == 0
        clean = ids_by_kind(es, replay_prefix)
    finally:
        es.indices.delete(
            index=f"{replay_prefix}-*", ignore_unavailable=True, allow_no_indices=True
        )
    for kind in ("hops", "traces", "failovers", "coordination"):
        assert set(found[kind]) == set(clean[kind]), kind
    return found


# -- processors in threads -------------------------------------------------------------


class ProcessorThread:
    """A processor running (not draining) in a thread; :meth:`stop` always joins it."""

    def __init__(self, processor: Processor) -> None:
        self.processor = processor
        self.error: BaseException | None = None
        self.counts: ProcessorCounts | None = None
        self._thread = threading.Thread(target=self._run, name="processor", daemon=True)

    def _run(self) -> None:
        try:
            with self.processor:
                self.counts = self.processor.run()
        except BaseException as error:  # reported by the test, not lost in the thread
            self.error = error

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Request the stop and join (always, even when the test failed meanwhile)."""
        self.processor.stop()
        self._thread.join(timeout=120)
        assert not self._thread.is_alive(), "the processor did not stop"

    def result(self) -> ProcessorCounts:
        """The counts of a run that ended cleanly."""
        assert self.error is None, repr(self.error)
        assert self.counts is not None
        return self.counts


# -- poison messages and rejected documents --------------------------------------------


def otlp_spans(
    trace_id: bytes,
    spans: list[dict[str, Any]],
    service: str = "poison",
    resource: dict[str, str | int] | None = None,
) -> bytes:
    """An ExportTraceServiceRequest of one resource, built with the opentelemetry-proto
    classes. Each span: ``span_id``, ``parent`` (bytes or None), ``name``, ``kind``,
    ``start``, ``end`` (ns) and ``attributes`` (str, int or float values). ``resource``:
    more resource attributes (str or int)."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    extra = resource or {}
    for key, value in (("service.name", service), ("service.instance.id", f"{service}-1"),
                       *extra.items()):  # fmt: skip
        attribute = resource_spans.resource.attributes.add()
        attribute.key = key
        if isinstance(value, int):
            attribute.value.int_value = value
        else:
            attribute.value.string_value = value
    scope = resource_spans.scope_spans.add()
    scope.scope.name = "tests"
    for spec in spans:
        span = scope.spans.add()
        span.trace_id, span.span_id = trace_id, spec["span_id"]
        span.parent_span_id = spec.get("parent") or b""
        span.name, span.kind = spec["name"], spec.get("kind", Span.SPAN_KIND_INTERNAL)
        span.start_time_unix_nano, span.end_time_unix_nano = spec["start"], spec["end"]
        for key, value in spec.get("attributes", {}).items():
            attribute = span.attributes.add()
            attribute.key = key
            if isinstance(value, bool):
                attribute.value.bool_value = value
            elif isinstance(value, int):
                attribute.value.int_value = value
            elif isinstance(value, float):
                attribute.value.double_value = value
            else:
                attribute.value.string_value = str(value)
    return bytes(request.SerializeToString())


def test_poison_messages_and_rejected_documents_go_to_the_dead_letter_topic(
    services: Services,
    topics: Topics,
    index_prefix: str,
    es_client: Any,
    unique_name: Callable[[str], str],
) -> None:
    bootstrap = services.kafka_bootstrap
    produced = Produced()
    produced.simulate(bootstrap, topics, seed=31, traces=20)

    rng = random.Random(31)
    trace_id, root_id, child_id = rng.randbytes(16), rng.randbytes(8), rng.randbytes(8)
    at = START + 5 * SECOND
    # The first resource "x.num" Elasticsearch sees is a long; the second one cannot be parsed
    # as a long: that span document is rejected. (Span attributes would not do: their numbers
    # ignore malformed values, so that a masked card number in a numeric attribute is kept.)
    typed = otlp_spans(
        trace_id,
        [
            {
                "span_id": root_id,
                "name": "ingest",
                "kind": Span.SPAN_KIND_SERVER,
                "start": at,
                "end": at + 9_000_000,
                "attributes": {"x.num": 42},
            }
        ],
        resource={"x.num": 42},
    )
    conflicting = otlp_spans(
        trace_id,
        [
            {
                "span_id": child_id,
                "parent": root_id,
                "name": "parse",
                "start": at + 1_000_000,
                "end": at + 2_000_000,
                "attributes": {"x.num": "forty-two"},
            }
        ],
        resource={"x.num": "forty-two"},
    )
    valid_logs = ExportLogsServiceRequest()
    record = valid_logs.resource_logs.add().scope_logs.add().log_records.add()
    record.time_unix_nano, record.body.string_value = at, "a log record cut short"
    poison = {
        "random bytes": (topics.spans, rng.randbytes(200)),
        "truncated protobuf": (topics.spans, typed[: len(typed) // 2]),
        "JSON that is not OTLP": (topics.spans, b'{"resourceSpans": {"not": "a list"}}'),
        "truncated logs": (topics.logs, valid_logs.SerializeToString()[:-3]),
    }
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    key = trace_id.hex().encode()
    try:
        producer.send(topics.spans, key=key, value=typed).get(timeout=30)
        sent = {
            name: producer.send(topic, key=b"poison", value=value).get(timeout=30)
            for name, (topic, value) in poison.items()
        }
        producer.send(topics.spans, key=key, value=conflicting).get(timeout=30)
    finally:
        producer.close()
    produced.simulate(bootstrap, topics, seed=32, traces=20, offset_s=10)
    # The hand-made trace: its typed span is indexed, the conflicting one dead-lettered.
    produced.spans += 1
    produced.traces += 1

    counts = drain(bootstrap, services.es_url, topics, index_prefix, unique_name("group"))
    assert counts.dead_letters == len(poison) + 1
    assert counts.incomplete_traces == 0

    letters = read_topic(bootstrap, topics.dlq)
    assert len(letters) == len(poison) + 1
    for name, (topic, value) in poison.items():
        (letter,) = [m for m in letters if m.value == value]
        meta = headers(letter)
        assert meta["hopscope.source.topic"] == topic, name
        assert meta["hopscope.source.partition"] == str(sent[name].partition), name
        assert meta["hopscope.source.offset"] == str(sent[name].offset), name
        assert meta["hopscope.error"].startswith("invalid OTLP"), (name, meta)
    (rejected,) = [m for m in letters if m.value not in {v for _, v in poison.values()}]
    rejected_id = f"{trace_id.hex()}-{child_id.hex()}"
    meta = headers(rejected)
    assert re.search(
        r"document_parsing_exception|mapper_parsing_exception", meta["hopscope.error"]
    ), meta
    assert rejected_id in meta["hopscope.error"] and "x.num" in meta["hopscope.error"]
    assert rejected.key == rejected_id.encode()
    assert b'"forty-two"' in rejected.value and child_id.hex().encode() in rejected.value

    # The rest flowed on: the typed span, its trace, and both simulations, each once.
    found = assert_exactly_once(
        es_client,
        bootstrap,
        services.es_url,
        topics,
        index_prefix,
        produced,
        rejected_spans=frozenset({rejected_id}),
        poison=frozenset(v for _, v in poison.values()),
    )
    assert f"{trace_id.hex()}-{root_id.hex()}" in found["spans"]
    assert trace_id.hex() in found["traces"]
    refresh(es_client, index_prefix)
    assert count(es_client, index_prefix, "spans", term("resource.x.num", 42)) == 1
    assert count(es_client, index_prefix, "spans", all_of(term("trace.id", trace_id.hex()))) == 1


def test_json_without_otlp_content_goes_to_the_dead_letter_topic(
    services: Services, topics: Topics, index_prefix: str, unique_name: Callable[[str], str]
) -> None:
    # An application's JSON log line on the spans topic (a misrouted producer). An empty
    # protobuf message is dead-lettered ("empty traces message"); this must not vanish either.
    line = b'{"level": "info", "msg": "payment pay_0001 approved"}'
    producer = KafkaProducer(bootstrap_servers=services.kafka_bootstrap, acks="all")
    try:
        producer.send(topics.spans, value=line).get(timeout=30)
    finally:
        producer.close()
    counts = drain(
        services.kafka_bootstrap, services.es_url, topics, index_prefix, unique_name("group")
    )
    assert counts.messages == 1
    letters = read_topic(services.kafka_bootstrap, topics.dlq, idle_ms=1500)
    assert [m.value for m in letters] == [line]
    assert counts.dead_letters == 1


class SplitTraceRegressionError(AssertionError):
    """The one failure the split-trace test expects (see its xfail reason)."""


def test_a_restart_between_the_parts_of_a_split_trace_keeps_its_summary(
    services: Services,
    topics: Topics,
    index_prefix: str,
    es_client: Any,
    unique_name: Callable[[str], str],
) -> None:
    """A trace T whose spans came in two messages, with another trace U's message between
    them (the SDK exporter splits a trace across export batches). T is derived and written, U
    stays open, the processor stops: the committed offset is U's first message, between T's
    parts. The next processor reads from there: it must not replace T's summary with one of
    T's second part alone."""
    bootstrap, group = services.kafka_bootstrap, unique_name("group")
    create_topics(bootstrap, topics.inputs)
    rng = random.Random(51)
    t_trace, t_root, t_child = rng.randbytes(16), rng.randbytes(8), rng.randbytes(8)
    u_trace, u_root = rng.randbytes(16), rng.randbytes(8)
    at = START + 30 * SECOND

    def span(span_id: bytes, parent: bytes | None, start_ms: int, end_ms: int) -> dict[str, Any]:
        kind = Span.SPAN_KIND_INTERNAL if parent else Span.SPAN_KIND_SERVER
        return {
            "span_id": span_id,
            "parent": parent,
            "name": "work",
            "kind": kind,
            "start": at + start_ms * 1_000_000,
            "end": at + end_ms * 1_000_000,
        }

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")

    def send(trace: bytes, spans: list[dict[str, Any]]) -> int:
        value = otlp_spans(trace, spans)
        return int(
            producer.send(topics.spans, key=trace.hex().encode(), value=value, partition=0)
            .get(timeout=30)
            .offset
        )

    try:
        t_first = send(t_trace, [span(t_root, None, 0, 100)])  # T, first part: its root
        u_first = send(u_trace, [span(u_root, None, 0, 10_000)])  # U opens
        send(t_trace, [span(t_child, t_root, 10, 90)])  # T, second part
        settings = processor_settings(
            bootstrap, services.es_url, topics, index_prefix, group, trace_idle_s=1.5
        )
        worker = ProcessorThread(Processor(settings))
        worker.start()
        try:
            # U keeps receiving spans, so it stays open while T goes idle and is written.
            deadline = time.monotonic() + WAIT_S
            while not wait_for_count(es_client, index_prefix, "traces", 1, 0.01):
                assert time.monotonic() < deadline, "trace T was never written"
                send(u_trace, [span(rng.randbytes(8), u_root, 1, 2)])
                time.sleep(0.3)
            send(u_trace, [span(rng.randbytes(8), u_root, 1, 2)])
        finally:
            worker.stop()
    finally:
        producer.close()
    worker.result()

    summary_id = {"ids": {"values": [t_trace.hex()]}}
    (before,) = hits(es_client, index_prefix, "traces", summary_id)
    assert before["_source"]["hopscope.trace.span_count"] == 2
    assert before["_source"]["hopscope.trace.root_span_id"] == t_root.hex()
    committed, _ends = offsets(bootstrap, group, [topics.spans])
    # U is still open at u_first, between T's two parts: the commit must not land there, or
    # the next owner would re-read only T's second part.
    assert committed[TopicPartition(topics.spans, 0)] <= t_first < u_first

    drain(bootstrap, services.es_url, topics, index_prefix, group)  # the next owner
    refresh(es_client, index_prefix)
    (after,) = hits(es_client, index_prefix, "traces", summary_id)
    if after["_source"] != before["_source"]:
        raise SplitTraceRegressionError(
            f"T's summary was replaced: span_count {before['_source']['hopscope.trace.span_count']}"
            f" -> {after['_source']['hopscope.trace.span_count']}, root "
            f"{before['_source']['hopscope.trace.root_span_id']} -> "
            f"{after['_source']['hopscope.trace.root_span_id']}"
        )


class RebalanceLossError(AssertionError):
    """The one failure the rebalance test expects (see its xfail reason)."""


def test_a_rebalance_loses_no_open_trace(
    services: Services,
    topics: Topics,
    index_prefix: str,
    es_client: Any,
    unique_name: Callable[[str], str],
) -> None:
    """Scale-out: a second processor joins while the first holds open traces. With two
    partitions per topic each member keeps one, so the first processor keeps one partition it
    had already read; every trace must still get its summary."""
    bootstrap, group = services.kafka_bootstrap, unique_name("group")
    create_topics(bootstrap, topics.inputs, partitions=2)
    rng = random.Random(61)
    traces = []
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for partition in (0, 1):
            trace = rng.randbytes(16)
            root = {
                "span_id": rng.randbytes(8),
                "name": "work",
                "kind": Span.SPAN_KIND_SERVER,
                "start": START,
                "end": START + 1_000_000,
            }
            producer.send(
                topics.spans,
                key=trace.hex().encode(),
                value=otlp_spans(trace, [root]),
                partition=partition,
            ).get(timeout=30)
            traces.append(trace.hex())
    finally:
        producer.close()

    def member(trace_idle_s: float) -> ProcessorThread:
        settings = processor_settings(
            bootstrap, services.es_url, topics, index_prefix, group, trace_idle_s=trace_idle_s
        )
        return ProcessorThread(Processor(settings))

    # The first member reads both traces and keeps them open (long idle) until the second joins.
    first, second = member(8.0), member(0.5)
    first.start()
    try:
        deadline = time.monotonic() + WAIT_S
        while first.processor.counts.messages < len(traces):
            assert time.monotonic() < deadline, "the first processor read nothing"
            time.sleep(0.1)
        second.start()
        try:
            # Generous: well past the first member's trace idle.
            seen = wait_for_count(es_client, index_prefix, "traces", len(traces), 20.0)
        finally:
            second.stop()
    finally:
        first.stop()
    first.result(), second.result()
    if seen != len(traces):
        summaries = {h["_id"] for h in hits(es_client, index_prefix, "traces")}
        raise RebalanceLossError(
            f"{len(traces) - seen} of {len(traces)} traces lost their summary in the rebalance: "
            f"{sorted(set(traces) - summaries)}"
        )
