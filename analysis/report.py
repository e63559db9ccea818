"""The report: every job over one dataset, findings ranked across jobs (DESIGN.md §6)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

import polars as pl
from rich.console import Console, RenderableType
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from hopscope.analysis.findings import Finding, JobResult, rank
from hopscope.analysis.jobs import JOB_NAMES, job
from hopscope.analysis.schema import Dataset


@dataclass(frozen=True)
class Report:
    """What ``hopscope analyze report`` shows.

    Attributes:
        source: where the records came from ("elasticsearch http://... hopscope-*",
            "parquet /path", "file trace.json").
        window: (start, end) of the analysed records, None when empty.
        counts: records per kind (spans, traces, hops...).
        latency: one row per trace: ``trace_id``, ``time``, ``duration_ns``, ``error``
            (the latency distribution plot).
        results: each job's tables and findings, by job name.
        findings: every job's findings, most important first.
        kibana_url: when set, example traces link to Kibana Discover (spans and logs of the
            trace, in the ``index_prefix`` data view).
    """

    source: str
    window: tuple[datetime, datetime] | None
    counts: Mapping[str, int]
    latency: pl.DataFrame
    results: Mapping[str, JobResult]
    findings: Sequence[Finding] = field(default_factory=list)
    kibana_url: str | None = None
    index_prefix: str = "hopscope"

    def trace_url(self, trace_id: str) -> str | None:
        """A Kibana Discover link to the trace's spans and logs, None without ``kibana_url``."""
        if not self.kibana_url:
            return None
        from hopscope.processors.kibana.links import discover_url

        try:
            return discover_url(self.kibana_url, trace_id, index_prefix=self.index_prefix)
        except ValueError:  # not a W3C trace id (e.g. from a Jaeger export): no link
            return None

    def __rich__(self) -> RenderableType:
        """The header and ranked findings, so ``console.print(report)`` shows the report."""
        from hopscope.analysis.render import report_renderable  # render imports Report

        return report_renderable(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``findings`` ordered most important first, tables as row lists."""
        return {
            "source": self.source,
            "window": [t.isoformat() for t in self.window] if self.window else None,
            "counts": dict(self.counts),
            "findings": [self._finding_dict(f) for f in self.findings],
            "tables": {
                job: {name: table.to_dicts() for name, table in result.tables.items()}
                for job, result in self.results.items()
            },
        }

    def _finding_dict(self, finding: Finding) -> dict[str, Any]:
        out = finding.to_dict()
        if self.kibana_url:
            out["example_trace_urls"] = [self.trace_url(t) for t in finding.example_traces]
        return out


def latency_frame(data: Dataset) -> pl.DataFrame:
    """One row per trace (``trace_id``, ``time``, ``duration_ns``, ``error``), by time."""
    return (
        data.traces.select("trace_id", "time", "duration_ns", "error")
        .sort("time", "trace_id")
        .collect()
    )


def _window(latency: pl.DataFrame, spans: pl.LazyFrame) -> tuple[datetime, datetime] | None:
    times = latency.get_column("time")
    if times.is_empty():
        times = spans.select("time").collect().get_column("time")
    if times.is_empty() or times.null_count() == len(times):
        return None
    start, end = times.min(), times.max()
    assert isinstance(start, datetime) and isinstance(end, datetime)
    return start, end


def build_report(
    data: Dataset,
    *,
    source: str,
    jobs: Sequence[str] = JOB_NAMES,
    progress: bool = True,
    kibana_url: str | None = None,
    index_prefix: str = "hopscope",
) -> Report:
    """Run ``jobs`` over ``data`` and rank every finding.

    Parameters:
        data: the records of the window (collected once here, then shared by the jobs).
        source: where they came from, for the report's header.
        jobs: job names (of :data:`hopscope.analysis.jobs.JOB_NAMES`), in report order.
        progress: show a progress bar on stderr.
        kibana_url, index_prefix: link example traces to Kibana Discover (see :class:`Report`).

    Returns:
        The :class:`Report`, findings most important first.
    """
    data = data.collect()
    counts = {
        f.name: int(getattr(data, f.name).select(pl.len()).collect().item()) for f in fields(data)
    }
    latency = latency_frame(data)
    results: dict[str, JobResult] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} jobs"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not progress,
        transient=True,
    ) as bar:
        task = bar.add_task("analysing", total=len(jobs))
        for name in jobs:
            bar.update(task, description=f"analysing: {name}")
            results[name] = job(name)(data)
            bar.advance(task)
    findings = rank([f for result in results.values() for f in result.findings])
    return Report(
        source=source,
        window=_window(latency, data.spans),
        counts=counts,
        latency=latency,
        results=results,
        findings=findings,
        kibana_url=kibana_url,
        index_prefix=index_prefix,
    )
