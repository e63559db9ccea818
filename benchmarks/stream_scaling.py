"""Stream tier scaling: ``hopscope process --workers N`` catching up with one backlog.

One simulated workload (``--traces`` payments, baseline scenario, spans only, one message per
trace as the SDK writes them) is encoded once. For each worker count, it is produced to a
fresh topic of ``--partitions`` partitions (``--replication`` replicas), then
``hopscope process --workers N`` starts (a real supervisor and real worker processes) and the
clock runs until the group has committed every partition to its end: start-up, group join,
processing, indexing with the templates' replicas, the idle wait of the last traces and the
commits. Then SIGTERM; each worker's message count comes from its closing line (a worker
without a partition processed 0).

    eval "$(hopscope stack env --state-dir /tmp/s)"   # a stack, single node or cluster
    python benchmarks/stream_scaling.py --traces 1000 --partitions 6 --workers 1,2,3
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from rich.console import Console
from rich.table import Table

from hopscope.core.es_security import es_client
from hopscope.core.settings import ENV_ES_URL, ENV_KAFKA_BOOTSTRAP
from hopscope.stack import resolve_settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from processor_throughput import generate

TRACE_IDLE_S = 0.5
TIMEOUT_S = 900.0


def caught_up(bootstrap: str, group: str, topic: str, partitions: int) -> bool:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                             enable_auto_commit=False)  # fmt: skip
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = consumer.end_offsets(tps)
        return all((consumer.committed(tp) or 0) >= ends[tp] for tp in tps)
    finally:
        consumer.close()


def run(
    messages: list[tuple[bytes, bytes]], bootstrap: str, es_url: str, *, workers: int,
    partitions: int, replication: int,
) -> tuple[float, list[int]]:  # fmt: skip
    run_id = uuid.uuid4().hex[:8]
    topic, group, prefix = f"scale-spans-{run_id}", f"scale-{run_id}", f"scale-{run_id}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(t, partitions, replication)
                             for t in (topic, f"scale-logs-{run_id}")])  # fmt: skip
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20,
                             batch_size=512 * 1024)  # fmt: skip
    for key, value in messages:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()
    env = {
        **os.environ, ENV_KAFKA_BOOTSTRAP: bootstrap, ENV_ES_URL: es_url,
        "HOPSCOPE_SPANS_TOPIC": topic, "HOPSCOPE_LOGS_TOPIC": f"scale-logs-{run_id}",
        "HOPSCOPE_DLQ_TOPIC": f"scale-dlq-{run_id}", "HOPSCOPE_INDEX_PREFIX": prefix,
        "NO_COLOR": "1",
    }  # fmt: skip
    command = [sys.executable, "-m", "hopscope.cli", "process", "--workers", str(workers),
               "--group", group, "--trace-idle", str(TRACE_IDLE_S)]  # fmt: skip
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.DEVNULL)
        try:
            while not caught_up(bootstrap, group, topic, partitions):
                if proc.poll() is not None or time.perf_counter() - started > TIMEOUT_S:
                    raise SystemExit(f"the processors stopped or timed out ({proc.returncode})")
                time.sleep(0.5)
            took = time.perf_counter() - started
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        out.seek(0)
        text = out.read().decode(errors="replace")
    counts = [int(m) for m in re.findall(r"processed (\d+) messages", text)]
    es = es_client(es_url, request_timeout=120)
    es.indices.delete(index=f"{prefix}-*", ignore_unavailable=True, allow_no_indices=True)
    es.close()
    return took, sorted(counts, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=1000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--replication", type=int, default=1)
    parser.add_argument("--workers", default="1,2,3", help="worker counts, comma-separated")
    args = parser.parse_args()
    console = Console()
    settings = resolve_settings()
    assert settings.kafka_bootstrap and settings.es_url
    with console.status("generating the workload"):
        messages, spans = generate(args.traces)
    nodes = settings.es_url.count(",") + 1
    brokers = settings.kafka_bootstrap.count(",") + 1
    table = Table(
        "workers", "catch-up (s)", "spans/s", "messages per worker",
        title=f"{spans:,} spans in {len(messages):,} messages; {args.partitions} partitions "
        f"×{args.replication} on {brokers} broker(s); {nodes} Elasticsearch node(s); "
        f"{os.cpu_count()} cores",
    )  # fmt: skip
    for workers in [int(w) for w in args.workers.split(",")]:
        with console.status(f"{workers} worker(s)"):
            took, counts = run(
                messages, settings.kafka_bootstrap, settings.es_url, workers=workers,
                partitions=args.partitions, replication=args.replication,
            )  # fmt: skip
        table.add_row(str(workers), f"{took:.1f}", f"{spans / took:,.0f}",
                      " / ".join(str(c) for c in counts))  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    main()
