"""deploy/kibana/hopscope.ndjson: current, in Kibana 8.x's import format, every field and
reference checked against the index templates; the Grafana dashboard's metrics exist."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from typer.testing import CliRunner

from hopscope.cli import app
from hopscope.dashboards import grafana
from hopscope.dashboards.kibana import AssetError, discover_url, kql, ndjson, parse_ndjson
from hopscope.dashboards.kibana import saved_objects as so
from hopscope.dashboards.kibana.fields import AGGREGATABLE, DATES, NUMERIC, field_types
from hopscope.processors.templates import KINDS, index_template

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ASSETS = DEPLOY / "kibana" / "hopscope.ndjson"
TYPES = {"index-pattern", "search", "lens", "dashboard"}
runner = CliRunner()


@pytest.fixture(scope="module")
def lines() -> list[dict[str, Any]]:
    return [json.loads(line) for line in ASSETS.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def objects(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return lines[:-1]


def _by_key(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["type"], o["id"]): o for o in objects}


def _view_kinds(data_view: dict[str, Any]) -> list[str]:
    """The record kinds a data view's title covers (``hopscope-spans-*,hopscope-logs-*``)."""
    kinds = []
    for pattern in data_view["attributes"]["title"].split(","):
        match = re.fullmatch(r"hopscope-([a-z]+)-\*", pattern)
        assert match and match.group(1) in KINDS, pattern
        kinds.append(match.group(1))
    return kinds


def _type_in(kinds: list[str], name: str) -> str:
    for kind in kinds:
        if name in field_types(kind):
            return field_types(kind)[name]
    raise AssertionError(f"{name!r} is not a field of {kinds}")


def _view_of(obj: dict[str, Any], ref_name: str, by_key: dict[Any, Any]) -> list[str]:
    (ref,) = [r for r in obj["references"] if r["name"] == ref_name]
    assert ref["type"] == "index-pattern"
    return _view_kinds(by_key[("index-pattern", ref["id"])])


def _check_kql(query: str, kinds: list[str]) -> None:
    for name, op in kql.fields(query):
        es_type = _type_in(kinds, name)
        if op != ":":
            assert es_type in NUMERIC | DATES, f"range on {name} ({es_type})"


def test_committed_file_is_current() -> None:
    assert ASSETS.read_text(encoding="utf-8") == ndjson(), (
        "deploy/kibana/hopscope.ndjson is stale: run `hopscope kibana regenerate`"
    )


def test_import_format_of_kibana_8(lines: list[dict[str, Any]]) -> None:
    *objects, summary = lines
    assert summary == {"excludedObjects": [], "excludedObjectsCount": 0,
                       "exportedCount": len(objects), "missingRefCount": 0,
                       "missingReferences": []}  # fmt: skip
    seen = set()
    for obj in objects:
        assert set(obj) == {"attributes", "coreMigrationVersion", "id", "managed", "references",
                            "type", "typeMigrationVersion"}  # fmt: skip
        assert obj["type"] in TYPES and obj["managed"] is False
        assert obj["coreMigrationVersion"] == "8.8.0"
        assert re.fullmatch(r"\d+\.\d+\.\d+", obj["typeMigrationVersion"])
        assert isinstance(obj["attributes"]["title"], str) and obj["attributes"]["title"]
        assert all(set(r) == {"id", "name", "type"} for r in obj["references"])
        assert (obj["type"], obj["id"]) not in seen
        seen.add((obj["type"], obj["id"]))
    # JSON-in-a-string attributes, as Kibana stores them, must parse.
    for obj in objects:
        attributes = obj["attributes"]
        for key in ("fieldFormatMap", "fieldAttrs", "runtimeFieldMap", "panelsJSON",
                    "optionsJSON"):  # fmt: skip
            if key in attributes:
                json.loads(attributes[key])
        if "kibanaSavedObjectMeta" in attributes:
            json.loads(attributes["kibanaSavedObjectMeta"]["searchSourceJSON"])
    assert {o["type"] for o in objects} == TYPES
    assert parse_ndjson(ASSETS.read_text()) == objects


def test_every_reference_resolves(objects: list[dict[str, Any]]) -> None:
    by_key = _by_key(objects)
    for obj in objects:
        for ref in obj["references"]:
            assert (ref["type"], ref["id"]) in by_key, f"{obj['id']} -> {ref}"
        names = {r["name"] for r in obj["references"]}
        attributes = obj["attributes"]
        if obj["type"] == "search":
            source = json.loads(attributes["kibanaSavedObjectMeta"]["searchSourceJSON"])
            assert source["indexRefName"] in names
        if obj["type"] == "lens":
            layers = attributes["state"]["datasourceStates"]["formBased"]["layers"]
            assert {f"indexpattern-datasource-layer-{layer}" for layer in layers} == names
        if obj["type"] == "dashboard":
            panels = json.loads(attributes["panelsJSON"])
            assert {f"{p['panelIndex']}:{p['panelRefName']}" for p in panels} == names
            for panel in panels:
                name = f"{panel['panelIndex']}:{panel['panelRefName']}"
                (ref,) = [r for r in obj["references"] if r["name"] == name]
                assert ref["type"] == panel["type"]


def test_data_views_cover_every_record_kind(objects: list[dict[str, Any]]) -> None:
    views = [o for o in objects if o["type"] == "index-pattern"]
    titles = {v["attributes"]["title"] for v in views}
    assert {f"hopscope-{kind}-*" for kind in KINDS} <= titles
    for view in views:
        kinds = _view_kinds(view)
        attributes = view["attributes"]
        assert attributes["timeFieldName"] == "@timestamp"
        for kind in kinds:
            mapped = index_template("hopscope", kind)["template"]["mappings"]["properties"]
            assert mapped["@timestamp"]["type"] in DATES
        formats = json.loads(attributes["fieldFormatMap"])
        for name, spec in formats.items():
            assert _type_in(kinds, name) in NUMERIC
            assert spec["id"] == "duration"
            assert spec["params"]["inputFormat"] == "nanoseconds"
            assert spec["params"]["outputFormat"] == "asMilliseconds"
        if "spans" in kinds or "traces" in kinds or "hops" in kinds:
            assert "event.duration" in formats  # durations shown in ms
    hops = next(v for v in views if v["id"] == "hopscope-hops")
    assert {"hopscope.hop.network_ns", "hopscope.hop.server_ns"} <= set(
        json.loads(hops["attributes"]["fieldFormatMap"])
    )


def test_saved_search_fields_fit_the_templates(objects: list[dict[str, Any]]) -> None:
    by_key = _by_key(objects)
    searches = [o for o in objects if o["type"] == "search"]
    assert {s["id"] for s in searches} == {
        "hopscope-search-slow-payments", "hopscope-search-errors-by-node",
        "hopscope-search-failovers", "hopscope-search-coordination-waits",
        "hopscope-search-trace-logs",
    }  # fmt: skip
    for search in searches:
        attributes = search["attributes"]
        kinds = _view_of(search, "kibanaSavedObjectMeta.searchSourceJSON.index", by_key)
        source = json.loads(attributes["kibanaSavedObjectMeta"]["searchSourceJSON"])
        assert source["query"]["language"] == "kuery"
        _check_kql(source["query"]["query"], kinds)
        for column in attributes["columns"]:
            _type_in(kinds, column)
        for name, direction in attributes["sort"]:
            assert direction in ("asc", "desc")
            assert _type_in(kinds, name) in AGGREGATABLE, f"sort on {name}"
    slow = by_key[("search", "hopscope-search-slow-payments")]
    query = json.loads(slow["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])["query"]
    assert kql.to_es(query["query"]) == {"range": {"event.duration": {"gt": 300_000_000}}}


_NUMERIC_OPS = {"percentile", "median", "average", "sum", "max", "min"}


def test_lens_columns_fit_the_templates(objects: list[dict[str, Any]]) -> None:
    by_key = _by_key(objects)
    lenses = [o for o in objects if o["type"] == "lens"]
    assert len(lenses) >= 10
    for lens in lenses:
        state = lens["attributes"]["state"]
        layers = state["datasourceStates"]["formBased"]["layers"]
        _check_kql(
            state["query"]["query"],
            _view_of(lens, f"indexpattern-datasource-layer-{next(iter(layers))}", by_key),
        )
        for layer_id, layer in layers.items():
            kinds = _view_of(lens, f"indexpattern-datasource-layer-{layer_id}", by_key)
            assert set(layer["columnOrder"]) == set(layer["columns"])
            for column_id, column in layer["columns"].items():
                op, name = column["operationType"], column["sourceField"]
                where = f"{lens['id']}/{column_id}"
                if op == "count":
                    assert name == "___records___" or _type_in(kinds, name) in AGGREGATABLE
                elif op in _NUMERIC_OPS:
                    assert _type_in(kinds, name) in NUMERIC, where
                    if op == "percentile":
                        assert 0 < column["params"]["percentile"] < 100
                elif op == "terms":
                    assert _type_in(kinds, name) == "keyword", where
                    order = column["params"]["orderBy"]
                    assert order["type"] == "alphabetical" or order["columnId"] in layer["columns"]
                elif op == "date_histogram":
                    assert _type_in(kinds, name) in DATES, where
                else:
                    raise AssertionError(f"{where}: unexpected operation {op}")
        visualization = state["visualization"]
        columns = {c for layer in layers.values() for c in layer["columns"]}
        if lens["attributes"]["visualizationType"] == "lnsXY":
            for layer in visualization["layers"]:
                refs = [*layer["accessors"], layer["xAccessor"], layer.get("splitAccessor")]
                assert {r for r in refs if r} <= columns
        elif lens["attributes"]["visualizationType"] == "lnsDatatable":
            assert {c["columnId"] for c in visualization["columns"]} == columns
        else:
            assert visualization["metricAccessor"] in columns


def test_the_four_dashboards(objects: list[dict[str, Any]]) -> None:
    titles = {o["attributes"]["title"] for o in objects if o["type"] == "dashboard"}
    assert titles == {"hopscope: Payment hops", "hopscope: Failovers", "hopscope: Coordination",
                      "hopscope: Pipeline overview"}  # fmt: skip


def test_generator_rejects_fields_the_templates_lack_or_misuse() -> None:
    bad_type = so.LensSpec("x", "x", "hops", "table", (
        so.Column("p", "percentile", "hopscope.hop.target_service", percentile=99),))  # fmt: skip
    with pytest.raises(AssetError, match="is keyword, expected"):
        so._lens("hopscope", bad_type)
    missing = so.SearchSpec("x", "x", "", "spans", "no.such.field : 1", ("trace.id",))
    with pytest.raises(AssetError, match=r"'no\.such\.field' is not a field of the spans"):
        so._search("hopscope", missing)
    terms_on_number = so.LensSpec("x", "x", "hops", "table", (
        so.Column("t", "terms", "hopscope.hop.client_ns"), so.Column("m", "count")))  # fmt: skip
    with pytest.raises(AssetError, match="is long"):
        so._lens("hopscope", terms_on_number)


def test_other_index_prefix_renames_every_id_and_pattern() -> None:
    objects = parse_ndjson(ndjson(prefix="acme"))
    assert all(o["id"].startswith("acme-") for o in objects)
    assert all(r["id"].startswith("acme-") for o in objects for r in o["references"])
    views = [o["attributes"]["title"] for o in objects if o["type"] == "index-pattern"]
    assert all(p.startswith("acme-") for v in views for p in v.split(","))


# -- KQL subset ------------------------------------------------------------------------------


def test_kql_subset_translation() -> None:
    assert kql.to_es('a : "x y" and (b > 3 or not c : *)') == {"bool": {"filter": [
        {"match_phrase": {"a": "x y"}},
        {"bool": {"should": [{"range": {"b": {"gt": 3}}},
                             {"bool": {"must_not": [{"exists": {"field": "c"}}]}}],
                  "minimum_should_match": 1}},
    ]}}  # fmt: skip
    assert kql.to_es("") == {"match_all": {}}
    for bad in ("a : x*", "a :", "(a : 1", "a b"):
        with pytest.raises(ValueError):
            kql.parse(bad)


# -- trace links -----------------------------------------------------------------------------


def test_discover_url_opens_the_trace_events_view() -> None:
    trace = "0af7651916cd43dd8448eb211c80319c"
    url = discover_url("https://kb.example:5601/", trace.upper(), space="payments",
                       time_range=("2026-04-01T07:00:00Z", "2026-04-01T09:00:00Z"))  # fmt: skip
    assert url.startswith("https://kb.example:5601/s/payments/app/discover#/?_g=")
    text = unquote(url)
    assert "time:(from:'2026-04-01T07:00:00Z',to:'2026-04-01T09:00:00Z')" in text
    assert "dataSource:(dataViewId:hopscope-trace-events,type:dataView)" in text
    assert f"query:(language:kuery,query:'trace.id : \"{trace}\"')" in text
    assert ("index-pattern", "hopscope-trace-events") in {
        (o["type"], o["id"]) for o in so.generate()
    }
    assert "/s/" not in discover_url("http://kb:5601", trace, space="default")
    with pytest.raises(ValueError, match="32 hex digits"):
        discover_url("http://kb:5601", "not-a-trace")


def test_trace_url_command_prints_the_link() -> None:
    trace = "0af7651916cd43dd8448eb211c80319c"
    result = runner.invoke(app, ["trace-url", trace, "--url", "http://kb:5601", "--from",
                                 "now-1h"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == discover_url("http://kb:5601", trace,
                                                 time_range=("now-1h", "now"))  # fmt: skip
    bad = runner.invoke(app, ["trace-url", "xyz"])
    assert bad.exit_code == 2 and "32 hex digits" in bad.output


def test_export_and_regenerate_commands(tmp_path: Path) -> None:
    result = runner.invoke(app, ["kibana", "export"])
    assert result.exit_code == 0 and result.stdout == ASSETS.read_text()
    out = tmp_path / "x.ndjson"
    assert runner.invoke(app, ["kibana", "export", "--out", str(out)]).exit_code == 0
    assert out.read_text() == ASSETS.read_text()
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    (deploy / "compose.yaml").write_text("services: {}\n")
    result = runner.invoke(app, ["kibana", "regenerate", "--deploy-dir", str(deploy)])
    assert result.exit_code == 0, result.output
    assert (deploy / "kibana" / "hopscope.ndjson").read_text() == ASSETS.read_text()
    for relative in grafana.deploy_files():
        assert (deploy / relative).read_text() == (DEPLOY / relative).read_text()
    wrong = runner.invoke(app, ["kibana", "regenerate", "--deploy-dir", str(tmp_path)])
    assert wrong.exit_code == 2 and "compose.yaml" in wrong.output


# -- Grafana ---------------------------------------------------------------------------------


def test_grafana_dashboard_uses_only_existing_metrics() -> None:
    grafana.check_metrics()
    names = grafana.scraped_names()
    for expr in grafana.expressions():
        # A metric, or a recording rule of deploy/prometheus/rules (tests/test_alerts.py).
        assert re.findall(r"hopscope_[a-z_]+|hopscope:[a-z_:]+", expr), expr
    covered = {names[m] for e in grafana.expressions() for m in re.findall(r"hopscope_[a-z_]+", e)}
    assert covered == {
        "hopscope_consumer_lag", "hopscope_messages", "hopscope_records_indexed",
        "hopscope_bulk_seconds", "hopscope_sink_retries", "hopscope_dead_letters",
        "hopscope_open_traces", "hopscope_open_spans", "hopscope_incomplete_traces",
        "hopscope_hop_client_seconds", "hopscope_hop_network_seconds",
        "hopscope_failovers", "hopscope_coordination_seconds",
    }  # fmt: skip
    dashboard = json.loads((DEPLOY / "grafana/dashboards/hopscope-processors.json").read_text())
    assert dashboard == grafana.dashboard()
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert exprs == grafana.expressions()
    assert all(p["datasource"]["uid"] == grafana.DATASOURCE_UID for p in dashboard["panels"])
    provisioned = (DEPLOY / "grafana/provisioning/datasources/prometheus.yaml").read_text()
    assert f"uid: {grafana.DATASOURCE_UID}" in provisioned


def test_grafana_check_rejects_an_unknown_metric(monkeypatch: pytest.MonkeyPatch) -> None:
    panels = (*grafana.PANELS, grafana.Panel("x", "s", (("rate(hopscope_nope_total[1m])", ""),)))
    monkeypatch.setattr(grafana, "PANELS", panels)
    with pytest.raises(ValueError, match="hopscope_nope_total"):
        grafana.check_metrics()
