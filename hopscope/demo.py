"""The demo: real OpenTelemetry spans of a small payment flow, through Kafka, into Elasticsearch.

Steps (matched by ``Step N`` comments below):

1. Resolve the endpoints (environment, else the running local stack).
2. Record payment traces with the OpenTelemetry SDK: gateway → risk → ledger, one
   TracerProvider per service as in separate processes.
3. Encode each trace as an OTLP ``ExportTraceServiceRequest`` (the official encoder, the bytes
   the Collector's Kafka exporter writes) and produce it to ``otlp_spans``, keyed by trace id,
   with an idempotent ``acks=all`` producer.
4. Consume them back in a consumer group, decode, and bulk-index one document per span into
   the daily spans index with deterministic ids.
5. Commit the offsets only after Elasticsearch acknowledged the writes, then search the traces.

Later components replace steps 2-4 with the SDK's Kafka exporter and the stream processors;
the flow and the contracts (topic, key, index name, ids) stay.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from hopscope.errors import HopscopeError
from hopscope.settings import Settings

SPANS_TOPIC = "otlp_spans"
DEMO_GROUP = "hopscope-demo"
DEMO_PAYMENTS = 20
SERVICES = ("payment-gateway", "risk", "ledger")

_KIND_NAMES = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer",
               5: "consumer"}  # fmt: skip


class DemoError(HopscopeError):
    """The demo flow did not complete (a service refused or data did not come back)."""


def record_payment_traces(count: int) -> dict[str, list[Any]]:
    """Record ``count`` payment traces with the OpenTelemetry SDK; spans grouped by trace id."""
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tracers = {}
    for index, service in enumerate(SERVICES):
        resource = Resource.create(
            {"service.name": service, "service.instance.id": f"{service}-{index + 1}",
             "deployment.environment.name": "demo"}
        )  # fmt: skip
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracers[service] = provider.get_tracer("hopscope.demo")

    client, server = trace.SpanKind.CLIENT, trace.SpanKind.SERVER
    for n in range(count):
        payment: dict[str, str | float] = {
            "payment.id": f"pay-{uuid.uuid4().hex[:12]}",
            "payment.currency": "EUR",
            "payment.amount": 10.0 + n,
        }
        gateway = tracers["payment-gateway"]
        with gateway.start_as_current_span("POST /payments", kind=server, attributes=payment):
            for target, method in (("risk", "Score"), ("ledger", "Post")):
                with gateway.start_as_current_span(
                    f"{target}.{method}", kind=client,
                    attributes={"peer.service": target, "rpc.system": "grpc",
                                "rpc.service": target, "rpc.method": method},
                ):  # fmt: skip
                    callee = tracers[target]
                    with callee.start_as_current_span(f"{target}.{method}", kind=server):
                        time.sleep(0.001)
    by_trace: dict[str, list[Any]] = {}
    for span in exporter.get_finished_spans():
        by_trace.setdefault(format(span.context.trace_id, "032x"), []).append(span)
    return by_trace


def encode_trace(spans: list[Any]) -> bytes:
    """One trace as OTLP protobuf ``ExportTraceServiceRequest`` bytes."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    return bytes(encode_spans(spans).SerializeToString())


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
                    "service.name": resource.get("service.name"),
                    "service.node.name": resource.get("service.instance.id"),
                    "span.name": span.name,
                    "span.kind": _KIND_NAMES.get(span.kind, "unspecified"),
                    "event.duration": span.end_time_unix_nano - span.start_time_unix_nano,
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
    }
}


def run_demo(
    out: Console,
    err: Console,
    *,
    settings: Settings | None = None,
    payments: int = DEMO_PAYMENTS,
    topic: str = SPANS_TOPIC,
    index_prefix: str = "hopscope",
    group: str = DEMO_GROUP,
) -> dict[str, int]:
    """Run the demo flow end to end and print what flowed; return the counts.

    ``topic``, ``index_prefix`` and ``group`` default to the production names; tests pass
    their own so that they never see each other's data.
    """
    from elasticsearch import Elasticsearch, helpers
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    # Step 1: endpoints.
    settings = (settings or Settings.from_env()).resolved()
    assert settings.kafka_bootstrap and settings.es_url
    err.print(f"Kafka {settings.kafka_bootstrap} · Elasticsearch {settings.es_url}")

    # Step 2: record traces.
    traces = record_payment_traces(payments)
    span_total = sum(len(spans) for spans in traces.values())

    # Step 3: produce OTLP to Kafka.
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True,
        compression_type="gzip",
    )  # fmt: skip
    futures = [
        producer.send(topic, key=trace_id.encode(), value=encode_trace(spans))
        for trace_id, spans in traces.items()
    ]
    producer.flush(timeout=30)
    produced_bytes = sum(f.get(timeout=30).serialized_value_size for f in futures)
    producer.close()

    # Step 4: consume, decode, index.
    es = Elasticsearch(settings.es_url, request_timeout=30)
    index = f"{index_prefix}-spans-{datetime.now(UTC):%Y.%m.%d}"
    if not es.indices.exists(index=index):
        es.indices.create(index=index, mappings=SPAN_MAPPINGS)
    consumer = KafkaConsumer(
        topic, bootstrap_servers=settings.kafka_bootstrap, group_id=group,
        enable_auto_commit=False, auto_offset_reset="earliest",
    )  # fmt: skip
    wanted, seen = set(traces), set[str]()
    documents: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    try:
        while wanted - seen and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=1000).values():
                for record in records:
                    seen.add(record.key.decode())
                    documents.extend(span_documents(record.value))
        if wanted - seen:
            raise DemoError(f"only {len(seen & wanted)} of {len(wanted)} traces came back "
                            f"from {topic} within 60 s")  # fmt: skip
        actions = ({"_index": index, **doc} for doc in documents)
        indexed, errors = helpers.bulk(es, actions, raise_on_error=False, refresh="wait_for")
        if isinstance(errors, list) and errors:
            raise DemoError(f"Elasticsearch rejected {len(errors)} documents: {errors[:1]}")
        # Step 5: commit only now that Elasticsearch has the documents.
        consumer.commit()
    finally:
        consumer.close()

    hits = es.count(index=index, query={"terms": {"trace.id": sorted(wanted)}})["count"]
    per_service = es.search(
        index=index, size=0, query={"terms": {"trace.id": sorted(wanted)}},
        aggs={"services": {"terms": {"field": "service.name"}}},
    )["aggregations"]["services"]["buckets"]  # fmt: skip
    es.close()

    table = Table("step", "what flowed", title="hopscope demo")
    table.add_row("SDK", f"{payments} payments → {len(traces)} traces, {span_total} spans")
    table.add_row("Kafka", f"{len(futures)} OTLP messages, {produced_bytes} bytes → {topic}")
    table.add_row("consumer", f"group {group}: {len(seen)} traces decoded, offsets committed")
    table.add_row("Elasticsearch", f"{indexed} span documents → {index}")
    table.add_row("search", f"{hits} spans found for the demo traces; " + ", ".join(
        f"{b['key']} {b['doc_count']}" for b in per_service))  # fmt: skip
    out.print(table)
    out.print(f"Kafka bootstrap: {settings.kafka_bootstrap}\nElasticsearch:   {settings.es_url}")
    if hits != span_total:
        raise DemoError(f"indexed {span_total} spans but the search found {hits}")
    return {"traces": len(traces), "spans": span_total, "indexed": indexed, "found": hits}
