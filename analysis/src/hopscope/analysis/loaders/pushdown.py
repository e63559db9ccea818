"""The aggregate tables of a window computed by Elasticsearch, for windows too large to load.

:mod:`hopscope.analysis.aggregates` defines the tables (per edge, operation, failover path and
coordination kind: calls, flag counts and rates, latency percentiles). Below
``threshold`` documents the window is loaded and the tables computed in polars (exact
percentiles under the analysis' rule); above it, each table is one ``composite``
aggregation over its keys (paged by ``after_key``, ``missing_bucket`` so null keys stay a
group), with a ``filter`` count per flag and a ``percentiles`` aggregation per metric: the
cluster reads the documents where they are, and the process receives one bucket per key.
Only aggregations of the integ-test-zip distribution are used (no scripts, no plugins).

Percentiles from Elasticsearch are t-digest estimates (its default, compression 100): exact
while a group is small enough for the digest to hold every value (then interpolated between
the two observations around the rank, where the loaded path picks the nearest one), and
within about 1 % of rank at the tails beyond (t-digest's error is a rank error, smallest at
the extreme quantiles). Counts and rates are exact. The integration test bounds each
percentile between the observations at ranks ``q ± 1 %`` (and ± 1 observation) of the loaded
data.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import polars as pl

from hopscope.analysis import aggregates
from hopscope.analysis.aggregates import QUANTILES, TABLES, Table
from hopscope.analysis.loaders.elasticsearch import (
    _RECORD,
    _client,
    count_elasticsearch,
    load_elasticsearch,
)
from hopscope.analysis.loaders.parquet import _utc
from hopscope.analysis.schema import SCHEMAS
from hopscope.core.settings import DEFAULT_INDEX_PREFIX
from hopscope.processors.schema import TABLES as RECORD_TABLES

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

__all__ = ["PUSHDOWN_THRESHOLD", "Aggregated", "aggregate_elasticsearch", "pushdown_tables"]

# Documents in the window above which the cluster aggregates: about what one process loads
# in a minute (the ES loader reads ~100k documents/s), and well inside its memory.
PUSHDOWN_THRESHOLD: Final = 5_000_000
# Composite buckets per page: one request per thousand keys (edges and operations number in
# the hundreds), below the default search.max_buckets with every sub-aggregation counted.
_PAGE: Final = 1000
# Flags whose document is not a Boolean field: the span outcome is a keyword.
_FLAG_TERMS: Final = {("spans", "error"): ("event.outcome", "failure")}


@dataclass(frozen=True)
class Aggregated:
    """The aggregate tables of a window and how they were computed (``pushdown``: by
    Elasticsearch; ``loaded``: in polars from the loaded documents) and over how many
    documents."""

    tables: dict[str, pl.DataFrame]
    method: str
    documents: int


def _field(kind: str, column: str) -> str:
    return SCHEMAS[kind][column][0]


def _query(kind: str, since: datetime | None, until: datetime | None) -> dict[str, Any]:
    filters: list[dict[str, Any]] = []
    window: dict[str, str] = {}
    if since is not None:
        window["gte"] = _utc(since).isoformat()
    if until is not None:
        window["lt"] = _utc(until).isoformat()
    if window:
        filters.append({"range": {"@timestamp": window}})
    must_not = [{"term": {_RECORD: "2pc"}}] if kind == "coordination" else []
    return {"bool": {"filter": filters, "must_not": must_not}}


def _aggregation(spec: Table) -> dict[str, Any]:
    sources = [
        {key: {"terms": {"field": _field(spec.kind, key), "missing_bucket": True}}}
        for key in spec.keys
    ]
    subs: dict[str, Any] = {}
    for flag in spec.flags:
        field, value = _FLAG_TERMS.get((spec.kind, flag), (_field(spec.kind, flag), True))
        subs[f"{flag}_count"] = {"filter": {"term": {field: value}}}
    for metric in spec.metrics:
        subs[metric] = {
            "percentiles": {
                "field": _field(spec.kind, metric),
                "percents": [q * 100 for q in QUANTILES.values()],
                "keyed": False,
            }
        }
    return {"composite": {"size": _PAGE, "sources": sources}, "aggs": subs}


def _buckets(
    client: Elasticsearch, index: str, query: dict[str, Any], aggregation: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    after: dict[str, Any] | None = None
    while True:
        body = dict(aggregation)
        if after is not None:
            body["composite"] = {**aggregation["composite"], "after": after}
        response = client.search(
            index=index, size=0, query=query, aggs={"table": body},
            ignore_unavailable=True, allow_no_indices=True, track_total_hits=False,
        )  # fmt: skip
        table = (response.get("aggregations") or {}).get("table") or {}
        yield from table.get("buckets", [])
        after = table.get("after_key")
        if not table.get("buckets") or after is None:
            return


def _table(spec: Table, buckets: Sequence[dict[str, Any]]) -> pl.DataFrame:
    rows = []
    for b in buckets:
        row: dict[str, Any] = {k: b["key"].get(k) for k in spec.keys}
        row["calls"] = b["doc_count"]
        for flag in spec.flags:
            row[f"{flag}_count"] = b[f"{flag}_count"]["doc_count"]
        for metric in spec.metrics:
            stem = metric.removesuffix("_ns")
            values = b[metric]["values"]
            for label, entry in zip(QUANTILES, values, strict=True):
                value = entry.get("value")
                row[f"{stem}_{label}_ns"] = None if value is None else round(value)
        rows.append(row)
    schema: dict[str, pl.DataType] = {k: SCHEMAS[spec.kind][k][1] for k in spec.keys}
    schema["calls"] = pl.Int64()
    for flag in spec.flags:
        schema[f"{flag}_count"] = pl.Int64()
    for metric in spec.metrics:
        for label in QUANTILES:
            schema[f"{metric.removesuffix('_ns')}_{label}_ns"] = pl.Int64()
    frame = pl.DataFrame(rows, schema=schema, orient="row")
    return frame.with_columns(
        (pl.col(f"{f}_count") / pl.col("calls")).alias(f"{f}_rate") for f in spec.flags
    ).select(
        *spec.keys, "calls", *(c for f in spec.flags for c in (f"{f}_count", f"{f}_rate")),
        *(f"{m.removesuffix('_ns')}_{label}_ns" for m in spec.metrics for label in QUANTILES),
    ).sort(list(spec.keys), nulls_last=True)  # fmt: skip


def pushdown_tables(
    client_or_url: Elasticsearch | str,
    *,
    index_prefix: str = DEFAULT_INDEX_PREFIX,
    since: datetime | None = None,
    until: datetime | None = None,
    tables: Sequence[str] | None = None,
) -> dict[str, pl.DataFrame]:
    """The aggregate tables of ``[since, until)``, aggregated by Elasticsearch.

    Parameters:
        client_or_url: an ``elasticsearch.Elasticsearch`` client or a URL.
        index_prefix: the processors' index prefix.
        since: window start (inclusive, on ``@timestamp``); naive datetimes are UTC.
        until: window end (exclusive).
        tables: names of :data:`hopscope.analysis.aggregates.TABLES` (default: all).

    Returns:
        Table name -> table, with the columns of
        :func:`hopscope.analysis.aggregates.finish` (percentiles: see the module docstring).
    """
    wanted = [t for t in TABLES if tables is None or t.name in tables]
    out: dict[str, pl.DataFrame] = {}
    with _client(client_or_url) as client:
        for spec in wanted:
            index = f"{index_prefix}-{RECORD_TABLES[spec.kind].index}-*"
            buckets = list(_buckets(client, index, _query(spec.kind, since, until),
                                    _aggregation(spec)))  # fmt: skip
            out[spec.name] = _table(spec, buckets)
    return out


def aggregate_elasticsearch(
    client_or_url: Elasticsearch | str,
    *,
    index_prefix: str = DEFAULT_INDEX_PREFIX,
    since: datetime | None = None,
    until: datetime | None = None,
    threshold: int = PUSHDOWN_THRESHOLD,
) -> Aggregated:
    """The aggregate tables of a window: pushed down to Elasticsearch above ``threshold``
    documents (spans, hops, failovers and coordination delays together), else loaded and
    computed in polars (exact percentiles).

    Parameters:
        client_or_url: an ``elasticsearch.Elasticsearch`` client or a URL.
        index_prefix: the processors' index prefix.
        since: window start (inclusive); naive datetimes are UTC.
        until: window end (exclusive).
        threshold: documents above which the cluster aggregates (0: always).

    Returns:
        The :class:`Aggregated` tables.
    """
    kinds = sorted({t.kind for t in TABLES})
    counts = count_elasticsearch(client_or_url, index_prefix=index_prefix, since=since,
                                 until=until, kinds=kinds)  # fmt: skip
    documents = sum(counts.values())
    if documents > threshold:
        tables = pushdown_tables(client_or_url, index_prefix=index_prefix, since=since,
                                 until=until)  # fmt: skip
        return Aggregated(tables, "pushdown", documents)
    data = load_elasticsearch(client_or_url, index_prefix=index_prefix, since=since,
                              until=until, kinds=kinds, progress=False)  # fmt: skip
    return Aggregated(aggregates.tables(data), "loaded", documents)
