"""What hopscope's SDK costs a payment service, and how fast it exports.

1. Calling-thread cost per span (the thread's CPU time), three tracer providers measured in
   this process, interleaved over several rounds (the added cost is the difference of
   medians):
   the plain OpenTelemetry SDK with no processor (the baseline); the plain SDK with what a
   service gets by default, OpenTelemetry's ``BatchSpanProcessor`` and OTLP/HTTP exporter
   (to a local sink that answers every request, in a process of its own); and the SDK with
   hopscope's export queue and Kafka exporter. The two queues are sized to hold every span of
   the phase, so neither exports meanwhile: this is the request thread's own cost. The queues
   then hold hundreds of thousands of spans, which every full garbage collection traverses:
   a service whose exporter is stuck, the worst case.
2. Steady state: the same three providers with their default queue bounds, each exporting as
   it goes (hopscope to the broker, OpenTelemetry's to the local OTLP/HTTP sink), while the
   calling thread records spans at ``--rate`` spans/s (it sleeps between traces, which its CPU
   time does not count): the cost a service pays in normal operation, queues short.
3. Exporter throughput, per producer codec (``--codecs``, lz4 is the exporter's): spans/s
   from the queue into the real broker (``--bootstrap`` or ``HOPSCOPE_KAFKA_BOOTSTRAP`` or
   the local stack), in batches of 2,000, OTLP-encoded, redacted, compressed, acknowledged;
   and this process's CPU per span meanwhile (the export thread's work, on the service's
   cores).

Goals (issue 15): at most 5 µs added per span on the calling thread, at least 50,000 spans/s
exported. Needs the OTLP/HTTP exporter (``pip install -e '.[lab]'``).

    python benchmarks/sdk_overhead.py [--spans 50000] [--rounds 5] [--rate 5000]
        [--steady-spans 20000] [--bootstrap HOST:PORT]
"""

from __future__ import annotations

import argparse
import gc
import logging
import multiprocessing
import statistics
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from hopscope.ingest import ExportSettings, KafkaPipeline, kafka_exporter, node_providers
from hopscope.stack import resolve_settings

ATTRIBUTES = {"payment.id": "pay-0001", "rpc.system": "grpc", "rpc.method": "Authorize",
              "peer.service": "risk", "server.address": "risk-2"}  # fmt: skip


SPANS_PER_TRACE = 10  # a payment: one incoming request and nine calls below it


def per_span_ns(provider: TracerProvider, spans: int, rate: float | None = None) -> float:
    """Calling-thread time per span, recording traces of SPANS_PER_TRACE spans; ``rate``:
    at most that many spans/s (sleeping between traces), else as fast as it goes."""
    tracer = provider.get_tracer("bench")
    traces = spans // SPANS_PER_TRACE
    period = SPANS_PER_TRACE / rate if rate else 0.0
    due = time.perf_counter()
    # The calling thread's CPU time, not the wall clock: on a shared machine the wall clock
    # counts the other processes' turns on the core too (no other thread of this process
    # runs meanwhile: the export workers sleep during phase 1).
    started = time.thread_time_ns()
    for _ in range(traces):
        with tracer.start_as_current_span("POST /payments", attributes=ATTRIBUTES):
            for _ in range(SPANS_PER_TRACE - 1):
                with tracer.start_as_current_span("risk/Score", attributes=ATTRIBUTES):
                    pass
        if period:
            due += period
            time.sleep(max(0.0, due - time.perf_counter()))
    return (time.thread_time_ns() - started) / (traces * SPANS_PER_TRACE)


class _Accept(BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint that reads each request and answers 200 with an empty
    ``ExportTraceServiceResponse`` (no bytes), as a collector does when it takes everything."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _serve(port: Any) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Accept)
    port.value = server.server_address[1]
    server.serve_forever()


def otlp_provider(total: int | None) -> tuple[TracerProvider, object, multiprocessing.Process]:
    """The plain SDK with BatchSpanProcessor + OTLP/HTTP exporter to a local sink process;
    the queue holds ``total`` spans and waits an hour, as hopscope's does in phase 1 (None:
    OpenTelemetry's default bounds, exporting as it goes)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    port = multiprocessing.Value("i", 0)
    sink = multiprocessing.Process(target=_serve, args=(port,), daemon=True)
    sink.start()
    while not port.value:
        time.sleep(0.01)
    exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port.value}/v1/traces")
    provider = TracerProvider()
    bounds: dict[str, Any] = {} if total is None else {
        "max_queue_size": total, "max_export_batch_size": total,
        "schedule_delay_millis": 3_600_000,
    }  # fmt: skip
    provider.add_span_processor(BatchSpanProcessor(exporter, **bounds))
    return provider, exporter, sink


def steady_state(
    bootstrap: str, topic: str, spans: int, rounds: int, rate: float
) -> tuple[dict[str, float], dict[str, int]]:
    """Phase 2: median calling-thread ns per span of each provider at ``rate`` spans/s, every
    queue at its default bounds and exporting; and the hopscope queue's books."""
    pipeline = KafkaPipeline(ExportSettings(
        kafka_bootstrap=bootstrap, spans_topic=topic, logs_topic=topic + "-logs",
        send_timeout_s=60,
    ))  # fmt: skip
    ours, _ = node_providers("bench", "bench-1", span_processors=[pipeline.span_processor])
    otlp, _, sink = otlp_provider(None)
    providers = {"baseline": TracerProvider(), "otlp": otlp, "hopscope": ours}
    runs: dict[str, list[float]] = {name: [] for name in providers}
    try:
        for provider in providers.values():
            per_span_ns(provider, 2_000, rate)
        with Progress(transient=True) as progress:
            task = progress.add_task(f"steady state, {rate:,.0f} spans/s",
                                     total=rounds * len(providers))  # fmt: skip
            for _ in range(rounds):
                for name, provider in providers.items():
                    runs[name].append(per_span_ns(provider, spans, rate))
                    progress.advance(task)
        pipeline.force_flush(60)
        books = dict(pipeline.stats()["spans"])
    finally:
        pipeline.shutdown(30)
        otlp.shutdown()  # flushes its queue, then shuts its exporter down
        sink.terminate()
        sink.join()
    return {name: statistics.median(values) for name, values in runs.items()}, books


def delete_topics(bootstrap: str, topics: list[str]) -> None:
    """Remove what the run created (a topic that was never created is skipped)."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        existing = set(admin.list_topics())
        if found := [t for t in topics if t in existing]:
            admin.delete_topics(found)
    finally:
        admin.close()


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
    parser.add_argument(
        "--rate",
        type=float,
        default=5_000,
        help="spans/s the calling thread records in the steady phase",
    )
    parser.add_argument(
        "--steady-spans",
        type=int,
        default=20_000,
        help="spans per provider and round in the steady phase",
    )
    parser.add_argument("--codecs", default="lz4,gzip",
                        help="producer codecs of phase 3, comma-separated")  # fmt: skip
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
    otlp, otlp_exporter, sink = otlp_provider(total)
    ours, _ = node_providers("bench", "bench-1", span_processors=[pipeline.span_processor])
    providers = {"baseline": plain, "otlp": otlp, "hopscope": ours}
    for provider in providers.values():
        per_span_ns(provider, 2_000)  # warm up every path

    runs: dict[str, list[float]] = {name: [] for name in providers}
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("calling-thread cost", total=args.rounds * len(providers))
        for _ in range(args.rounds):
            for name, provider in providers.items():
                runs[name].append(per_span_ns(provider, args.spans))
                progress.advance(task)
    # The same with the cyclic garbage collector off: the spans waiting in the queue are
    # long-lived objects that every full collection traverses, which is most of the gap.
    gc.collect()
    gc.disable()
    try:
        nogc = {name: statistics.median(per_span_ns(provider, args.spans) for _ in range(3))
                for name, provider in providers.items()}  # fmt: skip
    finally:
        gc.enable()
    logging.getLogger("hopscope.ingest.bounded").setLevel(logging.ERROR)
    pipeline.span_processor.books.write_off()  # from here on nothing of phase 1 is sent
    pipeline.shutdown(30)
    otlp_exporter.shutdown()  # type: ignore[attr-defined]  # the drain below sends nothing
    otlp.shutdown()
    sink.terminate()
    sink.join()
    steady, steady_books = steady_state(bootstrap, topic, args.steady_spans, 3, args.rate)
    encode_ours, encode_official = encoder_cost()

    # Phase 3, throughput: recorded spans handed to a pipeline with batches of 2,000 (the
    # worker exports while they are handed over), until the broker acknowledged all of them.
    spans = recorded_spans(args.spans)
    exported = {}
    for codec in args.codecs.split(","):
        kafka_exporter.COMPRESSION = codec  # type: ignore[misc]  # read by each new producer
        pipeline = KafkaPipeline(ExportSettings(
            kafka_bootstrap=bootstrap, spans_topic=topic, logs_topic=topic + "-logs",
            max_queue_size=len(spans), max_export_batch=2_000, send_timeout_s=60,
        ))  # fmt: skip
        started, cpu = time.perf_counter(), time.process_time()
        for span in spans:
            pipeline.span_processor.on_end(span)
        flushed = pipeline.force_flush(timeout_s=600)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        pipeline.shutdown(30)
        exported[codec] = (pipeline.stats(), elapsed, cpu, flushed)
    delete_topics(bootstrap, [topic, topic + "-logs"])

    med = {name: statistics.median(values) for name, values in runs.items()}
    base, otel, mine = med["baseline"], med["otlp"], med["hopscope"]
    table = Table("measure", "value", title="hopscope SDK overhead")
    table.add_row("plain OpenTelemetry SDK, no exporter (baseline)", f"{base / 1000:.2f} µs/span")
    table.add_row("plain SDK + BatchSpanProcessor + OTLP/HTTP exporter",
                  f"{otel / 1000:.2f} µs/span: added {(otel - base) / 1000:.2f} µs")  # fmt: skip
    table.add_row("with hopscope export queue + Kafka exporter",
                  f"{mine / 1000:.2f} µs/span: added {(mine - base) / 1000:.2f} µs "
                  f"(goal ≤ 5)")  # fmt: skip
    table.add_row("hopscope − OpenTelemetry batch + OTLP", f"{(mine - otel) / 1000:+.2f} µs/span "
                  f"(ratio {mine / otel:.2f}×)")  # fmt: skip
    table.add_row("the same with the garbage collector off",
                  f"{nogc['baseline'] / 1000:.2f} / {nogc['otlp'] / 1000:.2f} / "
                  f"{nogc['hopscope'] / 1000:.2f} µs/span (baseline / OTLP / hopscope): "
                  f"hopscope adds {(nogc['hopscope'] - nogc['baseline']) / 1000:.2f} µs, "
                  f"OTLP {(nogc['otlp'] - nogc['baseline']) / 1000:.2f} µs")  # fmt: skip
    table.add_row(f"steady state at {args.rate:,.0f} spans/s, default queues exporting "
                  "(baseline / OTLP / hopscope)",
                  f"{steady['baseline'] / 1000:.2f} / {steady['otlp'] / 1000:.2f} / "
                  f"{steady['hopscope'] / 1000:.2f} µs/span: hopscope adds "
                  f"{(steady['hopscope'] - steady['baseline']) / 1000:.2f} µs (goal ≤ 5), "
                  f"OTLP {(steady['otlp'] - steady['baseline']) / 1000:.2f} µs; hopscope "
                  f"exported {steady_books['exported']:,} of {steady_books['offered']:,}, "
                  f"dropped {steady_books['offered'] - steady_books['exported']:,}")  # fmt: skip
    table.add_row("OTLP encoding (hopscope wire encoder vs official)",
                  f"{encode_ours:.1f} vs {encode_official:.1f} µs/span "
                  f"(ratio {encode_official / encode_ours:.1f}×)")  # fmt: skip
    for codec, (stats, elapsed, cpu, flushed) in exported.items():
        done = stats["spans"]["exported"]
        table.add_row(f"exporter throughput, {codec} (goal ≥ 50,000 spans/s)",
                      f"{done / elapsed:,.0f} spans/s: {done:,} of {stats['spans']['offered']:,}"
                      f" in {elapsed:.1f} s, flushed={flushed}; "
                      f"{cpu / max(done, 1) * 1e6:.1f} µs CPU/span; "
                      f"{stats['span_messages']['messages']:,} messages, "
                      f"{stats['span_messages']['bytes'] / 1e6:.1f} MB of OTLP")  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    main()
