"""The demo: simulated payment traffic through Kafka and the processors into Elasticsearch.

Steps (matched by ``Step N`` comments below):

1. Resolve the endpoints (environment, else the running local stack).
2. Simulate payment traffic with a fault injected. The simulator drives the real SDK, so spans
   and logs reach ``otlp_spans``/``otlp_logs`` as OTLP protobuf, keyed by trace id, card numbers
   masked, exactly as an instrumented service's would; it also writes down the ground truth.
3. Run the stream processor until it has caught up: spans, logs, hops, failovers, coordination
   delays and trace summaries land in Elasticsearch, offsets committed after acknowledgement.
4. Ask Elasticsearch what happened in exactly this run, and set it beside the ground truth.
   The run is selected by its run id, never by a time window alone: the indices may hold other
   traffic of the same minutes (another ``hopscope simulate``, a live service). Spans and logs
   carry the run id on their resource; the derived records are selected by the run's trace ids.
5. Run the batch analysis over the same selection: print the ranked findings, write the HTML
   report, check that its counts are step 4's and that the top finding names the injected
   fault.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from hopscope.core.errors import HopscopeError
from hopscope.core.settings import Settings
from hopscope.processors.settings import default
from hopscope.stack import resolve_settings

DEMO_TRACES = 400
DEMO_SCENARIO = "node-failure"
DEMO_REPORT = Path("hopscope-demo-report.html")


class DemoError(HopscopeError):
    """The demo flow did not complete, or Elasticsearch disagrees with the ground truth."""


# The time bounds only narrow the search to a few daily indices; the run id selects exactly.
# A minute of margin covers a skewed node's clock and logs timed in float seconds.
WINDOW_MARGIN_NS = 60 * 10**9
# Kinds the demo counts, and which ones carry the run id on their resource (the others are
# derived per trace, so they are selected by the run's trace ids).
KINDS = ("spans", "logs", "traces", "hops", "failovers", "coordination")
_OWN_RESOURCE = ("spans", "logs")


@dataclass(frozen=True)
class RunSelection:
    """Exactly one simulator run in the indices: its run id, trace ids and time bounds."""

    run_id: str
    trace_ids: tuple[str, ...]
    start_ns: int
    end_ns: int

    @property
    def since(self) -> datetime:
        """The window's start, for the analysis loader (the run id still selects)."""
        return datetime.fromtimestamp((self.start_ns - WINDOW_MARGIN_NS) / 1e9, UTC)

    @property
    def until(self) -> datetime:
        """The window's end, for the analysis loader."""
        return datetime.fromtimestamp((self.end_ns + WINDOW_MARGIN_NS) / 1e9, UTC)

    def query(self, kind: str) -> dict[str, Any]:
        """The Elasticsearch query of this run's documents of ``kind``."""
        from hopscope.ingest.conventions import RUN_ID
        from hopscope.processors.documents import timestamp

        window = {"range": {"@timestamp": {
            "gte": timestamp(self.start_ns - WINDOW_MARGIN_NS),
            "lte": timestamp(self.end_ns + WINDOW_MARGIN_NS)}}}  # fmt: skip
        run: dict[str, Any] = (
            {"term": {f"resource.{RUN_ID}": self.run_id}}
            if kind in _OWN_RESOURCE
            else {"terms": {"trace.id": list(self.trace_ids)}}
        )
        return {"bool": {"filter": [window, run]}}


def _run_trace_ids(es: Any, index_prefix: str, run_id: str) -> tuple[str, ...]:
    """The trace ids of the run's spans, paged with a composite aggregation."""
    from hopscope.ingest.conventions import RUN_ID

    ids: list[str] = []
    after: dict[str, Any] | None = None
    while True:
        source = {"id": {"terms": {"field": "trace.id"}}}
        composite: dict[str, Any] = {"size": 1000, "sources": [source]}
        if after is not None:
            composite["after"] = after
        answer = es.search(
            index=f"{index_prefix}-spans-*", size=0, ignore_unavailable=True,
            query={"term": {f"resource.{RUN_ID}": run_id}},
            aggs={"traces": {"composite": composite}},
        )["aggregations"]["traces"]  # fmt: skip
        ids += [bucket["key"]["id"] for bucket in answer["buckets"]]
        after = answer.get("after_key")
        if not answer["buckets"] or after is None:
            return tuple(ids)


def run_demo(
    out: Console,
    err: Console,
    *,
    settings: Settings | None = None,
    traces: int = DEMO_TRACES,
    scenario: str = DEMO_SCENARIO,
    spans_topic: str = default("spans_topic"),
    logs_topic: str = default("logs_topic"),
    dlq_topic: str = default("dlq_topic"),
    index_prefix: str = default("index_prefix"),
    group: str = default("group"),
    html: Path | None = DEMO_REPORT,
) -> dict[str, int]:
    """Run the demo end to end, print what flowed, return the documents found per kind.

    Topics, index prefix and group default to the production names; tests pass their own so
    that they never see each other's data. ``html``: where the analysis report goes (None:
    not written).
    """
    from hopscope.core.es_security import es_client
    from hopscope.core.kafka_security import KafkaSecurity
    from hopscope.ingest.simulator import Scenario, SimulationConfig, simulate_to_kafka
    from hopscope.processors.runtime import Processor
    from hopscope.processors.settings import ProcessorSettings

    # Step 1: endpoints.
    settings = resolve_settings(settings)
    assert settings.kafka_bootstrap and settings.es_url
    err.print(f"Kafka {settings.kafka_bootstrap} · Elasticsearch {settings.es_url}",
              highlight=False)  # fmt: skip

    # Step 2: simulate into Kafka.
    config = SimulationConfig(start_ns=time.time_ns() // 10**9 * 10**9,
                              scenario=Scenario(scenario), traces=traces)  # fmt: skip
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task(f"simulating {scenario}", total=traces)
        run = simulate_to_kafka(
            config, bootstrap=settings.kafka_bootstrap, spans_topic=spans_topic,
            logs_topic=logs_topic, progress=lambda done: progress.update(task, completed=done),
        )  # fmt: skip
    result, truth = run.result, run.result.ground_truth

    # Step 3: the stream processor, until caught up.
    processor_settings = ProcessorSettings(
        kafka_bootstrap=settings.kafka_bootstrap, es_url=settings.es_url, group=group,
        spans_topic=spans_topic, logs_topic=logs_topic, dlq_topic=dlq_topic,
        index_prefix=index_prefix, trace_idle_s=1.0,
        kafka_options=KafkaSecurity.from_env().client_options(),
    )  # fmt: skip
    with err.status("processing"), Processor.from_settings(processor_settings) as processor:
        counts = processor.run(drain=True)

    # Step 4: what Elasticsearch knows about this run, and only this run.
    es = es_client(settings.es_url, request_timeout=60)
    try:
        es.indices.refresh(index=f"{index_prefix}-*")
        trace_ids = _run_trace_ids(es, index_prefix, result.run_id)
        selection = RunSelection(result.run_id, trace_ids, result.start_ns, result.end_ns)
        found = {
            kind: es.count(index=f"{index_prefix}-{kind}-*", query=selection.query(kind),
                           ignore_unavailable=True)["count"]
            for kind in KINDS
        }  # fmt: skip
        by_edge = es.search(
            index=f"{index_prefix}-hops-*", size=0, query=selection.query("hops"),
            aggs={"source": {"terms": {"field": "hopscope.hop.source_service", "size": 20},
                             "aggs": {"target": {
                                 "terms": {"field": "hopscope.hop.target_service", "size": 20},
                                 "aggs": {"p99": {"percentiles": {
                                     "field": "hopscope.hop.client_ns", "percents": [99]}}}}}}},
        )["aggregations"]["source"]["buckets"]  # fmt: skip
        edges = sorted(
            ((s["key"], t["key"], t["p99"]["values"]["99.0"] or 0.0)
             for s in by_edge for t in s["target"]["buckets"]),
            key=lambda edge: -edge[2],
        )[:5]  # fmt: skip
        failovers = es.search(
            index=f"{index_prefix}-failovers-*", size=0, query=selection.query("failovers"),
            aggs={"source": {"terms": {"field": "hopscope.failover.from_node"},
                             "aggs": {"target": {"terms": {
                                 "field": "hopscope.failover.to_node"}}}}},
        )["aggregations"]["source"]["buckets"]  # fmt: skip
        moves = [(s["key"], t["key"], t["doc_count"])
                 for s in failovers for t in s["target"]["buckets"]]  # fmt: skip
    finally:
        es.close()

    stats = run.stats
    spans_out, logs_out = stats["span_messages"], stats["log_messages"]
    masked = spans_out["redacted_strings"] + logs_out["redacted_strings"]
    table = Table("step", "what flowed", title=f"hopscope demo: {scenario}")
    table.add_row("simulator", f"{result.traces} payments → {result.spans} spans, "
                  f"{result.log_records} log records (real SDK, virtual time); "
                  f"injected: {truth['effect'].get('description', scenario)}")  # fmt: skip
    table.add_row("Kafka", f"{spans_out['messages']} span + "
                  f"{logs_out['messages']} log OTLP messages; {masked} card "
                  "numbers masked at the source")  # fmt: skip
    table.add_row("processor", f"{counts.messages} messages → "
                  + ", ".join(f"{k} {v}" for k, v in sorted(counts.indexed.items()))
                  + f"; dead letters {counts.dead_letters}; offsets committed after "
                  "Elasticsearch acknowledged")  # fmt: skip
    table.add_row("Elasticsearch", f"run {result.run_id}: "
                  + ", ".join(f"{k} {v}" for k, v in found.items()))  # fmt: skip
    table.add_row(
        "slowest hops (p99)",
        "; ".join(f"{source} → {target} {p99 / 1e6:.1f} ms" for source, target, p99 in edges)
        or "-",
    )
    truth_failovers = truth["effect"].get("failovers")
    found_moves = "; ".join(f"{a} → {b} ×{n}" for a, b, n in moves) or "none"
    if truth_failovers is not None:
        found_moves += f" (ground truth: {truth_failovers} failovers)"
    table.add_row("failovers", found_moves)
    out.print(table)
    out.print(f"Kafka bootstrap: {settings.kafka_bootstrap}\nElasticsearch:   {settings.es_url}",
              highlight=False)  # fmt: skip
    expected = {"spans": result.spans, "logs": result.log_records, "traces": result.traces}
    wrong = {k: (found[k], v) for k, v in expected.items() if found[k] != v}
    if wrong:
        raise DemoError(f"Elasticsearch holds other counts than were emitted: {wrong}")

    # Step 5: the batch analysis of this run, read back from Elasticsearch.
    _analyze(out, err, settings.es_url, index_prefix, selection, found, truth, html)
    return found


def _analyze(
    out: Console,
    err: Console,
    es_url: str,
    index_prefix: str,
    selection: RunSelection,
    found: dict[str, int],
    truth: dict[str, Any],
    html: Path | None,
) -> None:
    from hopscope.analysis.loaders import load_elasticsearch
    from hopscope.analysis.render import print_report
    from hopscope.analysis.report import build_report

    # The analysis reads the run's traces, as step 4 counted them: both summaries are one run's.
    data = load_elasticsearch(
        es_url, index_prefix=index_prefix, since=selection.since, until=selection.until,
        trace_ids=selection.trace_ids, progress=err.is_terminal,
    )  # fmt: skip
    report = build_report(
        data, source=f"elasticsearch {es_url} {index_prefix}-* run {selection.run_id}",
        progress=err.is_terminal,
    )  # fmt: skip
    print_report(report, out)
    if html is not None:
        from hopscope.analysis.render import write_html

        written = write_html(report, html)
        out.print(f"HTML report: {written.resolve()}", markup=False, highlight=False)
    read = dict(report.counts)
    read["coordination"] = read.get("coordination", 0) + read.pop("two_phase_commits", 0)
    # Logs are left out: the analysis selects the run by its trace ids, and a run also logs
    # cluster events outside any trace (step 4 counts those by run id).
    read.pop("logs", None)
    disagree = {k: (found[k], read[k]) for k in read if k in found and found[k] != read[k]}
    if disagree:
        raise DemoError(f"the analysis read other counts than Elasticsearch holds: {disagree}")
    injected = (truth.get("injected") or [{}])[0]
    node = injected.get("node")
    top = report.findings[0] if report.findings else None
    if node and (top is None or top.subject.get("node") != node):
        raise DemoError(
            f"the analysis's top finding does not name the failed node {node}: "
            f"{top.title if top else 'no findings'}"
        )


def demo_command() -> None:
    """Send real OTLP spans through Kafka into Elasticsearch and search them back."""
    from hopscope.cli._support import err, out

    run_demo(out, err)
