"""What hopscope's SDK costs a payment service, and how fast it exports.

1. Calling-thread cost per span: the plain OpenTelemetry SDK with no processor (the baseline)
   vs the same SDK with hopscope's export queue and Kafka exporter attached, both measured in
   this process, interleaved over several rounds; the added cost is the difference of medians.
2. Exporter throughput: spans/s from the queue (OpenTelemetry's batch processor) into the real
   broker (``--bootstrap`` or ``HOPSCOPE_KAFKA_BOOTSTRAP`` or the local stack), in batches of
   2,000, OTLP-encoded, redacted, acknowledged.

    python benchmarks/sdk_overhead.py [--spans 50000] [--rounds 5] [--bootstrap HOST:PORT]
"""

from __future__ import annotations

import argparse
import gc
import logging
import statistics
import time
import uuid

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from hopscope.ingest import ExportSettings, KafkaPipeline, node_providers
from hopscope.stack import resolve_settings

ATTRIBUTES = {"payment.id": "pay-0001", "rpc.system": "grpc", "rpc.method": "Authorize",
              "peer.service": "risk", "server.address": "risk-2"}  # fmt: skip


SPANS_PER_TRACE = 10  # a payment: one incoming request and nine calls below it


def per_span_ns(provider: TracerProvider, spans: int) -> float:
    """Calling-thread time per span, recording traces of SPANS_PER_TRACE spans."""
    tracer = provider.get_tracer("bench")
    traces = spans // SPANS_PER_TRACE
    started = time.perf_counter_ns()
    for _ in range(traces):
        with tracer.start_as_current_span("POST /payments", attributes=ATTRIBUTES):
            for _ in range(SPANS_PER_TRACE - 1):
                with tracer.start_as_current_span("risk/Score", attributes=ATTRIBUTES):
                    pass
    return (time.perf_counter_ns() - started) / (traces * SPANS_PER_TRACE)


def recorded_spans(count: int) -> tuple[ReadableSpan, ...]:
    """``count`` finished spans of the benchmark's shape, kept in memory."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    per_span_ns(provider, count)
    return memory.get_finished_spans()


def encoder_cost() -> tuple[float, float]:
    """µs per span to encode 10,000 spans: hopscope's wire encoder vs the official one."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from hopscope.ingest.otlp_wire import encode_trace_request

    spans = recorded_spans(10_000)
    ours, official = [], []
    for _ in range(3):
        started = time.perf_counter_ns()
        encode_trace_request(spans)
        ours.append((time.perf_counter_ns() - started) / len(spans) / 1000)
        started = time.perf_counter_ns()
        encode_spans(spans).SerializeToString()
        official.append((time.perf_counter_ns() - started) / len(spans) / 1000)
    return statistics.median(ours), statistics.median(official)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--bootstrap", default=None)
    args = parser.parse_args()
    console = Console()
    bootstrap = args.bootstrap or resolve_settings().kafka_bootstrap
    assert bootstrap
    topic = f"bench-spans-{uuid.uuid4().hex[:8]}"

    # Phase 1 measures the calling thread alone: the queue holds everything and the worker
    # sleeps (no full batch, a long delay), so no export competes for the interpreter. What it
    # queued is then dropped, not sent: half a million spans in one batch is no measure.
    total = args.spans * (args.rounds + 6) + 4_000
    pipeline = KafkaPipeline(ExportSettings(
        kafka_bootstrap=bootstrap, spans_topic=topic, logs_topic=topic + "-logs",
        max_queue_size=total, max_export_batch=total, schedule_delay_s=3600,
        send_timeout_s=60,
    ))  # fmt: skip
    plain = TracerProvider()
    ours, _ = node_providers("bench", "bench-1", span_processors=[pipeline.span_processor])
    per_span_ns(plain, 2_000)  # warm up both paths
    per_span_ns(ours, 2_000)

    baseline, hopscope = [], []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("calling-thread cost", total=args.rounds * 2)
        for _ in range(args.rounds):
            baseline.append(per_span_ns(plain, args.spans))
            progress.advance(task)
            hopscope.append(per_span_ns(ours, args.spans))
            progress.advance(task)
    # The same with the cyclic garbage collector off: the spans waiting in the queue are
    # long-lived objects that every full collection traverses, which is most of the gap.
    gc.collect()
    gc.disable()
    try:
        baseline_nogc = statistics.median(per_span_ns(plain, args.spans) for _ in range(3))
        hopscope_nogc = statistics.median(per_span_ns(ours, args.spans) for _ in range(3))
    finally:
        gc.enable()
    logging.getLogger("hopscope.ingest.bounded").setLevel(logging.ERROR)
    pipeline.span_processor.books.write_off()  # from here on nothing of phase 1 is sent
    pipeline.shutdown(30)
    encode_ours, encode_official = encoder_cost()

    # Phase 2, throughput: recorded spans handed to a pipeline with batches of 2,000 (the
    # worker exports while they are handed over), until the broker acknowledged all of them.
    spans = recorded_spans(args.spans)
    pipeline = KafkaPipeline(ExportSettings(
        kafka_bootstrap=bootstrap, spans_topic=topic, logs_topic=topic + "-logs",
        max_queue_size=len(spans), max_export_batch=2_000, send_timeout_s=60,
    ))  # fmt: skip
    started = time.perf_counter()
    for span in spans:
        pipeline.span_processor.on_end(span)
    flushed = pipeline.force_flush(timeout_s=600)
    elapsed = time.perf_counter() - started
    pipeline.shutdown(30)
    stats = pipeline.stats()
    queued = stats["spans"]["offered"]

    base, mine = statistics.median(baseline), statistics.median(hopscope)
    table = Table("measure", "value", title="hopscope SDK overhead")
    table.add_row("plain OpenTelemetry SDK, no exporter (baseline)", f"{base / 1000:.2f} µs/span")
    table.add_row("with hopscope export queue + Kafka exporter", f"{mine / 1000:.2f} µs/span")
    table.add_row("added on the calling thread", f"{(mine - base) / 1000:.2f} µs/span "
                  f"(ratio {mine / base:.2f}×)")  # fmt: skip
    table.add_row("the same with the garbage collector off",
                  f"{baseline_nogc / 1000:.2f} vs {hopscope_nogc / 1000:.2f} µs/span: added "
                  f"{(hopscope_nogc - baseline_nogc) / 1000:.2f} µs "
                  f"(ratio {hopscope_nogc / baseline_nogc:.2f}×)")  # fmt: skip
    table.add_row("OTLP encoding (hopscope wire encoder vs official)",
                  f"{encode_ours:.1f} vs {encode_official:.1f} µs/span "
                  f"(ratio {encode_official / encode_ours:.1f}×)")  # fmt: skip
    table.add_row("exported to Kafka", f"{stats['spans']['exported']:,} of {queued:,} spans "
                  f"in {elapsed:.1f} s, flushed={flushed}")  # fmt: skip
    table.add_row("exporter throughput", f"{stats['spans']['exported'] / elapsed:,.0f} spans/s "
                  f"({stats['span_messages']['messages']:,} messages, "
                  f"{stats['span_messages']['bytes'] / 1e6:.1f} MB)")  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    main()
