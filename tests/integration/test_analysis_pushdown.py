"""Aggregations pushed down to the real Elasticsearch node equal the loaded path.

Counts and rates must be equal. Percentiles are Elasticsearch's t-digest estimates, the loaded
path's are observations at rank ``round(q · (n − 1))``: each pushed-down percentile must lie
between the loaded observations at ranks ``(q ∓ 1 %) · (n − 1)``, widened by one observation
(t-digest interpolates between the two neighbours of the rank; beyond the values it holds
exactly its error is a rank error, about 1 % at compression 100 on these group sizes).
"""

from __future__ import annotations

import math
from typing import Any

import polars as pl
import pytest

from hopscope.analysis import aggregates
from hopscope.analysis.aggregates import QUANTILES, TABLES
from hopscope.analysis.loaders import load_elasticsearch
from hopscope.analysis.loaders.pushdown import aggregate_elasticsearch, pushdown_tables
from tests.conftest import Services
from tests.integration.test_analysis_loaders import index
from tests.unit.test_loaders_parquet import simulated_records

pytestmark = pytest.mark.integration

RANK_TOLERANCE = 0.01


def _bounds(values: list[int], q: float) -> tuple[int, int]:
    ordered = sorted(values)
    last = len(ordered) - 1
    low = max(0, math.floor((q - RANK_TOLERANCE) * last) - 1)
    high = min(last, math.ceil((q + RANK_TOLERANCE) * last) + 1)
    return ordered[low], ordered[high]


def test_pushed_down_tables_equal_the_loaded_path(
    services: Services, es_client: Any, index_prefix: str
) -> None:
    spans, logs = simulated_records(traces=400)
    index(es_client, index_prefix, spans, logs)
    kinds = sorted({t.kind for t in TABLES})
    data = load_elasticsearch(services.es_url, index_prefix=index_prefix, kinds=kinds,
                              progress=False).collect()  # fmt: skip
    loaded = aggregates.tables(data)
    pushed = pushdown_tables(es_client, index_prefix=index_prefix)
    for spec in TABLES:
        left, right = pushed[spec.name], loaded[spec.name]
        assert left.height == right.height > 0, spec.name
        counts = [
            *spec.keys,
            "calls",
            *(c for f in spec.flags for c in (f"{f}_count", f"{f}_rate")),
        ]
        assert left.select(counts).equals(right.select(counts)), spec.name
        frame = getattr(data, spec.kind).collect()
        for row in left.iter_rows(named=True):
            match = pl.all_horizontal(
                (pl.col(k) == row[k]) if row[k] is not None else pl.col(k).is_null()
                for k in spec.keys
            )
            group = frame.filter(match)
            for metric in spec.metrics:
                values = group[metric].drop_nulls().to_list()
                for label, q in QUANTILES.items():
                    got = row[f"{metric.removesuffix('_ns')}_{label}_ns"]
                    if not values:
                        assert got is None, (spec.name, row, metric)
                        continue
                    low, high = _bounds(values, q)
                    assert low - 1 <= got <= high + 1, (spec.name, metric, label, low, got, high)


def test_the_threshold_picks_the_path(
    services: Services, es_client: Any, index_prefix: str
) -> None:
    spans, logs = simulated_records(traces=60)
    index(es_client, index_prefix, spans, logs)
    below = aggregate_elasticsearch(es_client, index_prefix=index_prefix)
    above = aggregate_elasticsearch(es_client, index_prefix=index_prefix, threshold=0)
    assert (below.method, above.method) == ("loaded", "pushdown")
    assert below.documents == above.documents > 0
    for name, table in below.tables.items():
        assert table.select("calls").equals(above.tables[name].select("calls")), name


def test_cli_report_aggregates_from_elasticsearch(
    services: Services, es_client: Any, index_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from typer.testing import CliRunner

    from hopscope.cli import app

    spans, logs = simulated_records(traces=60)
    index(es_client, index_prefix, spans, logs)
    monkeypatch.setenv("HOPSCOPE_ES_URL", services.es_url)
    window = ["--since", "2026-03-02T00:00:00Z", "--until", "2026-03-03T00:00:00Z"]
    args = ["analyze", "report", "--aggregates", "--index-prefix", index_prefix, *window]
    pushed = CliRunner().invoke(app, [*args, "--pushdown-threshold", "0", "--json"])
    loaded = CliRunner().invoke(app, [*args, "--json"])
    assert pushed.exit_code == 0 and loaded.exit_code == 0, pushed.output + loaded.output
    calls = {
        name: sorted(row["calls"] for row in table)
        for name, table in json.loads(pushed.stdout)["tables"].items()
    }
    assert calls == {
        name: sorted(row["calls"] for row in table)
        for name, table in json.loads(loaded.stdout)["tables"].items()
    }
    assert sum(calls["operations"]) == len(spans)
    limited = CliRunner().invoke(app, [*args, "--memory-limit", "1GB"])
    assert limited.exit_code == 2
