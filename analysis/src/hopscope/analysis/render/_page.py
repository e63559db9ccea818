"""The HTML report: one self-contained page, plots drawn as inline SVG (docs/DESIGN.md §6).

The page needs no network and no script: styles are inline, plots are SVG written here, tooltips
are SVG ``<title>`` elements. That keeps a report of a few thousand traces around a hundred
kilobytes, lets it be mailed or attached to a ticket, and makes it render the same in any browser.

Layout, top to bottom:

1. header: source, window, record counts;
2. findings, most important first: impact badge, title, evidence, recommendation, expected gain,
   example trace ids;
3. plots: latency distribution, critical-path share per service, hop network vs server time,
   failover timeline, coordination waits;
4. every job's tables (first rows; figures formatted by the policy of
   :mod:`hopscope.analysis.render._format`, as on the terminal).

Every plot is a ``<figure class="plot" data-plot="NAME">`` holding one ``<svg>``; a plot whose
table is missing or empty becomes a figure with ``data-empty`` and a sentence saying why, so a
partial report still renders. All text from telemetry (span names, services, attribute values)
is escaped: it is user input. The plots themselves are drawn in
:mod:`hopscope.analysis.render._plots`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Final

import polars as pl

from hopscope.analysis.findings import JobResult
from hopscope.analysis.render._format import (
    cell_formatter,
    describe,
    header,
    integer,
    label,
    ms,
    timestamp,
)
from hopscope.analysis.render._format import span as time_span
from hopscope.analysis.render._plots import PLOTS, plots

if TYPE_CHECKING:
    from hopscope.analysis.report import Report

__all__ = ["render_html", "render_plot", "write_html"]

DEFAULT_MAX_ROWS: Final = 50
MAX_CELL_CHARS: Final = 160


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
        >>> from hopscope.analysis.report import Report
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
    figures = plots(report)
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
        *(figure.html() for figure in figures),
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
        >>> from hopscope.analysis.report import Report
        >>> empty = Report(source="-", window=None, counts={}, latency=pl.DataFrame(), results={})
        >>> render_plot(empty, "hops")[:62]
        '<figure class="plot" data-plot="hops" data-empty="true"><h3>Ho'
    """
    if name not in PLOTS:
        raise ValueError(f"unknown plot {name!r}; plots: {', '.join(PLOTS)}")
    return next(figure for figure in plots(report) if figure.name == name).html()


def write_html(report: Report, path: Path, *, title: str = "hopscope report") -> Path:
    """Write :func:`render_html` to ``path`` (UTF-8, parents created) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report, title=title), encoding="utf-8")
    return path


def _header(report: Report) -> str:
    if report.window:
        start, end = report.window
        window = (
            f"{escape(timestamp(start))} – {escape(timestamp(end))} "
            f"({escape(time_span(end - start))})"
        )
    else:
        window = "no records"
    counts = "".join(
        f'<span class="count"><b>{integer(n)}</b> {escape(str(kind))}</span>'
        for kind, n in report.counts.items()
    )
    baseline = ""
    if report.baseline_window:
        b_start, b_end = report.baseline_window
        baseline = (
            f"<dt>Baseline</dt><dd>{escape(timestamp(b_start))} – {escape(timestamp(b_end))} "
            f"({escape(time_span(b_end - b_start))})</dd>"
        )
    return (
        f'<dl class="meta"><dt>Source</dt><dd>{escape(report.source)}</dd>'
        f"<dt>Window</dt><dd>{window}</dd>{baseline}"
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
            f"<dt>{escape(label(str(key)))}</dt><dd>{escape(describe(str(key), item))}</dd>"
            for key, item in finding.evidence.items()
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
    caption = f"{name}: {integer(frame.height)} rows"
    if frame.height > max_rows:
        caption += f", first {integer(max_rows)} shown"
    if frame.is_empty() or not frame.columns:
        return f'<p class="note">{escape(name)}: empty.</p>'
    formatters = [cell_formatter(column, dtype) for column, dtype in frame.schema.items()]
    numeric = [dtype.is_numeric() for dtype in frame.schema.values()]
    head = "".join(
        f"<th{' class=num' if num else ''}>{escape(header(c, d))}</th>"
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
