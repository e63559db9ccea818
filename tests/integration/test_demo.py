"""The demo end to end against the real broker and node: simulator, processor, search."""

from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from hopscope.cli.demo import run_demo
from tests.conftest import Services

pytestmark = pytest.mark.integration


def test_demo_flows_simulated_payments_through_the_processor(
    services: Services, unique_name: Callable[[str], str], index_prefix: str, tmp_path: Path
) -> None:
    console = Console(record=True, width=160)
    found = run_demo(
        console, console, settings=services.settings, traces=60, scenario="node-failure",
        spans_topic=unique_name("spans"), logs_topic=unique_name("logs"),
        dlq_topic=unique_name("dlq"), index_prefix=index_prefix, group=unique_name("g"),
        html=tmp_path / "report.html",
    )  # fmt: skip
    assert found["traces"] == 60 and found["spans"] > 60 * 10
    assert found["hops"] > 0 and found["coordination"] > 0
    text = console.export_text()
    assert "card numbers masked at the source" in text and services.kafka_bootstrap in text
    assert "payment-2 →" in text  # the failed node's failovers were found
    assert "ground truth" in text
    # Step 5: the analysis report of the run, its top finding the failed node (the demo raises
    # otherwise), and the HTML file.
    assert "hopscope report" in text and "findings (most important first)" in text
    assert f"HTML report: {(tmp_path / 'report.html').resolve()}" in text.replace("\n", "")
    assert (tmp_path / "report.html").stat().st_size > 10_000
    assert isinstance(found, dict) and all(isinstance(v, int) for v in found.values())
