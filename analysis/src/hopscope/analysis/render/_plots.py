"""The report's plots as inline SVG, with the small axis library they need.

Each plot reads one job table (or the report's latency frame) and returns a :class:`Plot`: an
SVG, or the sentence saying why there is none. Bars carry an SVG ``<title>`` (the tooltip) and
the classes the page's stylesheet styles (``mark``, ``grid``, ``tick``...).

Why our own axes and not matplotlib's SVG backend: the page must stay self-contained, script-free
and small, and matplotlib would keep the first two but not the rest. Its SVG draws text as glyph
paths or with its own fonts (the page's CSS would no longer style it), gives every element
generated ids (two runs over the same window would differ, and the reports are compared
byte for byte), has no per-bar tooltip without post-processing the XML, and would add matplotlib
and numpy (tens of megabytes) to an extra that needs only polars. The drawing here is bar charts
and a histogram on linear, log and time axes: ticks at 1-2-5 steps (:func:`_linear_ticks`,
:func:`_log_ticks`, :func:`_time_ticks`) are all the axis logic there is.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html import escape
from typing import TYPE_CHECKING, Any, Final

import polars as pl

from hopscope.analysis.expr import percentile_ns
from hopscope.analysis.findings import JobResult
from hopscope.analysis.render._format import integer, ms, percent, timestamp
from hopscope.analysis.render._format import span as time_span

if TYPE_CHECKING:
    from hopscope.analysis.report import Report

# Okabe–Ito: distinguishable with the common colour-vision deficiencies.
PALETTE: Final = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#999999",
)
ERROR_COLOUR: Final = "#D55E00"
# Plot geometry in SVG user units; the page scales the viewBox to the column width.
WIDTH: Final = 900
# The left gutter of a bar chart holds its labels (service, edge, resource names) whole: as
# wide as the longest label needs, from LABEL_WIDTH up to MAX_LABEL_WIDTH (half the plot, so
# the bars keep room); only a label longer than that is shortened (in full in its tooltip).
LABEL_WIDTH: Final = 120
MAX_LABEL_WIDTH: Final = WIDTH // 2
# Width of one character of an 11px system-ui label, in user units, with a margin: the mean
# advance of a sans-serif face is about 0.55 em; wide letters (m, w, →) push a line above it.
LABEL_CHAR_WIDTH: Final = 6.6
ROW_HEIGHT: Final = 18
# More bars than this stop being readable; the tables below the plots keep every row.
MAX_BARS: Final = 12
MAX_LABEL_CHARS: Final = int((MAX_LABEL_WIDTH - 12) / LABEL_CHAR_WIDTH)
PERCENTILES: Final = ("p50", "p95", "p99")
# The plots, in page order (``data-plot`` of each figure).
PLOTS: Final = ("latency", "critical_path", "hops", "failovers", "coordination")


def plots(report: Report) -> list[Plot]:
    """Every plot of the report, in :data:`PLOTS` order."""
    return [
        _latency_plot(report.latency),
        _critical_path_plot(_table(report.results, "bottlenecks", "by_service")),
        _hops_plot(_table(report.results, "hops", "edges")),
        _failover_plot(_table(report.results, "failovers", "timeline")),
        _coordination_plot(
            _table(report.results, "coordination", "by_kind"),
            _table(report.results, "coordination", "by_resource"),
        ),
    ]


@dataclass
class Plot:
    """One figure: an SVG, or the reason there is none."""

    name: str
    title: str
    caption: str
    svg: str = ""
    empty: str = ""

    def html(self) -> str:
        head = f"<h3>{escape(self.title)}</h3>"
        if not self.svg:
            return (
                f'<figure class="plot" data-plot="{self.name}" data-empty="true">{head}'
                f'<p class="note">{escape(self.empty)}</p></figure>'
            )
        return (
            f'<figure class="plot" data-plot="{self.name}">{head}{self.svg}'
            f"<figcaption>{escape(self.caption)}</figcaption></figure>"
        )


def _table(results: Mapping[str, JobResult], job: str, name: str) -> pl.DataFrame | None:
    result = results.get(job)
    if result is None:
        return None
    return result.tables.get(name)


def _missing(frame: pl.DataFrame | None, columns: Iterable[str], what: str) -> str:
    """Why ``frame`` cannot be plotted ("" when it can)."""
    if frame is None:
        return f"No {what} in this report."
    if frame.is_empty():
        return f"The {what} table is empty for this window."
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        return f"The {what} table lacks columns {', '.join(absent)}."
    return ""


def _latency_plot(latency: pl.DataFrame) -> Plot:
    plot = Plot(
        "latency",
        "Latency distribution",
        "Trace duration, log scale; error traces stacked on top. Lines: p50, p95, p99.",
    )
    if why := _missing(latency, ["duration_ns"], "trace latency"):
        plot.empty = why
        return plot
    frame = latency.select(
        pl.col("duration_ns").cast(pl.Float64),
        (pl.col("error").fill_null(False) if "error" in latency.columns else pl.lit(False)).alias(
            "error"
        ),
    ).filter(pl.col("duration_ns").is_finite() & (pl.col("duration_ns") > 0))
    if frame.is_empty():
        plot.empty = "No trace has a positive duration."
        return plot
    # Log-spaced bins: payment latencies span from a few ms to seconds (timeouts, failovers).
    bins = 40
    low = math.log10(frame.select(pl.col("duration_ns").min()).item() / 1e6)
    high = math.log10(frame.select(pl.col("duration_ns").max()).item() / 1e6)
    if high - low < 0.2:  # one value or nearly: widen so the bar is not the whole axis
        low, high = low - 0.1, high + 0.1
    counts = (
        frame.with_columns(
            (((pl.col("duration_ns") / 1e6).log10() - low) / (high - low) * bins)
            .floor()
            .clip(0, bins - 1)
            .cast(pl.Int64)
            .alias("bin")
        )
        .group_by("bin")
        .agg(
            (~pl.col("error")).sum().alias("ok"),
            pl.col("error").sum().alias("failed"),
        )
        .sort("bin")
    )
    quantiles = {
        p: float(frame.select(percentile_ns("duration_ns", int(p[1:]) / 100)).item() or 0.0)
        for p in PERCENTILES
    }
    chart = _Canvas(height=300, left=60, top=40, bottom=42)
    y_max = _nice_max(float(counts.select((pl.col("ok") + pl.col("failed")).max()).item()))

    def x_of(ms_value: float) -> float:
        return chart.x(math.log10(ms_value), low, high)

    def y_of(count: float) -> float:
        return chart.y(count, 0.0, y_max)

    for tick in _linear_ticks(0.0, y_max, whole=True):
        chart.grid_y(y_of(tick), integer(int(tick)))
    for tick in _log_ticks(10**low, 10**high):
        chart.tick_x(x_of(tick), _fmt_ms_tick(tick))
    chart.axis_label_x("trace duration (ms, log scale)")
    step = (high - low) / bins
    for row in counts.iter_rows(named=True):
        left = chart.x(low + row["bin"] * step, low, high)
        right = chart.x(low + (row["bin"] + 1) * step, low, high)
        lo_ms, hi_ms = 10 ** (low + row["bin"] * step), 10 ** (low + (row["bin"] + 1) * step)
        tip = f"{lo_ms:.3g}–{hi_ms:.3g} ms: {row['ok']} ok, {row['failed']} failed"
        ok_top = y_of(row["ok"])
        if row["ok"]:
            chart.rect(
                left + 0.5, ok_top, max(right - left - 1, 0.5), chart.y0 - ok_top, PALETTE[0], tip
            )
        if row["failed"]:
            top = y_of(row["ok"] + row["failed"])
            chart.rect(left + 0.5, top, max(right - left - 1, 0.5), ok_top - top, ERROR_COLOUR, tip)
    for index, (p, value) in enumerate(quantiles.items()):
        x = x_of(value / 1e6)
        chart.vline(x, f"{p} {ms(value)}", row=index)
    chart.legend([("ok", PALETTE[0]), ("failed", ERROR_COLOUR)])
    plot.svg = chart.svg(f"latency histogram of {frame.height} traces")
    return plot


def _critical_path_plot(by_service: pl.DataFrame | None) -> Plot:
    plot = Plot(
        "critical_path",
        "Critical-path share per service",
        "Share of end-to-end latency each service holds on the critical path, split into its "
        "own work, network and coordination waits, at p50, p95 and p99 (top services by p99).",
    )
    parts = ["self_share", "network_share", "coordination_share"]
    if why := _missing(by_service, ["service", "percentile", *parts], "critical-path"):
        plot.empty = why
        return plot
    assert by_service is not None
    frame = by_service.with_columns(
        pl.col(parts).cast(pl.Float64).fill_null(0.0).fill_nan(0.0).clip(0.0, None)
    )
    order = (
        frame.filter(pl.col("percentile") == PERCENTILES[-1])
        .with_columns(pl.sum_horizontal(parts).alias("total"))
        .sort("total", descending=True)["service"]
        .to_list()
    ) or frame["service"].unique(maintain_order=True).to_list()
    services = order[:MAX_BARS]
    percentiles = [p for p in PERCENTILES if p in set(frame["percentile"].to_list())] or sorted(
        {str(p) for p in frame["percentile"].to_list()}
    )
    series = [("self", PALETTE[0]), ("network", PALETTE[1]), ("coordination", PALETTE[2])]
    rows: list[_Bar] = []
    for percentile in percentiles:
        for service in services:
            match = frame.filter(
                (pl.col("percentile") == percentile) & (pl.col("service") == service)
            )
            if match.is_empty():
                continue
            values = [float(match[c][0]) for c in parts]
            tip = f"{service} at {percentile}: " + ", ".join(
                f"{name} {percent(v)}" for (name, _), v in zip(series, values, strict=True)
            )
            rows.append(_Bar(str(service), values, tip, group=str(percentile)))
    plot.svg = _hbars(
        rows, series, stacked=True, fmt=percent, axis="share of end-to-end latency", fixed_max=None
    )
    return plot


def _hops_plot(edges: pl.DataFrame | None) -> Plot:
    plot = Plot(
        "hops",
        "Hops: client, network and server time (p99)",
        "Per edge (caller → callee, operation), p99 of the time the caller waited, of the time "
        "on the wire and of the time in the server; the slowest edges by client p99. A callee "
        "that is not traced (an issuer, a database) has only its client bar.",
    )
    needed = ["source_service", "target_service", "network_p99_ns", "server_p99_ns"]
    if why := _missing(edges, needed, "hop edges"):
        plot.empty = why
        return plot
    assert edges is not None
    # A table without the client column (an older saved one) sorts by the server's p99 and
    # draws no client bars.
    sort_key = "client_p99_ns" if "client_p99_ns" in edges.columns else "server_p99_ns"
    if "client_p99_ns" not in edges.columns:
        edges = edges.with_columns(client_p99_ns=pl.lit(None, pl.Float64))
    frame = (
        edges.with_columns(
            pl.col("client_p99_ns", "network_p99_ns", "server_p99_ns")
            .cast(pl.Float64)
            .fill_null(0.0)
            .fill_nan(0.0)
            .clip(0.0, None)
        )
        .sort(pl.col(sort_key).fill_null(0), descending=True)
        .head(MAX_BARS)
    )
    rows = []
    for row in frame.iter_rows(named=True):
        label = f"{row['source_service']} → {row['target_service']}"
        if row.get("operation"):
            label += f" {row['operation']}"
        if row.get("hop_kind") and row["hop_kind"] != "rpc":  # db, virtual (no server side)
            label += f" ({row['hop_kind']})"
        client = float(row["client_p99_ns"])
        network, server = float(row["network_p99_ns"]), float(row["server_p99_ns"])
        tip = (
            f"{label}: client p99 {ms(client)}, network p99 {ms(network)}, server p99 {ms(server)}"
        )
        if row.get("calls") is not None:
            tip += f", {integer(int(row['calls']))} calls"
        rows.append(_Bar(label, [client, network, server], tip))
    # The client bar: without it an edge to an untraced callee, often the slowest (the
    # issuer), has neither a network nor a server figure and no bar at all.
    series = [("client p99", PALETTE[2]), ("network p99", PALETTE[1]), ("server p99", PALETTE[0])]
    plot.svg = _hbars(rows, series, stacked=False, fmt=ms, axis="p99 (ms)", fixed_max=None)
    return plot


def _failover_plot(timeline: pl.DataFrame | None) -> Plot:
    plot = Plot(
        "failovers",
        "Failover timeline",
        "Failovers per time bucket, coloured by the node they moved away from.",
    )
    if why := _missing(timeline, ["bucket", "from_node", "failovers"], "failover timeline"):
        plot.empty = why
        return plot
    assert timeline is not None
    frame = (
        timeline.filter(pl.col("bucket").is_not_null())
        .with_columns(
            pl.col("from_node").cast(pl.String).fill_null("(unknown)"),
            pl.col("failovers").cast(pl.Float64).fill_null(0.0).clip(0.0, None),
        )
        .sort("bucket")
    )
    if frame.is_empty():
        plot.empty = "The failover timeline has no buckets."
        return plot
    buckets: list[datetime] = sorted(set(frame["bucket"].to_list()))
    gaps = [b - a for a, b in itertools.pairwise(buckets)]
    width = min(gaps) if gaps else timedelta(seconds=1)
    start, end = buckets[0], buckets[-1] + width
    nodes = (
        frame.group_by("from_node")
        .agg(pl.col("failovers").sum())
        .sort(["failovers", "from_node"], descending=[True, False])["from_node"]
        .to_list()
    )
    colours = {node: PALETTE[i % len(PALETTE)] for i, node in enumerate(nodes)}
    totals = frame.group_by("bucket").agg(pl.col("failovers").sum())
    chart = _Canvas(height=260, left=60, top=40, bottom=42)
    y_max = _nice_max(float(totals.select(pl.col("failovers").max()).item()))
    span = (end - start).total_seconds()

    def x_of(moment: datetime) -> float:
        return chart.x((moment - start).total_seconds(), 0.0, span)

    for tick in _linear_ticks(0.0, y_max, whole=True):
        chart.grid_y(chart.y(tick, 0.0, y_max), integer(int(tick)))
    for tick_time, label in _time_ticks(start, end):
        chart.tick_x(x_of(tick_time), label)
    chart.axis_label_x(f"time (UTC, buckets of {time_span(width)})")
    stacked: dict[datetime, float] = {}
    for row in frame.iter_rows(named=True):
        bucket, node, count = row["bucket"], row["from_node"], row["failovers"]
        if count <= 0:
            continue
        below = stacked.get(bucket, 0.0)
        stacked[bucket] = below + count
        left, right = x_of(bucket), x_of(bucket + width)
        top, bottom = chart.y(below + count, 0.0, y_max), chart.y(below, 0.0, y_max)
        tip = f"{timestamp(bucket)}: {integer(int(count))} failovers away from {node}"
        chart.rect(left + 0.5, top, max(right - left - 1, 1.0), bottom - top, colours[node], tip)
    chart.legend([(str(node), colours[node]) for node in nodes[: len(PALETTE)]])
    plot.svg = chart.svg("failovers per bucket and node")
    return plot


def _coordination_plot(by_kind: pl.DataFrame | None, by_resource: pl.DataFrame | None) -> Plot:
    plot = Plot(
        "coordination",
        "Coordination waits",
        "Per kind of wait (locks, 2PC phases, consensus…): p50 and p99 duration, with the share "
        "of the waiting that sat on the critical path; then the resources waited on longest.",
    )
    if why := _missing(by_kind, ["coordination_kind", "p99_ns"], "coordination"):
        plot.empty = why
        return plot
    assert by_kind is not None
    kinds = by_kind.sort(pl.col("p99_ns").fill_null(0), descending=True).head(MAX_BARS)
    rows = []
    for row in kinds.iter_rows(named=True):
        p50 = _finite(row.get("p50_ns"))
        p99 = _finite(row.get("p99_ns"))
        share = row.get("critical_share")
        label = str(row["coordination_kind"])
        if share is not None and math.isfinite(share):
            label += f" ({percent(share)} critical)"
        tip = f"{row['coordination_kind']}: p50 {ms(p50)}, p99 {ms(p99)}"
        if row.get("waits") is not None:
            tip += f", {integer(int(row['waits']))} waits"
        if share is not None:
            tip += f", critical share {percent(share)}"
        rows.append(_Bar(label, [p50, p99], tip, group="by kind"))
    series = [("p50", PALETTE[4]), ("p99", PALETTE[0])]
    resource_rows: list[_Bar] = []
    if not _missing(by_resource, ["resource", "total_ns"], "resources"):
        assert by_resource is not None
        key = "critical_ns" if "critical_ns" in by_resource.columns else "total_ns"
        top = by_resource.sort(pl.col(key).fill_null(0), descending=True).head(MAX_BARS // 2 + 2)
        for row in top.iter_rows(named=True):
            total = _finite(row.get("total_ns"))
            critical = min(_finite(row.get("critical_ns")), total)
            kind = row.get("coordination_kind")
            label = f"{kind}: {row['resource']}" if kind else str(row["resource"])
            tip = f"{label}: {ms(total)} waited in total, {ms(critical)} of it critical"
            resource_rows.append(_Bar(label, [critical, total - critical], tip, group="resources"))
    svg = _hbars(rows, series, stacked=False, fmt=ms, axis="wait duration (ms)", fixed_max=None)
    if resource_rows:
        svg += _hbars(
            resource_rows,
            [("critical", PALETTE[5]), ("off the critical path", PALETTE[7])],
            stacked=True,
            fmt=ms,
            axis="total time waited (ms)",
            fixed_max=None,
        )
    plot.svg = svg
    return plot


@dataclass
class _Bar:
    """One row of a horizontal bar chart: a label and one value per series."""

    label: str
    values: list[float]
    tip: str
    group: str | None = None


def _hbars(
    rows: Sequence[_Bar],
    series: Sequence[tuple[str, str]],
    *,
    stacked: bool,
    fmt: Callable[[float], str],
    axis: str,
    fixed_max: float | None,
) -> str:
    """Horizontal bars, stacked (segments add up) or grouped (one thin bar per series)."""
    groups = [r.group for r in rows]
    headers = sum(
        1 for i, g in enumerate(groups) if g is not None and (i == 0 or g != groups[i - 1])
    )
    longest = max((min(len(r.label), MAX_LABEL_CHARS) for r in rows), default=0)
    chart = _Canvas(
        height=40 + 36 + ROW_HEIGHT * (len(rows) + headers) + 8,
        left=min(max(LABEL_WIDTH, math.ceil(longest * LABEL_CHAR_WIDTH) + 12), MAX_LABEL_WIDTH),
        top=40,
        bottom=36,
    )
    totals = [sum(r.values) if stacked else max(r.values, default=0.0) for r in rows]
    x_max = fixed_max or _nice_max(max(totals, default=0.0) or 1.0)
    for tick in _linear_ticks(0.0, x_max):
        chart.grid_x(chart.x(tick, 0.0, x_max), fmt(tick))
    chart.axis_label_x(axis)
    y = chart.top
    previous: str | None = None
    for row in rows:
        if row.group is not None and row.group != previous:
            chart.group_label(y + ROW_HEIGHT * 0.75, row.group)
            y += ROW_HEIGHT
            previous = row.group
        chart.row_label(y + ROW_HEIGHT * 0.7, row.label)
        band = ROW_HEIGHT - 4
        start = 0.0
        for index, (value, (name, colour)) in enumerate(zip(row.values, series, strict=False)):
            if value <= 0:
                continue
            tip = f"{row.tip} [{name} {fmt(value)}]"
            if stacked:
                left, right = chart.x(start, 0.0, x_max), chart.x(start + value, 0.0, x_max)
                chart.rect(left, y + 2, max(right - left, 0.5), band, colour, tip)
                start += value
            else:
                thin = band / len(series)
                right = chart.x(value, 0.0, x_max)
                chart.rect(
                    chart.left,
                    y + 2 + index * thin,
                    max(right - chart.left, 0.5),
                    thin,
                    colour,
                    tip,
                )
        y += ROW_HEIGHT
    chart.legend(list(series))
    return chart.svg(axis)


@dataclass
class _Canvas:
    """A plot area with margins, collecting SVG elements (coordinates in user units)."""

    height: int
    left: int
    top: int
    bottom: int
    # Half of the widest tick label centred on the axis's last tick ("10000 ms" at 11px).
    right: int = 36
    width: int = WIDTH
    elements: list[str] = field(default_factory=list)
    marks: int = 0

    @property
    def y0(self) -> float:
        return float(self.height - self.bottom)

    def x(self, value: float, low: float, high: float) -> float:
        span = (high - low) or 1.0
        fraction = min(max((value - low) / span, 0.0), 1.0)
        return self.left + fraction * (self.width - self.left - self.right)

    def y(self, value: float, low: float, high: float) -> float:
        span = (high - low) or 1.0
        fraction = min(max((value - low) / span, 0.0), 1.0)
        return self.y0 - fraction * (self.y0 - self.top)

    def rect(self, x: float, y: float, w: float, h: float, fill: str, tip: str) -> None:
        self.marks += 1
        self.elements.append(
            f'<rect class="mark" x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" height="{_n(h)}"'
            f' fill="{fill}"><title>{escape(tip)}</title></rect>'
        )

    def grid_y(self, y: float, label: str) -> None:
        self.elements.append(
            f'<line class="grid" x1="{self.left}" x2="{self.width - self.right}"'
            f' y1="{_n(y)}" y2="{_n(y)}"/>'
            f'<text class="tick" x="{self.left - 6}" y="{_n(y + 4)}" text-anchor="end">'
            f"{escape(label)}</text>"
        )

    def grid_x(self, x: float, label: str) -> None:
        self.elements.append(
            f'<line class="grid" x1="{_n(x)}" x2="{_n(x)}" y1="{self.top}" y2="{_n(self.y0)}"/>'
            f'<text class="tick" x="{_n(x)}" y="{_n(self.y0 + 16)}" text-anchor="middle">'
            f"{escape(label)}</text>"
        )

    def tick_x(self, x: float, label: str) -> None:
        self.elements.append(
            f'<line class="axis" x1="{_n(x)}" x2="{_n(x)}" y1="{_n(self.y0)}"'
            f' y2="{_n(self.y0 + 4)}"/>'
            f'<text class="tick" x="{_n(x)}" y="{_n(self.y0 + 16)}" text-anchor="middle">'
            f"{escape(label)}</text>"
        )

    def axis_label_x(self, label: str) -> None:
        centre = (self.left + self.width - self.right) / 2
        self.elements.append(
            f'<line class="axis" x1="{self.left}" x2="{self.width - self.right}"'
            f' y1="{_n(self.y0)}" y2="{_n(self.y0)}"/>'
            f'<text class="axis-label" x="{_n(centre)}" y="{self.height - 6}"'
            f' text-anchor="middle">{escape(label)}</text>'
        )

    def vline(self, x: float, label: str, *, row: int) -> None:
        # Labels on staggered rows: p95 and p99 are often a few pixels apart.
        y_label = self.top - 22 + 11 * row
        anchor = "end" if x > self.width - 140 else "start"
        dx = -4 if anchor == "end" else 4
        self.elements.append(
            f'<line class="marker" x1="{_n(x)}" x2="{_n(x)}" y1="{_n(y_label - 8)}"'
            f' y2="{_n(self.y0)}"/>'
            f'<text class="marker-label" x="{_n(x + dx)}" y="{_n(y_label)}"'
            f' text-anchor="{anchor}">{escape(label)}</text>'
        )

    def row_label(self, y: float, label: str) -> None:
        shown = label if len(label) <= MAX_LABEL_CHARS else label[: MAX_LABEL_CHARS - 1] + "…"
        self.elements.append(
            f'<text class="row-label" x="{self.left - 6}" y="{_n(y)}" text-anchor="end">'
            f"<title>{escape(label)}</title>{escape(shown)}</text>"
        )

    def group_label(self, y: float, label: str) -> None:
        self.elements.append(
            f'<text class="group-label" x="8" y="{_n(y)}">{escape(label)}</text>'
            f'<line class="grid" x1="8" x2="{self.width - self.right}" y1="{_n(y + 4)}"'
            f' y2="{_n(y + 4)}"/>'
        )

    def legend(self, entries: Sequence[tuple[str, str]]) -> None:
        x = float(self.left)
        for name, colour in entries:
            shown = name if len(name) <= 24 else name[:23] + "…"
            self.elements.append(
                f'<rect x="{_n(x)}" y="6" width="10" height="10" fill="{colour}"/>'
                f'<text class="legend" x="{_n(x + 14)}" y="15">{escape(shown)}</text>'
            )
            # Text width is not measurable here; ~6.5 units per character at 11px.
            x += 28 + 6.5 * len(shown)

    def svg(self, label: str) -> str:
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {self.width} {self.height}"'
            f' role="img" aria-label="{escape(label)}" data-marks="{self.marks}">'
            + "".join(self.elements)
            + "</svg>"
        )


def _n(value: float) -> str:
    """An SVG coordinate; a non-finite one is a bug upstream, drawn at 0 rather than breaking."""
    return f"{value:.1f}" if math.isfinite(value) else "0"


def _finite(value: Any) -> float:
    if value is None:
        return 0.0
    number = float(value)
    return number if math.isfinite(number) and number > 0 else 0.0


def _nice_max(value: float) -> float:
    """The smallest 1-2-5 × 10^k at or above ``value`` (axis end)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        candidate = step * 10**exponent
        if candidate >= value * (1 - 1e-9):
            return float(candidate)
    return float(10 ** (exponent + 1))


def _linear_ticks(low: float, high: float, count: int = 5, *, whole: bool = False) -> list[float]:
    """About ``count`` 1-2-5 steps from ``low`` to ``high``; ``whole`` for counts (step >= 1)."""
    raw = (high - low) / count
    if whole:
        raw = max(raw, 1.0)
    if raw <= 0:
        return [low]
    exponent = math.floor(math.log10(raw))
    step = next(s * 10**exponent for s in (1, 2, 2.5, 5, 10) if s * 10**exponent >= raw)
    ticks, tick = [], low
    while tick <= high * (1 + 1e-9):
        ticks.append(tick)
        tick += step
    return ticks


def _log_ticks(low: float, high: float) -> list[float]:
    ticks = []
    for exponent in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1):
        for mantissa in (1, 2, 5):
            value = mantissa * 10.0**exponent
            if low <= value <= high:
                ticks.append(value)
    if len(ticks) < 2:  # a narrow range: the ends themselves
        ticks = [low, high]
    return ticks


def _time_ticks(start: datetime, end: datetime, count: int = 6) -> list[tuple[datetime, str]]:
    """Round times between ``start`` and ``end``, with labels (milliseconds when sub-second)."""
    span = (end - start).total_seconds()
    if span <= 0:
        return [(start, start.strftime("%H:%M:%S"))]
    steps = (
        0.01,
        0.02,
        0.05,
        0.1,
        0.2,
        0.25,
        0.5,
        1,
        2,
        5,
        10,
        15,
        30,
        60,
        120,
        300,
        600,
        900,
        1800,
        3600,
        7200,
        21600,
        86400,
    )
    step = next((s for s in steps if span / s <= count), 86400 * math.ceil(span / 86400 / count))
    # Integer milliseconds: float seconds since 1970 would round sub-second ticks unevenly.
    step_ms = round(step * 1000)
    first_ms = math.ceil(start.timestamp() * 1000 / step_ms) * step_ms
    ticks, moment_ms = [], first_ms
    while moment_ms <= end.timestamp() * 1000:
        moment = datetime.fromtimestamp(moment_ms / 1000, tz=start.tzinfo or UTC)
        label = moment.strftime("%H:%M:%S.%f")[:-3] if step < 1 else moment.strftime("%H:%M:%S")
        ticks.append((moment, label))
        moment_ms += step_ms
    return ticks


def _fmt_ms_tick(ms_value: float) -> str:
    return f"{ms_value:g} ms" if ms_value < 1000 else f"{ms_value / 1000:g} s"
