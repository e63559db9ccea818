"""Processor throughput on one generated input: null sink, end to end, and the bulk ceiling.

One simulated workload (``--traces`` payments, baseline scenario) is encoded once as the OTLP
messages the SDK writes. Then, in this process:

1. null sink: decode, assemble, derive and build documents, no Elasticsearch (spans/s, one core);
2. end to end: the same messages produced to a fresh topic, then ``Processor.run(drain=True)``
   into Elasticsearch, committing offsets (spans/s);
3. bulk ceiling: the documents of step 1 bulk-indexed straight into Elasticsearch with the same
   bulk size and no processing (spans/s);

and prints the ratio end to end / ceiling.

    python benchmarks/processor_throughput.py [--traces 2000]
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections import defaultdict

from kafka import KafkaProducer
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rich.console import Console
from rich.table import Table

from hopscope.core.es_security import es_client
from hopscope.ingest.otlp_wire import encode_trace_request
from hopscope.ingest.simulator import SimulationConfig, parse_iso8601_ns, simulate
from hopscope.processors.assembly import TraceAssembler
from hopscope.processors.decode import decode_spans
from hopscope.processors.derive import derive_all
from hopscope.processors.documents import Document, derived_documents, span_document
from hopscope.processors.runtime import Processor
from hopscope.processors.settings import ProcessorSettings
from hopscope.processors.sink import ElasticsearchSink
from hopscope.stack import resolve_settings


def generate(traces: int) -> tuple[list[tuple[bytes, bytes]], int]:
    """(key, OTLP bytes) per trace, as the SDK's exporter writes them; and the span count."""
    memory = InMemorySpanExporter()
    config = SimulationConfig(start_ns=parse_iso8601_ns("2026-05-04T10:00:00Z"), traces=traces)
    result = simulate(config, span_processors=[SimpleSpanProcessor(memory)])
    by_trace = defaultdict(list)
    for span in memory.get_finished_spans():
        by_trace[format(span.context.trace_id, "032x")].append(span)
    return [(k.encode(), encode_trace_request(v)) for k, v in by_trace.items()], result.spans


def null_sink(messages: list[tuple[bytes, bytes]], prefix: str) -> tuple[float, list[Document]]:
    started = time.perf_counter()
    assembler = TraceAssembler(trace_idle_s=3600)
    documents: list[Document] = []
    for offset, (_key, value) in enumerate(messages):
        spans = decode_spans(value)
        documents += [span_document(s, prefix) for s in spans]
        assembler.add_spans(spans, ("bench", 0, offset))
    for trace in assembler.flush_all(complete=True):
        documents += derived_documents(derive_all(trace.spans.values()), prefix)
    return time.perf_counter() - started, documents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=2000)
    args = parser.parse_args()
    console = Console()
    settings = resolve_settings()
    assert settings.kafka_bootstrap and settings.es_url
    run_id = uuid.uuid4().hex[:8]

    with console.status("generating the workload"):
        messages, spans = generate(args.traces)

    # 1. null sink
    with console.status("null sink"):
        null_s, documents = null_sink(messages, f"bench-null-{run_id}")

    # 2. end to end through Kafka and the processor
    topic = f"bench-spans-{run_id}"
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                             linger_ms=20, batch_size=512 * 1024)  # fmt: skip
    for key, value in messages:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()
    processor_settings = ProcessorSettings(
        kafka_bootstrap=settings.kafka_bootstrap, es_url=settings.es_url,
        group=f"bench-{run_id}", spans_topic=topic, logs_topic=f"bench-logs-{run_id}",
        dlq_topic=f"bench-dlq-{run_id}", index_prefix=f"bench-e2e-{run_id}", trace_idle_s=0.5,
        max_poll_records=2000,
    )  # fmt: skip
    with console.status("end to end"), Processor(processor_settings) as processor:
        started = time.perf_counter()
        counts = processor.run(drain=True)
        e2e_s = time.perf_counter() - started

    # 3. the raw bulk ceiling for the same documents, same bulk size
    es = es_client(settings.es_url, request_timeout=120)
    sink = ElasticsearchSink(es, f"bench-null-{run_id}")
    sink.install_templates()
    batch = 2000
    with console.status("bulk ceiling"):
        started = time.perf_counter()
        for i in range(0, len(documents), batch):
            sink.write(documents[i : i + batch])
        ceiling_s = time.perf_counter() - started
    es.indices.delete(index=f"bench-*-{run_id}-*", ignore_unavailable=True)
    es.close()

    table = Table("measure", "value", title=f"processor throughput ({spans:,} spans, "
                  f"{len(messages):,} messages, {len(documents):,} documents)")  # fmt: skip
    table.add_row("null sink (decode, assemble, derive, documents)",
                  f"{spans / null_s:,.0f} spans/s ({null_s:.1f} s)")  # fmt: skip
    table.add_row("end to end Kafka → processor → Elasticsearch",
                  f"{spans / e2e_s:,.0f} spans/s ({e2e_s:.1f} s; indexed "
                  f"{sum(counts.indexed.values()):,} documents)")  # fmt: skip
    table.add_row("raw _bulk ceiling, same documents",
                  f"{spans / ceiling_s:,.0f} spans/s ({ceiling_s:.1f} s)")  # fmt: skip
    table.add_row("ratio end to end / ceiling", f"{ceiling_s / e2e_s:.2f}")
    console.print(table)


if __name__ == "__main__":
    main()
