"""Jobs and reports as rich tables and as JSON (``hopscope analyze``'s output)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Final

import polars as pl
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from hopscope.analysis.findings import Finding, JobResult, ms
from hopscope.analysis.report import Report

MAX_ROWS: Final = 15  # per table on a terminal; --json has everything
_IMPACT_STYLE: Final = {"high": "bold red", "medium": "yellow", "low": "dim"}


def _cell(column: str, value: Any) -> str:
    if value is None:
        return "–"
    if column.endswith("_ns") and isinstance(value, int | float):
        return ms(value)
    if isinstance(value, float):
        if column.endswith(("share", "rate", "ratio")):
            return f"{value:.1%}"
        return f"{value:.3g}"
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M:%S}"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def table(name: str, frame: pl.DataFrame, *, max_rows: int = MAX_ROWS) -> Table:
    """One job table; ``*_ns`` columns in ms, shares and rates as percentages."""
    shown = frame.head(max_rows)
    caption = f"{len(shown)} of {len(frame)} rows" if len(frame) > max_rows else None
    out = Table(title=name, caption=caption, title_justify="left", show_lines=False)
    for column, dtype in frame.schema.items():
        out.add_column(column, justify="right" if dtype.is_numeric() else "left")
    for row in shown.iter_rows():
        # Text, not str: span names like "[bank-adapter] issuer/authorize" are not markup.
        out.add_row(*(Text(_cell(c, v)) for c, v in zip(frame.columns, row, strict=True)))
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
    parts: list[RenderableType] = []
    if result.findings:
        parts.append(findings_table(list(result.findings)))
    parts += [table(f"{result.job}: {name}", frame) for name, frame in result.tables.items()]
    if not parts:
        parts.append(Text(f"{result.job}: no records in the window", style="dim"))
    return Group(*parts)


def report_renderable(report: Report) -> RenderableType:
    window = (
        f"{report.window[0]:%Y-%m-%d %H:%M:%S} – {report.window[1]:%Y-%m-%d %H:%M:%S} UTC"
        if report.window
        else "no records"
    )
    counts = ", ".join(f"{n:,} {kind}" for kind, n in report.counts.items())
    header = Text.assemble(
        ("hopscope report", "bold"), f"\nsource: {report.source}\nwindow: {window}\n{counts}"
    )
    if not report.findings:
        return Group(header, Text("no findings", style="green"))
    return Group(header, findings_table(list(report.findings)))


def print_job(result: JobResult, console: Console) -> None:
    console.print(job_renderable(result))


def print_report(report: Report, console: Console) -> None:
    console.print(report_renderable(report))


def job_json(result: JobResult) -> str:
    """A job as JSON: its tables (row objects) and findings."""
    return _dumps(
        {
            "job": result.job,
            "findings": [f.to_dict() for f in result.findings],
            "tables": {name: frame.to_dicts() for name, frame in result.tables.items()},
        }
    )


def report_json(report: Report) -> str:
    """The report as JSON; ``findings`` is ordered most important first."""
    return _dumps(report.to_dict())


def _dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, indent=2, default=_default) + "\n"


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
