"""Kibana saved objects for hopscope's indices, generated from the index templates.

One NDJSON file (``deploy/kibana/hopscope.ndjson``) in the format Kibana 8.x exports and imports
(``POST /api/saved_objects/_import``): data views for every record kind, saved searches, Lens
visualizations and dashboards. Every field an object names is checked against
:mod:`hopscope.dashboards.kibana.fields`, so a change to the templates or the records that
breaks an object fails :func:`generate`, and the unit tests fail when the committed file is not
what :func:`ndjson` writes now.

Ids are stable and derive from the index prefix (``hopscope-spans``, ``hopscope-lens-...``), so
an import with ``overwrite`` replaces the previous version instead of adding copies.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from hopscope.core.settings import DEFAULT_INDEX_PREFIX
from hopscope.dashboards.kibana import kql
from hopscope.dashboards.kibana.fields import (
    AGGREGATABLE,
    DATES,
    NUMERIC,
    duration_fields,
    field_type,
)
from hopscope.processors.templates import KINDS

# As Kibana 8.19 exports them: importable into the same or any newer 8.x/9.x Kibana, which
# migrates them forward (an import never goes backwards).
CORE_MIGRATION_VERSION: Final = "8.8.0"
TYPE_MIGRATION_VERSIONS: Final = {
    "index-pattern": "8.0.0",
    "search": "10.5.0",
    "lens": "8.9.0",
    "dashboard": "10.3.0",
}
SLOW_PAYMENT_MS: Final = 300
# The data view of a trace's spans and logs together: Discover links (trace-url) open it.
TRACE_EVENTS: Final = "trace-events"
TRACE_EVENTS_KINDS: Final = ("spans", "logs")
DEFAULT_TIME_FROM: Final = "now-24h"

_DURATION_FORMAT: Final = {
    "id": "duration",
    "params": {
        "inputFormat": "nanoseconds",
        "outputFormat": "asMilliseconds",
        "outputPrecision": 2,
        "showSuffix": True,
        "useShortSuffix": True,
    },
}
_RECORDS: Final = "___records___"  # Lens's pseudo-field of the count operation


class AssetError(ValueError):
    """A saved object names a field the templates do not have, or uses it against its type."""


def data_view_id(prefix: str, view: str) -> str:
    """The id of the data view of ``view`` (a record kind or ``trace-events``)."""
    return f"{prefix}-{view}"


def _view_kinds(view: str) -> tuple[str, ...]:
    return TRACE_EVENTS_KINDS if view == TRACE_EVENTS else (view,)


def _view_title(prefix: str, view: str) -> str:
    return ",".join(f"{prefix}-{kind}-*" for kind in _view_kinds(view))


def _check_field(view: str, name: str, allowed: frozenset[str] | set[str], use: str) -> None:
    es_type = field_type(_view_kinds(view), name)
    if es_type is None:
        raise AssetError(f"{use}: {name!r} is not a field of the {view} index template")
    if es_type not in allowed:
        raise AssetError(f"{use}: {name!r} is {es_type}, expected one of {sorted(allowed)}")


def _check_query(view: str, query: str, use: str) -> None:
    for name, op in kql.fields(query):
        allowed = NUMERIC | DATES if op != ":" else NUMERIC | DATES | {"keyword", "boolean", "text"}
        _check_field(view, name, allowed, f"{use} (query {query!r})")


def _saved_object(
    kind: str, object_id: str, attributes: dict[str, Any], references: list[dict[str, str]]
) -> dict[str, Any]:
    return {
        "attributes": attributes,
        "coreMigrationVersion": CORE_MIGRATION_VERSION,
        "id": object_id,
        "managed": False,
        "references": references,
        "type": kind,
        "typeMigrationVersion": TYPE_MIGRATION_VERSIONS[kind],
    }


def _data_view(prefix: str, view: str) -> dict[str, Any]:
    formats = {
        name: _DURATION_FORMAT for kind in _view_kinds(view) for name in duration_fields(kind)
    }
    label = "spans and logs" if view == TRACE_EVENTS else view
    return _saved_object("index-pattern", data_view_id(prefix, view), {
        "allowHidden": False,
        "fieldAttrs": "{}",
        "fieldFormatMap": json.dumps(dict(sorted(formats.items())), separators=(",", ":")),
        "fields": "[]",  # Kibana reads the fields from the mapping
        "name": f"{prefix} {label}",
        "runtimeFieldMap": "{}",
        "sourceFilters": "[]",
        "timeFieldName": "@timestamp",
        "title": _view_title(prefix, view),
    }, [])  # fmt: skip


# -- saved searches -------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchSpec:
    """A Discover saved search: data view, KQL query, columns and sort."""

    slug: str
    title: str
    description: str
    view: str
    query: str
    columns: tuple[str, ...]
    sort: tuple[tuple[str, str], ...] = (("@timestamp", "desc"),)


def _search(prefix: str, spec: SearchSpec) -> dict[str, Any]:
    use = f"search {spec.slug!r}"
    _check_query(spec.view, spec.query, use)
    for column in spec.columns:
        _check_field(spec.view, column, AGGREGATABLE | {"text"}, f"{use} column")
    for name, direction in spec.sort:
        if direction not in ("asc", "desc"):
            raise AssetError(f"{use}: sort direction {direction!r}")
        _check_field(spec.view, name, AGGREGATABLE, f"{use} sort")
    source = {
        "query": {"query": spec.query, "language": "kuery"},
        "filter": [],
        "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index",
    }
    return _saved_object("search", f"{prefix}-search-{spec.slug}", {
        "columns": list(spec.columns),
        "description": spec.description,
        "grid": {},
        "hideChart": False,
        "isTextBasedQuery": False,
        "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps(source, separators=(",", ":"))},
        "sort": [list(pair) for pair in spec.sort],
        "timeRestore": False,
        "title": spec.title,
    }, [{"id": data_view_id(prefix, spec.view), "type": "index-pattern",
         "name": "kibanaSavedObjectMeta.searchSourceJSON.index"}])  # fmt: skip


SEARCHES: Final = (
    SearchSpec(
        "slow-payments", f"Slow payments (over {SLOW_PAYMENT_MS} ms)",
        "Trace summaries whose end-to-end duration is above the threshold, slowest first.",
        "traces", f"event.duration > {SLOW_PAYMENT_MS * 1_000_000}",
        ("trace.id", "payment.id", "hopscope.trace.root_operation", "event.duration",
         "hopscope.trace.span_count", "hopscope.trace.failover_count",
         "hopscope.trace.critical_by_kind.network", "event.outcome"),
        (("event.duration", "desc"),),
    ),
    SearchSpec(
        "errors-by-node", "Errors by node",
        "Failed spans, grouped by the node (service.instance.id) that produced them.",
        "spans", 'event.outcome : "failure"',
        ("service.node.name", "service.name", "span.name", "span.status.message", "trace.id"),
        (("service.node.name", "asc"), ("@timestamp", "desc")),
    ),
    SearchSpec(
        "failovers", "Failovers",
        "Every failover: from which node to which, how long detection took, the outcome.",
        "failovers", "",
        ("hopscope.failover.service", "hopscope.failover.target_service",
         "hopscope.failover.from_node", "hopscope.failover.to_node", "hopscope.failover.reason",
         "hopscope.failover.attempts", "hopscope.failover.detection_ns",
         "hopscope.failover.added_ns", "event.outcome", "trace.id"),
    ),
    SearchSpec(
        "coordination-waits", "Coordination waits",
        "Lock waits, 2PC phases and consensus rounds, longest first.",
        "coordination", 'hopscope.record : "delay"',
        ("hopscope.coordination.kind", "hopscope.coordination.resource",
         "hopscope.coordination.service", "hopscope.coordination.node",
         "hopscope.coordination.duration_ns", "hopscope.coordination.critical_ns", "trace.id"),
        (("hopscope.coordination.duration_ns", "desc"),),
    ),
    SearchSpec(
        "trace-logs", "Logs of one trace",
        'Log records that belong to a trace, in order. Narrow it to one: trace.id : "<id>".',
        "logs", "trace.id : *",
        ("trace.id", "service.name", "service.node.name", "log.level", "message"),
        (("trace.id", "asc"), ("@timestamp", "asc")),
    ),
)  # fmt: skip


# -- Lens -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """A Lens column: a bucket (``date_histogram``, ``terms``) or a metric."""

    id: str
    operation: str
    field: str = _RECORDS
    label: str = ""
    percentile: int | None = None
    size: int = 10
    order_by: str | None = None  # a metric column id, for terms
    time_scale: str | None = None  # "s": a rate per second


_METRIC_OPERATIONS: Final = {"count", "percentile", "median", "average", "sum", "max", "min"}


def _column_state(column: Column, view: str, use: str) -> dict[str, Any]:
    op = column.operation
    label = column.label or f"{op} of {column.field}"
    if op == "date_histogram":
        _check_field(view, column.field, DATES, use)
        return {"dataType": "date", "isBucketed": True, "label": label, "operationType": op,
                "params": {"interval": "auto", "includeEmptyRows": True, "dropPartials": False},
                "scale": "interval", "sourceField": column.field}  # fmt: skip
    if op == "terms":
        _check_field(view, column.field, {"keyword"}, use)
        order: dict[str, Any] = (
            {"type": "column", "columnId": column.order_by}
            if column.order_by else {"type": "alphabetical", "fallback": True}
        )  # fmt: skip
        return {"customLabel": True, "dataType": "string", "isBucketed": True, "label": label,
                "operationType": op, "scale": "ordinal", "sourceField": column.field,
                "params": {"size": column.size, "orderBy": order, "orderDirection": "desc",
                           "otherBucket": True, "missingBucket": False,
                           "parentFormat": {"id": "terms"}}}  # fmt: skip
    if op not in _METRIC_OPERATIONS:
        raise AssetError(f"{use}: unsupported Lens operation {op!r}")
    state: dict[str, Any] = {"customLabel": True, "dataType": "number", "isBucketed": False,
                             "label": label, "operationType": op, "scale": "ratio",
                             "sourceField": column.field}  # fmt: skip
    if op == "count":
        if column.field != _RECORDS:
            _check_field(view, column.field, AGGREGATABLE, use)
        state["params"] = {"emptyAsNull": True}
    else:
        _check_field(view, column.field, NUMERIC, use)
        state["params"] = {"percentile": column.percentile} if op == "percentile" else {}
    if column.time_scale:
        state["timeScale"] = column.time_scale
    return state


@dataclass(frozen=True)
class LensSpec:
    """A single-layer Lens visualization."""

    slug: str
    title: str
    view: str
    chart: str  # an XY series type (line, bar_stacked, bar_horizontal...), "table" or "metric"
    columns: tuple[Column, ...]
    query: str = ""
    description: str = ""
    x: str | None = None
    split: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


_LAYER: Final = "layer1"


def _visualization(spec: LensSpec) -> tuple[str, dict[str, Any]]:
    metrics = [c.id for c in spec.columns if c.operation in _METRIC_OPERATIONS]
    if spec.chart == "table":
        return "lnsDatatable", {"layerId": _LAYER, "layerType": "data",
                                "columns": [{"columnId": c.id} for c in spec.columns]}  # fmt: skip
    if spec.chart == "metric":
        return "lnsMetric", {"layerId": _LAYER, "layerType": "data", "metricAccessor": metrics[0]}
    layer: dict[str, Any] = {"layerId": _LAYER, "layerType": "data", "seriesType": spec.chart,
                             "accessors": metrics, "xAccessor": spec.x}  # fmt: skip
    if spec.split:
        layer["splitAccessor"] = spec.split
    return "lnsXY", {"layers": [layer], "legend": {"isVisible": True, "position": "right"},
                     "preferredSeriesType": spec.chart, "valueLabels": "hide",
                     "fittingFunction": "None", **spec.extra}  # fmt: skip


def _lens(prefix: str, spec: LensSpec) -> dict[str, Any]:
    use = f"lens {spec.slug!r}"
    _check_query(spec.view, spec.query, use)
    ids = [c.id for c in spec.columns]
    if len(set(ids)) != len(ids) or any(
        ref not in ids for ref in (spec.x, spec.split) if ref is not None
    ):
        raise AssetError(f"{use}: column ids must be unique and x/split must name a column")
    columns = {c.id: _column_state(c, spec.view, use) for c in spec.columns}
    vis_type, visualization = _visualization(spec)
    state = {
        "adHocDataViews": {},
        "datasourceStates": {"formBased": {"layers": {_LAYER: {
            "columnOrder": ids, "columns": columns, "incompleteColumns": {}}}}},
        "filters": [],
        "internalReferences": [],
        "query": {"language": "kuery", "query": spec.query},
        "visualization": visualization,
    }  # fmt: skip
    return _saved_object("lens", f"{prefix}-lens-{spec.slug}", {
        "description": spec.description, "state": state, "title": spec.title,
        "visualizationType": vis_type,
    }, [{"id": data_view_id(prefix, spec.view), "name": f"indexpattern-datasource-layer-{_LAYER}",
         "type": "index-pattern"}])  # fmt: skip


_T, _C = "t", "m"  # the time axis and the first metric of a chart
_HOP = "hopscope.hop"
_FAILOVER = "hopscope.failover"
_COORD = "hopscope.coordination"
_2PC = "hopscope.two_phase_commit"


def _time() -> Column:
    return Column(_T, "date_histogram", "@timestamp", "@timestamp")


def _count(label: str = "Count", column_id: str = _C, time_scale: str | None = None) -> Column:
    return Column(column_id, "count", label=label, time_scale=time_scale)


LENSES: Final = (
    # Payment hops
    LensSpec("hop-edge-split", "Hop time per target: network vs server (median)", "hops",
             "bar_horizontal_stacked", (
                 Column("target", "terms", f"{_HOP}.target_service", "Target service",
                        size=15, order_by="net"),
                 Column("net", "median", f"{_HOP}.network_ns", "Network (median)"),
                 Column("srv", "median", f"{_HOP}.server_ns", "Server (median)"),
             ), query=f"{_HOP}.server_ns : *", x="target",
             description="Paired hops only: network = client minus server duration."),
    LensSpec("hop-edges", "Edges: network and server time", "hops", "table", (
        Column("source", "terms", f"{_HOP}.source_service", "From", size=20, order_by="n"),
        Column("target", "terms", f"{_HOP}.target_service", "To", size=20, order_by="n"),
        Column("n", "count", label="Hops"),
        Column("net50", "median", f"{_HOP}.network_ns", "Network p50"),
        Column("net99", "percentile", f"{_HOP}.network_ns", "Network p99", percentile=99),
        Column("srv50", "median", f"{_HOP}.server_ns", "Server p50"),
        Column("cli99", "percentile", f"{_HOP}.client_ns", "Client p99", percentile=99),
    )),
    LensSpec("hop-p99", "Hop latency p99 over time, per target", "hops", "line", (
        _time(),
        Column("target", "terms", f"{_HOP}.target_service", "Target", size=8, order_by=_C),
        Column(_C, "percentile", f"{_HOP}.client_ns", "Client p99", percentile=99),
    ), x=_T, split="target"),
    LensSpec("hop-network-p99", "Network time p99 over time, per target", "hops", "line", (
        _time(),
        Column("target", "terms", f"{_HOP}.target_service", "Target", size=8, order_by=_C),
        Column(_C, "percentile", f"{_HOP}.network_ns", "Network p99", percentile=99),
    ), query=f"{_HOP}.network_ns : *", x=_T, split="target"),
    # Failovers
    LensSpec("failover-timeline", "Failovers over time, by failed node", "failovers",
             "bar_stacked", (
                 _time(),
                 Column("node", "terms", f"{_FAILOVER}.from_node", "From node", order_by=_C),
                 _count("Failovers"),
             ), x=_T, split="node"),
    LensSpec("failover-nodes", "Failovers by node", "failovers", "table", (
        Column("from", "terms", f"{_FAILOVER}.from_node", "From node", size=20, order_by=_C),
        Column("to", "terms", f"{_FAILOVER}.to_node", "To node", size=20, order_by=_C),
        _count("Failovers"),
        Column("detect", "median", f"{_FAILOVER}.detection_ns", "Detection (median)"),
        Column("added", "median", f"{_FAILOVER}.added_ns", "Added (median)"),
    )),
    LensSpec("failover-detection", "Failover detection delay, per target service", "failovers",
             "bar_horizontal", (
                 Column("target", "terms", f"{_FAILOVER}.target_service", "Target",
                        order_by="p50"),
                 Column("p50", "median", f"{_FAILOVER}.detection_ns", "Detection p50"),
                 Column("p99", "percentile", f"{_FAILOVER}.detection_ns", "Detection p99",
                        percentile=99),
                 Column("added", "median", f"{_FAILOVER}.added_ns", "Added latency p50"),
             ), query=f"{_FAILOVER}.detection_ns : *", x="target"),
    # Coordination
    LensSpec("coordination-kinds", "Coordination waits by kind", "coordination",
             "bar_horizontal", (
                 Column("kind", "terms", f"{_COORD}.kind", "Kind", order_by="total"),
                 Column("total", "sum", f"{_COORD}.duration_ns", "Total wait"),
                 Column("crit", "sum", f"{_COORD}.critical_ns", "On the critical path"),
             ), query='hopscope.record : "delay"', x="kind"),
    LensSpec("coordination-resources", "Coordination waits by resource", "coordination",
             "table", (
                 Column("resource", "terms", f"{_COORD}.resource", "Resource", size=20,
                        order_by="total"),
                 Column("kind", "terms", f"{_COORD}.kind", "Kind", size=5, order_by="total"),
                 Column("total", "sum", f"{_COORD}.duration_ns", "Total wait"),
                 Column("p99", "percentile", f"{_COORD}.duration_ns", "Wait p99",
                        percentile=99),
                 _count("Waits", "n"),
             ), query=f'hopscope.record : "delay" and {_COORD}.resource : *'),
    LensSpec("two-phase-stragglers", "2PC stragglers", "coordination", "bar_horizontal", (
        Column("straggler", "terms", f"{_2PC}.straggler", "Straggler", order_by=_C),
        _count("Transactions held up"),
        Column("blocked", "median", f"{_2PC}.blocked_ns", "Coordinator blocked (median)"),
        Column("prepare", "percentile", f"{_2PC}.prepare_ns", "Prepare p99", percentile=99),
    ), query=f'hopscope.record : "2pc" and {_2PC}.straggler : *', x="straggler"),
    # Pipeline overview
    LensSpec("spans-rate", "Spans per second", "spans", "line", (
        _time(), _count("Spans/s", time_scale="s"),
    ), x=_T),
    LensSpec("error-rate", "Error rate (share of spans by outcome)", "spans",
             "bar_percentage_stacked", (
                 _time(),
                 Column("outcome", "terms", "event.outcome", "Outcome", size=3, order_by=_C),
                 _count("Spans"),
             ), x=_T, split="outcome"),
    LensSpec("errors-by-node", "Errors by node", "spans", "bar_horizontal", (
        Column("node", "terms", "service.node.name", "Node", size=20, order_by=_C),
        _count("Failed spans"),
    ), query='event.outcome : "failure"', x="node"),
    LensSpec("trace-duration", "Payment duration p50 / p99", "traces", "line", (
        _time(),
        Column("p50", "median", "event.duration", "p50"),
        Column("p99", "percentile", "event.duration", "p99", percentile=99),
    ), x=_T),
)  # fmt: skip


# -- dashboards -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DashboardSpec:
    """A dashboard: panels (lens or search slugs) laid out two per row."""

    slug: str
    title: str
    description: str
    panels: tuple[tuple[str, str], ...]  # (saved object type, slug)


DASHBOARDS: Final = (
    DashboardSpec("payment-hops", "hopscope: Payment hops",
                  "Per edge: where a hop's time goes (network vs server), and p99 over time.",
                  (("lens", "hop-edge-split"), ("lens", "hop-edges"), ("lens", "hop-p99"),
                   ("lens", "hop-network-p99"))),
    DashboardSpec("failovers", "hopscope: Failovers",
                  "When nodes failed over, from which to which, and how long detection took.",
                  (("lens", "failover-timeline"), ("lens", "failover-nodes"),
                   ("lens", "failover-detection"), ("search", "failovers"))),
    DashboardSpec("coordination", "hopscope: Coordination",
                  "Who waited on whom: locks, 2PC, consensus; and the 2PC stragglers.",
                  (("lens", "coordination-kinds"), ("lens", "coordination-resources"),
                   ("lens", "two-phase-stragglers"), ("search", "coordination-waits"))),
    DashboardSpec("pipeline", "hopscope: Pipeline overview",
                  "Spans per second, error rate, errors by node, payment duration.",
                  (("lens", "spans-rate"), ("lens", "error-rate"), ("lens", "errors-by-node"),
                   ("lens", "trace-duration"), ("search", "slow-payments"))),
)  # fmt: skip

_PANEL_W, _PANEL_H = 24, 15  # Kibana's grid is 48 columns wide


def _dashboard(prefix: str, spec: DashboardSpec) -> dict[str, Any]:
    panels, references = [], []
    for position, (kind, slug) in enumerate(spec.panels):
        index = f"p{position + 1}"
        grid = {"x": (position % 2) * _PANEL_W, "y": (position // 2) * _PANEL_H,
                "w": _PANEL_W, "h": _PANEL_H, "i": index}  # fmt: skip
        panels.append({"type": kind, "gridData": grid, "panelIndex": index,
                       "embeddableConfig": {"enhancements": {}},
                       "panelRefName": f"panel_{index}"})  # fmt: skip
        object_id = f"{prefix}-{kind}-{slug}"
        references.append({"id": object_id, "name": f"{index}:panel_{index}", "type": kind})
    source = {"query": {"query": "", "language": "kuery"}, "filter": []}
    return _saved_object("dashboard", f"{prefix}-dashboard-{spec.slug}", {
        "description": spec.description,
        "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps(source, separators=(",", ":"))},
        "optionsJSON": json.dumps({"useMargins": True, "syncColors": False, "syncCursor": True,
                                   "syncTooltips": False, "hidePanelTitles": False},
                                  separators=(",", ":")),
        "panelsJSON": json.dumps(panels, separators=(",", ":")),
        "refreshInterval": {"pause": True, "value": 60000},
        "timeFrom": DEFAULT_TIME_FROM,
        "timeRestore": True,
        "timeTo": "now",
        "title": spec.title,
    }, references)  # fmt: skip


# -- the file -------------------------------------------------------------------------------


def generate(prefix: str = DEFAULT_INDEX_PREFIX) -> list[dict[str, Any]]:
    """Every saved object, data views first (Kibana resolves references in file order too).

    Raises:
        AssetError: an object names a field the index templates lack, or misuses its type.
    """
    objects = [_data_view(prefix, kind) for kind in KINDS]
    objects.append(_data_view(prefix, TRACE_EVENTS))
    objects += [_search(prefix, spec) for spec in SEARCHES]
    objects += [_lens(prefix, spec) for spec in LENSES]
    objects += [_dashboard(prefix, spec) for spec in DASHBOARDS]
    return objects


def ndjson(
    objects: Iterable[dict[str, Any]] | None = None, prefix: str = DEFAULT_INDEX_PREFIX
) -> str:
    """The objects as Kibana's export writes them: one per line, then the export summary."""
    items = list(generate(prefix) if objects is None else objects)
    lines = [json.dumps(item, sort_keys=True, ensure_ascii=False) for item in items]
    summary = {"excludedObjects": [], "excludedObjectsCount": 0, "exportedCount": len(items),
               "missingRefCount": 0, "missingReferences": []}  # fmt: skip
    lines.append(json.dumps(summary, sort_keys=True))
    return "\n".join(lines) + "\n"


def parse_ndjson(text: str) -> list[dict[str, Any]]:
    """The saved objects of an export file, without its summary line."""
    objects = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [o for o in objects if "exportedCount" not in o]


def object_titles(objects: Sequence[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """(type, id) -> title of each object, for reports."""
    return {(o["type"], o["id"]): str(o["attributes"].get("title", "")) for o in objects}
