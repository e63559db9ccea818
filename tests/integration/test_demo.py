"""The demo flow end to end against the real broker and node."""

from collections.abc import Callable
from typing import Any

import pytest
from rich.console import Console

from hopscope.demo import run_demo
from tests.conftest import Services

pytestmark = pytest.mark.integration


def test_demo_flows_spans_from_the_sdk_to_a_search(
    services: Services, unique_name: Callable[[str], str], index_prefix: str, es_client: Any
) -> None:
    console = Console(record=True, width=120)
    counts = run_demo(
        console, console, settings=services.settings, payments=7,
        topic=unique_name("otlp_spans"), index_prefix=index_prefix, group=unique_name("g"),
    )  # fmt: skip
    assert counts == {"traces": 7, "spans": 35, "indexed": 35, "found": 35}
    text = console.export_text()
    assert "35 span documents" in text and services.kafka_bootstrap in text
    # Roots are the gateway's incoming requests, one per payment.
    roots = es_client.count(
        index=f"{index_prefix}-spans-*",
        query={"bool": {"must_not": {"exists": {"field": "parent.id"}}}},
    )["count"]
    assert roots == 7
