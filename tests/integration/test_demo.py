"""The demo end to end against the real broker and node: simulator, processor, search."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from hopscope.cli.demo import run_demo
from hopscope.ingest.simulator import (
    Scenario,
    SimulationConfig,
    default_start_ns,
    simulate_to_kafka,
)
from tests.conftest import Services
from tests.integration.processor_support import Topics, count, drain, refresh

pytestmark = pytest.mark.integration


def test_demo_flows_simulated_payments_through_the_processor(
    services: Services,
    unique_name: Callable[[str], str],
    index_prefix: str,
    es_client: Any,
    tmp_path: Path,
) -> None:
    # Other traffic in the same indices and minutes, first: the demo's scenario and seed, as a
    # user running `hopscope simulate` before or after the demo would send. The demo must count
    # and analyse only its own run.
    other = Topics(unique_name("other-spans"), unique_name("other-logs"), unique_name("o-dlq"))
    other_run = simulate_to_kafka(
        SimulationConfig(start_ns=default_start_ns(), scenario=Scenario.NODE_FAILURE, traces=25),
        bootstrap=services.kafka_bootstrap, spans_topic=other.spans, logs_topic=other.logs,
    )  # fmt: skip
    drain(services.kafka_bootstrap, services.es_url, other, index_prefix, unique_name("og"))

    console = Console(record=True, width=160)
    found = run_demo(
        console, console, settings=services.settings, traces=60, scenario="node-failure",
        spans_topic=unique_name("spans"), logs_topic=unique_name("logs"),
        dlq_topic=unique_name("dlq"), index_prefix=index_prefix, group=unique_name("g"),
        html=tmp_path / "report.html",
    )  # fmt: skip
    assert found["traces"] == 60 and found["spans"] > 60 * 10
    # Exactly the demo's run: everything else in the indices is the other run's.
    refresh(es_client, index_prefix)
    other_truth = other_run.result.ground_truth["counts"]
    assert count(es_client, index_prefix, "traces") == found["traces"] + other_truth["traces"]
    assert count(es_client, index_prefix, "spans") == found["spans"] + other_truth["spans"]
    assert count(es_client, index_prefix, "logs") == found["logs"] + other_truth["log_records"]
    assert found["hops"] > 0 and found["coordination"] > 0
    text = console.export_text()
    assert "card numbers masked at the source" in text and services.kafka_bootstrap in text
    assert "payment-2 →" in text  # the failed node's failovers were found
    assert "ground truth" in text
    # Step 5: the analysis report of the run, its top finding the failed node (the demo raises
    # otherwise), and the HTML file.
    assert "hopscope report" in text and "findings (most important first)" in text
    # Both count summaries speak of the same 60 traces (the demo raises when they disagree).
    assert "60 traces" in text and f"traces {found['traces']}" in text
    assert f"HTML report: {(tmp_path / 'report.html').resolve()}" in text.replace("\n", "")
    assert (tmp_path / "report.html").stat().st_size > 10_000
    assert isinstance(found, dict) and all(isinstance(v, int) for v in found.values())
