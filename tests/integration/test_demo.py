"""The demo flow end to end against the real broker and node."""

from collections.abc import Callable
from typing import Any

import pytest
from rich.console import Console

from hopscope.demo import run_demo
from tests.conftest import Services

pytestmark = pytest.mark.integration


def test_demo_flows_simulated_payments_to_a_search(
    services: Services, unique_name: Callable[[str], str], index_prefix: str, es_client: Any
) -> None:
    console = Console(record=True, width=160)
    kwargs: dict[str, Any] = {
        "settings": services.settings, "traces": 30, "spans_topic": unique_name("spans"),
        "logs_topic": unique_name("logs"), "index_prefix": index_prefix, "group": unique_name("g"),
    }  # fmt: skip
    counts = run_demo(console, console, **kwargs)
    assert counts["traces"] == 30
    assert counts["spans"] == counts["indexed"] == counts["found"] > 30 * 10
    text = console.export_text()
    assert f"{counts['spans']} span documents" in text and services.kafka_bootstrap in text
    assert "card numbers masked at the source" in text
    # One root per payment: the gateway's incoming request.
    roots = es_client.count(
        index=f"{index_prefix}-spans-*",
        query={"bool": {"must_not": {"exists": {"field": "parent.id"}}}},
    )["count"]
    assert roots == 30

    # A second run reads only its own messages (offsets were committed after indexing).
    again = run_demo(console, console, **{**kwargs, "traces": 5})
    assert again["traces"] == 5 and again["indexed"] == again["spans"]
