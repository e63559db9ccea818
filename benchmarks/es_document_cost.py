"""Elasticsearch CPU per document: the index templates before and after the lean mappings.

The same documents (``--traces`` simulated payments: their span documents and the derived
hops, traces and coordination documents, as the processor builds them) are bulk-indexed into
fresh indices under two sets of templates, alternately for ``--rounds`` rounds:

- ``before``: the templates as they were before the lean mappings: every mapped scalar field
  and attribute indexed and with doc values (today's templates with the ``index`` and
  ``doc_values`` settings removed);
- ``after``: :func:`hopscope.processors.templates.index_template` as installed (schema.py:
  ``FILTERED`` fields keep the inverted index, the rest and the attribute maps doc values
  only, ``COPIES`` neither).

For each: the node's process CPU (``_nodes/stats``) over the bulk writes, a refresh and a
flush (so segment writing is counted; the indices are created beforehand), per document; the
store size per document; and the ratio after / before from the same run (median of the
rounds, and of the least: the node serves other work on a shared machine, which only ever adds
CPU, hence the alternation and the least as well as the median).
Every index is deleted at the end.

    python benchmarks/es_document_cost.py [--traces 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import uuid
from collections import defaultdict
from typing import Any

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from hopscope.core.es_security import es_client
from hopscope.ingest.otlp_wire import encode_trace_request
from hopscope.ingest.simulator import SimulationConfig, parse_iso8601_ns, simulate
from hopscope.processors.decode import decode_spans
from hopscope.processors.derive import derive_all
from hopscope.processors.documents import Document, derived_documents, span_document
from hopscope.processors.records import SpanRecord
from hopscope.processors.sink import ElasticsearchSink
from hopscope.processors.templates import KINDS, index_template, template_name
from hopscope.stack import resolve_settings

BULK = 2000  # documents per bulk request, as processor_throughput.py writes
PLACEHOLDER = "PREFIX"


def documents(traces: int) -> list[Document]:
    """The processor's documents of ``traces`` simulated payments, indices under PLACEHOLDER."""
    memory = InMemorySpanExporter()
    config = SimulationConfig(start_ns=parse_iso8601_ns("2026-05-04T10:00:00Z"), traces=traces)
    simulate(config, span_processors=[SimpleSpanProcessor(memory)])
    by_trace: dict[int, list[Any]] = defaultdict(list)
    for span in memory.get_finished_spans():
        by_trace[span.context.trace_id].append(span)
    out: list[Document] = []
    for spans in by_trace.values():
        records: list[SpanRecord] = decode_spans(encode_trace_request(spans))
        out += [span_document(s, PLACEHOLDER) for s in records]
        out += derived_documents(derive_all(records), PLACEHOLDER)
    return out


def before(body: dict[str, Any]) -> dict[str, Any]:
    """The template as it was before the lean mappings: no ``index``/``doc_values`` settings."""
    body = copy.deepcopy(body)
    mappings = body["template"]["mappings"]
    dynamic = [next(iter(t.values()))["mapping"] for t in mappings["dynamic_templates"]]
    for mapping in [*mappings["properties"].values(), *dynamic]:
        mapping.pop("index", None)
        mapping.pop("doc_values", None)
    return body


def node_cpu_s(es: Any) -> float:
    nodes = es.nodes.stats(metric="process")["nodes"]
    return sum(n["process"]["cpu"]["total_in_millis"] for n in nodes.values()) / 1000


def index_once(es: Any, docs: list[Document], prefix: str, variant: str) -> tuple[float, int]:
    """Install ``variant``'s templates under ``prefix``, index ``docs``, refresh and flush:
    (node CPU seconds, store bytes)."""
    for kind in KINDS:
        body = index_template(prefix, kind)
        es.indices.put_index_template(
            name=template_name(prefix, kind), **(before(body) if variant == "before" else body)
        )
    moved = [
        Document(d.kind, d.index.replace(PLACEHOLDER, prefix, 1), d.id, d.body, d.delete)
        for d in docs
    ]
    # The indices are created before the measurement: creating one (a cluster-state update)
    # costs the same under both templates and would swamp a small run.
    for index in sorted({d.index for d in moved}):
        es.indices.create(index=index)
    es.cluster.health(index=f"{prefix}-*", wait_for_status="green", timeout="60s")
    sink = ElasticsearchSink(es, prefix)
    cpu = node_cpu_s(es)
    for i in range(0, len(moved), BULK):
        outcome = sink.write(moved[i : i + BULK])
        if outcome.rejected:
            raise SystemExit(f"{variant}: {len(outcome.rejected)} documents rejected")
    es.indices.refresh(index=f"{prefix}-*")
    es.indices.flush(index=f"{prefix}-*")
    cpu = node_cpu_s(es) - cpu
    stats = es.indices.stats(index=f"{prefix}-*", metric="store,docs")["_all"]["primaries"]
    if stats["docs"]["count"] != len({(d.index, d.id) for d in moved}):
        raise SystemExit(f"{variant}: {stats['docs']['count']} documents indexed of {len(moved)}")
    return cpu, int(stats["store"]["size_in_bytes"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    console = Console()
    settings = resolve_settings()
    assert settings.es_url
    es = es_client(settings.es_url, request_timeout=120)
    run_id = uuid.uuid4().hex[:8]
    with console.status(f"building the documents of {args.traces:,} payments"):
        docs = documents(args.traces)
    results: dict[str, list[tuple[float, int]]] = {"before": [], "after": []}
    try:
        with Progress(console=console) as progress:
            task = progress.add_task("indexing", total=2 * args.rounds)
            for round_ in range(args.rounds):
                # Alternate which goes first, so a neighbour's burst does not favour one.
                order = ("before", "after") if round_ % 2 == 0 else ("after", "before")
                for variant in order:
                    prefix = f"bench-doccost-{run_id}-{variant}-{round_}"
                    results[variant].append(index_once(es, docs, prefix, variant))
                    es.indices.delete(index=f"{prefix}-*")
                    for kind in KINDS:
                        es.indices.delete_index_template(name=template_name(prefix, kind))
                    progress.advance(task)
                    time.sleep(1)  # let the deletes settle before the next measurement
    finally:
        es.indices.delete(index=f"bench-doccost-{run_id}-*", ignore_unavailable=True)
        es.close()

    n = len(docs)
    table = Table("templates", "ES CPU µs/doc (median)", "(least)", "rounds (µs/doc)",
                  "store B/doc",
                  title=f"Elasticsearch cost of {n:,} documents ({args.traces:,} payments), "
                  f"{args.rounds} rounds")  # fmt: skip
    medians, least = {}, {}
    for variant, runs in results.items():
        per_doc = [cpu / n * 1e6 for cpu, _ in runs]
        medians[variant], least[variant] = statistics.median(per_doc), min(per_doc)
        store = statistics.median(size for _, size in runs) / n
        table.add_row(variant, f"{medians[variant]:,.0f}", f"{least[variant]:,.0f}",
                      ", ".join(f"{v:,.0f}" for v in per_doc), f"{store:,.0f}")  # fmt: skip
    store_ratio = statistics.median(s for _, s in results["after"]) / statistics.median(
        s for _, s in results["before"]
    )
    table.add_row("after / before", f"{medians['after'] / medians['before']:.2f}x",
                  f"{least['after'] / least['before']:.2f}x", "",
                  f"{store_ratio:.2f}x")  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    main()
