"""hopscope's stream processor against the OpenTelemetry Collector, same topic, same node.

One run, one Kafka topic, one Elasticsearch node:

1. fill a fresh topic (3 partitions, one OTLP ``ExportTraceServiceRequest`` per trace, keyed by
   the trace id, as the Collector's kafka exporter with ``partition_traces_by_id`` and
   hopscope's SDK write it) with ``--traces`` traces of one of two kinds:
   ``--traffic telemetrygen``: telemetrygen's shape (a CLIENT span ``lets-go`` and
   ``--child-spans`` SERVER children ``okey-dokey-N``), made by this script's own producer;
   ``--traffic payments``: the simulator's payments (baseline scenario, about 22 spans each);
2. the Collector (``deploy/reference/otelcol/build-collector.sh``: kafka receiver → batch →
   elasticsearch exporter, its defaults: otel mapping mode, so a data stream) consumes the
   topic with its own group into its own data stream; done when its own counter
   ``otelcol_exporter_sent_spans{exporter="elasticsearch"}`` (spans whose bulk request
   Elasticsearch acknowledged) reaches the span count; its CPU is read from ``/proc`` then;
3. ``hopscope process --drain`` consumes the same topic with its own group into its own
   indices; done when it exits (everything indexed and committed); its CPU (and its
   children's) from ``wait4``.

Both sides have a fixed tail in their wall time: the exporter's sending queue sends its last,
partial batch after ``flush_timeout`` (10 s by default), hopscope completes its last traces after
``trace_idle`` and both join a consumer group first; run enough traces for these to matter
little (the CPU figures do not include the waits).

For each: wall time from launch (start-up included), spans/s, CPU seconds of the consuming
process, CPU µs per span, and Elasticsearch's CPU (``_nodes/stats`` process CPU of the node
over that side's run) per document it indexed. The ratios hopscope / Collector come from the
same run. On a shared machine read the CPU figures; wall times move with the neighbours' load,
and the node's CPU includes whatever else it serves meanwhile.

Clean-up: the topic, hopscope's indices and topics are deleted. The otel mapping mode writes
with ``require_data_stream``, and the test distribution of Elasticsearch cannot delete a data
stream (no ``DELETE _data_stream``): the Collector writes into one fixed data stream,
``hopscope-bench-otelcol``, which is rolled over and whose written backing indices are deleted
after each run, so nothing grows from run to run.

    python benchmarks/pipeline_vs_collector.py [--traffic telemetrygen|payments] [--traces 5000]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from processor_throughput import generate
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hopscope.core.es_security import es_client
from hopscope.ingest.otlp_wire import encode_trace_request
from hopscope.stack import resolve_settings

REPO = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO / "deploy" / "reference" / "otelcol" / "build-collector.sh"
PARTITIONS = 3  # as the peer measurement's topics
DATA_STREAM = "hopscope-bench-otelcol"
TICKS = os.sysconf("SC_CLK_TCK")

# The Collector as the peer measurement ran it (otelcol-b-kafka-to-es.yaml): kafka receiver
# from the earliest offset, the batch processor's defaults (8192 spans or 200 ms; without it
# the elasticsearch exporter sends a few spans per second behind the kafka receiver), the
# elasticsearch exporter's defaults.
COLLECTOR_CONFIG = """\
receivers:
  kafka:
    brokers: ["${env:BENCH_KAFKA}"]
    client_id: hopscope-bench-otelcol
    group_id: ${env:BENCH_GROUP}
    initial_offset: earliest
    traces:
      topics: ["${env:BENCH_TOPIC}"]
      encoding: otlp_proto
processors:
  batch: {}
exporters:
  elasticsearch:
    endpoint: ${env:BENCH_ES_URL}
    traces_index: ${env:BENCH_ES_INDEX}
    logs_index: ${env:BENCH_ES_INDEX}-events
service:
  telemetry:
    logs:
      level: warn
    metrics:
      level: normal
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: ${env:BENCH_METRICS_PORT}
  pipelines:
    traces:
      receivers: [kafka]
      processors: [batch]
      exporters: [elasticsearch]
"""


@dataclass
class Side:
    """One consumer's figures."""

    name: str
    wall_s: float
    cpu_s: float
    es_cpu_s: float
    documents: int


def telemetrygen_messages(traces: int, children: int) -> tuple[list[tuple[bytes, bytes]], int]:
    """telemetrygen's trace shape: ``lets-go`` (CLIENT) over ``children`` ``okey-dokey-N``
    (SERVER) spans of service ``telemetrygen``, one message per trace."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "telemetrygen"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("telemetrygen")
    messages = []
    for _ in range(traces):
        with tracer.start_as_current_span(
            "lets-go", kind=SpanKind.CLIENT,
            attributes={"network.peer.address": "1.2.3.4", "peer.service": "telemetrygen-server"},
        ):  # fmt: skip
            for n in range(children):
                with tracer.start_as_current_span(
                    f"okey-dokey-{n}", kind=SpanKind.SERVER,
                    attributes={"network.peer.address": "1.2.3.4",
                                "peer.service": "telemetrygen-client"},
                ):  # fmt: skip
                    pass
        spans = memory.get_finished_spans()
        memory.clear()
        key = format(spans[0].context.trace_id, "032x").encode()
        messages.append((key, encode_trace_request(spans)))
    provider.shutdown()
    return messages, traces * (children + 1)


def proc_cpu_s(pid: int) -> float:
    """user + system seconds of a live process, all its threads (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def tail(log: Path) -> str:
    """The end of a consumer's output, for an error message."""
    return log.read_text(errors="replace")[-2000:]


def per_doc(side: Side) -> float:
    """Elasticsearch CPU seconds per document of one side."""
    return side.es_cpu_s / max(side.documents, 1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metric_sum(url: str, name: str, label: str) -> float:
    """Sum of a Prometheus counter's samples whose labels contain ``label``; 0 if not up."""
    try:
        text = urllib.request.urlopen(url, timeout=2).read().decode()
    except OSError:
        return 0.0
    pattern = re.compile(rf"^{re.escape(name)}(?:_total)?(\{{[^}}]*\}})?\s+(\S+)$")
    total = 0.0
    for line in text.splitlines():
        if (m := pattern.match(line)) and label in (m.group(1) or ""):
            total += float(m.group(2))
    return total


def collector_binary() -> Path:
    """The Collector from build-collector.sh (cached after the first build)."""
    done = subprocess.run([str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=True)
    return Path(done.stdout.strip().splitlines()[-1])


def run_collector(es, binary: Path, env: dict[str, str], spans: int, progress: Progress,
                  timeout_s: float) -> Side:  # fmt: skip
    """The Collector until Elasticsearch acknowledged every span; its CPU at that moment."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    env = {**env, "BENCH_METRICS_PORT": str(port)}
    task = progress.add_task("Collector: spans indexed", total=spans)
    work = Path(tempfile.mkdtemp(prefix="bench-otelcol-"))
    config, log = work / "otelcol.yaml", work / "otelcol.log"
    config.write_text(COLLECTOR_CONFIG, encoding="utf-8")
    es0 = es_cpu_s(es)
    started = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen([str(binary), "--config", str(config)], env=env,
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        sent = 0.0
        while sent < spans:
            if proc.poll() is not None:
                raise SystemExit(f"the Collector exited ({proc.returncode}): {tail(log)}")
            if time.perf_counter() - started > timeout_s:
                raise SystemExit(f"the Collector indexed {sent:.0f} of {spans} spans "
                                 f"in {timeout_s} s: {tail(log)}")  # fmt: skip
            time.sleep(0.1)
            sent = metric_sum(url, "otelcol_exporter_sent_spans", 'exporter="elasticsearch"')
            progress.update(task, completed=sent)
        wall = time.perf_counter() - started
        cpu = proc_cpu_s(proc.pid)
        es1 = es_cpu_s(es)
        failed = metric_sum(url, "otelcol_exporter_send_failed_spans", "")
        if failed:
            progress.console.print(f"[yellow]the Collector failed to send {failed:.0f} spans")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        config.unlink()
        log.unlink()
        work.rmdir()
    es.indices.refresh(index=env["BENCH_ES_INDEX"])
    docs = int(es.count(index=env["BENCH_ES_INDEX"])["count"])
    return Side("OpenTelemetry Collector", wall, cpu, es1 - es0, docs)


def run_hopscope(es, env: dict[str, str], args: list[str], prefix: str, spans: int,
                 progress: Progress) -> Side:  # fmt: skip
    """``hopscope process --drain`` until it exits; its CPU and its children's from wait4."""
    hopscope = Path(sys.executable).with_name("hopscope")
    task = progress.add_task("hopscope: span documents", total=spans)
    log = Path(tempfile.mkstemp(prefix="bench-hopscope-", suffix=".log")[1])
    es0 = es_cpu_s(es)
    started = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen([str(hopscope), "process", "--drain", *args], env=env,
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        # (the index appears with the first bulk: until then the count fails)
        with contextlib.suppress(Exception):
            progress.update(task, completed=es.count(index=f"{prefix}-spans-*")["count"])
        time.sleep(0.25)
    wall = time.perf_counter() - started
    es1 = es_cpu_s(es)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"hopscope process exited {proc.returncode}: {tail(log)}")
    log.unlink()
    es.indices.refresh(index=f"{prefix}-*")
    docs = int(es.count(index=f"{prefix}-*")["count"])
    progress.update(task, completed=es.count(index=f"{prefix}-spans-*")["count"])
    return Side("hopscope process --drain", wall, usage.ru_utime + usage.ru_stime, es1 - es0, docs)


def es_cpu_s(es) -> float:
    """The node's process CPU seconds (single node: the stack's Elasticsearch)."""
    nodes = es.nodes.stats(metric="process")["nodes"]
    return sum(n["process"]["cpu"]["total_in_millis"] for n in nodes.values()) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traffic", choices=("telemetrygen", "payments"), default="telemetrygen")
    parser.add_argument("--traces", type=int, default=5000)
    parser.add_argument("--child-spans", type=int, default=5, help="telemetrygen traffic")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per side")
    args = parser.parse_args()
    console = Console()
    settings = resolve_settings()
    assert settings.kafka_bootstrap and settings.es_url
    run_id = uuid.uuid4().hex[:8]
    topic, prefix = f"bench-cmp-{run_id}", f"bench-cmp-{run_id}"
    es = es_client(settings.es_url, request_timeout=120)
    binary = collector_binary()

    with console.status(f"generating {args.traces:,} {args.traffic} traces"):
        if args.traffic == "telemetrygen":
            messages, spans = telemetrygen_messages(args.traces, args.child_spans)
        else:
            messages, spans = generate(args.traces)  # the simulator's baseline payments

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    hopscope_topics = [f"bench-cmp-logs-{run_id}", f"bench-cmp-dlq-{run_id}"]
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    es.indices.put_index_template(
        name=DATA_STREAM, index_patterns=[f"{DATA_STREAM}*"], data_stream={}, priority=500,
        template={"settings": {"number_of_shards": 1, "number_of_replicas": 0,
                               "index.refresh_interval": "1s"}},
    )  # fmt: skip
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(),
                      TextColumn("{task.completed:,.0f}/{task.total:,.0f}"),
                      TimeElapsedColumn(), console=console) as progress:  # fmt: skip
            task = progress.add_task(f"producing {len(messages):,} messages", total=len(messages))
            producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                     linger_ms=20, batch_size=512 * 1024)  # fmt: skip
            for i, (key, value) in enumerate(messages, 1):
                producer.send(topic, key=key, value=value)
                if i % 1000 == 0:
                    progress.update(task, completed=i)
            producer.flush()
            producer.close()
            progress.update(task, completed=len(messages))

            env = {**os.environ, "BENCH_KAFKA": settings.kafka_bootstrap,
                   "BENCH_ES_URL": settings.es_url, "BENCH_TOPIC": topic,
                   "BENCH_GROUP": f"bench-cmp-otelcol-{run_id}", "BENCH_ES_INDEX": DATA_STREAM,
                   "HOPSCOPE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
                   "HOPSCOPE_ES_URL": settings.es_url}  # fmt: skip
            collector = run_collector(es, binary, env, spans, progress, args.timeout)
            hopscope = run_hopscope(
                es, env,
                ["--group", f"bench-cmp-hopscope-{run_id}", "--spans-topic", topic,
                 "--logs-topic", hopscope_topics[0], "--dlq-topic", hopscope_topics[1],
                 "--index-prefix", prefix],
                prefix, spans, progress,
            )  # fmt: skip
    finally:
        admin.delete_topics([topic, *hopscope_topics])
        admin.close()
        es.indices.delete(index=f"{prefix}-*", ignore_unavailable=True)
        # Step: empty the fixed data stream (cannot be deleted here): roll it over, delete
        # every backing index but the new write index.
        # (No GET _data_stream on this distribution either: _resolve/index names them.)
        streams = es.indices.resolve_index(name=DATA_STREAM)["data_streams"]
        if streams:
            es.indices.rollover(alias=DATA_STREAM)
            backing = es.indices.resolve_index(name=DATA_STREAM)["data_streams"][0]
            for index in backing["backing_indices"][:-1]:
                es.indices.delete(index=index)
        es.close()

    table = Table("consumer", "wall s", "spans/s", "CPU s", "CPU µs/span", "ES docs",
                  "ES CPU s", "ES CPU µs/doc", "ES CPU µs/span",
                  title=f"{args.traffic}: {spans:,} spans in {len(messages):,} messages, "
                  f"topic of {PARTITIONS} partitions, one node")  # fmt: skip
    for side in (collector, hopscope):
        table.add_row(side.name, f"{side.wall_s:.1f}", f"{spans / side.wall_s:,.0f}",
                      f"{side.cpu_s:.2f}", f"{side.cpu_s / spans * 1e6:,.0f}",
                      f"{side.documents:,}", f"{side.es_cpu_s:.2f}",
                      f"{per_doc(side) * 1e6:,.0f}",
                      f"{side.es_cpu_s / spans * 1e6:,.0f}")  # fmt: skip
    table.add_row("hopscope / Collector", f"{hopscope.wall_s / collector.wall_s:.2f}x",
                  f"{collector.wall_s / hopscope.wall_s:.2f}x",
                  f"{hopscope.cpu_s / collector.cpu_s:.2f}x",
                  f"{hopscope.cpu_s / collector.cpu_s:.2f}x",
                  f"{hopscope.documents / max(collector.documents, 1):.2f}x",
                  f"{hopscope.es_cpu_s / collector.es_cpu_s:.2f}x",
                  f"{per_doc(hopscope) / per_doc(collector):.2f}x",
                  f"{hopscope.es_cpu_s / collector.es_cpu_s:.2f}x")  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    main()
