"""Jobs and reports as rich tables and as JSON (``hopscope analyze``'s output).

Cells read as on the HTML page: both follow :mod:`hopscope.analysis.render._format`.

A job table fits the terminal it is printed on. It shows the columns :data:`DEFAULT_COLUMNS`
names for it (all of them for a table not named there, or with ``wide``), then drops columns
from the right until every remaining one is as wide as its longest word, so no number, name or
heading is ever cut to ``…``; the caption says how many columns ``--wide`` would add. With
``wide`` every column is laid out at its natural width, and lines may run past the terminal
(pipe them to ``less -S``); ``--json`` carries every column and row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Final

import polars as pl
from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.table import Table
from rich.text import Text

from hopscope.analysis.findings import Finding, JobResult
from hopscope.analysis.render._format import cell_formatter, header, integer, timestamp, to_json

if TYPE_CHECKING:
    from hopscope.analysis.report import Report

MAX_ROWS: Final = 15  # per table on a terminal; --json has everything
_IMPACT_STYLE: Final = {"high": "bold red", "medium": "yellow", "low": "dim"}
_GAP: Final = 2  # cells between two columns: no vertical rules, so the columns get the room

# The columns a terminal shows by default, per job and table, in order: what identifies a row,
# its volume, then the figures its findings rest on (p99 before p50); a narrow terminal drops
# them from the end, so the least telling comes last. The rest (other percentiles, ids,
# totals) is one --wide or --json away. A test checks that every name here is a column its
# job returns, so a renamed column cannot silently disappear.
DEFAULT_COLUMNS: Final[Mapping[str, Mapping[str, tuple[str, ...]]]] = {
    "bottlenecks": {
        "by_service": ("service", "percentile", "share", "self_share", "network_share",
                       "coordination_share"),
        "by_operation": ("operation", "service", "percentile", "share", "self_share",
                         "coordination_share"),
        "operations": ("operation", "service", "traces", "exclusive_ns_mean",
                       "exclusive_ns_p99", "share"),
    },
    "hops": {
        "edges": ("source_service", "target_service", "operation", "calls", "client_p99_ns",
                  "network_p99_ns", "server_p99_ns", "error_rate"),
        "edges_over_time": ("bucket", "source_service", "target_service", "calls",
                            "client_p99_ns", "network_p99_ns"),
        "nodes": ("target_service", "target_node", "calls", "network_p50_ns", "server_p50_ns",
                  "clock_skew_share"),
    },
    "failovers": {
        "failovers": ("time", "target_service", "from_node", "to_node", "reason",
                      "detection_ns", "added_ns", "outcome"),
        "by_node": ("from_node", "target_service", "reason", "failovers", "detection_p99_ns",
                    "added_p99_ns", "payments"),
        "timeline": ("bucket", "from_node", "failovers"),
        "downstream": ("origin_source", "origin_service", "origin_node", "failovers",
                       "from_nodes", "payments", "unrecovered"),
    },
    "coordination": {
        "by_kind": ("coordination_kind", "waits", "total_ns", "p50_ns", "p99_ns", "critical_ns",
                    "critical_share"),
        "by_resource": ("coordination_kind", "resource", "service", "waits", "p99_ns",
                        "critical_ns", "share_of_kind"),
        "stragglers": ("straggler", "transactions", "prepare_p99_ns", "blocked_p99_ns",
                       "aborted", "straggler_share"),
    },
    "tail": {
        "slow": ("field", "value", "slow_traces", "share_of_slow", "share_of_all", "lift",
                 "impact"),
        "failed": ("field", "value", "failed_traces", "failure_rate", "baseline_rate", "lift",
                   "impact"),
    },
    "balance": {
        "nodes": ("service", "node", "requests", "share", "p50_ns", "p99_ns", "error_rate"),
        "services": ("service", "nodes", "requests", "max_over_mean", "busiest_node",
                     "busiest_share", "strategy", "suggested_strategy"),
    },
    "db": {
        "statements": ("service", "statement", "calls", "p50_ns", "p99_ns", "share"),
        "reads_by_role": ("service", "statement", "role", "calls", "p50_ns", "p99_ns"),
        "targets": ("server_address", "role", "calls", "p50_ns", "p99_ns", "read_p99_ns",
                    "shard"),
    },
    "cache": {
        "caches": ("service", "cache", "lookups", "hit_ratio", "miss_penalty_ns",
                   "hit_parent_ns"),
        "over_time": ("bucket", "service", "cache", "lookups", "hit_ratio"),
    },
    "compare": {
        "suspects": ("cause", "subject", "impact", "before_ns", "after_ns", "change_ns",
                     "cliffs_delta", "p_value"),
        "services": ("service", "own_ns_per_trace_baseline", "own_ns_per_trace_incident",
                     "own_p_value", "error_rate_baseline", "error_rate_incident",
                     "error_p_value", "error_logs_per_trace_baseline",
                     "error_logs_per_trace_incident"),
        "operations": ("operation", "status", "spans_baseline", "spans_incident",
                       "p99_ns_baseline", "p99_ns_incident", "cliffs_delta", "duration_p_value"),
        "edges": ("source_service", "target_service", "operation", "status", "calls_baseline",
                  "calls_incident", "network_p50_ns_baseline", "network_p50_ns_incident",
                  "network_cliffs_delta", "network_p_value"),
    },
}  # fmt: skip


class FittedTable:
    """One job table, laid out when printed, for the width of the console it is printed on.

    Rich shrinks the widest columns of a table that is too wide until it fits, cutting words
    to ``…`` even when a narrower layout would have kept them whole; this lays the columns
    out itself (see the module docstring) and hands rich fixed widths.
    """

    def __init__(
        self,
        title: str,
        frame: pl.DataFrame,
        *,
        columns: Sequence[str] | None = None,
        max_rows: int = MAX_ROWS,
        wide: bool = False,
    ) -> None:
        chosen = [c for c in (columns or frame.columns) if c in frame.columns]
        self.title = title
        self.rows = frame.height
        self.frame = frame.select(frame.columns if wide else chosen).head(max_rows)
        self.wide = wide
        self.numeric = [dtype.is_numeric() for dtype in self.frame.schema.values()]
        self.headers = [Text(header(c, d)) for c, d in self.frame.schema.items()]
        formatters = [cell_formatter(c, d) for c, d in self.frame.schema.items()]
        # Text, not str: span names like "[bank-adapter] issuer/authorize" are not markup.
        self.cells = [
            [Text(fmt(v)) for fmt, v in zip(formatters, row, strict=True)]
            for row in self.frame.iter_rows()
        ]
        self.total_columns = frame.width

    def _extent(self, index: int) -> tuple[int, int, int]:
        """A column's content widths: its longest word, its longest cell, its longest line."""
        texts = [self.headers[index], *(row[index] for row in self.cells)]
        words = [cell_len(word) for text in texts for word in text.plain.split()]
        cells = [cell_len(line) for row in self.cells for line in row[index].plain.splitlines()]
        heading = [cell_len(line) for line in self.headers[index].plain.splitlines()]
        narrow = max(words, default=1)
        return narrow, max(narrow, *cells), max(narrow, *cells, *heading)

    def layout(self, width: int) -> list[int]:
        """Content widths of the columns shown in ``width`` cells (fewer when it is narrow)."""
        extents = [self._extent(i) for i in range(len(self.headers))]
        if not extents:
            return []
        if self.wide:
            return [natural for _, _, natural in extents]
        for shown in range(len(extents), 0, -1):
            room = width - (shown - 1) * _GAP
            if sum(narrow for narrow, _, _ in extents[:shown]) <= room:
                break
        else:  # not even the first column's longest word fits: fold it
            return [max(1, room)]
        widths = [narrow for narrow, _, _ in extents[:shown]]
        slack = room - sum(widths)
        # Every column gets its longest word; the rest of the room unwraps whole columns, those
        # that need the least first, so as many as possible read one line per row. Cells come
        # before headings: a wrapped cell costs a line per row, a wrapped heading one line.
        for target in (1, 2):
            wants = [extents[i][target] - widths[i] for i in range(shown)]
            for index in sorted(range(shown), key=wants.__getitem__):
                grant = min(wants[index], slack)
                widths[index] += grant
                slack -= grant
        return widths

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if not self.cells:  # headings over nothing say less than one line
            yield Text(f"{self.title}: no rows", style="dim")
            return
        widths = self.layout(options.max_width)
        hidden = self.total_columns - len(widths)
        notes = []
        if self.rows > len(self.cells):
            notes.append(f"{len(self.cells)} of {integer(self.rows)} rows")
        if hidden:
            notes.append(f"{hidden} more column{'s' if hidden > 1 else ''} with --wide")
        # A rule under the header and none between columns: two spaces (a collapsed padding
        # and an invisible separator) keep the columns apart, see _GAP.
        out = Table(
            title=self.title,
            caption="; ".join(notes) or None,
            title_justify="left",
            caption_justify="left",
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
            collapse_padding=True,
        )
        for index, width in enumerate(widths):
            out.add_column(
                self.headers[index],
                justify="right" if self.numeric[index] else "left",
                width=width,
                overflow="fold",  # only when a single word is wider than the terminal
            )
        for row in self.cells:
            out.add_row(*row[: len(widths)])
        table_width = sum(widths) + (len(widths) - 1) * _GAP
        yield from console.render(out, options.update_width(max(table_width, 1)))


def table(
    name: str,
    frame: pl.DataFrame,
    *,
    columns: Sequence[str] | None = None,
    max_rows: int = MAX_ROWS,
    wide: bool = False,
) -> FittedTable:
    """One job table, formatted by the shared policy (durations in ms, shares in %).

    Parameters:
        name: the title (``"hops: edges"``).
        frame: the job's table.
        columns: the columns to show when there is room (default: all).
        max_rows: rows shown; the caption says how many there are.
        wide: every column at its natural width, even past the terminal's edge.
    """
    return FittedTable(name, frame, columns=columns, max_rows=max_rows, wide=wide)


def findings_table(findings: list[Finding] | tuple[Finding, ...]) -> Table:
    """Findings in rank order: impact, what, expected gain, what to change."""
    out = Table(title="findings (most important first)", title_justify="left", show_lines=True)
    for column in ("#", "impact", "finding", "expected gain", "recommendation"):
        # Folded, not cut to "…": a word longer than a narrow column (stale-while-revalidate)
        # goes on over the next line.
        out.add_column(column, overflow="fold")
    for number, finding in enumerate(findings, 1):
        out.add_row(
            str(number),
            Text(finding.impact, style=_IMPACT_STYLE[finding.impact]),
            Text(finding.title),
            Text(finding.gain),
            Text(finding.recommendation),
        )
    return out


def job_renderable(result: JobResult, *, wide: bool = False) -> RenderableType:
    """A job's findings and tables, for ``console.print`` (``wide``: every column)."""
    parts: list[RenderableType] = []
    if result.findings:
        parts.append(findings_table(list(result.findings)))
    defaults = DEFAULT_COLUMNS.get(result.job, {})
    parts += [
        table(f"{result.job}: {name}", frame, columns=defaults.get(name), wide=wide)
        for name, frame in result.tables.items()
    ]
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
    baseline = (
        f"\nbaseline: {timestamp(report.baseline_window[0])} – "
        f"{timestamp(report.baseline_window[1])} UTC"
        if report.baseline_window
        else ""
    )
    header = Text.assemble(
        ("hopscope report", "bold"),
        f"\nsource: {report.source}\nwindow: {window}{baseline}\n{counts}",
    )
    if not report.findings:
        return Group(header, Text("no findings", style="green"))
    return Group(header, findings_table(list(report.findings)))


def print_job(result: JobResult, console: Console, *, wide: bool = False) -> None:
    """Print a job's findings and tables; ``wide`` shows every column, past the terminal's edge."""
    # Not cropped when wide: a line longer than the terminal wraps or scrolls, nothing is lost.
    console.print(job_renderable(result, wide=wide), crop=not wide)


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
