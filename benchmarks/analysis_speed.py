"""Batch analysis speed: the full report on a big Parquet archive (raw path), a month of
hourly partial aggregates (partial-aggregate path), and DuckDB on the same per-edge percentiles.

Steps (matched by ``Step N`` comments below):

1. Simulate ``--base-traces`` payments (mixed scenarios) and write their records with the
   processors' own :class:`~hopscope.processors.archive.ParquetArchive`: the archive format
   exactly as the processors write it.
2. Replicate that archive until it holds ``--spans`` spans: each copy gets new trace and
   document ids and is shifted in time past the previous one (vectorised in polars; the
   structure of every trace is a real simulated one).
3. Raw path, in a child process of its own (its peak RSS is its own): ``load_parquet`` +
   ``build_report`` (every job, each timed in wall and CPU seconds) on the whole archive,
   loaded as ``hopscope analyze report`` loads it (the columns no job reads left out); the
   per-edge percentiles of the ``hops`` job alone (polars); the same per-edge percentiles as
   one DuckDB SQL query over the same files. Peak RSS is read after the report, before DuckDB runs.
4. Partial-aggregate path: the base archive's hourly partials
   (:func:`hopscope.analysis.loaders.build_partials`) are the partials of any hour that holds
   copies of a base hour, with every count multiplied by the copies (partials are sums), so a
   window of ``--hours`` hours holding ``--partial-spans`` spans is synthesised without
   writing its raw records. In a child process: every aggregate table of the window merged
   by :func:`hopscope.analysis.loaders.load_partials` under ``--memory-limit`` (time, peak
   RSS), and the per-edge percentiles from the same partial files as one DuckDB query.
5. With an Elasticsearch (``HOPSCOPE_ES_URL`` or the local stack), ``--es-docs`` span
   documents (default 1M) are indexed under a fresh prefix and read back with
   ``load_elasticsearch`` (``benchmarks/es_loader.py``): docs/s; the indices are deleted after.

    python benchmarks/analysis_speed.py [--spans 10000000] [--partial-spans 100000000]
        [--hours 720] [--memory-limit 1GB] [--es-docs 1000000] [--dir DIR]

The archive is kept in ``--dir`` and reused when it already holds the requested spans
(``--regenerate`` to rebuild). ``--spans 0`` / ``--partial-spans 0`` skip a path.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from hopscope.analysis import ALLOCATOR_ENV
from hopscope.analysis import report as report_module
from hopscope.analysis.aggregates import QUANTILES, TABLES
from hopscope.analysis.findings import JobResult
from hopscope.analysis.jobs import UNREAD, job
from hopscope.analysis.loaders import (
    build_partials,
    documents_from_records,
    load_parquet,
    load_partials,
)
from hopscope.analysis.loaders.parquet import _hour
from hopscope.analysis.loaders.partials import PARTIALS, _hour_dir, parse_memory_limit
from hopscope.analysis.report import build_report
from hopscope.analysis.schema import Dataset
from hopscope.ingest.simulator import Scenario, SimulationConfig, parse_iso8601_ns, simulate
from hopscope.processors.archive import ParquetArchive
from hopscope.processors.decode import decode_logs, decode_spans
from hopscope.stack import resolve_settings

START = parse_iso8601_ns("2026-06-01T00:00:00Z")
# A mix, so every job has something to chew on.
SCENARIOS = (Scenario.NODE_FAILURE, Scenario.SLOW_HOP, Scenario.LOCK_CONTENTION,
             Scenario.CACHE_DEGRADATION)  # fmt: skip
console = Console(stderr=True)


def base_archive(root: Path, traces: int) -> int:
    """Step 1: simulated records in the archive format; returns the span count."""
    archive = ParquetArchive(root)
    spans_total = 0
    per = max(1, traces // len(SCENARIOS))
    for number, scenario in enumerate(SCENARIOS):
        spans_out, logs_out = InMemorySpanExporter(), InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
        config = SimulationConfig(start_ns=START + number * 3600 * 10**9, scenario=scenario,
                                  seed=number, traces=per)  # fmt: skip
        simulate(config, span_processors=[SimpleSpanProcessor(spans_out)],
                 log_processors=[SimpleLogRecordProcessor(logs_out)])  # fmt: skip
        spans = decode_spans(encode_spans(spans_out.get_finished_spans()).SerializeToString())
        logs = decode_logs(encode_logs(logs_out.get_finished_logs()).SerializeToString())
        documents = list(documents_from_records(spans, logs))
        archive.write(documents)
        spans_total += len(spans)
    return spans_total


def _shifted(frame: pl.DataFrame, first: int, copies: int, shift_ns: int) -> pl.DataFrame:
    """Step 2: copies ``first`` … ``first + copies - 1`` of ``frame``; copy k with new ids and
    times + k·shift_ns."""
    k = pl.col("_copy")
    numbers = pl.DataFrame({"_copy": pl.int_range(first, first + copies, eager=True)})
    out = frame.join(numbers, how="cross")
    exprs: list[pl.Expr] = [(pl.col("_id") + "-" + k.cast(pl.String)).alias("_id")]
    for name, dtype in frame.schema.items():
        if name == "trace.id" or name.endswith(".trace_id"):
            exprs.append(
                (pl.col(name).str.slice(0, 24) + k.cast(pl.String).str.zfill(8)).alias(name)
            )
        elif name == "@timestamp":
            exprs.append((pl.col(name) + pl.duration(nanoseconds=k * shift_ns)).alias(name))
        elif name.endswith(("start_ns", "time_ns")) and dtype.is_integer():
            exprs.append((pl.col(name) + k * shift_ns).alias(name))
    return out.with_columns(exprs).drop("_copy")


def replicate(base: Path, root: Path, copies: int) -> None:
    """Step 2: every kind of the base archive, ``copies`` times, partitioned by hour."""
    shift_ns = 4 * 3600 * 10**9  # the base spans four hours (one per scenario)
    kinds = sorted(p.name for p in base.iterdir() if p.is_dir())
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("replicating", total=len(kinds) * copies)
        for kind in kinds:
            frame = pl.concat(
                [pl.read_parquet(f) for f in sorted((base / kind).rglob("*.parquet"))],
                how="diagonal_relaxed",
            )
            step = max(1, 2_000_000 // max(1, len(frame)))  # copies per batch: bounded memory
            for first in range(0, copies, step):
                batch = _shifted(frame, first, min(step, copies - first), shift_ns)
                batch = batch.with_columns(
                    pl.col("@timestamp").dt.strftime("%Y-%m-%d").alias("_date"),
                    pl.col("@timestamp").dt.strftime("%H").alias("_hour"),
                )
                for (date, hour), part in batch.group_by("_date", "_hour"):
                    directory = root / kind / f"date={date}" / f"hour={hour}"
                    directory.mkdir(parents=True, exist_ok=True)
                    part.drop("_date", "_hour").write_parquet(
                        directory / f"part-{first:06d}.parquet", compression="zstd"
                    )
                progress.advance(task, min(step, copies - first))


def polars_edges(root: Path) -> tuple[float, int]:
    """Step 3: the DuckDB query below, as one lazy polars query over the same files."""
    columns = {"client": "hopscope.hop.client_ns", "server": "hopscope.hop.server_ns",
               "network": "hopscope.hop.network_ns"}  # fmt: skip
    keys = ["hopscope.hop.source_service", "hopscope.hop.target_service",
            "hopscope.hop.operation", "hopscope.hop.kind"]  # fmt: skip
    started = time.perf_counter()
    scan = pl.scan_parquet(sorted(root.glob("hops/**/*.parquet")), missing_columns="insert",
                           extra_columns="ignore")  # fmt: skip
    edges = (
        scan.group_by(keys)
        .agg(
            pl.len().alias("calls"),
            pl.col("hopscope.hop.error").cast(pl.Float64).mean().alias("error_rate"),
            *(
                pl.col(column).quantile(q, "nearest").alias(f"{name}_p{label}_ns")
                for name, column in columns.items()
                for q, label in ((0.5, "50"), (0.9, "90"), (0.99, "99"), (0.999, "999"))
            ),
        )
        .collect(engine="in-memory")  # as the Parquet loader collects its scans
    )
    return time.perf_counter() - started, len(edges)


def duckdb_edges(root: Path) -> tuple[float, int]:
    """Step 3: the hops job's per-edge percentiles as one DuckDB query; (seconds, edges)."""
    import duckdb

    percentiles = ", ".join(
        f"quantile_disc({column}, {q}) AS {column.split('.')[-1][:-3]}_p{label}_ns"
        for column in ("\"hopscope.hop.client_ns\"", "\"hopscope.hop.server_ns\"",
                       "\"hopscope.hop.network_ns\"")
        for q, label in ((0.5, "50"), (0.9, "90"), (0.99, "99"), (0.999, "999"))
    )  # fmt: skip
    query = f"""
        SELECT "hopscope.hop.source_service", "hopscope.hop.target_service",
               "hopscope.hop.operation", "hopscope.hop.kind", count(*) AS calls,
               avg(CASE WHEN "hopscope.hop.error" THEN 1 ELSE 0 END) AS error_rate,
               {percentiles}
        FROM read_parquet('{root}/hops/**/*.parquet', union_by_name = true)
        GROUP BY ALL
    """
    started = time.perf_counter()
    with duckdb.connect() as connection:
        rows = connection.execute(query).fetchall()
    return time.perf_counter() - started, len(rows)


def _peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB.

    ``VmHWM`` of ``/proc/self/status`` (Linux): the high-water mark of this program's own
    memory. ``getrusage``'s ``ru_maxrss`` is not used where it exists: a child started by
    fork and exec keeps the parent's figure at the fork (the parent had just built the
    archive), so the child would report the parent's peak.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_s() -> float:
    """CPU seconds of this process so far (user + system, every thread): on a shared
    machine the wall time depends on the neighbours, this does much less."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _usage() -> tuple[float, float, int]:
    """(user CPU s, system CPU s, minor page faults) of this process so far: system time is
    mostly the kernel zeroing pages the allocator handed back and took again."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime, usage.ru_minflt


def _timed_jobs(times: dict[str, list[float]]) -> None:
    """Make ``build_report`` record each job's wall and CPU seconds in ``times``."""
    plain = report_module.job

    def timed(name: str) -> Callable[[Dataset], JobResult]:
        run = plain(name)

        def measured(data: Dataset) -> JobResult:
            started, cpu = time.perf_counter(), _cpu_s()
            result = run(data)
            times[name] = [time.perf_counter() - started, _cpu_s() - cpu]
            return result

        return measured

    report_module.job = timed  # type: ignore[assignment]


def raw_path(root: Path) -> dict[str, Any]:
    """Step 3, in a child process: the raw path's figures."""
    times: dict[str, list[float]] = {}
    _timed_jobs(times)
    started, cpu, before = time.perf_counter(), _cpu_s(), _usage()
    # What build_report loads of a lazy dataset, loaded first to time it apart.
    data = load_parquet(root, progress=False).collect(UNREAD)
    loaded, loaded_cpu = time.perf_counter() - started, _cpu_s() - cpu
    report = build_report(data, source=f"parquet {root}", progress=False)
    report_s, report_cpu_s = time.perf_counter() - started, _cpu_s() - cpu
    user_s, system_s, faults = (b - a for a, b in zip(before, _usage(), strict=True))
    rss = _peak_rss_mb()
    started = time.perf_counter()
    edges = job("hops")(data).tables["edges"]
    hops_job_s = time.perf_counter() - started
    del data, report
    polars_edges_s, polars_count = polars_edges(root)
    duck_s, duck_edges = duckdb_edges(root)
    return {
        "load_s": loaded, "load_cpu_s": loaded_cpu, "jobs": times,
        "report_s": report_s, "report_cpu_s": report_cpu_s, "user_s": user_s,
        "system_s": system_s, "page_faults": faults, "allocator": os.environ.get(ALLOCATOR_ENV),
        "peak_rss_mb": rss, "hops_job_s": hops_job_s,
        "edges": len(edges), "polars_edges_s": polars_edges_s, "polars_edges": polars_count,
        "duckdb_s": duck_s, "duckdb_edges": duck_edges,
    }  # fmt: skip


def synthesize_partials(base: Path, root: Path, spans: int, hours: int) -> dict[str, int]:
    """Step 4: ``hours`` hourly partials holding ``spans`` spans, from the base's hours."""
    build_partials(base, force=True)
    tables = [t.name for t in TABLES]
    base_hours = sorted(
        _hour(d)  # type: ignore[type-var]
        for d in (base / PARTIALS / "operations").glob("date=*/hour=*")
    )
    per_hour = [
        int(
            pl.read_parquet(next(_hour_dir(base, "operations", h).glob("*.parquet")))
            .get_column("calls")
            .sum()
        )
        for h in base_hours
    ]
    copies = max(1, -(-spans // (hours * sum(per_hour) // len(per_hour))))
    first = datetime(2026, 6, 1, tzinfo=UTC)
    total = 0
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("synthesising partials", total=hours)
        for number in range(hours):
            source = number % len(base_hours)
            hour = first + timedelta(hours=number)
            total += per_hour[source] * copies
            for table in tables:
                frame = pl.read_parquet(next(_hour_dir(base, table, base_hours[source]).glob(
                    "*.parquet")))  # fmt: skip
                counted = [c for c in frame.columns if c in {"calls", "count"} or
                           c.endswith("_count")]  # fmt: skip
                directory = _hour_dir(root, table, hour)
                directory.mkdir(parents=True, exist_ok=True)
                frame.with_columns(pl.col(counted) * copies).write_parquet(
                    directory / "partial-synthetic.parquet", compression="zstd"
                )
            progress.advance(task)
    return {"spans": total, "hours": hours, "copies_per_hour": copies}


def partials_path(root: Path, memory_limit: int) -> dict[str, float | int | str]:
    """Step 4, in a child process: every table of the window from its partials."""
    started, cpu = time.perf_counter(), _cpu_s()
    tables = load_partials(root, memory_limit=memory_limit)
    merged_s, merged_cpu_s = time.perf_counter() - started, _cpu_s() - cpu
    rss = _peak_rss_mb()
    started = time.perf_counter()
    edges = load_partials(root, tables=["edges"], memory_limit=memory_limit)["edges"]
    edges_s = time.perf_counter() - started
    duck_s, duck_edges = duckdb_partial_edges(root, memory_limit)
    return {"merge_s": merged_s, "merge_cpu_s": merged_cpu_s, "peak_rss_mb": rss,
            "edges_s": edges_s, "edges": edges.height,
            "calls": int(tables["operations"]["calls"].sum()), "duckdb_s": duck_s,
            "duckdb_edges": duck_edges}  # fmt: skip


def duckdb_partial_edges(root: Path, memory_limit: int) -> tuple[float, int]:
    """Step 4: the per-edge percentiles from the same partial files, as one DuckDB query
    (merged bucket counts, cumulative sums, the first bucket past each rank)."""
    import duckdb

    keys = '"source_service", "target_service", "operation", "hop_kind", "metric"'
    picks = ", ".join(
        f"min(bucket) FILTER (WHERE cum > floor((n - 1) * {q} + 0.5)) AS {label}"
        for label, q in QUANTILES.items()
    )
    query = f"""
        WITH merged AS (
            SELECT {keys}, bucket, sum(count) AS c
            FROM read_parquet('{root}/{PARTIALS}/edges/**/*.parquet', union_by_name = true)
            WHERE bucket IS NOT NULL GROUP BY ALL
        ), ranked AS (
            SELECT *, sum(c) OVER (PARTITION BY {keys} ORDER BY bucket) AS cum,
                   sum(c) OVER (PARTITION BY {keys}) AS n
            FROM merged
        )
        SELECT {keys}, {picks} FROM ranked GROUP BY ALL
    """
    started = time.perf_counter()
    with duckdb.connect() as connection:
        connection.execute(f"SET memory_limit = '{memory_limit // 2**20}MB'")
        rows = connection.execute(query).fetchall()
    # One row per edge and metric: edges are the distinct keys.
    return time.perf_counter() - started, len({row[:4] for row in rows})


def _child(step: str, *args: str) -> dict[str, Any]:
    """Run a step in a fresh interpreter, so its peak RSS is its own."""
    # The allocator options `hopscope analyze` runs with: the child imports hopscope.analysis
    # before polars, as the command does (this script imports polars first, and polars wrote
    # its own defaults into this process's environment: not passed on).
    env = {k: v for k, v in os.environ.items() if k != ALLOCATOR_ENV}
    start = f"import hopscope.analysis, runpy; runpy.run_path({__file__!r}, run_name='__main__')"
    done = subprocess.run([sys.executable, "-c", start, "--child", step, *args],
                          check=True, capture_output=True, text=True, env=env)  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=10_000_000)
    parser.add_argument("--partial-spans", type=int, default=100_000_000)
    parser.add_argument("--hours", type=int, default=720, help="the partial path's window")
    parser.add_argument("--memory-limit", default="1GB")
    parser.add_argument("--base-traces", type=int, default=2000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/hopscope-bench"))
    parser.add_argument("--regenerate", action="store_true")
    parser.add_argument("--es-docs", type=int, default=1_000_000, help="0: skip step 5")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    limit = parse_memory_limit(args.memory_limit)
    if args.child:
        step, where = args.child[0], Path(args.child[1])
        figures = raw_path(where) if step == "raw" else partials_path(where, limit)
        print(json.dumps(figures))
        return

    root = args.dir / "archive"
    marker = args.dir / "archive.json"
    meta = json.loads(marker.read_text()) if marker.exists() else {}
    if args.regenerate or meta.get("requested") != args.spans:
        shutil.rmtree(args.dir, ignore_errors=True)
        # Step 1: the base archive.
        started = time.perf_counter()
        base_spans = base_archive(args.dir / "base", args.base_traces)
        copies = max(1, -(-args.spans // base_spans)) if args.spans else 0
        # Step 2: replicate it.
        replicate(args.dir / "base", root, copies)
        meta = {"requested": args.spans, "spans": base_spans * copies, "copies": copies,
                "generated_s": round(time.perf_counter() - started, 1)}  # fmt: skip
        marker.write_text(json.dumps(meta))

    table = Table(title="analysis speed (Parquet archive)")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_column("notes")
    if args.spans:
        console.print(f"archive: {meta['spans']:,} spans in {root} ({meta['copies']} copies)")
        # Step 3: the raw path, in a process of its own.
        raw = _child("raw", str(root))
        table.add_row(f"raw path: {meta['spans']:,} spans", "", "")
        table.add_row("load (scan + normalise, all kinds), s", f"{raw['load_s']:.2f}",
                      f"CPU {raw['load_cpu_s']:.1f} s")  # fmt: skip
        for name, (wall, cpu) in raw["jobs"].items():
            table.add_row(f"  job {name}, s", f"{wall:.2f}", f"CPU {cpu:.1f} s")
        table.add_row("full report (load + every job), s", f"{raw['report_s']:.2f}",
                      f"goal ≤ 15 s; CPU {raw['report_cpu_s']:.1f} s (user + system)")  # fmt: skip
        table.add_row("  of which system CPU, s", f"{raw['system_s']:.1f}",
                      f"user {raw['user_s']:.1f} s; {raw['page_faults']:,} page faults; "
                      f"{ALLOCATOR_ENV}={raw['allocator']}")  # fmt: skip
        table.add_row("peak RSS after the report, MB", f"{raw['peak_rss_mb']:,.0f}", "")
        table.add_row("hops job on the loaded data (all its tables), s",
                      f"{raw['hops_job_s']:.2f}", f"{raw['edges']} edges")  # fmt: skip
        table.add_row("per-edge percentiles from the files, polars, s",
                      f"{raw['polars_edges_s']:.2f}", f"{raw['polars_edges']} edges")  # fmt: skip
        table.add_row("per-edge percentiles from the files, DuckDB, s", f"{raw['duckdb_s']:.2f}",
                      f"{raw['duckdb_edges']} edges")  # fmt: skip
        table.add_row("DuckDB / polars (per-edge, same query)",
                      f"{float(raw['duckdb_s']) / float(raw['polars_edges_s']):.2f}×",
                      "≥ 1.0: polars at least as fast")  # fmt: skip
    if args.partial_spans:
        # Step 4: the partial-aggregate path.
        partial_root = args.dir / f"partials-{args.partial_spans}-{args.hours}"
        started = time.perf_counter()
        shutil.rmtree(partial_root, ignore_errors=True)
        synthetic = synthesize_partials(args.dir / "base", partial_root, args.partial_spans,
                                        args.hours)  # fmt: skip
        synthesised_s = time.perf_counter() - started
        merged = _child("partials", str(partial_root), "--memory-limit", args.memory_limit)
        table.add_row(f"partial path: {synthetic['spans']:,} spans, {args.hours} hours", "",
                      f"{synthetic['copies_per_hour']} base-hour copies per hour; "
                      f"synthesised in {synthesised_s:.0f} s")  # fmt: skip
        table.add_row("every aggregate table merged, s", f"{merged['merge_s']:.2f}",
                      f"{merged['calls']:,} spans counted; "
                      f"CPU {merged['merge_cpu_s']:.1f} s")  # fmt: skip
        table.add_row(f"peak RSS (--memory-limit {args.memory_limit}), MB",
                      f"{merged['peak_rss_mb']:,.0f}", "")  # fmt: skip
        table.add_row("per-edge percentiles from the partials, polars, s",
                      f"{merged['edges_s']:.2f}", f"{merged['edges']} edges")  # fmt: skip
        table.add_row("per-edge percentiles from the partials, DuckDB, s",
                      f"{merged['duckdb_s']:.2f}", f"{merged['duckdb_edges']} edges")  # fmt: skip
        table.add_row("DuckDB / polars (per-edge, same partials)",
                      f"{float(merged['duckdb_s']) / float(merged['edges_s']):.2f}×",
                      "≥ 1.0: polars at least as fast")  # fmt: skip
    # Step 5: the Elasticsearch loader.
    if args.es_docs:
        es_loaded, es_s = elasticsearch_loader(args.es_docs)
        table.add_row(f"Elasticsearch loader, {es_loaded:,} docs, s", f"{es_s:.2f}",
                      f"{es_loaded / es_s:,.0f} docs/s; goal 100,000 docs/s")  # fmt: skip
    Console().print(table)


def elasticsearch_loader(docs: int) -> tuple[int, float]:
    """Step 5: (documents loaded, seconds) for ``docs`` span documents, indices deleted after."""
    import uuid

    from hopscope.core.es_security import es_client
    from hopscope.core.settings import Settings

    sys.path.insert(0, str(Path(__file__).parent))
    from es_loader import measure  # the same measurement as benchmarks/es_loader.py

    settings = Settings.from_env()
    client = es_client(settings.es_url or resolve_settings(settings).es_url, request_timeout=120)
    prefix = f"hopscope-bench-{uuid.uuid4().hex[:8]}"
    try:
        return measure(client, prefix, docs, console)
    finally:
        client.indices.delete(index=f"{prefix}-*", ignore_unavailable=True, allow_no_indices=True)
        client.close()


if __name__ == "__main__":
    main()
