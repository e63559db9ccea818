"""The processor's memory under a flood of open traces and under huge traces.

Produces ``--traces`` one-span traces that never complete on their own (a trace idle far longer
than the run, so only the memory bound flushes them), ``--per-message`` spans to an OTLP
message, written straight in the wire format with a raw producer; then ``--huge`` traces of
``--huge-spans`` spans each. Then runs ``hopscope process --drain --max-memory-mb`` as a
subprocess, sampling its resident memory (and the kernel's high-water mark, VmHWM) until it
exits, and prints produce time, process time, throughput, peak RSS against the bound, and what
was indexed.

    python benchmarks/memory_bounds.py [--traces 1000000] [--max-memory-mb 256]

Needs HOPSCOPE_KAFKA_BOOTSTRAP and HOPSCOPE_ES_URL (``hopscope stack env``).

Measured on a 2-core machine running Kafka and Elasticsearch as well (the defaults: 1,000,000
traces, two of 100,000 spans, 256 MB): produce 18 s; process 558 s (2,150 spans/s, the
2.2 million documents at about 3,900 documents/s, Elasticsearch-bound); peak RSS 216 MB; all
1,200,000 spans indexed, 1,000,001 of the 1,000,002 traces summarized as incomplete.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from rich.console import Console
from rich.table import Table

from hopscope.core.es_security import es_client
from hopscope.core.settings import ENV_ES_URL, ENV_KAFKA_BOOTSTRAP
from hopscope.stack import resolve_settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.otlp_builders import flood_spans

START_NS = 1_775_030_400_000_000_000  # 2026-04-01T08:00:00Z


@dataclass
class Flood:
    """What was produced: span and trace counts, and the time it took."""

    spans: int = 0
    traces: int = 0
    messages: int = 0
    seconds: float = 0.0


def produce_flood(
    bootstrap: str,
    topic: str,
    *,
    traces: int,
    per_message: int,
    huge: int,
    huge_spans: int,
    seed: int = 1,
) -> Flood:
    """One-span traces, ``per_message`` to a message, then ``huge`` traces of ``huge_spans``
    spans (children of one root each, the root last)."""
    rng = random.Random(seed)
    flood = Flood()
    started = time.perf_counter()
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks=1,
        linger_ms=50,
        batch_size=1024 * 1024,
        max_request_size=8 * 1024 * 1024,
    )
    try:
        for first in range(0, traces, per_message):
            ids = [rng.randbytes(16) for _ in range(min(per_message, traces - first))]
            producer.send(topic, flood_spans(ids, start_ns=START_NS + first))
            flood.spans += len(ids)
            flood.traces += len(ids)
            flood.messages += 1
        for _ in range(huge):
            trace, root = rng.randbytes(16), rng.randbytes(8)
            key = trace.hex().encode()
            for first in range(0, huge_spans - 1, per_message):
                count = min(per_message, huge_spans - 1 - first)
                children = [rng.randbytes(8) for _ in range(count)]
                value = flood_spans([trace], start_ns=START_NS, parent=root, span_ids=children)
                producer.send(topic, value, key=key)
                flood.spans += count
                flood.messages += 1
            producer.send(topic, flood_spans([trace], start_ns=START_NS, span_ids=[root]), key=key)
            flood.spans += 1
            flood.traces += 1
            flood.messages += 1
        producer.flush()
    finally:
        producer.close()
    flood.seconds = time.perf_counter() - started
    return flood


@dataclass
class MemorySamples:
    """Resident memory of a process, sampled from a thread until it exits."""

    pid: int
    interval_s: float = 0.2
    peak_rss: int = 0
    peak_hwm: int = 0
    samples: list[tuple[float, int]] = field(default_factory=list)

    def run(self) -> None:
        started = time.monotonic()
        status = Path(f"/proc/{self.pid}/status")
        while True:
            try:
                text = status.read_text()
            except (FileNotFoundError, ProcessLookupError):
                return
            fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
            if "VmRSS" not in fields:  # a zombie: exited, not reaped yet
                return
            rss = int(fields["VmRSS"].split()[0]) * 1024
            self.peak_hwm = max(self.peak_hwm, int(fields["VmHWM"].split()[0]) * 1024)
            self.peak_rss = max(self.peak_rss, rss)
            self.samples.append((time.monotonic() - started, rss))
            time.sleep(self.interval_s)


def run_processor(
    command: list[str], env: dict[str, str], log: Path
) -> tuple[int, MemorySamples, float, str]:
    """Run ``command`` to its end, sampling its memory; (exit code, samples, s, stdout)."""
    started = time.perf_counter()
    with log.open("wb") as stderr:
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=stderr)
        samples = MemorySamples(process.pid)
        sampler = threading.Thread(target=samples.run, daemon=True)
        sampler.start()
        stdout, _ = process.communicate(timeout=3600)
        sampler.join(timeout=5)
    return process.returncode, samples, time.perf_counter() - started, stdout.decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=1_000_000)
    parser.add_argument("--per-message", type=int, default=1000)
    parser.add_argument("--huge", type=int, default=2)
    parser.add_argument("--huge-spans", type=int, default=100_000)
    parser.add_argument("--max-memory-mb", type=int, default=256)
    parser.add_argument("--keep", action="store_true", help="keep the indices and topics")
    args = parser.parse_args()
    console = Console()
    settings = resolve_settings()
    assert settings.kafka_bootstrap and settings.es_url
    run = uuid.uuid4().hex[:8]
    topics = {name: f"bench-mem-{name}-{run}" for name in ("spans", "logs", "dlq")}
    prefix = f"bench-mem-{run}"
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1) for topic in topics.values()])
    admin.close()

    with console.status("producing"):
        flood = produce_flood(
            settings.kafka_bootstrap,
            topics["spans"],
            traces=args.traces,
            per_message=args.per_message,
            huge=args.huge,
            huge_spans=args.huge_spans,
        )
    env = {
        **os.environ,
        ENV_KAFKA_BOOTSTRAP: settings.kafka_bootstrap,
        ENV_ES_URL: settings.es_url,
        "HOPSCOPE_SPANS_TOPIC": topics["spans"],
        "HOPSCOPE_LOGS_TOPIC": topics["logs"],
        "HOPSCOPE_DLQ_TOPIC": topics["dlq"],
        "HOPSCOPE_INDEX_PREFIX": prefix,
        "NO_COLOR": "1",
    }
    command = [
        sys.executable,
        "-m",
        "hopscope.cli",
        "process",
        "--drain",
        "--group",
        f"bench-mem-{run}",
        "--trace-idle",
        "3600",
        "--max-memory-mb",
        str(args.max_memory_mb),
    ]
    with console.status("processing"):
        code, samples, process_s, stdout = run_processor(
            command, env, Path(f"/tmp/bench-mem-{run}.log")
        )
    es = es_client(settings.es_url, request_timeout=120)
    es.indices.refresh(index=f"{prefix}-*")
    spans = es.count(index=f"{prefix}-spans-*")["count"]
    traces = es.count(index=f"{prefix}-traces-*")["count"]
    incomplete = es.count(
        index=f"{prefix}-traces-*", query={"term": {"hopscope.trace.complete": False}}
    )["count"]
    if not args.keep:
        es.indices.delete(index=f"{prefix}-*", ignore_unavailable=True)
        admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        admin.delete_topics(list(topics.values()))
        admin.close()
    es.close()

    mb = 1024 * 1024
    table = Table(
        "measure",
        "value",
        title=f"memory bounds ({flood.traces:,} traces, "
        f"{flood.spans:,} spans, {flood.messages:,} messages)",
    )
    table.add_row("produce", f"{flood.seconds:.1f} s ({flood.spans / flood.seconds:,.0f} spans/s)")
    table.add_row(
        "process (drain, subprocess)",
        f"{process_s:.1f} s ({flood.spans / process_s:,.0f} spans/s), exit {code}",
    )
    table.add_row("bound (--max-memory-mb)", f"{args.max_memory_mb} MB")
    table.add_row(
        "peak RSS (sampled / VmHWM)",
        f"{samples.peak_rss / mb:.0f} MB / {samples.peak_hwm / mb:.0f} MB",
    )
    table.add_row("span documents", f"{spans:,} of {flood.spans:,}")
    table.add_row("trace summaries (incomplete)", f"{traces:,} ({incomplete:,})")
    table.add_row("processor", stdout.strip())
    console.print(table)


if __name__ == "__main__":
    main()
