"""``hopscope analyze <job>``: load a window of records, run a job (or the report), print it.

Sources, in this order: ``--file PATH`` (OTLP JSON, Jaeger JSON or CSV exports; repeatable,
each a file, a directory or a glob pattern), ``--parquet DIR`` (the processors' archive), else
the Elasticsearch named by ``HOPSCOPE_ES_URL`` (or the local stack's). The window is
``--since``/``--until``; for Elasticsearch it defaults to the last 24 hours, for Parquet and
files to everything they hold (files: the traces that start in it).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer
from rich.console import Console

from hopscope.core.errors import HopscopeError
from hopscope.core.settings import DEFAULT_INDEX_PREFIX
from hopscope.stack import resolve_settings

if TYPE_CHECKING:
    from hopscope.analysis.schema import Dataset

DEFAULT_WINDOW: Final = timedelta(hours=24)
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _write(console: Console, text: str) -> None:
    """``text`` on the console's stream as it is: JSON is data, not something to highlight.
    ``Console.out`` would run rich's highlighter and line splitting over every character
    (16 s for the 3 MB report of 1M spans, three times the report itself) to print the
    same bytes to a pipe."""
    console.file.write(text)
    console.file.flush()


class AnalysisUnavailableError(HopscopeError):
    """The analysis extra (polars, the Elasticsearch client) is not installed."""


class AnalyzeJob(StrEnum):
    """The jobs of ``hopscope analyze`` (``report`` runs them all)."""

    REPORT = "report"
    BOTTLENECKS = "bottlenecks"
    HOPS = "hops"
    FAILOVERS = "failovers"
    COORDINATION = "coordination"
    TAIL = "tail"
    BALANCE = "balance"
    DB = "db"
    CACHE = "cache"
    # Not a per-window job: the window against a baseline window (--baseline-*).
    COMPARE = "compare"


class BaselineWindow(StrEnum):
    """Where the baseline window lies when ``--baseline-since`` is not given."""

    BEFORE = "before"
    SAME_HOUR_YESTERDAY = "same-hour-yesterday"


def parse_time(text: str, *, now: datetime) -> datetime:
    """An ISO 8601 instant (UTC when no offset is given) or a duration before ``now``.

    >>> now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    >>> parse_time("90m", now=now).isoformat(), parse_time("2026-11-25T08:00", now=now).isoformat()
    ('2026-11-26T10:30:00+00:00', '2026-11-25T08:00:00+00:00')
    """
    text = text.strip()
    if match := _RELATIVE.match(text):
        return now - timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is neither an ISO 8601 time (2026-11-26T08:00:00Z) nor a duration "
            "before now (30m, 24h, 7d)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _csv_format(columns: list[str] | None, start_unit: str, duration_unit: str) -> Any:
    """The ``--csv-*`` options as a :class:`~hopscope.analysis.loaders.CsvFormat`."""
    from hopscope.analysis.loaders import CsvFormat

    mapping: dict[str, str] = {}
    for item in columns or ():
        name, sep, column = item.partition("=")
        if not sep or not name.strip() or not column.strip():
            raise typer.BadParameter(
                f"{item!r} is not FIELD=COLUMN (e.g. trace_id=TraceId)", param_hint="--csv-column"
            )
        mapping[name.strip()] = column.strip()
    try:
        return CsvFormat(columns=mapping, start_unit=start_unit, duration_unit=duration_unit)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--csv-column / --csv-*-unit") from None


def baseline_window(
    start: datetime,
    end: datetime,
    *,
    kind: BaselineWindow = BaselineWindow.BEFORE,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[datetime, datetime]:
    """The baseline window of the incident window ``[start, end)``: ``[since, until)`` when
    given (``until`` defaulting to ``start``), else the same length just before, or the same
    hours a day earlier (``same-hour-yesterday``: daily traffic patterns cancel out).

    >>> s, e = datetime(2026, 11, 26, 12, 0, tzinfo=UTC), datetime(2026, 11, 26, 12, 30, tzinfo=UTC)
    >>> [t.strftime("%d %H:%M") for t in baseline_window(s, e)]
    ['26 11:30', '26 12:00']
    >>> yesterday = BaselineWindow.SAME_HOUR_YESTERDAY
    >>> [t.strftime("%d %H:%M") for t in baseline_window(s, e, kind=yesterday)]
    ['25 12:00', '25 12:30']
    """
    if since is not None:
        return since, until or start
    if kind is BaselineWindow.SAME_HOUR_YESTERDAY:
        return start - timedelta(days=1), end - timedelta(days=1)
    return start - (end - start), start


def _load(
    *,
    file: list[str] | None,
    parquet: Path | None,
    index_prefix: str,
    since: datetime | None,
    until: datetime | None,
    services: list[str] | None,
    progress: bool,
    csv_format: Any = None,
) -> tuple[Dataset, str]:
    from hopscope.analysis import loaders

    if file:
        data = loaders.load_files(
            file, since=since, until=until, csv_format=csv_format, services=services
        )
        return data, f"file {' '.join(file)}"
    if parquet is not None:
        data = loaders.load_parquet(
            parquet, since=since, until=until, services=services, progress=progress
        )
        return data, f"parquet {parquet}"
    from hopscope.core.settings import Settings

    settings = Settings.from_env()
    es_url = settings.es_url or resolve_settings(settings).es_url
    assert es_url is not None
    data = loaders.load_elasticsearch(
        es_url,
        index_prefix=index_prefix,
        since=since,
        until=until,
        services=services,
        progress=progress,
    )
    return data, f"elasticsearch {es_url} {index_prefix}-*"


def _aggregate(
    parquet: Path | None,
    index_prefix: str,
    start: datetime | None,
    end: datetime | None,
    memory_limit: str | None,
    threshold: int,
) -> Any:
    """The ranked aggregate tables of the window (a ``JobResult``)."""
    from hopscope.analysis.aggregates import ranked

    if parquet is not None:
        from hopscope.analysis.loaders import build_partials, load_partials
        from hopscope.analysis.loaders.partials import parse_memory_limit

        try:
            limit = parse_memory_limit(memory_limit) if memory_limit is not None else None
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--memory-limit") from None
        build_partials(parquet)
        return ranked(load_partials(parquet, since=start, until=end, memory_limit=limit))
    if memory_limit is not None:
        raise typer.BadParameter("--memory-limit applies to --aggregates --parquet")
    from hopscope.analysis.loaders.pushdown import aggregate_elasticsearch
    from hopscope.core.settings import Settings

    settings = Settings.from_env()
    es_url = settings.es_url or resolve_settings(settings).es_url
    assert es_url is not None
    found = aggregate_elasticsearch(es_url, index_prefix=index_prefix, since=start, until=end,
                                    threshold=threshold)  # fmt: skip
    return ranked(found.tables)


def _kibana_links(kibana_url: str | None, index_prefix: str) -> Callable[[str], str | None] | None:
    if not kibana_url:
        return None
    from hopscope.dashboards.kibana import trace_link

    try:
        return trace_link(kibana_url, index_prefix=index_prefix)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--kibana-url") from None


def analyze_command(
    job: Annotated[AnalyzeJob, typer.Argument(help="What to run; `report` runs every job.")],
    since: Annotated[
        str | None,
        typer.Option(help="Window start: ISO 8601 or a duration before now (24h, 30m, 7d)."),
    ] = None,
    until: Annotated[str | None, typer.Option(help="Window end (default: now).")] = None,
    parquet: Annotated[
        Path | None,
        typer.Option(help="Read the processors' Parquet archive in DIR instead of Elasticsearch."),
    ] = None,
    file: Annotated[
        list[str] | None,
        typer.Option(
            help="Read OTLP JSON, Jaeger JSON or CSV exports instead: a file, a directory or a "
            "glob pattern (repeatable; a trace split over files is gathered).",
        ),
    ] = None,
    csv_column: Annotated[
        list[str] | None,
        typer.Option(
            help="CSV files: FIELD=COLUMN for a column named otherwise than the default "
            "(trace_id=traceID, span_id=spanID, parent_id=parentSpanID, service=service, "
            "operation=operation, start=start, duration=duration, kind, status, node); "
            "repeatable.",
        ),
    ] = None,
    csv_start_unit: Annotated[
        str, typer.Option(help="CSV files: unit of numeric start times (ns, us, ms, s).")
    ] = "us",
    csv_duration_unit: Annotated[
        str, typer.Option(help="CSV files: unit of durations (ns, us, ms, s).")
    ] = "us",
    index_prefix: Annotated[
        str, typer.Option(envvar="HOPSCOPE_INDEX_PREFIX", help="Elasticsearch index prefix.")
    ] = DEFAULT_INDEX_PREFIX,
    service: Annotated[
        list[str] | None, typer.Option(help="Only these services' records (repeatable).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout instead of tables.")] = (
        False
    ),
    wide: Annotated[
        bool,
        typer.Option(
            "--wide",
            help="Every column of each table, even past the terminal's edge (default: the "
            "columns that fit).",
        ),
    ] = False,
    html: Annotated[
        Path | None, typer.Option(help="Also write a self-contained HTML report with plots.")
    ] = None,
    kibana_url: Annotated[
        str | None,
        typer.Option(
            envvar="HOPSCOPE_KIBANA_URL",
            help="Link example traces to this Kibana's Discover (HTML and JSON).",
        ),
    ] = None,
    baseline_since: Annotated[
        str | None,
        typer.Option(
            help="Compare with a baseline window starting here (ISO 8601 or a duration before "
            "now); `compare` and `report`."
        ),
    ] = None,
    baseline_until: Annotated[
        str | None, typer.Option(help="Baseline window end (default: the window's start).")
    ] = None,
    baseline: Annotated[
        BaselineWindow | None,
        typer.Option(
            help="Compare with a baseline window: the same length just before (the default of "
            "`compare`) or the same hours a day earlier."
        ),
    ] = None,
    aggregates: Annotated[
        bool,
        typer.Option(
            "--aggregates",
            help="`report` of a window too large to load: calls, errors and percentiles per "
            "edge, operation, failover path and coordination kind. With --parquet, merged from "
            "the archive's hourly partial aggregates (built where missing or stale); else "
            "aggregated by Elasticsearch above --pushdown-threshold documents.",
        ),
    ] = False,
    memory_limit: Annotated[
        str | None,
        typer.Option(
            help="--aggregates --parquet: memory the merge may hold (512MB, 2GB); partials "
            "are folded in chunks that fit."
        ),
    ] = None,
    pushdown_threshold: Annotated[
        int,
        typer.Option(
            help="--aggregates from Elasticsearch: documents in the window above which the "
            "cluster aggregates (below, the records are loaded and aggregated exactly).",
            min=0,
        ),
    ] = 5_000_000,
) -> None:
    """Find bottlenecks and say what to change: per-hop latency, failovers, coordination,
    tail attribution, load balance, database and cache; `compare` (or `report --baseline`)
    ranks the services that caused a change against a baseline window."""
    try:
        # hopscope.analysis first: it sets polars' allocator options, read once when polars
        # loads (hopscope.analysis.ALLOCATOR_CONF); imported after polars it cannot.
        importlib.import_module("hopscope.analysis")
        import polars  # noqa: F401
    except ImportError:
        raise AnalysisUnavailableError(
            "hopscope analyze needs the analysis extra: pip install 'hopscope[analysis]'"
        ) from None
    import polars as pl

    from hopscope.analysis.jobs import JOB_NAMES
    from hopscope.analysis.jobs import job as job_function
    from hopscope.analysis.render import job_json, print_job, print_report, report_json
    from hopscope.analysis.report import build_report

    if file and parquet is not None:
        raise typer.BadParameter("give --file or --parquet, not both")
    csv_format = _csv_format(csv_column, csv_start_unit, csv_duration_unit)
    now = datetime.now(UTC)
    start = parse_time(since, now=now) if since else None
    end = parse_time(until, now=now) if until else None
    if not file and parquet is None:
        end = end or now
        start = start or end - DEFAULT_WINDOW
    if start and end and start >= end:
        raise typer.BadParameter(f"--since ({start:%Y-%m-%dT%H:%M:%SZ}) is not before --until")
    compared = job is AnalyzeJob.COMPARE or baseline is not None or baseline_since is not None
    if aggregates:
        if job is not AnalyzeJob.REPORT or compared or file or html is not None:
            raise typer.BadParameter(
                "--aggregates makes a `report` of its own: no baseline, --file or --html"
            )
        result = _aggregate(parquet, index_prefix, start, end, memory_limit, pushdown_threshold)
        out = Console()
        if as_json:
            from hopscope.analysis.render import job_json

            _write(out, job_json(result))
        else:
            from hopscope.analysis.render import print_job

            print_job(result, out, wide=wide)
        return
    if memory_limit is not None:
        raise typer.BadParameter("--memory-limit applies to --aggregates --parquet")
    if compared and job not in (AnalyzeJob.COMPARE, AnalyzeJob.REPORT):
        raise typer.BadParameter(f"a baseline is compared by `compare` and `report`, not {job}")
    out, err = Console(), Console(stderr=True)
    if compared and file:
        # Both windows from the same file(s), split by trace start time.
        everything, source = _load(
            file=file, parquet=None, index_prefix=index_prefix, since=None, until=None,
            services=service, progress=err.is_terminal, csv_format=csv_format,
        )  # fmt: skip
        if start is None:
            raise typer.BadParameter("give --since (and --until) for the window to compare")
        if end is None:
            # The file's end, not now: an export is usually read long after it was taken.
            last = everything.traces.select(pl.col("time").max()).collect().item()
            end = last + timedelta(microseconds=1) if last is not None else start
        data = everything.between(start, end)
    else:
        data, source = _load(
            file=file, parquet=parquet, index_prefix=index_prefix, since=start, until=end,
            services=service, progress=err.is_terminal, csv_format=csv_format,
        )  # fmt: skip
    reference = None
    if compared:
        assert start is not None
        b_start, b_end = baseline_window(
            start, end or now, kind=baseline or BaselineWindow.BEFORE,
            since=parse_time(baseline_since, now=now) if baseline_since else None,
            until=parse_time(baseline_until, now=now) if baseline_until else None,
        )  # fmt: skip
        if b_start >= b_end:
            raise typer.BadParameter("the baseline window is empty: --baseline-since is not "
                                     "before --baseline-until")  # fmt: skip
        if file:
            reference = everything.between(b_start, b_end)
        else:
            reference, _ = _load(
                file=None, parquet=parquet, index_prefix=index_prefix, since=b_start,
                until=b_end, services=service, progress=err.is_terminal, csv_format=csv_format,
            )  # fmt: skip
        source += f" (baseline {b_start:%Y-%m-%dT%H:%M:%SZ} – {b_end:%Y-%m-%dT%H:%M:%SZ})"
        reference = reference.collect()
        if reference.traces.select(pl.len()).collect().item() == 0:
            err.print(
                f"warning: the baseline window {b_start:%Y-%m-%dT%H:%M:%SZ} – "
                f"{b_end:%Y-%m-%dT%H:%M:%SZ} holds no traces: nothing to compare with "
                "(give --baseline-since/--baseline-until)",
                markup=False, highlight=False,
            )  # fmt: skip
    if job is AnalyzeJob.COMPARE:
        from hopscope.analysis.jobs import compare

        assert reference is not None
        result = compare.run(data.collect(), reference.collect())
        if as_json:
            _write(out, job_json(result))
        else:
            print_job(result, out, wide=wide)
        return
    if job is AnalyzeJob.REPORT or html is not None:
        jobs = list(JOB_NAMES) if job is AnalyzeJob.REPORT else [job.value]
        report = build_report(
            data, source=source, jobs=jobs, progress=err.is_terminal,
            trace_link=_kibana_links(kibana_url, index_prefix), baseline=reference,
        )  # fmt: skip
        if html is not None:
            from hopscope.analysis.render import write_html

            write_html(report, html)
            err.print(f"HTML report: {html.resolve()}", markup=False, highlight=False)
        if job is AnalyzeJob.REPORT:
            if as_json:
                _write(out, report_json(report))
            else:
                print_report(report, out)
            return
        result = report.results[job.value]
    else:
        result = job_function(job.value)(data.collect())
    if as_json:
        _write(out, job_json(result))
    else:
        print_job(result, out, wide=wide)
