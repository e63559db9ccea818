"""Elasticsearch loader throughput: documents per second read back into polars.

Indexes ``--spans`` synthetic span documents (default 1,000,000; spread over three days, ten
services, three nodes each, the payment attributes the jobs read) under a fresh index prefix
with the processors' own index templates and bulk sink, then times
:func:`hopscope.analysis.loaders.load_elasticsearch` (sliced point-in-time reads, docvalue
fields) and prints docs/s. ``--prefix P --keep`` keeps the indices so a rerun with the same
prefix skips the indexing step.

    python benchmarks/es_loader.py [--spans 1000000] [--slices N] [--fetch source|docvalues]
                                   [--prefix P --keep]
"""

from __future__ import annotations

import argparse
import os
import random
import time
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from elasticsearch import Elasticsearch
from rich.console import Console

from hopscope.analysis.loaders import count_elasticsearch, load_elasticsearch
from hopscope.core.es_security import es_client
from hopscope.ingest.simulator import parse_iso8601_ns
from hopscope.processors.documents import Document, span_document
from hopscope.processors.records import CLIENT, ERROR, INTERNAL, OK, SERVER, SpanRecord
from hopscope.processors.sink import BulkOutcome, ElasticsearchSink
from hopscope.stack import resolve_settings

START_NS = parse_iso8601_ns("2026-05-04T00:00:00Z")
STEP_NS = 250_000_000  # 1M spans over ~2.9 days: three daily indices
SERVICES = ("gateway", "payment", "risk", "ledger", "vault", "acquirer", "issuer", "fx",
            "notify", "settlement")  # fmt: skip
BULK = 5_000


def synthetic(count: int, prefix: str, seed: int = 11) -> Iterator[list[Document]]:
    """Span documents in bulk-sized batches: traces of five spans, client/server pairs."""
    rng = random.Random(seed)
    batch: list[Document] = []
    for i in range(count):
        trace = f"{i // 5:032x}"
        position = i % 5
        service = SERVICES[(i // 5 + position) % len(SERVICES)]
        start = START_NS + i * STEP_NS
        duration = rng.randint(200_000, 80_000_000)
        kind = (SERVER, CLIENT, SERVER, CLIENT, INTERNAL)[position]
        attributes: dict[str, object] = {"payment.id": f"pay_{i // 5:x}", "payment.method": "card"}
        if kind == CLIENT:
            attributes |= {"peer.service": SERVICES[(i + 1) % len(SERVICES)],
                           "server.address": f"node-{rng.randint(1, 3)}",
                           "hopscope.lb.strategy": "round_robin"}  # fmt: skip
        if position == 4:
            attributes |= {"db.system": "postgresql", "db.operation.name": "SELECT",
                           "hopscope.db.role": rng.choice(("primary", "replica"))}  # fmt: skip
        span = SpanRecord(
            trace_id=trace, span_id=f"{i:016x}",
            parent_id=f"{i - 1:016x}" if position else None,
            name=f"{service}/op{position}", kind=kind, start_ns=start, end_ns=start + duration,
            service=service, node=f"{service}-{rng.randint(1, 3)}",
            status=ERROR if rng.random() < 0.02 else OK, attributes=attributes,
            resource={"service.name": service, "cloud.region": "eu-central-1"},
        )  # fmt: skip
        batch.append(span_document(span, prefix))
        if len(batch) == BULK:
            yield batch
            batch = []
    if batch:
        yield batch


def index(client: Elasticsearch, prefix: str, count: int, console: Console) -> None:
    sink = ElasticsearchSink(client, prefix)
    sink.install_templates()
    started = time.perf_counter()
    written = 0
    with ThreadPoolExecutor(max_workers=2) as pool:
        # Two bulk requests in flight; Executor.map would build every batch up front.
        pending: deque[Future[BulkOutcome]] = deque()
        for batch in synthetic(count, prefix):
            if len(pending) == 2:
                written += pending.popleft().result().acknowledged
            pending.append(pool.submit(sink.write, batch))
        written += sum(f.result().acknowledged for f in pending)
    client.indices.refresh(index=f"{prefix}-*")
    elapsed = time.perf_counter() - started
    console.print(f"indexed {written:,} span documents in {elapsed:.1f} s")


def measure(
    client: Elasticsearch,
    prefix: str,
    spans: int,
    console: Console,
    *,
    slices: int | None = None,
    fetch: str = "source",
) -> tuple[int, float]:
    """Index ``spans`` documents under ``prefix`` unless present, then time one full load.

    Returns (documents loaded, seconds).
    """
    present = count_elasticsearch(client, index_prefix=prefix, kinds=("spans",))["spans"]
    if present < spans:
        index(client, prefix, spans, console)  # same ids: a partial run is completed
    present = count_elasticsearch(client, index_prefix=prefix, kinds=("spans",))["spans"]
    started = time.perf_counter()
    data = load_elasticsearch(client, index_prefix=prefix, kinds=("spans",), slices=slices,
                              fetch=fetch, progress=False).collect()  # type: ignore[arg-type]  # fmt: skip
    elapsed = time.perf_counter() - started
    loaded = data.spans.select("span_id").collect().height
    assert loaded == present, f"loaded {loaded} of {present} documents"
    return loaded, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--slices", type=int, default=None)
    parser.add_argument("--fetch", choices=("source", "docvalues"), default="source")
    parser.add_argument("--prefix", default=None, help="reuse/keep this index prefix")
    parser.add_argument("--keep", action="store_true", help="do not delete the indices")
    parser.add_argument("--es-url", default=os.environ.get("HOPSCOPE_ES_URL"))
    args = parser.parse_args()
    console = Console(stderr=True)
    client = es_client(args.es_url or resolve_settings().es_url,
                       request_timeout=120)  # fmt: skip
    prefix = args.prefix or f"hopscope-bench-{uuid.uuid4().hex[:8]}"
    try:
        loaded, elapsed = measure(client, prefix, args.spans, console, slices=args.slices,
                                  fetch=args.fetch)  # fmt: skip
        print(f"load_elasticsearch: {loaded:,} span documents in {elapsed:.2f} s = "
              f"{loaded / elapsed:,.0f} docs/s (slices={args.slices or 'default'}, "
              f"fetch={args.fetch}); goal 100,000 docs/s, "
              f"ratio {loaded / elapsed / 1e5:.2f}")  # fmt: skip
    finally:
        if not args.keep:
            client.indices.delete(index=f"{prefix}-*", ignore_unavailable=True,
                                  allow_no_indices=True)  # fmt: skip
        client.close()


if __name__ == "__main__":
    main()
