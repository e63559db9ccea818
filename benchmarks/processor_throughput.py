"""Processor throughput on one generated input: null sink, end to end, and the bulk ceiling.

One simulated workload (``--traces`` payments, baseline scenario) is encoded once as the OTLP
messages the SDK writes. Then, in this process:

1. null sink: decode, assemble, derive and build documents, no Elasticsearch (spans/s, one core,
   and CPU µs per span), then the bulk body of those documents (CPU µs per span), per core,
   and the two added (what the processor's CPU pays per span before a bulk request: the native
   core hands its bodies over serialized, so the null sink alone would hide what it saves);
2. end to end (run before step 1): the same messages produced to a fresh topic, then
   ``Processor.run(drain=True)`` into Elasticsearch, committing offsets (spans/s, and this
   process's CPU per span), once per variant: ``before`` (what the processor did before the
   throughput work, see :func:`variant`) and ``after`` (the code as installed), so their ratio
   comes from one run on one machine;
3. bulk ceiling: the documents of step 1 bulk-indexed straight into Elasticsearch with the same
   bulk size and no processing (spans/s);

and prints the ratios end to end / ceiling. On a shared machine compare the CPU figures:
wall-clock rates move with the neighbours' load.

``--core`` picks the per-span core of the ``after`` variant and the null sink
(:mod:`hopscope.processors.core`): ``python``, ``native`` or ``both`` (each measured in turn, and
their CPU-per-span ratio printed); ``before`` always runs the Python core.

``--null-only`` runs step 1 alone, without Kafka or Elasticsearch.

    python benchmarks/processor_throughput.py [--traces 2000] [--variants before,after]
        [--core python|native|both] [--null-only]
"""

from __future__ import annotations

import argparse
import gc
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

from kafka import KafkaProducer
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rich.console import Console
from rich.table import Table

from hopscope.core.es_security import es_client
from hopscope.ingest.otlp_wire import encode_trace_request
from hopscope.ingest.simulator import SimulationConfig, parse_iso8601_ns, simulate
from hopscope.processors import core, runtime
from hopscope.processors import sink as sink_module
from hopscope.processors.assembly import TraceAssembler
from hopscope.processors.decode import decode_spans
from hopscope.processors.derive import derive_all
from hopscope.processors.documents import Document, derived_documents, span_document
from hopscope.processors.runtime import Processor, tune_allocator
from hopscope.processors.settings import ProcessorSettings
from hopscope.processors.sink import ElasticsearchSink, bulk_body
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


# Documents per bulk request where the benchmark writes by itself (the processor's own bulks
# follow max_batch_bytes).
BULK = 2000


@contextmanager
def variant(name: str) -> Iterator[int]:
    """``before``: what the processor did before the throughput work (the standard library's
    JSON for bulk bodies, whole bulk answers, kafka-python's pure-Python CRC-32C, 1 MiB
    fetches, the default collector thresholds and allocator, synchronous bulk writes);
    ``after``: today's code as installed, run as `hopscope process` runs it (the allocator
    tuned, for the rest of the process). Yields the bulk writes in flight."""
    if name == "after":
        tune_allocator()
        yield ProcessorSettings.max_bulks_in_flight
        return
    import kafka.record.default_records as records
    from kafka.record._crc32c import crc as crc32c_py

    saved = (sink_module.FAST_JSON, sink_module.BULK_ANSWER_FIELDS, records.calc_crc32c,
             runtime.GC_THRESHOLDS)  # fmt: skip
    sink_module.FAST_JSON = False
    sink_module.BULK_ANSWER_FIELDS = None  # type: ignore[assignment]
    records.calc_crc32c = lambda data: crc32c_py(data)
    runtime.GC_THRESHOLDS = gc.get_threshold()
    try:
        yield 0
    finally:
        (sink_module.FAST_JSON, sink_module.BULK_ANSWER_FIELDS, records.calc_crc32c,
         runtime.GC_THRESHOLDS) = saved  # fmt: skip


def end_to_end(messages: list[tuple[bytes, bytes]], kafka: str, es: str, run_id: str,
               in_flight: int) -> tuple[float, float, int]:  # fmt: skip
    """Produce ``messages`` to a fresh topic, drain it into Elasticsearch: (wall s, CPU s of
    this process while draining, documents indexed)."""
    topic = f"bench-spans-{run_id}"
    producer = KafkaProducer(bootstrap_servers=kafka, acks="all",
                             linger_ms=20, batch_size=512 * 1024)  # fmt: skip
    for key, value in messages:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()
    processor_settings = ProcessorSettings(
        kafka_bootstrap=kafka, es_url=es,
        group=f"bench-{run_id}", spans_topic=topic, logs_topic=f"bench-logs-{run_id}",
        dlq_topic=f"bench-dlq-{run_id}", index_prefix=f"bench-e2e-{run_id}", trace_idle_s=0.5,
        max_poll_records=2000, max_bulks_in_flight=in_flight,
        fetch_partition_bytes=ProcessorSettings.fetch_partition_bytes if in_flight else 1 << 20,
    )  # fmt: skip
    with Processor(processor_settings) as processor:
        started, cpu = time.perf_counter(), time.process_time()
        counts = processor.run(drain=True)
        return (time.perf_counter() - started, time.process_time() - cpu,
                sum(counts.indexed.values()))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=2000)
    parser.add_argument("--variants", default="before,after",
                        help="comma-separated: before, after (see variant())")  # fmt: skip
    parser.add_argument("--core", choices=("python", "native", "both"), default="both",
                        help="the after variant's and the null sink's core")  # fmt: skip
    parser.add_argument("--null-only", action="store_true",
                        help="null sink and bulk body only: no Kafka, no ES")  # fmt: skip
    args = parser.parse_args()
    cores = ["python", "native"] if args.core == "both" else [args.core]
    console = Console()
    if args.null_only:
        args.variants = ""
    else:
        settings = resolve_settings()
        assert settings.kafka_bootstrap and settings.es_url
    run_id = uuid.uuid4().hex[:8]

    with console.status("generating the workload"):
        messages, spans = generate(args.traces)

    # 1. end to end through Kafka and the processor, once per variant ("before" first: "after"
    # tunes the allocator for the rest of the process, as `hopscope process` does)
    e2e: dict[str, tuple[float, float, int]] = {}
    for name in sorted(filter(None, args.variants.split(",")), key=lambda v: v != "before"):
        for core_name in ["python"] if name == "before" else cores:
            label = name if name == "before" else f"{name}, {core_name} core"
            core.select(core_name)  # type: ignore[arg-type]
            with console.status(f"end to end ({label})"), variant(name) as in_flight:
                e2e[label] = end_to_end(messages, settings.kafka_bootstrap, settings.es_url,
                                        f"{run_id}-{name}-{core_name}", in_flight)  # fmt: skip

    # 2. null sink, with the collector's thresholds of the processor's loop and its allocator,
    # then the bulk bodies of its documents (what the processor serializes before a bulk
    # request: a native core's bodies come serialized already, so each core's own documents)
    saved = gc.get_threshold()
    null: dict[str, tuple[float, float]] = {}
    bulk: dict[str, tuple[float, int]] = {}
    for core_name in cores:
        core.select(core_name)  # type: ignore[arg-type]
        with console.status(f"null sink ({core_name} core)"):
            tune_allocator()
            gc.set_threshold(*runtime.GC_THRESHOLDS)
            cpu = time.process_time()
            null_s, documents = null_sink(messages, f"bench-null-{run_id}")
            null[core_name] = (null_s, time.process_time() - cpu)
            gc.set_threshold(*saved)
        with console.status(f"bulk body ({core_name} core)"):
            cpu = time.process_time()
            body_bytes = sum(
                len(bulk_body(documents[i : i + BULK])) for i in range(0, len(documents), BULK)
            )
            bulk[core_name] = (time.process_time() - cpu, body_bytes)

    table = Table("measure", "value", title=f"processor throughput ({spans:,} spans, "
                  f"{len(messages):,} messages, {len(documents):,} documents)")  # fmt: skip
    for core_name, (null_s, null_cpu) in null.items():
        table.add_row(f"null sink (decode, assemble, derive, documents), {core_name} core",
                      f"{spans / null_s:,.0f} spans/s ({null_s:.1f} s); "
                      f"{null_cpu / spans * 1e6:.1f} µs CPU/span, "
                      f"{spans / null_cpu:,.0f} spans/CPU-s")  # fmt: skip
    if len(null) == 2:
        table.add_row("null sink native / python",
                      f"{null['native'][1] / null['python'][1]:.2f}x CPU per span")  # fmt: skip
    for core_name, (json_cpu, body_bytes) in bulk.items():
        table.add_row(
            f"bulk body (NDJSON) of those documents, {core_name} core",
            f"{json_cpu / spans * 1e6:.1f} µs CPU/span, {body_bytes / spans:,.0f} B/span",
        )
        table.add_row(
            f"null sink + bulk body, {core_name} core",
            f"{(null[core_name][1] + json_cpu) / spans * 1e6:.1f} µs CPU/span",
        )
    for name, (wall_s, cpu_s, indexed) in e2e.items():
        table.add_row(f"end to end Kafka → processor → Elasticsearch ({name})",
                      f"{spans / wall_s:,.0f} spans/s ({wall_s:.1f} s; indexed {indexed:,} "
                      f"documents); {cpu_s / spans * 1e6:.1f} µs CPU/span")  # fmt: skip
    afters = [label for label in e2e if label.startswith("after")]
    if "before" in e2e and afters:
        (before_s, before_cpu, _), (after_s, after_cpu, _) = e2e["before"], e2e[afters[0]]
        table.add_row(f"{afters[0]} / before", f"{before_s / after_s:.2f}x spans/s, "
                      f"{after_cpu / before_cpu:.2f}x CPU per span")  # fmt: skip
    if len(afters) == 2:
        (python_s, python_cpu, _), (native_s, native_cpu, _) = (e2e[a] for a in afters)
        table.add_row("end to end native / python", f"{python_s / native_s:.2f}x spans/s, "
                      f"{native_cpu / python_cpu:.2f}x CPU per span")  # fmt: skip

    if args.null_only:
        console.print(table)
        return

    # 3. the raw bulk ceiling for the same documents, same bulk size
    es = es_client(settings.es_url, request_timeout=120)
    sink = ElasticsearchSink(es, f"bench-null-{run_id}")
    sink.install_templates()
    with console.status("bulk ceiling"):
        started = time.perf_counter()
        for i in range(0, len(documents), BULK):
            sink.write(documents[i : i + BULK])
        ceiling_s = time.perf_counter() - started
    es.indices.delete(index=f"bench-*-{run_id}*", ignore_unavailable=True)
    es.close()
    table.add_row("raw _bulk ceiling, same documents",
                  f"{spans / ceiling_s:,.0f} spans/s ({ceiling_s:.1f} s)")  # fmt: skip
    for name, (wall_s, _cpu, _indexed) in e2e.items():
        table.add_row(f"ratio end to end ({name}) / ceiling", f"{ceiling_s / wall_s:.2f}")
    console.print(table)


if __name__ == "__main__":
    main()
