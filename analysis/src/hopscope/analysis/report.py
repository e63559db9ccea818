"""The report: every job over one dataset, findings ranked across jobs (docs/DESIGN.md §6)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Final

import polars as pl
from rich.console import Console, RenderableType
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from hopscope.analysis.findings import IMPACTS, Finding, JobResult, rank
from hopscope.analysis.jobs import JOB_NAMES, UNREAD, compare, job
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
        trace_link: when set, turns an example trace id into a link (the CLI passes Kibana
            Discover's, :func:`hopscope.dashboards.kibana.trace_link`), or None where it has
            none. The analysis itself knows no dashboard.
        baseline_window: (start, end) of the baseline the window was compared with (the
            ``compare`` result), None without a baseline or when it is empty.
    """

    source: str
    window: tuple[datetime, datetime] | None
    counts: Mapping[str, int]
    latency: pl.DataFrame
    results: Mapping[str, JobResult]
    findings: Sequence[Finding] = field(default_factory=list)
    trace_link: Callable[[str], str | None] | None = None
    baseline_window: tuple[datetime, datetime] | None = None

    def trace_url(self, trace_id: str) -> str | None:
        """A link to the trace's spans and logs, None without ``trace_link``."""
        return self.trace_link(trace_id) if self.trace_link else None

    def __rich__(self) -> RenderableType:
        """The header and ranked findings, so ``console.print(report)`` shows the report."""
        from hopscope.analysis.render import report_renderable  # render imports Report

        return report_renderable(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``findings`` ordered most important first, tables as row lists."""
        return {
            "source": self.source,
            "window": [t.isoformat() for t in self.window] if self.window else None,
            "baseline_window": (
                [t.isoformat() for t in self.baseline_window] if self.baseline_window else None
            ),
            "counts": dict(self.counts),
            "findings": [self._finding_dict(f) for f in self.findings],
            "tables": {
                job: {name: table.to_dicts() for name, table in result.tables.items()}
                for job, result in self.results.items()
            },
        }

    def _finding_dict(self, finding: Finding) -> dict[str, Any]:
        out = finding.to_dict()
        if self.trace_link:
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


# A finding also present in the baseline stands (is not what changed) unless its expected gain
# grew past this factor of the baseline's.
STANDING_GAIN_FACTOR: Final = 2.0

StandingKey = tuple[str, str, tuple[tuple[str, str], ...]]


def standing_key(finding: Finding) -> StandingKey:
    """What a finding is about, whatever its figures: job, kind and the subject's names
    (service, node, operation, edge...; lists such as hot resources left out)."""
    names = tuple(sorted((k, v) for k, v in finding.subject.items() if isinstance(v, str)))
    return finding.job, finding.kind, names


def split_standing(
    findings: Sequence[Finding], before: Sequence[Finding]
) -> tuple[list[Finding], list[Finding]]:
    """(changed, standing): a finding stands when the baseline had it too — same
    :func:`standing_key`, at the same impact or higher, with at least
    1/:data:`STANDING_GAIN_FACTOR` of its expected gain. Standing ones are marked
    ``in_baseline`` and say so in their title."""
    earlier: dict[StandingKey, Finding] = {}
    for f in before:
        known = earlier.get(standing_key(f))
        if known is None or IMPACTS.index(f.impact) < IMPACTS.index(known.impact):
            earlier[standing_key(f)] = f
    changed, standing = [], []
    for f in findings:
        old = earlier.get(standing_key(f))
        if (
            old is not None
            and IMPACTS.index(old.impact) <= IMPACTS.index(f.impact)
            and old.gain_ns * STANDING_GAIN_FACTOR >= f.gain_ns
        ):
            standing.append(dataclasses.replace(
                f, title=f"{f.title} (also in the baseline window)",
                evidence={**f.evidence, "in_baseline": True},
            ))  # fmt: skip
        else:
            changed.append(f)
    return changed, standing


def build_report(
    data: Dataset,
    *,
    source: str,
    jobs: Sequence[str] = JOB_NAMES,
    progress: bool = True,
    trace_link: Callable[[str], str | None] | None = None,
    baseline: Dataset | None = None,
) -> Report:
    """Run ``jobs`` over ``data`` and rank every finding.

    Parameters:
        data: the records of the window (collected once here, then shared by the jobs;
            the columns of :data:`hopscope.analysis.jobs.UNREAD` are not loaded).
        source: where they came from, for the report's header.
        jobs: job names (of :data:`hopscope.analysis.jobs.JOB_NAMES`), in report order.
        progress: show a progress bar on stderr.
        trace_link: links example traces (see :class:`Report`).
        baseline: the records of a normal window to compare with
            (:func:`hopscope.analysis.jobs.compare.run`, result ``compare``). Its ``high`` and
            ``medium`` suspects lead the findings, in the comparison's order: they say what
            changed and where, which the per-window jobs cannot. The jobs also run over the
            baseline: a finding that was already there (:func:`split_standing`: a standing
            bottleneck, a skew that did not change) ranks after the new ones, marked
            ``in_baseline``.

    Returns:
        The :class:`Report`, findings most important first.
    """
    data = data.collect(UNREAD)
    baseline = baseline.collect(UNREAD) if baseline is not None else None
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
        total = len(jobs) * (1 if baseline is None else 2) + (baseline is not None)
        task = bar.add_task("analysing", total=total)
        for name in jobs:
            bar.update(task, description=f"analysing: {name}")
            results[name] = job(name)(data)
            bar.advance(task)
        before: list[Finding] = []
        if baseline is not None:
            for name in jobs:
                bar.update(task, description=f"analysing the baseline: {name}")
                before += job(name)(baseline).findings
                bar.advance(task)
            bar.update(task, description=f"analysing: {compare.JOB}")
            results[compare.JOB] = compare.run(data, baseline)
            bar.advance(task)
    everything = [f for result in results.values() for f in result.findings]
    suspects = [
        f for f in everything
        if f.job == compare.JOB and f.kind in compare.SUSPECT_KINDS and f.impact != "low"
    ]  # fmt: skip
    leading = {id(f) for f in suspects}
    rest = [f for f in everything if id(f) not in leading]
    changed, standing = split_standing(rest, before)
    findings = [*suspects, *rank(changed), *rank(standing)]
    return Report(
        source=source,
        window=_window(latency, data.spans),
        counts=counts,
        latency=latency,
        results=results,
        findings=findings,
        trace_link=trace_link,
        baseline_window=(
            _window(latency_frame(baseline), baseline.spans) if baseline is not None else None
        ),
    )
