"""Aggregate tables from Elasticsearch: pushed down to the cluster against loaded and computed.

Steps (matched by ``Step N`` comments below):

1. Simulate ``--traces`` payments (four scenarios, as ``benchmarks/analysis_speed.py``) and
   index every document the processors write for them (spans, logs, hops, traces, failovers,
   coordination) under a fresh prefix, with the processors' templates and bulk sink.
2. Time :func:`hopscope.analysis.loaders.pushdown.pushdown_tables` (``composite`` +
   ``filter`` + ``percentiles`` per table) and the loaded path (``load_elasticsearch`` of the
   four kinds + :func:`hopscope.analysis.aggregates.tables`), twice each, alternately; print
   the documents, the best time of each and their ratio. The indices are deleted after.

    python benchmarks/es_pushdown.py [--traces 4000]
"""

from __future__ import annotations

import argparse
import time
import uuid

from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rich.console import Console
from rich.table import Table

from hopscope.analysis import aggregates
from hopscope.analysis.aggregates import TABLES
from hopscope.analysis.loaders import (
    count_elasticsearch,
    documents_from_records,
    load_elasticsearch,
)
from hopscope.analysis.loaders.pushdown import pushdown_tables
from hopscope.core.es_security import es_client
from hopscope.core.settings import Settings
from hopscope.ingest.simulator import Scenario, SimulationConfig, parse_iso8601_ns, simulate
from hopscope.processors.decode import decode_logs, decode_spans
from hopscope.processors.documents import Document, log_document
from hopscope.processors.sink import ElasticsearchSink
from hopscope.stack import resolve_settings

START = parse_iso8601_ns("2026-06-01T00:00:00Z")
SCENARIOS = (Scenario.NODE_FAILURE, Scenario.SLOW_HOP, Scenario.LOCK_CONTENTION,
             Scenario.CACHE_DEGRADATION)  # fmt: skip
BULK = 5_000
console = Console(stderr=True)


def documents(prefix: str, traces: int) -> list[Document]:
    """Step 1: every document the processors write for ``traces`` simulated payments."""
    out: list[Document] = []
    for number, scenario in enumerate(SCENARIOS):
        spans_out, logs_out = InMemorySpanExporter(), InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
        config = SimulationConfig(start_ns=START + number * 3600 * 10**9, scenario=scenario,
                                  seed=number, traces=traces // len(SCENARIOS))  # fmt: skip
        simulate(config, span_processors=[SimpleSpanProcessor(spans_out)],
                 log_processors=[SimpleLogRecordProcessor(logs_out)])  # fmt: skip
        spans = decode_spans(encode_spans(spans_out.get_finished_spans()).SerializeToString())
        logs = decode_logs(encode_logs(logs_out.get_finished_logs()).SerializeToString())
        out += documents_from_records(spans, logs, prefix=prefix)
        out += (log_document(g, prefix) for g in logs)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traces", type=int, default=4000)
    args = parser.parse_args()
    settings = Settings.from_env()
    url = settings.es_url or resolve_settings(settings).es_url
    assert url is not None
    client = es_client(url, request_timeout=120)
    prefix = f"hopscope-bench-{uuid.uuid4().hex[:8]}"
    try:
        # Step 1: index.
        sink = ElasticsearchSink(client, prefix)
        sink.install_templates()
        docs = documents(prefix, args.traces)
        for first in range(0, len(docs), BULK):
            outcome = sink.write(docs[first : first + BULK])
            assert not outcome.rejected, outcome.rejected[:1]
        client.indices.refresh(index=f"{prefix}-*")
        kinds = sorted({t.kind for t in TABLES})
        counted = sum(count_elasticsearch(client, index_prefix=prefix, kinds=kinds).values())
        # Step 2: time both paths, alternately.
        pushed: list[float] = []
        loaded: list[float] = []
        for _ in range(2):
            started = time.perf_counter()
            pushdown_tables(client, index_prefix=prefix)
            pushed.append(time.perf_counter() - started)
            started = time.perf_counter()
            data = load_elasticsearch(client, index_prefix=prefix, kinds=kinds, progress=False)
            aggregates.tables(data)
            loaded.append(time.perf_counter() - started)
        table = Table(title=f"aggregate tables from Elasticsearch: {counted:,} documents")
        table.add_column("path")
        table.add_column("seconds (best of 2)", justify="right")
        table.add_row("pushed down (composite + filter + percentiles)", f"{min(pushed):.2f}")
        table.add_row("loaded, then aggregated in polars", f"{min(loaded):.2f}")
        table.add_row("loaded / pushed down", f"{min(loaded) / min(pushed):.2f}×")
        Console().print(table)
    finally:
        client.indices.delete(index=f"{prefix}-*", ignore_unavailable=True, allow_no_indices=True)
        client.close()


if __name__ == "__main__":
    main()
