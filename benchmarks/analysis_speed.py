"""Batch analysis speed on a big Parquet archive: the full report, and per-edge percentiles
against DuckDB on the same files.

Steps (matched by ``Step N`` comments below):

1. Simulate ``--base-traces`` payments (mixed scenarios) and write their records with the
   processors' own :class:`~hopscope.processors.archive.ParquetArchive`: the archive format
   exactly as the processors write it.
2. Replicate that archive until it holds ``--spans`` spans: each copy gets new trace and
   document ids and is shifted in time past the previous one (vectorised in polars; the
   structure of every trace is a real simulated one).
3. Time, in this process: ``load_parquet`` + ``build_report`` (every job) on the whole archive;
   the per-edge percentiles of the ``hops`` job alone (polars); the same per-edge percentiles as
   one DuckDB SQL query over the same files; print the figures and the ratios.
4. With an Elasticsearch (``HOPSCOPE_ES_URL`` or the local stack), ``--es-docs`` span
   documents (default 1M) are indexed under a fresh prefix and read back with
   ``load_elasticsearch`` (``benchmarks/es_loader.py``): docs/s; the indices are deleted after.

    python benchmarks/analysis_speed.py [--spans 10000000] [--es-docs 1000000] [--dir DIR]

The archive is kept in ``--dir`` and reused when it already holds the requested spans
(``--regenerate`` to rebuild).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import polars as pl
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from hopscope.analysis.jobs import job
from hopscope.analysis.loaders import documents_from_records, load_parquet
from hopscope.analysis.report import build_report
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
        .collect()
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=10_000_000)
    parser.add_argument("--base-traces", type=int, default=2000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/hopscope-bench"))
    parser.add_argument("--regenerate", action="store_true")
    parser.add_argument("--es-docs", type=int, default=1_000_000, help="0: skip step 4")
    args = parser.parse_args()

    root = args.dir / "archive"
    marker = args.dir / "archive.json"
    meta = json.loads(marker.read_text()) if marker.exists() else {}
    if args.regenerate or meta.get("requested") != args.spans:
        shutil.rmtree(args.dir, ignore_errors=True)
        # Step 1: the base archive.
        started = time.perf_counter()
        base_spans = base_archive(args.dir / "base", args.base_traces)
        copies = max(1, -(-args.spans // base_spans))
        # Step 2: replicate it.
        replicate(args.dir / "base", root, copies)
        meta = {"requested": args.spans, "spans": base_spans * copies, "copies": copies,
                "generated_s": round(time.perf_counter() - started, 1)}  # fmt: skip
        marker.write_text(json.dumps(meta))
    console.print(f"archive: {meta['spans']:,} spans in {root} ({meta['copies']} copies)")

    # Step 3: timings, one after the other in this process.
    started = time.perf_counter()
    data = load_parquet(root, progress=False).collect()
    loaded = time.perf_counter() - started
    report = build_report(data, source=f"parquet {root}", progress=False)
    report_s = time.perf_counter() - started

    started = time.perf_counter()
    edges = job("hops")(data).tables["edges"]
    hops_job_s = time.perf_counter() - started
    polars_edges_s, polars_count = polars_edges(root)
    duck_s, duck_edges = duckdb_edges(root)

    table = Table(title=f"analysis speed: {meta['spans']:,} spans (Parquet archive)")
    table.add_column("what")
    table.add_column("seconds", justify="right")
    table.add_column("notes")
    table.add_row("load (scan + normalise, all kinds)", f"{loaded:.2f}",
                  ", ".join(f"{n:,} {k}" for k, n in report.counts.items()))  # fmt: skip
    table.add_row("full report (load + every job)", f"{report_s:.2f}",
                  f"{len(report.findings)} findings; goal ≤ 15 s")  # fmt: skip
    table.add_row("hops job on the loaded data (all its tables)", f"{hops_job_s:.2f}",
                  f"{len(edges)} edges")  # fmt: skip
    table.add_row("per-edge percentiles from the files, polars", f"{polars_edges_s:.2f}",
                  f"{polars_count} edges; the SQL below as a lazy polars query")  # fmt: skip
    table.add_row("per-edge percentiles from the files, DuckDB", f"{duck_s:.2f}",
                  f"{duck_edges} edges")  # fmt: skip
    table.add_row("ratio polars / DuckDB (per-edge, same query)",
                  f"{polars_edges_s / duck_s:.2f}", "≤ 1: polars at least as fast")  # fmt: skip
    table.add_row("ratio full report / DuckDB per-edge", f"{report_s / duck_s:.2f}", "")
    # Step 4: the Elasticsearch loader.
    if args.es_docs:
        es_loaded, es_s = elasticsearch_loader(args.es_docs)
        table.add_row(f"Elasticsearch loader, {es_loaded:,} docs", f"{es_s:.2f}",
                      f"{es_loaded / es_s:,.0f} docs/s; goal 100,000 docs/s")  # fmt: skip
    Console().print(table)


def elasticsearch_loader(docs: int) -> tuple[int, float]:
    """Step 4: (documents loaded, seconds) for ``docs`` span documents, indices deleted after."""
    import sys
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
