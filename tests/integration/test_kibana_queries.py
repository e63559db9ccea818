"""Every saved search and Lens visualization finds data after the demo traffic is processed.

The demo scenario runs through the real pipeline (simulator → Kafka → Processor →
Elasticsearch); each saved object's query is then translated the way Kibana would run it
(KQL → query DSL, Lens columns → core aggregations) and sent to Elasticsearch.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from hopscope.cli.demo import DEMO_SCENARIO
from hopscope.dashboards.kibana import kql, ndjson, parse_ndjson
from hopscope.dashboards.kibana.fields import field_types
from hopscope.ingest.simulator import (
    Scenario,
    SimulationConfig,
    parse_iso8601_ns,
    simulate_to_kafka,
)
from tests.conftest import Services
from tests.integration.processor_support import Topics, create_topics, drain, refresh

pytestmark = pytest.mark.integration

_PERCENTILES = {"percentile", "median"}
_SINGLE_VALUE = {"average": "avg", "sum": "sum", "max": "max", "min": "min"}


def _indices(view: dict[str, Any]) -> str:
    return view["attributes"]["title"]  # a comma-separated list of patterns, as ES takes it


def _metric_agg(column: dict[str, Any]) -> dict[str, Any] | None:
    op, name = column["operationType"], column["sourceField"]
    if op == "count":
        return None  # doc_count of the bucket
    if op in _PERCENTILES:
        percent = 50 if op == "median" else column["params"]["percentile"]
        return {"percentiles": {"field": name, "percents": [percent]}}
    return {_SINGLE_VALUE[op]: {"field": name}}


def _lens_request(layer: dict[str, Any]) -> dict[str, Any]:
    """Nested bucket aggregations in column order, the metrics inside the innermost one."""
    columns = layer["columns"]
    buckets = [c for c in layer["columnOrder"] if columns[c]["isBucketed"]]
    metrics = {
        c: agg
        for c in layer["columnOrder"]
        if not columns[c]["isBucketed"] and (agg := _metric_agg(columns[c])) is not None
    }
    inner: dict[str, Any] = dict(metrics)
    for column_id in reversed(buckets):
        column = columns[column_id]
        if column["operationType"] == "date_histogram":
            bucket = {"date_histogram": {"field": column["sourceField"], "fixed_interval": "1s",
                                         "min_doc_count": 1}}  # fmt: skip
        else:
            params = column["params"]
            order = params["orderBy"]
            terms: dict[str, Any] = {"field": column["sourceField"], "size": params["size"]}
            if order["type"] == "column" and order["columnId"] in metrics:
                # Lens orders by the metric; a percentiles metric is addressed by its percent.
                metric = metrics[order["columnId"]]
                path = order["columnId"]
                if "percentiles" in metric:
                    path += f"[{metric['percentiles']['percents'][0]:.1f}]"
                terms["order"] = {path: params["orderDirection"]}
            bucket = {"terms": terms}
        sub = dict(inner)
        if "order" in bucket.get("terms", {}):
            # As Kibana does: the ordering metric also sits right under the ordered terms.
            sub.setdefault(order["columnId"], metrics[order["columnId"]])
        if sub:
            bucket["aggs"] = sub
        inner = {column_id: bucket}
    return inner


def _metric_values(aggs: dict[str, Any], metric_ids: list[str]) -> dict[str, list[float]]:
    """Every non-null value of each metric, across all buckets."""
    found: dict[str, list[float]] = {m: [] for m in metric_ids}

    def walk(node: dict[str, Any]) -> None:
        for key, value in node.items():
            if not isinstance(value, dict):
                continue
            if key in found:
                if "values" in value:
                    found[key] += [v for v in value["values"].values() if v is not None]
                elif value.get("value") is not None:
                    found[key].append(value["value"])
            for bucket in value.get("buckets", []):
                walk(bucket)

    walk(aggs)
    return found


def _mapped_types(es: Any, prefix: str) -> dict[str, set[str]]:
    """Field name -> the types the live indices map it to."""
    found: dict[str, set[str]] = {}

    def walk(path: str, properties: dict[str, Any]) -> None:
        for name, mapping in properties.items():
            if "properties" in mapping:
                walk(f"{path}{name}.", mapping["properties"])
            else:
                found.setdefault(path + name, set()).add(mapping.get("type", "object"))

    for index in es.indices.get_mapping(index=f"{prefix}-*").body.values():
        walk("", index["mappings"].get("properties", {}))
    return found


def _referenced_fields(objects: list[dict[str, Any]]) -> set[str]:
    names: set[str] = set()
    for obj in objects:
        attributes = obj["attributes"]
        if obj["type"] == "search":
            source = json.loads(attributes["kibanaSavedObjectMeta"]["searchSourceJSON"])
            names |= {n for n, _ in kql.fields(source["query"]["query"])}
            names |= set(attributes["columns"]) | {n for n, _ in attributes["sort"]}
        if obj["type"] == "lens":
            state = attributes["state"]
            names |= {n for n, _ in kql.fields(state["query"]["query"])}
            for layer in state["datasourceStates"]["formBased"]["layers"].values():
                names |= {c["sourceField"] for c in layer["columns"].values()}
    return names - {"___records___"}


def test_every_saved_search_and_visualization_finds_the_demo_traffic(
    services: Services, index_prefix: str, es_client: Any, unique_name: Callable[[str], str]
) -> None:
    topics = Topics(unique_name("spans"), unique_name("logs"), unique_name("dlq"))
    create_topics(services.kafka_bootstrap, [topics.spans, topics.logs, topics.dlq])
    config = SimulationConfig(start_ns=parse_iso8601_ns("2026-04-01T08:00:00Z"),
                              scenario=Scenario(DEMO_SCENARIO), seed=4, traces=150)  # fmt: skip
    run = simulate_to_kafka(config, bootstrap=services.kafka_bootstrap,
                            spans_topic=topics.spans, logs_topic=topics.logs)  # fmt: skip
    counts = drain(services.kafka_bootstrap, services.es_url, topics, index_prefix,
                   unique_name("group"))  # fmt: skip
    assert counts.indexed["spans"] == run.result.spans
    refresh(es_client, index_prefix)

    objects = parse_ndjson(ndjson(prefix=index_prefix))
    views = {o["id"]: o for o in objects if o["type"] == "index-pattern"}

    def view_of(obj: dict[str, Any]) -> dict[str, Any]:
        (ref,) = [r for r in obj["references"] if r["type"] == "index-pattern"]
        return views[ref["id"]]

    # Every field an object uses is mapped in the live indices with the type the templates say.
    mapped = _mapped_types(es_client, index_prefix)
    expected: dict[str, str] = {}
    for kind in ("spans", "logs", "hops", "traces", "failovers", "coordination"):
        expected.update(field_types(kind))
    for name in sorted(_referenced_fields(objects)):
        assert mapped.get(name) == {expected[name]}, f"{name}: live {mapped.get(name)}"

    for search in (o for o in objects if o["type"] == "search"):
        source = json.loads(search["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
        sort = [{name: direction} for name, direction in search["attributes"]["sort"]]
        answer = es_client.search(index=_indices(view_of(search)),
                                  query=kql.to_es(source["query"]["query"]), sort=sort,
                                  size=5, track_total_hits=True)  # fmt: skip
        assert answer["hits"]["total"]["value"] > 0, search["attributes"]["title"]
        columns = search["attributes"]["columns"]
        assert any(c in hit["_source"] for hit in answer["hits"]["hits"] for c in columns)

    for lens in (o for o in objects if o["type"] == "lens"):
        state = lens["attributes"]["state"]
        (layer,) = state["datasourceStates"]["formBased"]["layers"].values()
        answer = es_client.search(index=_indices(view_of(lens)),
                                  query=kql.to_es(state["query"]["query"]),
                                  aggs=_lens_request(layer), size=0,
                                  track_total_hits=True)  # fmt: skip
        title = lens["attributes"]["title"]
        assert answer["hits"]["total"]["value"] > 0, title
        columns = layer["columns"]
        metric_ids = [c for c in layer["columnOrder"] if not columns[c]["isBucketed"]
                      and columns[c]["operationType"] != "count"]  # fmt: skip
        values = _metric_values(answer["aggregations"], metric_ids)
        assert all(values[m] for m in metric_ids), f"{title}: metrics without a value {values}"
        bucket_ids = [c for c in layer["columnOrder"] if columns[c]["isBucketed"]]
        if bucket_ids:
            assert answer["aggregations"][bucket_ids[0]]["buckets"], title

    # The trace link's query finds that trace's spans and its logs through one data view.
    logged = es_client.search(index=f"{index_prefix}-logs-*", query={"exists": {"field":
                              "trace.id"}}, size=1)["hits"]["hits"]  # fmt: skip
    assert logged, "the demo traffic has logs with a trace id"
    trace_id = logged[0]["_source"]["trace.id"]
    events = views[f"{index_prefix}-trace-events"]
    answer = es_client.search(index=_indices(events), query=kql.to_es(f'trace.id : "{trace_id}"'),
                              size=500)  # fmt: skip
    kinds = {hit["_index"].removeprefix(f"{index_prefix}-").split("-")[0]
             for hit in answer["hits"]["hits"]}  # fmt: skip
    assert kinds == {"spans", "logs"}
    assert {hit["_source"]["trace.id"] for hit in answer["hits"]["hits"]} == {trace_id}
