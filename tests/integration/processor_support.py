"""Helpers for the processor's integration tests: run it, read what it wrote, read Kafka.

Everything here talks to the real broker and node; nothing is mocked. Elasticsearch reads
refresh first, so a test sees every acknowledged document.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from elasticsearch import Elasticsearch, helpers
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from hopscope.processors.runtime import Processor, ProcessorCounts
from hopscope.processors.settings import ProcessorSettings
from hopscope.processors.templates import KINDS


@dataclass(frozen=True)
class Topics:
    """The input topics and the dead-letter topic of one test."""

    spans: str
    logs: str
    dlq: str

    @property
    def inputs(self) -> tuple[str, str]:
        return self.spans, self.logs


def processor_settings(
    bootstrap: str, es_url: str, topics: Topics, prefix: str, group: str, **overrides: Any
) -> ProcessorSettings:
    """Settings for a processor of these topics; a short trace idle keeps the tests quick."""
    options: dict[str, Any] = {"trace_idle_s": 0.5, **overrides}
    return ProcessorSettings(
        kafka_bootstrap=bootstrap,
        es_url=es_url,
        group=group,
        spans_topic=topics.spans,
        logs_topic=topics.logs,
        dlq_topic=topics.dlq,
        index_prefix=prefix,
        **options,
    )


def drain(bootstrap: str, es_url: str, topics: Topics, prefix: str, group: str) -> ProcessorCounts:
    """Process the topics until caught up, in this process; return the processor's counts."""
    settings = processor_settings(bootstrap, es_url, topics, prefix, group)
    with Processor(settings) as processor:
        return processor.run(drain=True)


# -- Elasticsearch -------------------------------------------------------------------------


def pattern(prefix: str, kind: str) -> str:
    return f"{prefix}-{kind}-*"


def refresh(es: Elasticsearch, prefix: str) -> None:
    es.indices.refresh(index=f"{prefix}-*", ignore_unavailable=True, allow_no_indices=True)


def count(es: Elasticsearch, prefix: str, kind: str, query: Mapping[str, Any] | None = None) -> int:
    """Documents of ``kind`` matching ``query`` (0 when the kind has no index yet)."""
    answer = es.count(
        index=pattern(prefix, kind),
        query=dict(query or {"match_all": {}}),
        ignore_unavailable=True,
        allow_no_indices=True,
    )
    return int(answer["count"])


def hits(
    es: Elasticsearch,
    prefix: str,
    kind: str,
    query: Mapping[str, Any] | None = None,
    fields: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Every hit of ``kind`` matching ``query`` (``_id``, ``_index`` and ``_source``)."""
    body = {"query": dict(query or {"match_all": {}})}
    return list(
        helpers.scan(
            es,
            index=pattern(prefix, kind),
            query=body,
            _source=fields or True,
            ignore_unavailable=True,
            allow_no_indices=True,
            size=2000,
        )
    )


def aggregate(
    es: Elasticsearch,
    prefix: str,
    kind: str,
    aggs: Mapping[str, Any],
    query: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The aggregations of one size-0 search."""
    answer = es.search(
        index=pattern(prefix, kind),
        size=0,
        aggs=dict(aggs),
        query=dict(query or {"match_all": {}}),
        ignore_unavailable=True,
        allow_no_indices=True,
    )
    return dict(answer.get("aggregations", {}))


def ids_by_kind(es: Elasticsearch, prefix: str) -> dict[str, list[str]]:
    """Every document id under ``prefix``, per record kind (a list: duplicates stay visible)."""
    refresh(es, prefix)
    found: dict[str, list[str]] = {}
    for kind in KINDS:
        found[kind] = [h["_id"] for h in hits(es, prefix, kind, fields=["trace.id"])]
    return found


def assert_once_each(found: Mapping[str, list[str]]) -> None:
    """No record kind holds two documents with the same id (across its daily indices)."""
    for kind, ids in found.items():
        twice = sorted(i for i, n in Counter(ids).items() if n > 1)
        assert not twice, f"{kind}: {len(twice)} ids more than once, e.g. {twice[:3]}"


def term(field: str, value: Any) -> dict[str, Any]:
    return {"term": {field: value}}


def all_of(*clauses: Mapping[str, Any]) -> dict[str, Any]:
    return {"bool": {"filter": list(clauses)}}


def wait_for_count(
    es: Elasticsearch, prefix: str, kind: str, at_least: int, timeout_s: float
) -> int:
    """Poll until ``kind`` holds ``at_least`` documents; return the last count seen."""
    deadline = time.monotonic() + timeout_s
    seen = 0
    while time.monotonic() < deadline:
        try:
            refresh(es, prefix)
            seen = count(es, prefix, kind)
        except Exception:  # a node coming back answers 503 for a while
            seen = 0
        if seen >= at_least:
            return seen
        time.sleep(0.5)
    return seen


# -- Kafka ---------------------------------------------------------------------------------


def create_topics(bootstrap: str, names: Iterable[str], partitions: int = 1) -> None:
    """Create topics up front: a consumer that subscribes before they exist sees them appear
    later, which is a rebalance of its own."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, partitions, 1) for name in names])
    finally:
        admin.close()


def read_topic(bootstrap: str, topic: str, *, idle_ms: int = 3000) -> list[Any]:
    """Every message of ``topic`` from the beginning (stops after ``idle_ms`` without one)."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=idle_ms,
    )
    try:
        return sorted(consumer, key=lambda m: (m.partition, m.offset))
    finally:
        consumer.close()


def span_doc_ids(messages: Iterable[Any]) -> list[str]:
    """The span document ids (``<trace id>-<span id>``) the OTLP messages must produce,
    decoded with the opentelemetry-proto classes (not the processor's decoder)."""
    ids = []
    for message in messages:
        request = ExportTraceServiceRequest.FromString(message.value)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                ids += [f"{s.trace_id.hex()}-{s.span_id.hex()}" for s in scope_spans.spans]
    return ids


def offsets(
    bootstrap: str, group: str, topics: Iterable[str]
) -> tuple[dict[Any, Any], dict[Any, Any]]:
    """(committed offsets of ``group``, end offsets) of every partition of ``topics``."""
    checker = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        partitions = [
            TopicPartition(t, p) for t in topics for p in checker.partitions_for_topic(t) or ()
        ]
        ends = checker.end_offsets(partitions)
        return {tp: checker.committed(tp) for tp in partitions}, ends
    finally:
        checker.close()


def headers(message: Any) -> dict[str, str]:
    return {key: value.decode() for key, value in message.headers or ()}
