"""Every scenario: simulate → Kafka → processor → Elasticsearch + Parquet → ``analyze report``.

The report's top finding must name the injected cause, read from Elasticsearch and from the
processor's Parquet archive alike (the ground truth is
``hopscope.ingest.simulator._truth``):

- node-failure: the failed node, with its failover count;
- slow-hop: the slowed edge;
- lock-contention: the contended locks (the hot accounts);
- slow-replica: the lagging replica's reads served by the primary;
- cache-degradation: the cache;
- lb-skew: the overloaded node under ip_hash;
- clock-skew: the skewed node is reported (as a warning: it costs no latency);
- baseline: no high-impact finding.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch
from typer.testing import CliRunner

from hopscope.analysis.findings import Finding
from hopscope.analysis.loaders import load_elasticsearch, load_parquet
from hopscope.analysis.report import Report, build_report
from hopscope.cli import app
from hopscope.ingest.simulator import Scenario, SimulationConfig, simulate_to_kafka
from hopscope.processors.runtime import Processor
from tests.analysis_support import RATES, START
from tests.conftest import Services
from tests.integration.processor_support import Topics, processor_settings, refresh

pytestmark = pytest.mark.integration

TRACES = 600
SEED = 7


@dataclass(frozen=True)
class AnalysedRun:
    scenario: Scenario
    truth: dict[str, Any]
    prefix: str
    archive: Path
    since: datetime
    until: datetime
    from_es: Report
    from_parquet: Report

    @property
    def injected(self) -> dict[str, Any]:
        return dict(self.truth["injected"][0]) if self.truth["injected"] else {}


class Runs:
    """Each scenario simulated, processed and analysed once, on first use."""

    def __init__(self, services: Services, es: Elasticsearch, root: Path) -> None:
        self.services, self.es, self.root = services, es, root
        self._runs: dict[Scenario, AnalysedRun] = {}
        self._prefixes: list[str] = []

    def __call__(self, scenario: Scenario) -> AnalysedRun:
        if scenario not in self._runs:
            self._runs[scenario] = self._run(scenario)
        return self._runs[scenario]

    def _run(self, scenario: Scenario) -> AnalysedRun:
        name = f"t-analysis-{scenario.value}-{uuid.uuid4().hex[:8]}"
        topics = Topics(f"{name}-spans", f"{name}-logs", f"{name}-dlq")
        prefix = f"hopscope-test-{uuid.uuid4().hex[:10]}"
        self._prefixes.append(prefix)
        archive = self.root / scenario.value
        config = SimulationConfig(
            start_ns=START,
            scenario=scenario,
            seed=SEED,
            traces=TRACES,
            rate=RATES.get(scenario, 100.0),
        )
        bootstrap = self.services.kafka_bootstrap
        kafka_run = simulate_to_kafka(
            config, bootstrap=bootstrap, spans_topic=topics.spans, logs_topic=topics.logs
        )
        settings = processor_settings(
            bootstrap, self.services.es_url, topics, prefix, f"{name}-g", archive_dir=archive
        )
        with Processor(settings) as processor:
            processor.run(drain=True)
        refresh(self.es, prefix)
        result = kafka_run.result
        since = datetime.fromtimestamp(result.start_ns / 1e9, UTC) - timedelta(minutes=1)
        until = datetime.fromtimestamp(result.end_ns / 1e9, UTC) + timedelta(minutes=5)
        es_data = load_elasticsearch(
            self.services.es_url, index_prefix=prefix, since=since, until=until, progress=False
        )
        parquet_data = load_parquet(archive, since=since, until=until, progress=False)
        return AnalysedRun(
            scenario=scenario,
            truth=result.ground_truth,
            prefix=prefix,
            archive=archive,
            since=since,
            until=until,
            from_es=build_report(es_data, source="elasticsearch", progress=False),
            from_parquet=build_report(parquet_data, source="parquet", progress=False),
        )

    def close(self) -> None:
        for prefix in self._prefixes:
            self.es.indices.delete(
                index=f"{prefix}-*", ignore_unavailable=True, allow_no_indices=True
            )


@pytest.fixture(scope="module")
def runs(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    es = Elasticsearch(services.es_url, request_timeout=60)
    runs = Runs(services, es, tmp_path_factory.mktemp("archive"))
    try:
        yield runs
    finally:
        runs.close()
        es.close()


def _top(report: Report) -> Finding:
    assert report.findings, f"no findings from {report.source}"
    return report.findings[0]


def _describe(report: Report) -> str:
    return "\n".join(f"{f.impact} {f.kind}: {f.title}" for f in report.findings[:5])


FAULTS = [s for s in Scenario if s not in (Scenario.BASELINE, Scenario.CLOCK_SKEW)]


@pytest.mark.parametrize("scenario", FAULTS, ids=str)
def test_top_finding_names_the_injected_cause(runs: Runs, scenario: Scenario) -> None:
    run = runs(scenario)
    injected = run.injected
    for report in (run.from_es, run.from_parquet):
        top = _top(report)
        assert top.impact == "high", _describe(report)
        subject = top.subject
        if scenario is Scenario.NODE_FAILURE:
            assert top.kind == "node_failure", _describe(report)
            assert subject["node"] == injected["node"]
            assert top.evidence["failovers"] == run.truth["effect"]["failovers"]
        elif scenario is Scenario.SLOW_HOP:
            assert top.kind == "slow_edge", _describe(report)
            edge = injected["edge"]
            assert (subject["source_service"], subject["target_service"]) == (
                edge["source"],
                edge["target"],
            )
        elif scenario is Scenario.LOCK_CONTENTION:
            assert top.kind == "lock_contention", _describe(report)
            assert set(subject["resources"]) & set(injected["resources"])
        elif scenario is Scenario.SLOW_REPLICA:
            assert top.kind in ("reads_on_primary", "replica_lag"), _describe(report)
            named = json.dumps(subject)
            assert injected["primary"] in named or injected["replica"] in named
        elif scenario is Scenario.CACHE_DEGRADATION:
            assert top.kind == "cache_degradation", _describe(report)
            assert subject["cache"] == injected["cache"]
        elif scenario is Scenario.LB_SKEW:
            assert top.kind == "lb_imbalance", _describe(report)
            assert subject["node"] == injected["overloaded_node"]
            assert subject["strategy"] == "ip_hash"
        assert top.recommendation and top.gain and top.gain_ns > 0


def test_baseline_has_no_high_impact_finding(runs: Runs) -> None:
    run = runs(Scenario.BASELINE)
    for report in (run.from_es, run.from_parquet):
        assert report.counts["traces"] == TRACES
        assert [f for f in report.findings if f.impact == "high"] == [], _describe(report)


def test_clock_skew_names_the_skewed_node(runs: Runs) -> None:
    run = runs(Scenario.CLOCK_SKEW)
    for report in (run.from_es, run.from_parquet):
        skew = [f for f in report.findings if f.kind == "clock_skew"]
        assert skew and skew[0].subject["node"] == run.injected["node"], _describe(report)


def test_elasticsearch_and_parquet_give_the_same_records(runs: Runs) -> None:
    run = runs(Scenario.NODE_FAILURE)
    assert run.from_es.counts == run.from_parquet.counts
    assert run.from_es.counts["traces"] == TRACES
    es_rows = run.from_es.latency.sort("trace_id")
    parquet_rows = run.from_parquet.latency.sort("trace_id")
    assert es_rows.equals(parquet_rows)


def test_cli_report_json_orders_findings_and_writes_html(
    runs: Runs, services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = runs(Scenario.NODE_FAILURE)
    monkeypatch.setenv("HOPSCOPE_ES_URL", services.es_url)
    html = tmp_path / "report.html"
    window = ["--since", run.since.isoformat(), "--until", run.until.isoformat()]
    result = CliRunner().invoke(
        app,
        ["analyze", "report", "--index-prefix", run.prefix, *window, "--json", "--html", str(html)],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["findings"][0]["kind"] == "node_failure"
    assert report["findings"][0]["subject"]["node"] == run.injected["node"]
    impacts = [f["impact"] for f in report["findings"]]
    assert impacts == sorted(impacts, key=["high", "medium", "low"].index)
    page = html.read_text()
    assert page.count("<svg") >= 5 and run.injected["node"] in page

    parquet = CliRunner().invoke(app, ["analyze", "failovers", "--parquet", str(run.archive)])
    assert parquet.exit_code == 0, parquet.output
    assert run.injected["node"] in parquet.stdout
