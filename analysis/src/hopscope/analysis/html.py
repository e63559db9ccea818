"""The HTML report: one self-contained page, plots drawn as inline SVG (DESIGN.md §6).

The page needs no network and no script: styles are inline, plots are SVG written here, tooltips
are SVG ``<title>`` elements. That keeps a report of a few thousand traces around a hundred
kilobytes, lets it be mailed or attached to a ticket, and makes it render the same in any browser.

Layout, top to bottom:

1. header: source, window, record counts;
2. findings, most important first: impact badge, title, evidence, recommendation, expected gain,
   example trace ids;
3. plots: latency distribution, critical-path share per service, hop network vs server time,
   failover timeline, coordination waits;
4. every job's tables (first rows; ``*_ns`` columns shown in milliseconds, shares in percent).

Every plot is a ``<figure class="plot" data-plot="NAME">`` holding one ``<svg>``; a plot whose
table is missing or empty becomes a figure with ``data-empty`` and a sentence saying why, so a
partial report still renders. All text from telemetry (span names, services, attribute values)
is escaped: it is user input.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from html import escape
from pathlib import Path
from typing import Any, Final

import polars as pl

from hopscope.analysis.findings import JobResult, ms
from hopscope.analysis.report import Report

__all__ = ["PLOTS", "render_html", "render_plot", "write_html"]

DEFAULT_MAX_ROWS: Final = 50
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
LABEL_WIDTH: Final = 250  # left gutter for bar labels (service, edge, resource names)
ROW_HEIGHT: Final = 18
# More bars than this stop being readable; the tables below the plots keep every row.
MAX_BARS: Final = 12
MAX_LABEL_CHARS: Final = 38
MAX_CELL_CHARS: Final = 160
PERCENTILES: Final = ("p50", "p95", "p99")
# The plots, in page order (``data-plot`` of each figure).
PLOTS: Final = ("latency", "critical_path", "hops", "failovers", "coordination")


def render_html(
    report: Report, *, title: str = "hopscope report", max_rows: int = DEFAULT_MAX_ROWS
) -> str:
    """The report as one self-contained HTML page (no network, no script).

    Parameters:
        report: the analysed window: header figures, latency frame, job results, findings.
        title: the page title and heading.
        max_rows: rows shown per job table (the rest are counted, not shown).

    Returns:
        The HTML document as text.

    Examples:
        >>> import polars as pl
        >>> empty = Report(source="file t.json", window=None, counts={"traces": 0},
        ...                latency=pl.DataFrame(), results={})
        >>> page = render_html(empty, title="<b>demo</b>")
        >>> page.startswith("<!DOCTYPE html>"), "&lt;b&gt;demo&lt;/b&gt;" in page
        (True, True)
        >>> page.count('class="plot"')
        5
    """
    if max_rows < 0:
        raise ValueError(f"max_rows must be >= 0, got {max_rows}")
    plots = _plots(report)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<header><h1>{escape(title)}</h1>{_header(report)}</header>",
        '<nav><a href="#findings">Findings</a> · <a href="#plots">Plots</a> · '
        '<a href="#tables">Tables</a></nav>',
        f'<section id="findings"><h2>Findings</h2>{_findings(report)}</section>',
        '<section id="plots"><h2>Where the time goes</h2>',
        *(plot.html() for plot in plots),
        "</section>",
        f'<section id="tables"><h2>Tables</h2>{_job_tables(report.results, max_rows)}</section>',
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def render_plot(report: Report, name: str) -> str:
    """One plot of the report as an HTML ``<figure>`` with inline SVG (for notebooks).

    Parameters:
        report: the report the plot reads.
        name: one of :data:`PLOTS`.

    Returns:
        The figure's HTML (a sentence in place of the SVG when its table is missing or empty).

    Examples:
        >>> import polars as pl
        >>> empty = Report(source="-", window=None, counts={}, latency=pl.DataFrame(), results={})
        >>> render_plot(empty, "hops")[:62]
        '<figure class="plot" data-plot="hops" data-empty="true"><h3>Ho'
    """
    if name not in PLOTS:
        raise ValueError(f"unknown plot {name!r}; plots: {', '.join(PLOTS)}")
    return next(plot for plot in _plots(report) if plot.name == name).html()


def write_html(report: Report, path: Path, *, title: str = "hopscope report") -> Path:
    """Write :func:`render_html` to ``path`` (UTF-8, parents created) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report, title=title), encoding="utf-8")
    return path


# --- header and findings -------------------------------------------------------------------


def _header(report: Report) -> str:
    if report.window:
        start, end = report.window
        window = (
            f"{escape(_fmt_time(start))} – {escape(_fmt_time(end))} "
            f"({escape(_fmt_span(end - start))})"
        )
    else:
        window = "no records"
    counts = "".join(
        f'<span class="count"><b>{_fmt_int(n)}</b> {escape(str(kind))}</span>'
        for kind, n in report.counts.items()
    )
    return (
        f'<dl class="meta"><dt>Source</dt><dd>{escape(report.source)}</dd>'
        f"<dt>Window</dt><dd>{window}</dd>"
        f'<dt>Records</dt><dd class="counts">{counts or "–"}</dd></dl>'
    )


def _trace_link(report: Report, trace_id: str) -> str:
    url = report.trace_url(trace_id)
    code = f"<code>{escape(trace_id)}</code>"
    return f'<a href="{escape(url)}">{code}</a>' if url else code


def _findings(report: Report) -> str:
    findings = report.findings
    if not findings:
        return '<p class="note">No findings: nothing stood out in this window.</p>'
    items = []
    for finding in findings:
        impact = finding.impact if finding.impact in ("high", "medium", "low") else "low"
        evidence = "".join(
            f"<dt>{escape(str(key))}</dt><dd>{escape(_fmt_evidence(str(key), value))}</dd>"
            for key, value in finding.evidence.items()
        )
        traces = " ".join(_trace_link(report, str(t)) for t in finding.example_traces)
        items.append(
            f'<li class="finding" data-job="{escape(finding.job)}"'
            f' data-kind="{escape(finding.kind)}">'
            f'<div class="finding-head"><span class="badge impact-{impact}">{impact}</span> '
            f'<span class="finding-title">{escape(finding.title)}</span> '
            f'<span class="job">{escape(finding.job)} · {escape(finding.kind)}</span></div>'
            + (f'<dl class="evidence">{evidence}</dl>' if evidence else "")
            + f'<p class="recommendation"><b>Recommendation:</b> {escape(finding.recommendation)}'
            f"</p>"
            f'<p class="gain"><b>Expected gain:</b> {escape(finding.gain)}'
            f' <span class="gain-ns">(≈ {escape(ms(finding.gain_ns))} at p99)</span></p>'
            + (f'<p class="traces"><b>Example traces:</b> {traces}</p>' if traces else "")
            + "</li>"
        )
    return f'<ol class="findings">{"".join(items)}</ol>'


# --- plots ---------------------------------------------------------------------------------


def _plots(report: Report) -> list[_Plot]:
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
class _Plot:
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


def _latency_plot(latency: pl.DataFrame) -> _Plot:
    plot = _Plot(
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
        p: float(frame["duration_ns"].quantile(int(p[1:]) / 100, "linear") or 0.0)
        for p in PERCENTILES
    }
    chart = _Canvas(height=300, left=60, top=40, bottom=42)
    y_max = _nice_max(float(counts.select((pl.col("ok") + pl.col("failed")).max()).item()))

    def x_of(ms_value: float) -> float:
        return chart.x(math.log10(ms_value), low, high)

    def y_of(count: float) -> float:
        return chart.y(count, 0.0, y_max)

    for tick in _linear_ticks(0.0, y_max, whole=True):
        chart.grid_y(y_of(tick), _fmt_int(int(tick)))
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


def _critical_path_plot(by_service: pl.DataFrame | None) -> _Plot:
    plot = _Plot(
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
                f"{name} {_fmt_pct(v)}" for (name, _), v in zip(series, values, strict=True)
            )
            rows.append(_Bar(str(service), values, tip, group=str(percentile)))
    plot.svg = _hbars(
        rows, series, stacked=True, fmt=_fmt_pct, axis="share of end-to-end latency", fixed_max=None
    )
    return plot


def _hops_plot(edges: pl.DataFrame | None) -> _Plot:
    plot = _Plot(
        "hops",
        "Hops: network vs server time (p99)",
        "Per edge (caller → callee, operation), p99 of the time on the wire and of the time in "
        "the server; the slowest edges by client p99.",
    )
    needed = ["source_service", "target_service", "network_p99_ns", "server_p99_ns"]
    if why := _missing(edges, needed, "hop edges"):
        plot.empty = why
        return plot
    assert edges is not None
    sort_key = "client_p99_ns" if "client_p99_ns" in edges.columns else "server_p99_ns"
    frame = (
        edges.with_columns(
            pl.col("network_p99_ns", "server_p99_ns")
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
        network, server = float(row["network_p99_ns"]), float(row["server_p99_ns"])
        tip = f"{label}: network p99 {ms(network)}, server p99 {ms(server)}"
        if row.get("calls") is not None:
            tip += f", {_fmt_int(int(row['calls']))} calls"
        rows.append(_Bar(label, [network, server], tip))
    series = [("network p99", PALETTE[1]), ("server p99", PALETTE[0])]
    plot.svg = _hbars(rows, series, stacked=False, fmt=ms, axis="p99 (ms)", fixed_max=None)
    return plot


def _failover_plot(timeline: pl.DataFrame | None) -> _Plot:
    plot = _Plot(
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
        chart.grid_y(chart.y(tick, 0.0, y_max), _fmt_int(int(tick)))
    for tick_time, label in _time_ticks(start, end):
        chart.tick_x(x_of(tick_time), label)
    chart.axis_label_x(f"time (UTC, buckets of {_fmt_span(width)})")
    stacked: dict[datetime, float] = {}
    for row in frame.iter_rows(named=True):
        bucket, node, count = row["bucket"], row["from_node"], row["failovers"]
        if count <= 0:
            continue
        below = stacked.get(bucket, 0.0)
        stacked[bucket] = below + count
        left, right = x_of(bucket), x_of(bucket + width)
        top, bottom = chart.y(below + count, 0.0, y_max), chart.y(below, 0.0, y_max)
        tip = f"{_fmt_time(bucket)}: {_fmt_int(int(count))} failovers away from {node}"
        chart.rect(left + 0.5, top, max(right - left - 1, 1.0), bottom - top, colours[node], tip)
    chart.legend([(str(node), colours[node]) for node in nodes[: len(PALETTE)]])
    plot.svg = chart.svg("failovers per bucket and node")
    return plot


def _coordination_plot(by_kind: pl.DataFrame | None, by_resource: pl.DataFrame | None) -> _Plot:
    plot = _Plot(
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
            label += f" ({_fmt_pct(share)} critical)"
        tip = f"{row['coordination_kind']}: p50 {ms(p50)}, p99 {ms(p99)}"
        if row.get("waits") is not None:
            tip += f", {_fmt_int(int(row['waits']))} waits"
        if share is not None:
            tip += f", critical share {_fmt_pct(share)}"
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
    chart = _Canvas(
        height=40 + 36 + ROW_HEIGHT * (len(rows) + headers) + 8,
        left=LABEL_WIDTH,
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
    right: int = 20
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


# --- tables --------------------------------------------------------------------------------

_SHARE: Final = re.compile(r"(shares?|_rate|ratio|_fraction)$")


def _job_tables(results: Mapping[str, JobResult], max_rows: int) -> str:
    if not results:
        return '<p class="note">No job results.</p>'
    sections = []
    for job, result in results.items():
        tables = "".join(
            _table_html(f"{job}.{name}", frame, max_rows) for name, frame in result.tables.items()
        )
        sections.append(
            f'<section class="job" id="job-{escape(_slug(job))}"><h3>{escape(job)}</h3>'
            + (tables or '<p class="note">No tables.</p>')
            + "</section>"
        )
    return "".join(sections)


def _table_html(name: str, frame: pl.DataFrame, max_rows: int) -> str:
    caption = f"{name}: {_fmt_int(frame.height)} rows"
    if frame.height > max_rows:
        caption += f", first {_fmt_int(max_rows)} shown"
    if frame.is_empty() or not frame.columns:
        return f'<p class="note">{escape(name)}: empty.</p>'
    formatters = [_formatter(column, dtype) for column, dtype in frame.schema.items()]
    numeric = [dtype.is_numeric() for dtype in frame.schema.values()]
    head = "".join(
        f"<th{' class=num' if num else ''}>{escape(_header_name(c, d))}</th>"
        for (c, d), num in zip(frame.schema.items(), numeric, strict=True)
    )
    body = []
    for row in frame.head(max_rows).iter_rows():
        cells = []
        for value, fmt, num in zip(row, formatters, numeric, strict=True):
            text = fmt(value)
            shown = text if len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 1] + "…"
            title = f' title="{escape(text)}"' if shown != text else ""
            cells.append(f"<td{' class=num' if num else ''}{title}>{escape(shown)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (
        f'<div class="table-wrap"><table data-table="{escape(name)}">'
        f"<caption>{escape(caption)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _is_ns(column: str, dtype: pl.DataType) -> bool:
    return column.endswith("_ns") and dtype.is_numeric()


def _header_name(column: str, dtype: pl.DataType) -> str:
    return f"{column.removesuffix('_ns')} (ms)" if _is_ns(column, dtype) else column


def _formatter(column: str, dtype: pl.DataType) -> Callable[[Any], str]:
    def null_safe(fmt: Callable[[Any], str]) -> Callable[[Any], str]:
        return lambda value: "–" if value is None else fmt(value)

    if _is_ns(column, dtype):
        return null_safe(lambda v: _fmt_ms_number(float(v)))
    if dtype.is_float() and _SHARE.search(column):
        return null_safe(_fmt_pct)
    if dtype.is_float():
        return null_safe(_fmt_float)
    if dtype.is_integer():
        return null_safe(lambda v: _fmt_int(int(v)))
    if isinstance(dtype, pl.Datetime):
        return null_safe(_fmt_time)
    if isinstance(dtype, pl.List | pl.Struct | pl.Array):
        return null_safe(lambda v: json.dumps(v, default=str, ensure_ascii=False))
    return null_safe(str)


# --- formatting ----------------------------------------------------------------------------


def _fmt_int(value: int) -> str:
    return f"{value:,}"


def _fmt_float(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    if value == 0 or 1e-3 <= abs(value) < 1e6:
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{value:.3g}"


def _fmt_pct(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    return f"{value * 100:.1f}%" if abs(value) < 0.1 else f"{value * 100:.0f}%"


def _fmt_ms_number(ns: float) -> str:
    value = ns / 1e6
    if not math.isfinite(value):
        return str(value)
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"


def _fmt_ms_tick(ms_value: float) -> str:
    return f"{ms_value:g} ms" if ms_value < 1000 else f"{ms_value / 1000:g} s"


def _fmt_time(value: datetime | date) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return value.isoformat()


def _fmt_span(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


def _fmt_evidence(key: str, value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "–" if value is None else str(value).lower()
    if isinstance(value, int | float) and key.endswith("_ns"):
        return ms(value)
    if isinstance(value, float) and _SHARE.search(key):
        return _fmt_pct(value)
    if isinstance(value, float):
        return _fmt_float(value)
    if isinstance(value, int):
        return _fmt_int(value)
    if isinstance(value, list | tuple):
        return ", ".join(_fmt_evidence(key, v) for v in value)
    if isinstance(value, datetime | date):
        return _fmt_time(value)
    if isinstance(value, Mapping):  # e.g. {"p50": 0.83, "p99": 0.86} under "shares"
        return ", ".join(f"{k}: {_fmt_evidence(key, v)}" for k, v in value.items())
    return str(value)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "job"


_CSS: Final = """
:root { --fg:#1d2433; --muted:#5b6475; --line:#d9dee7; --bg:#fff; --soft:#f5f7fa; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1100px; padding: 1.5rem; color: var(--fg); background: var(--bg);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
h1 { font-size: 1.6rem; margin: 0 0 .5rem; } h2 { margin-top: 2rem; border-bottom: 1px solid
  var(--line); padding-bottom: .3rem; } h3 { margin: 1.2rem 0 .4rem; }
nav { margin: .5rem 0 1rem; color: var(--muted); } a { color: #0060a0; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; margin: 0; }
dl.meta dt { color: var(--muted); } dl.meta dd { margin: 0; overflow-wrap: anywhere; }
.count { display: inline-block; margin-right: 1rem; }
ol.findings { padding-left: 1.5rem; } li.finding { margin: 0 0 1rem; padding: .6rem .8rem;
  background: var(--soft); border-radius: 6px; }
.finding-head { font-weight: 600; } .job { color: var(--muted); font-weight: 400; font-size: .9em; }
.badge { display: inline-block; min-width: 4.2em; text-align: center; padding: 0 .4em;
  border-radius: 3px; color: #fff; font-size: .8em; text-transform: uppercase; }
.impact-high { background: #b3261e; } .impact-medium { background: #b06000; }
.impact-low { background: #5b6475; }
dl.evidence { display: grid; grid-template-columns: max-content 1fr; gap: 0 1rem;
  margin: .4rem 0; font-size: .92em; }
dl.evidence dt { color: var(--muted); } dl.evidence dd { margin: 0; overflow-wrap: anywhere; }
.finding p { margin: .3rem 0; } .gain-ns { color: var(--muted); }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; background: #e8ecf2;
  padding: 0 .3em; border-radius: 3px; overflow-wrap: anywhere; }
figure.plot { margin: 1rem 0 2rem; } figure.plot svg { width: 100%; height: auto;
  display: block; } figcaption, .note { color: var(--muted); font-size: .92em; }
svg text { font: 11px system-ui, sans-serif; fill: var(--fg); }
svg .tick, svg .axis-label { fill: var(--muted); } svg .group-label { font-weight: 600; }
svg .grid { stroke: #e6e9ef; } svg .axis { stroke: #8a93a5; }
svg .marker { stroke: #1d2433; stroke-dasharray: 4 3; } svg .marker-label { font-weight: 600; }
svg rect.mark:hover { opacity: .75; }
.table-wrap { overflow-x: auto; margin: .5rem 0 1.2rem; }
table { border-collapse: collapse; font-size: 12.5px; }
caption { text-align: left; color: var(--muted); padding: .2rem 0; caption-side: top; }
th, td { padding: .2rem .6rem; border-bottom: 1px solid var(--line); text-align: left;
  vertical-align: top; white-space: nowrap; } th { background: var(--soft); }
.num { text-align: right; font-variant-numeric: tabular-nums; }
"""
