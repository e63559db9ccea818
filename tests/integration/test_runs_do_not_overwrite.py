"""Two simulations with the same seed into the same indices: the second overwrites nothing.

Both runs go through ``hopscope simulate`` with the same ``--seed`` and ``--start`` and no
``--run-id`` (what a user does by running the command twice), then through the real processor
into one index prefix. Each run also goes alone into a prefix of its own, so "nothing
overwritten" is exact: per kind, the shared indices hold the sum of the two runs alone, and
every document of the first run is still there, unchanged.
"""

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch
from typer.testing import CliRunner

from hopscope.cli import app
from hopscope.processors.templates import KINDS
from tests.conftest import Services, throwaway_index_prefix
from tests.integration.processor_support import Topics, drain, hits, refresh

pytestmark = pytest.mark.integration

runner = CliRunner()
START = "2026-03-02T09:00:00Z"
# node-failure: every derived kind (hops, failovers of all three sources, coordination delays,
# 2PC) and cluster-event logs outside any trace.
SCENARIO = "node-failure"


@pytest.fixture
def alone_prefix(services: Services) -> Iterator[str]:
    """A second index prefix for the runs processed alone; deleted afterwards."""
    with throwaway_index_prefix(services.es_url) as prefix:
        yield prefix


def simulate(services: Services, topics: Topics, truth: Path) -> dict[str, Any]:
    """``hopscope simulate`` with seed 7 at :data:`START`, run id left to its default."""
    result = runner.invoke(app, [
        "simulate", "--scenario", SCENARIO, "--traces", "40", "--seed", "7", "--start", START,
        "--ground-truth", str(truth), "--bootstrap", services.kafka_bootstrap,
        "--spans-topic", topics.spans, "--logs-topic", topics.logs,
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    ground_truth: dict[str, Any] = json.loads(truth.read_text())
    return ground_truth


def documents(es: Elasticsearch, prefix: str) -> dict[str, dict[str, Any]]:
    """Every document under ``prefix``: kind -> document id -> source."""
    refresh(es, prefix)
    found: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        kind_hits = hits(es, prefix, kind)
        found[kind] = {h["_id"]: h["_source"] for h in kind_hits}
        assert len(found[kind]) == len(kind_hits), f"{kind}: one id in two daily indices"
    return found


def test_two_runs_with_the_same_seed_overwrite_nothing(
    services: Services,
    unique_name: Callable[[str], str],
    index_prefix: str,
    alone_prefix: str,
    es_client: Elasticsearch,
    tmp_path: Path,
) -> None:
    def topics(n: int) -> Topics:
        return Topics(unique_name(f"spans{n}"), unique_name(f"logs{n}"), unique_name(f"dlq{n}"))

    def process(run: Topics, prefix: str, group: str) -> None:
        counts = drain(services.kafka_bootstrap, services.es_url, run, prefix, unique_name(group))
        assert counts.dead_letters == 0

    first, second = topics(1), topics(2)
    truths = [simulate(services, first, tmp_path / "1.json"),
              simulate(services, second, tmp_path / "2.json")]  # fmt: skip
    assert truths[0]["run_id"] != truths[1]["run_id"]
    # Same seed: the same traffic, so any id not built from the run would collide.
    assert truths[0]["counts"] == truths[1]["counts"]

    # Run 1 alone in the shared indices: the documents a later run must leave alone.
    process(first, index_prefix, "g1")
    before = documents(es_client, index_prefix)
    assert all(before[kind] for kind in KINDS), {k: len(v) for k, v in before.items()}
    # Run 2 alone, in indices of its own: how many documents it makes by itself.
    process(second, alone_prefix, "g2-alone")
    second_alone = documents(es_client, alone_prefix)

    process(second, index_prefix, "g2")
    after = documents(es_client, index_prefix)
    for kind in KINDS:
        assert len(after[kind]) == len(before[kind]) + len(second_alone[kind]), kind
        changed = [i for i, source in before[kind].items() if after[kind].get(i) != source]
        assert not changed, f"{kind}: {len(changed)} documents of run 1 changed, e.g. {changed[:3]}"
