"""The processor's memory stays under its configured bound under a flood of open traces and
under huge traces, evicting the oldest traces as incomplete and losing nothing.

The processor runs as a subprocess (``hopscope process --drain --max-memory-mb``), so its
resident memory is its own: sampled throughout from /proc, VmRSS for the series and VmHWM,
the kernel's high-water mark, for the peak.

Scale: benchmarks/memory_bounds.py floods one million one-span traces (and two 100,000-span
traces) through a 256 MB bound; it takes about nine minutes on a 2-core machine, nearly all of it
indexing 2.2 million documents. This test keeps the ratio that matters, a flood several times
what the bound holds, at a tenth of the documents: 100,000 open traces through a bound that
holds under a third of them, a 50,000-span trace past ``--max-trace-spans``, and spans with
1 MiB attributes.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from hopscope.core.settings import ENV_ES_URL, ENV_KAFKA_BOOTSTRAP
from hopscope.processors import sanitize as s
from hopscope.processors.assembly import memory_bounds
from tests.conftest import Services
from tests.integration.processor_support import Topics, count, hits, read_topic, refresh, term
from tests.otlp_builders import flood_spans, otlp_spans

pytestmark = pytest.mark.integration

START = 1_775_030_400_000_000_000  # 2026-04-01T08:00:00Z
BOUND_MB = 192
FLOOD_TRACES = 100_000
PER_MESSAGE = 1_000
HUGE_SPANS = 50_000
MAX_TRACE_SPANS = 20_000
BIG_VALUE_SPANS = 30


@pytest.fixture
def topics(unique_name: Callable[[str], str], services: Services) -> Topics:
    names = Topics(unique_name("spans"), unique_name("logs"), unique_name("dlq"))
    admin = KafkaAdminClient(bootstrap_servers=services.kafka_bootstrap)
    try:
        admin.create_topics(
            [
                NewTopic(names.spans, 1, 1, topic_configs={"max.message.bytes": str(4 << 20)}),
                NewTopic(names.logs, 1, 1),
                NewTopic(names.dlq, 1, 1),
            ]
        )
    finally:
        admin.close()
    return names


def produce(bootstrap: str, topics: Topics) -> dict[str, Any]:
    """The flood, the huge trace, the big values; returns their trace ids and span counts."""
    rng = random.Random(5)
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks=1,
        linger_ms=20,
        batch_size=1 << 20,
        max_request_size=4 << 20,
    )
    huge, big = rng.randbytes(16), rng.randbytes(16)
    try:
        # 100,000 one-span traces, 1,000 to a message, that never complete on their own.
        for first in range(0, FLOOD_TRACES, PER_MESSAGE):
            ids = [rng.randbytes(16) for _ in range(PER_MESSAGE)]
            producer.send(topics.spans, flood_spans(ids, start_ns=START + first))
        # One trace of 50,000 spans: a root, then its children.
        root = rng.randbytes(8)
        producer.send(topics.spans, flood_spans([huge], start_ns=START, span_ids=[root]))
        for first in range(0, HUGE_SPANS - 1, PER_MESSAGE):
            size = min(PER_MESSAGE, HUGE_SPANS - 1 - first)
            children = [rng.randbytes(8) for _ in range(size)]
            value = flood_spans([huge], start_ns=START, parent=root, span_ids=children)
            producer.send(topics.spans, value, key=huge.hex().encode())
        # Thirty spans with a 1 MiB attribute value each (30 MiB held if kept whole).
        big_root = rng.randbytes(8)
        for i in range(BIG_VALUE_SPANS):
            span_id = big_root if i == 0 else rng.randbytes(8)
            spec = {
                "span_id": span_id,
                "parent": None if i == 0 else big_root,
                "start": START,
                "end": START + 1_000,
                "attributes": {"blob": "x" * (1 << 20)},
            }
            producer.send(topics.spans, otlp_spans(big, [spec]), key=big.hex().encode())
        producer.flush()
    finally:
        producer.close()
    return {
        "huge": huge.hex(),
        "big": big.hex(),
        "spans": FLOOD_TRACES + HUGE_SPANS + BIG_VALUE_SPANS,
        "traces": FLOOD_TRACES + 2,
    }


class RssSampler(threading.Thread):
    """Samples a process's memory from /proc until it exits: VmRSS (the series) and VmHWM,
    the kernel's high-water mark of the resident set (the peak between two samples too).

    Not ``wait4``'s ``ru_maxrss``: Linux carries the forking parent's resident size into it
    across the exec (a large pytest process would count as the processor's peak), while
    VmHWM belongs to the executed program's own address space.
    """

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, int]] = []
        self.peak = 0

    def run(self) -> None:
        started = time.monotonic()
        status = Path(f"/proc/{self.pid}/status")
        while True:
            try:
                text = status.read_text()
            except OSError:
                return
            rss, hwm = re.search(r"VmRSS:\s+(\d+) kB", text), re.search(r"VmHWM:\s+(\d+) kB", text)
            if rss is None or hwm is None:  # a zombie: exited, not reaped yet
                return
            self.samples.append((time.monotonic() - started, int(rss.group(1)) * 1024))
            self.peak = max(self.peak, int(hwm.group(1)) * 1024)
            time.sleep(0.05)


def run_processor(command: list[str], env: dict[str, str], log: Path) -> tuple[int, RssSampler]:
    """Run to the end, sampling its memory; (exit code, the sampler)."""
    with log.open("wb") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        sampler = RssSampler(process.pid)
        sampler.start()
        try:
            code = process.wait(timeout=1200)
        except BaseException:
            process.kill()
            process.wait()
            raise
        sampler.join(timeout=5)
    return code, sampler


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_memory_stays_under_the_bound_under_a_flood_and_huge_traces(
    services: Services,
    topics: Topics,
    index_prefix: str,
    es_client: Any,
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    bootstrap = services.kafka_bootstrap
    started = time.monotonic()
    produced = produce(bootstrap, topics)
    produce_s = time.monotonic() - started
    _spans_bound, bytes_bound = memory_bounds(BOUND_MB)
    env = {
        **os.environ,
        ENV_KAFKA_BOOTSTRAP: bootstrap,
        ENV_ES_URL: services.es_url,
        "HOPSCOPE_SPANS_TOPIC": topics.spans,
        "HOPSCOPE_LOGS_TOPIC": topics.logs,
        "HOPSCOPE_DLQ_TOPIC": topics.dlq,
        "HOPSCOPE_INDEX_PREFIX": index_prefix,
        "NO_COLOR": "1",
    }
    command = [
        sys.executable,
        "-m",
        "hopscope.cli",
        "process",
        "--drain",
        "--group",
        unique_name("group"),
        "--max-memory-mb",
        str(BOUND_MB),
        "--max-trace-spans",
        str(MAX_TRACE_SPANS),
        "--trace-idle",
        "3600",  # only the bounds flush traces before the end
    ]
    log = tmp_path / "processor.log"
    started = time.monotonic()
    code, sampler = run_processor(command, env, log)
    peak = sampler.peak
    process_s = time.monotonic() - started
    output = log.read_text()
    mb = 1024 * 1024
    print(
        f"produce {produce_s:.1f} s, process {process_s:.1f} s; bound {BOUND_MB} MB "
        f"(open traces {bytes_bound / mb:.0f} MB); peak RSS (VmHWM) {peak / mb:.0f} MB, "
        f"sampled VmRSS max {max(r for _, r in sampler.samples) / mb:.0f} MB over "
        f"{len(sampler.samples)} samples"
    )
    series = " ".join(
        f"{t:.0f}s:{r // mb}" for t, r in sampler.samples[:: max(1, len(sampler.samples) // 20)]
    )
    print(f"RSS (MB) over time: {series}")
    assert code == 0, output[-3000:]

    # The bound held, all along (the kernel's high-water mark, not only the samples).
    assert peak < BOUND_MB * mb, f"peak RSS {peak / mb:.0f} MB over the {BOUND_MB} MB bound"
    assert len(sampler.samples) > 10

    # Nothing lost: every span indexed, no dead letter; every trace summarized.
    refresh(es_client, index_prefix)
    assert count(es_client, index_prefix, "spans") == produced["spans"]
    assert read_topic(bootstrap, topics.dlq, idle_ms=1500) == []
    assert count(es_client, index_prefix, "traces") == produced["traces"]

    # Evicted traces were indexed as incomplete: most of the flood, since the bound holds
    # under a third of it; the processor's count agrees with Elasticsearch's.
    incomplete = count(es_client, index_prefix, "traces", term("hopscope.trace.complete", False))
    assert incomplete >= FLOOD_TRACES // 2
    match = re.search(r"incomplete traces (\d+)", output)
    assert match is not None and int(match.group(1)) == incomplete, output[-2000:]

    # The huge trace: derived from its first spans at the per-trace bound, flagged; every one
    # of its spans indexed.
    (huge,) = hits(es_client, index_prefix, "traces", {"ids": {"values": [produced["huge"]]}})
    assert huge["_source"]["hopscope.trace.span_count"] == MAX_TRACE_SPANS
    assert huge["_source"]["hopscope.trace.complete"] is False
    assert huge["_source"]["hopscope.sanitized"] == [s.SPAN_LIMIT]
    assert count(es_client, index_prefix, "spans", term("trace.id", produced["huge"])) == (
        HUGE_SPANS
    )
    # The 1 MiB values: cut at the value limit, flagged.
    big = hits(es_client, index_prefix, "spans", term("trace.id", produced["big"]))
    assert len(big) == BIG_VALUE_SPANS
    for doc in big:
        assert len(doc["_source"]["attributes"]["blob"]) == s.DEFAULT_LIMITS.max_value_chars
        assert doc["_source"]["hopscope.sanitized"] == [s.VALUE_TRUNCATED]
