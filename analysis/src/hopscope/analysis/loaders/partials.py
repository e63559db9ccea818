"""Per-hour partial aggregates of the Parquet archive, and a window merged from them.

A month of an archive does not fit in memory; its hourly partials
(:mod:`hopscope.analysis.aggregates`: counts and fixed-bucket histograms per edge, operation,
failover path and coordination kind) do, many times over. Procedure:

1. :func:`build_partials` computes, for each archive hour, the partials of every table from that
   hour's records alone (read by :func:`~hopscope.analysis.loaders.load_parquet`, so replays
   are deduplicated exactly as in the loaded path) and writes them under
   ``<root>/_partials/<table>/date=YYYY-MM-DD/hour=HH/``. Memory is one hour's records.
2. An hour is rebuilt when its newest part file is not the one its partials were built from
   (the name is in the partial's file name): a late part file (a replay, a trace recomputed
   after a late span) makes the hour stale, never wrong.
3. :func:`load_partials` merges the partials of the hours overlapping ``[since, until)`` in
   chunks of files whose size fits ``memory_limit``, folding each chunk into the running sums;
   memory is bounded by the merged table (keys × buckets), not by the window's length.

Windows are whole hours: a window edge inside an hour takes that hour whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

import polars as pl

from hopscope.analysis.aggregates import TABLES, Partial, finish, merge, partial
from hopscope.analysis.errors import LoaderError
from hopscope.analysis.loaders.parquet import _DIRECTORY, _hour, _utc, load_parquet, part_files

__all__ = [
    "PARTIALS",
    "build_partials",
    "load_partials",
    "parse_memory_limit",
    "window_hours",
    "write_partial",
]

PARTIALS: Final = "_partials"
# Bytes in memory per byte of a zstd Parquet partial once decoded and grouped: measured at
# 6-9x on the benchmark's partials; 16 leaves room for the running sums and the sort.
_EXPANSION: Final = 16
_UNITS: Final = {"": 1, "B": 1, "K": 2**10, "KB": 2**10, "M": 2**20, "MB": 2**20,
                 "G": 2**30, "GB": 2**30}  # fmt: skip


def parse_memory_limit(text: str) -> int:
    """``512MB``, ``2G``, ``1073741824`` -> bytes.

    >>> parse_memory_limit("512MB"), parse_memory_limit("2g")
    (536870912, 2147483648)
    """
    cleaned = text.strip().upper().removesuffix("IB").removesuffix("I")
    number = cleaned.rstrip("KMGB")
    unit = cleaned[len(number) :]
    try:
        value = float(number) * _UNITS[unit]
    except (ValueError, KeyError):
        raise ValueError(f"memory limit {text!r}: expected a size such as 512MB or 2GB") from None
    if value <= 0:
        raise ValueError(f"memory limit {text!r}: must be positive")
    return int(value)


def _hours(root: Path) -> list[datetime]:
    found: set[datetime] = set()
    for table in TABLES:
        for directory in (root / _DIRECTORY[table.kind]).glob("date=*/hour=*"):
            hour = _hour(directory)
            if hour is not None:
                found.add(hour)
    return sorted(found)


def _hour_dir(root: Path, table: str, hour: datetime) -> Path:
    return root / PARTIALS / table / f"date={hour:%Y-%m-%d}" / f"hour={hour:%H}"


def _source(root: Path, hour: datetime) -> str:
    """The newest part file of any kind in ``hour``: what the hour's partials reflect."""
    names = [
        p.stem
        for kind in {_DIRECTORY[t.kind] for t in TABLES}
        for p in part_files(root, kind, hour, hour + timedelta(hours=1))
    ]
    return max(names, default="empty")


def build_partials(root: Path, *, force: bool = False) -> int:
    """Steps 1–2: write the partials of every archive hour that lacks up-to-date ones.

    Parameters:
        root: the archive directory (``hopscope process --archive-dir``).
        force: rebuild every hour.

    Returns:
        The number of hours (re)built.

    Raises:
        LoaderError: ``root`` is not an archive directory.
    """
    if not root.is_dir():
        raise LoaderError(f"{root}: no such archive directory (expected <root>/<kind>/date=...)")
    built = 0
    kinds = sorted({t.kind for t in TABLES})
    for hour in _hours(root):
        source = _source(root, hour)
        name = f"partial-{source}.parquet"
        if not force and all((_hour_dir(root, t.name, hour) / name).exists() for t in TABLES):
            continue
        data = load_parquet(root, since=hour, until=hour + timedelta(hours=1), kinds=kinds,
                            progress=False).collect()  # fmt: skip
        for table in TABLES:
            write_partial(root, hour, partial(data, table.name), source=source)
        built += 1
    return built


def write_partial(root: Path, hour: datetime, part: Partial, *, source: str) -> None:
    """Write one hour's partial of one table (replacing older ones of that hour).

    The counts and the histogram go to one file, told apart by ``bucket`` (null in the
    count rows), so an hour's table is one file to read.
    """
    directory = _hour_dir(root, part.table, hour)
    directory.mkdir(parents=True, exist_ok=True)
    counts, histogram = pl.collect_all([part.counts, part.histogram])
    frame = pl.concat(
        [counts.with_columns(pl.lit(None, pl.String).alias("metric"),
                             pl.lit(None, pl.Int32).alias("bucket"),
                             pl.lit(None, pl.Int64).alias("count")),
         histogram],
        how="diagonal_relaxed",
    )  # fmt: skip
    target = directory / f"partial-{source}.parquet"
    staged = target.with_suffix(".parquet.partial")
    frame.write_parquet(staged, compression="zstd")
    staged.rename(target)
    for old in directory.glob("partial-*.parquet"):
        if old != target:
            old.unlink()


def _files(root: Path, table: str, since: datetime | None, until: datetime | None) -> list[Path]:
    lower = _utc(since).replace(minute=0, second=0, microsecond=0) if since else None
    upper = _utc(until) if until else None
    files = []
    for directory in sorted((root / PARTIALS / table).glob("date=*/hour=*")):
        hour = _hour(directory)
        if hour is None or (lower and hour < lower) or (upper and hour >= upper):
            continue
        files.extend(sorted(directory.glob("partial-*.parquet")))
    return files


def _split(table: str, frame: pl.LazyFrame) -> Partial:
    spec = next(t for t in TABLES if t.name == table)
    is_count = pl.col("bucket").is_null()
    counts = frame.filter(is_count).select(*spec.keys, "calls", *(f"{f}_count" for f in spec.flags))
    histogram = frame.filter(~is_count).select(*spec.keys, "metric", "bucket", "count")
    return Partial(table, counts, histogram)


def load_partials(
    root: Path,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    tables: Sequence[str] | None = None,
    memory_limit: int | None = None,
) -> dict[str, pl.DataFrame]:
    """Step 3: the aggregate tables of a window, merged from the hourly partials.

    Parameters:
        root: the archive directory whose partials :func:`build_partials` wrote.
        since: window start (the hour holding it is taken whole); naive datetimes are UTC.
        until: window end (exclusive).
        tables: names of :data:`hopscope.analysis.aggregates.TABLES` (default: all).
        memory_limit: bytes the merge may hold; files are folded in chunks whose decoded
            size fits in a quarter of it (None: one chunk).

    Returns:
        Table name -> its finished table (:func:`hopscope.analysis.aggregates.finish`).

    Raises:
        LoaderError: no partials in the window (run :func:`build_partials` first).
    """
    wanted = [t.name for t in TABLES] if tables is None else list(tables)
    out: dict[str, pl.DataFrame] = {}
    for table in wanted:
        files = _files(root, table, since, until)
        if not files:
            raise LoaderError(
                f"{root / PARTIALS / table}: no partial aggregates in the window "
                "(build them with hopscope.analysis.loaders.build_partials)"
            )
        budget = None if memory_limit is None else max(1, memory_limit // (4 * _EXPANSION))
        running: Partial | None = None
        chunk: list[Path] = []
        size = 0
        for index, path in enumerate(files):
            chunk.append(path)
            size += path.stat().st_size
            if index + 1 < len(files) and (budget is None or size < budget):
                continue
            parts = [_split(table, pl.scan_parquet(chunk))]
            if running is not None:
                parts.append(running)
            merged = merge(parts)
            counts, histogram = pl.collect_all([merged.counts, merged.histogram],
                                               engine="streaming")  # fmt: skip
            running = Partial(table, counts.lazy(), histogram.lazy())
            chunk, size = [], 0
        assert running is not None
        out[table] = finish(running).collect()
    return out


def window_hours(since: datetime, until: datetime) -> list[datetime]:
    """The hours a window covers (whole hours).

    >>> [h.hour for h in window_hours(datetime(2026, 1, 1, 10, 30), datetime(2026, 1, 1, 12))]
    [10, 11]
    """
    hour = _utc(since).replace(minute=0, second=0, microsecond=0)
    end = _utc(until)
    hours = []
    while hour < end:
        hours.append(hour)
        hour += timedelta(hours=1)
    return hours
