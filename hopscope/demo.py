"""The demo: simulated payment traffic through Kafka into Elasticsearch, searched back.

Steps (matched by ``Step N`` comments below):

1. Resolve the endpoints (environment, else the running local stack).
2. Simulate payment traffic with the payment-network simulator. It drives the real SDK, so
   the spans and logs reach ``otlp_spans``/``otlp_logs`` as OTLP protobuf, keyed by trace id,
   card numbers masked, exactly as an instrumented service's would.
3. Read this run's messages back in a consumer group, decode them, and bulk-index one document
   per span into the daily spans index with deterministic ids.
4. Commit the offsets only after Elasticsearch acknowledged the writes, then search.

The stream processors (hops, failovers, coordination, critical path) replace step 3 as they
arrive; the flow and the contracts (topics, keys, index names, ids) stay.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from hopscope.errors import HopscopeError
from hopscope.ingest import conventions as c
from hopscope.settings import Settings

DEMO_GROUP = "hopscope-demo"
DEMO_TRACES = 300

_KIND_NAMES = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer",
               5: "consumer"}  # fmt: skip


class DemoError(HopscopeError):
    """The demo flow did not complete (a service refused or data did not come back)."""


def span_documents(payload: bytes) -> Iterator[dict[str, Any]]:
    """Flatten an ``ExportTraceServiceRequest`` into span documents (DESIGN.md §3 names)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest.FromString(payload)
    for resource_spans in request.resource_spans:
        resource = {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                trace_id, span_id = span.trace_id.hex(), span.span_id.hex()
                start = datetime.fromtimestamp(span.start_time_unix_nano / 1e9, tz=UTC)
                yield {
                    "_id": f"{trace_id}-{span_id}",
                    "@timestamp": start.isoformat(timespec="microseconds"),
                    "trace.id": trace_id,
                    "span.id": span_id,
                    "parent.id": span.parent_span_id.hex() or None,
                    "service.name": resource.get(c.SERVICE_NAME),
                    "service.node.name": resource.get(c.SERVICE_INSTANCE_ID),
                    "span.name": span.name,
                    "span.kind": _KIND_NAMES.get(span.kind, "unspecified"),
                    "event.duration": span.end_time_unix_nano - span.start_time_unix_nano,
                    "event.outcome": "failure" if span.status.code == 2 else "success",
                }


SPAN_MAPPINGS = {
    "properties": {
        "@timestamp": {"type": "date_nanos"},
        "trace.id": {"type": "keyword"},
        "span.id": {"type": "keyword"},
        "parent.id": {"type": "keyword"},
        "service.name": {"type": "keyword"},
        "service.node.name": {"type": "keyword"},
        "span.name": {"type": "keyword"},
        "span.kind": {"type": "keyword"},
        "event.duration": {"type": "long"},
        "event.outcome": {"type": "keyword"},
    }
}


def run_demo(
    out: Console,
    err: Console,
    *,
    settings: Settings | None = None,
    traces: int = DEMO_TRACES,
    scenario: str = "baseline",
    spans_topic: str = c.TOPIC_SPANS,
    logs_topic: str = c.TOPIC_LOGS,
    index_prefix: str = "hopscope",
    group: str = DEMO_GROUP,
) -> dict[str, int]:
    """Run the demo end to end, print what flowed, return the counts.

    Topics, index prefix and group default to the production names; tests pass their own so
    that they never see each other's data.
    """
    from elasticsearch import Elasticsearch, helpers
    from kafka import KafkaConsumer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError
    from rich.progress import Progress

    from hopscope.ingest.simulator import Scenario, SimulationConfig, simulate_to_kafka

    # Step 1: endpoints.
    settings = (settings or Settings.from_env()).resolved()
    assert settings.kafka_bootstrap and settings.es_url
    bootstrap = settings.kafka_bootstrap
    err.print(f"Kafka {bootstrap} · Elasticsearch {settings.es_url}", highlight=False)

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(t, num_partitions=3, replication_factor=1)
                             for t in (spans_topic, logs_topic)])  # fmt: skip
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                             enable_auto_commit=False)  # fmt: skip
    try:
        numbers = sorted(consumer.partitions_for_topic(spans_topic) or {0})
        partitions = [TopicPartition(spans_topic, p) for p in numbers]
        before = consumer.end_offsets(partitions)

        # Step 2: simulate into Kafka.
        config = SimulationConfig(
            start_ns=time.time_ns() // 10**9 * 10**9, scenario=Scenario(scenario), traces=traces
        )
        with Progress(console=err, transient=True) as progress:
            task = progress.add_task(f"simulating {scenario} payments", total=traces)
            run = simulate_to_kafka(
                config, bootstrap=bootstrap, spans_topic=spans_topic, logs_topic=logs_topic,
                progress=lambda done: progress.update(task, completed=done),
            )  # fmt: skip
        after = consumer.end_offsets(partitions)

        # Step 3: read exactly this run's messages, decode, index.
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, before[tp])
        documents: list[dict[str, Any]] = []
        trace_ids: set[str] = set()
        deadline = time.monotonic() + 120
        while any(consumer.position(tp) < after[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise DemoError(f"could not read this run's messages back from {spans_topic}")
            for records in consumer.poll(timeout_ms=1000).values():
                for record in records:
                    if record.offset < after[TopicPartition(record.topic, record.partition)]:
                        trace_ids.add(record.key.decode())
                        documents.extend(span_documents(record.value))
        es = Elasticsearch(settings.es_url, request_timeout=60)
        index = f"{index_prefix}-spans-{datetime.now(UTC):%Y.%m.%d}"
        if not es.indices.exists(index=index):
            es.indices.create(index=index, mappings=SPAN_MAPPINGS)
        actions = ({"_index": index, **doc} for doc in documents)
        indexed, errors = helpers.bulk(es, actions, raise_on_error=False, refresh="wait_for")
        if isinstance(errors, list) and errors:
            raise DemoError(f"Elasticsearch rejected {len(errors)} documents: {errors[:1]}")
        # Step 4: commit only now that Elasticsearch has the documents.
        consumer.commit({tp: _offset(after[tp]) for tp in partitions})
    finally:
        consumer.close()

    query = {"terms": {"trace.id": sorted(trace_ids)}}
    found = es.count(index=index, query=query)["count"]
    answer = es.search(
        index=index, size=0, query=query,
        aggs={
            "services": {"terms": {"field": "service.name", "size": 20},
                         "aggs": {"p99": {"percentiles": {"field": "event.duration",
                                                          "percents": [99]}}}},
            "errors": {"filter": {"term": {"event.outcome": "failure"}}},
        },
    )["aggregations"]  # fmt: skip
    es.close()

    result, stats = run.result, run.stats
    table = Table("step", "what flowed", title="hopscope demo")
    table.add_row("simulator", f"{scenario}: {result.traces} payments → {result.spans} spans, "
                  f"{result.log_records} log records (real SDK, virtual time)")  # fmt: skip
    spans_out, logs_out = stats["span_messages"], stats["log_messages"]
    masked = spans_out["redacted_strings"] + logs_out["redacted_strings"]
    table.add_row("Kafka", f"{spans_out['messages']} span + {logs_out['messages']} log OTLP "
                  f"messages, {spans_out['bytes'] + logs_out['bytes']:,} bytes; {masked} "
                  "card numbers masked at the source")  # fmt: skip
    table.add_row("consumer", f"group {group}: {len(trace_ids)} traces decoded, offsets "
                  "committed after Elasticsearch acknowledged")  # fmt: skip
    table.add_row("Elasticsearch", f"{indexed} span documents → {index}")
    per_service = ", ".join(
        f"{b['key']} {b['doc_count']} (p99 {b['p99']['values']['99.0'] / 1e6:.1f} ms)"
        for b in answer["services"]["buckets"]
    )
    table.add_row("search", f"{found} spans found for this run, "
                  f"{answer['errors']['doc_count']} failed; {per_service}")  # fmt: skip
    out.print(table)
    out.print(f"Kafka bootstrap: {bootstrap}\nElasticsearch:   {settings.es_url}",
              highlight=False)  # fmt: skip
    if found != result.spans:
        raise DemoError(f"the simulator emitted {result.spans} spans but the search found {found}")
    return {"traces": result.traces, "spans": result.spans, "indexed": indexed, "found": found}


def _offset(value: int) -> Any:
    from kafka.structs import OffsetAndMetadata

    return OffsetAndMetadata(value, "", -1)
