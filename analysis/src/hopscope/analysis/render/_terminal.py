"""Jobs and reports as rich tables and as JSON (``hopscope analyze``'s output).

Cells read as on the HTML page: both follow :mod:`hopscope.analysis.render._format`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import polars as pl
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from hopscope.analysis.findings import Finding, JobResult
from hopscope.analysis.render._format import cell_formatter, header, integer, timestamp, to_json

if TYPE_CHECKING:
    from hopscope.analysis.report import Report

MAX_ROWS: Final = 15  # per table on a terminal; --json has everything
_IMPACT_STYLE: Final = {"high": "bold red", "medium": "yellow", "low": "dim"}


def table(name: str, frame: pl.DataFrame, *, max_rows: int = MAX_ROWS) -> Table:
    """One job table, formatted by the shared policy (``*_ns`` columns in ms, shares in %)."""
    shown = frame.head(max_rows)
    caption = f"{len(shown)} of {len(frame)} rows" if len(frame) > max_rows else None
    out = Table(title=name, caption=caption, title_justify="left", show_lines=False)
    for column, dtype in frame.schema.items():
        out.add_column(header(column, dtype), justify="right" if dtype.is_numeric() else "left")
    formatters = [cell_formatter(column, dtype) for column, dtype in frame.schema.items()]
    for row in shown.iter_rows():
        # Text, not str: span names like "[bank-adapter] issuer/authorize" are not markup.
        out.add_row(*(Text(fmt(v)) for fmt, v in zip(formatters, row, strict=True)))
    return out


def findings_table(findings: list[Finding] | tuple[Finding, ...]) -> Table:
    """Findings in rank order: impact, what, expected gain, what to change."""
    out = Table(title="findings (most important first)", title_justify="left", show_lines=True)
    for column in ("#", "impact", "finding", "expected gain", "recommendation"):
        out.add_column(column)
    for number, finding in enumerate(findings, 1):
        out.add_row(
            str(number),
            Text(finding.impact, style=_IMPACT_STYLE[finding.impact]),
            Text(finding.title),
            Text(finding.gain),
            Text(finding.recommendation),
        )
    return out


def job_renderable(result: JobResult) -> RenderableType:
    """A job's findings and tables, for ``console.print``."""
    parts: list[RenderableType] = []
    if result.findings:
        parts.append(findings_table(list(result.findings)))
    parts += [table(f"{result.job}: {name}", frame) for name, frame in result.tables.items()]
    if not parts:
        parts.append(Text(f"{result.job}: no records in the window", style="dim"))
    return Group(*parts)


def report_renderable(report: Report) -> RenderableType:
    """The report's header and ranked findings (what ``Report.__rich__`` renders)."""
    window = (
        f"{timestamp(report.window[0])} – {timestamp(report.window[1])} UTC"
        if report.window
        else "no records"
    )
    counts = ", ".join(f"{integer(n)} {kind}" for kind, n in report.counts.items())
    header = Text.assemble(
        ("hopscope report", "bold"), f"\nsource: {report.source}\nwindow: {window}\n{counts}"
    )
    if not report.findings:
        return Group(header, Text("no findings", style="green"))
    return Group(header, findings_table(list(report.findings)))


def print_job(result: JobResult, console: Console) -> None:
    """Print a job's findings and tables."""
    console.print(job_renderable(result))


def print_report(report: Report, console: Console) -> None:
    """Print the report's header and findings."""
    console.print(report_renderable(report))


def job_json(result: JobResult) -> str:
    """A job as JSON: its tables (row objects) and findings."""
    return to_json(
        {
            "job": result.job,
            "findings": [f.to_dict() for f in result.findings],
            "tables": {name: frame.to_dicts() for name, frame in result.tables.items()},
        }
    )


def report_json(report: Report) -> str:
    """The report as JSON; ``findings`` is ordered most important first."""
    return to_json(report.to_dict())
