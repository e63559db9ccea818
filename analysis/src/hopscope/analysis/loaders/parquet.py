"""The processors' Parquet archive -> a :class:`~hopscope.analysis.schema.Dataset`, lazily.

The archive (:mod:`hopscope.processors.archive`) holds ``<root>/<kind>/date=YYYY-MM-DD/
hour=HH/part-*.parquet``; part files of one kind differ in their columns (each holds the
attribute keys of its own records, and leaves out columns null in every row). Procedure:

1. hour directories outside ``[since, until)`` are skipped by their names (hive pruning, done
   before any file is opened);
2. every remaining part file's footer is read for its schema (metadata only), restricted to
   the columns the dataset needs; files with the same restricted schema form one
   ``pl.scan_parquet`` (other columns ignored), each cast to the type all groups agree on
   (text where they disagree: ``normalize`` casts text to the canonical types);
3. the time range (on ``@timestamp``, a timestamp column; part files written before it was
   one hold ISO 8601 text, parsed here) and the service filter are predicates of the scan, so
   Parquet statistics can skip row groups;
4. records written twice by a replay (same ``_id``) are kept once, in their newest version,
   per dataset kind (the coordination directory is split into delays and 2PC first);
   the rule runs only on the rows whose id repeats. Spans, hops and delays are named by
   their trace id and span (hop) id, so without tombstones the rule keys on those two
   columns and ``_id`` is not read. A record whose newest version is a
   tombstone (deleted from Elasticsearch, :data:`hopscope.processors.archive.DELETED`) is
   dropped.

Nothing is read until the dataset is collected; the progress bar counts step 2's footers.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import polars as pl

from hopscope.analysis.errors import LoaderError
from hopscope.analysis.loaders.elasticsearch import KINDS
from hopscope.analysis.schema import TIME, TRACES, Dataset, document_fields
from hopscope.processors.archive import DELETED
from hopscope.processors.schema import RECORD_FIELD, TABLES

# Dataset kind -> the archive directory (document kind) it is read from.
_DIRECTORY: Final = {kind: TABLES[kind].index for kind in KINDS}
_RECORD: Final = RECORD_FIELD  # "delay" or "2pc" in the coordination files
_ID: Final = "_id"
# The part file a row came from, as its rank among the part files' paths: names sort in write
# order (hopscope.processors.archive).
_FILE: Final = "_part_file"
_DUPLICATED: Final = "_duplicated"
# The footer metadata key under which Arrow writers (polars among them) store the schema.
_ARROW_SCHEMA: Final = "ARROW:schema"
# Dataset kind -> the columns its document id is made of, where ids are in_trace(trace id,
# local id) (hopscope.processors.schema; DESIGN.md §3's id table).
_IN_TRACE: Final = {
    "spans": ("trace.id", "span.id"),
    "hops": ("trace.id", "hopscope.hop.hop_id"),
    "coordination": ("trace.id", "span.id"),  # delays; the 2PC ids are of their own
}
_STAMP: Final = "@timestamp"
_STAMP_FORMAT: Final = "%Y-%m-%dT%H:%M:%S%.fZ"
# Columns whose type is fixed whatever the part file holds: the timestamp, and the trace
# summaries' critical-path lists (native lists; JSON text in older part files).
_FIXED: Final[dict[str, pl.DataType]] = {
    _STAMP: TIME,
    **{source: dtype for source, dtype in TRACES.values() if isinstance(dtype, pl.List)},
}


def _fixed(column: str, have: pl.DataType) -> pl.Expr:
    target = _FIXED[column]
    if have == pl.String:
        if target == TIME:
            return pl.col(column).str.strptime(TIME, _STAMP_FORMAT, strict=False)
        return pl.col(column).str.json_decode(target)
    return pl.col(column).cast(target)


def _utc(moment: datetime) -> datetime:
    # Naive datetimes are read as UTC, like every time in the archive.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _hour(directory: Path) -> datetime | None:
    """The hour a ``date=YYYY-MM-DD/hour=HH`` directory holds (None: not an archive hour)."""
    date, hour = directory.parent.name, directory.name
    if not (date.startswith("date=") and hour.startswith("hour=")):
        return None
    try:
        return datetime.strptime(f"{date[5:]} {hour[5:]}", "%Y-%m-%d %H").replace(tzinfo=UTC)
    except ValueError:
        return None


def part_files(
    root: Path, kind: str, since: datetime | None = None, until: datetime | None = None
) -> list[Path]:
    """Step 1: the part files of document ``kind`` whose hour overlaps ``[since, until)``.

    Parameters:
        root: the archive directory (``--archive-dir`` of the processors).
        kind: a document kind: ``spans``, ``traces``, ``hops``, ``failovers``,
            ``coordination`` (or ``logs``).
        since: first instant (inclusive); naive datetimes are UTC.
        until: end (exclusive); naive datetimes are UTC.

    Returns:
        The finished part files (not the ``.partial`` ones being written), sorted.
    """
    lower = _utc(since) - timedelta(hours=1) if since is not None else None
    upper = _utc(until) if until is not None else None
    files: list[Path] = []
    for directory in sorted((root / kind).glob("date=*/hour=*")):
        hour = _hour(directory)
        if hour is None:
            continue
        if (lower is not None and hour <= lower) or (upper is not None and hour >= upper):
            continue
        files.extend(sorted(directory.glob("part-*.parquet")))
    return files


def _wanted(directory: str, dataset_kinds: set[str]) -> list[str]:
    columns: dict[str, None] = {_ID: None, DELETED: None, "service.name": None}
    for kind in sorted(dataset_kinds):
        columns.update(dict.fromkeys(document_fields(kind)))
    if directory == "coordination":
        columns[_RECORD] = None
    return list(columns)


def _common_type(dtypes: set[pl.DataType]) -> pl.DataType:
    """One type for a column whose part files disagree (Null columns never decide)."""
    typed = {d for d in dtypes if d != pl.Null}
    if not typed:
        return pl.String()
    if len(typed) == 1:
        return typed.pop()
    if all(d.is_integer() for d in typed):
        return pl.Int64()
    if all(d.is_numeric() for d in typed):
        return pl.Float64()
    return pl.String()


def _scan(
    files: Sequence[Path], wanted: Sequence[str], advance: Callable[[], None]
) -> pl.LazyFrame:
    """Step 2: one lazy frame over ``files``: the wanted columns, types reconciled."""
    groups: dict[tuple[tuple[str, pl.DataType], ...], list[Path]] = defaultdict(list)
    # Part files written by polars or Arrow carry their Arrow schema in the footer's key-value
    # metadata, read at a quarter of the cost of the schema: files whose schema text is equal
    # have equal schemas, so one file's schema is read per distinct text (the plan for the
    # 3,774 part files of a 10M-span report: 0.8 -> 0.33 s). Files without it are read one
    # by one.
    by_text: dict[str, tuple[tuple[str, pl.DataType], ...]] = {}
    for path in files:
        try:
            text = pl.read_parquet_metadata(path).get(_ARROW_SCHEMA)
            key = by_text.get(text) if text is not None else None
            if key is None:
                schema = pl.read_parquet_schema(path)
                key = tuple((c, schema[c]) for c in wanted if c in schema)
                if text is not None:
                    by_text[text] = key
        except (OSError, pl.exceptions.ComputeError) as error:
            raise LoaderError(f"{path}: not a readable Parquet part file: {error}") from None
        groups[key].append(path)
        advance()
    seen: dict[str, set[pl.DataType]] = defaultdict(set)
    for key in groups:
        for column, dtype in key:
            seen[column].add(dtype)
    target = {
        column: _FIXED.get(column) or _common_type(seen[column])
        for column in wanted
        if column in seen
    }
    # Each row's part file as its rank among the file names (an Enum's physical index): the
    # newest-version rule of step 4 compares integers, and no row carries its file's path
    # as text (about 90 bytes a row).
    order = pl.Enum(sorted({str(path) for path in files}))
    scans = []
    for key, paths in groups.items():
        present = dict(key)
        scan = pl.scan_parquet(
            paths, schema=pl.Schema(present), extra_columns="ignore", hive_partitioning=False,
            include_file_paths=_FILE,
        )  # fmt: skip
        columns = [
            (
                _fixed(c, present[c])
                if c in present and c in _FIXED
                else (pl.col(c) if c in present else pl.lit(None)).cast(dtype)
            ).alias(c)
            for c, dtype in target.items()
        ]
        scans.append(scan.select(*columns, pl.col(_FILE).cast(order).to_physical()))
    return pl.concat(scans, how="vertical")


@contextmanager
def _progress(
    enabled: bool, totals: Mapping[str, int]
) -> Iterator[Callable[[str], Callable[[], None]]]:
    """A rich progress bar on stderr: part files inspected per kind."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    bar = Progress(
        TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("part files"), console=Console(stderr=True), disable=not enabled,
    )  # fmt: skip
    tasks = {kind: bar.add_task(kind, total=total) for kind, total in totals.items()}
    with bar:
        yield lambda kind: functools.partial(bar.advance, tasks[kind], 1)


def _filters(
    frame: pl.LazyFrame,
    since: datetime | None,
    until: datetime | None,
    services: Sequence[str] | None,
) -> pl.LazyFrame:
    """Step 3: window and services as predicates the scan can push down."""
    schema = frame.collect_schema()
    stamp = pl.col(_STAMP)
    if _STAMP in schema:
        if since is not None:
            frame = frame.filter(stamp >= _utc(since))
        if until is not None:
            frame = frame.filter(stamp < _utc(until))
    elif since is not None or until is not None:
        raise LoaderError("archive part files without an @timestamp column")
    if services is not None:
        if "service.name" not in schema:
            return frame.filter(pl.lit(value=False))
        chosen = pl.col("service.name").is_in(list(services))
        if DELETED in schema:  # a tombstone names no service: kept to meet its record
            chosen = chosen | pl.col(DELETED).fill_null(value=False)
        frame = frame.filter(chosen)
    return frame


def _key(kind: str, schema: pl.Schema) -> list[str]:
    """The columns that name a record of ``kind`` as its ``_id`` does.

    Spans, hops and delays are named ``<trace id>-<span id>`` (a hop by its client span id;
    DESIGN.md §3; both hex, so no two pairs give one id): deduplicated on the two columns,
    the 49-byte ``_id`` of every such record is neither read from the part files nor hashed.
    Only where no part file of the kind holds a tombstone, whose other columns are null;
    every other kind keeps its ``_id``.
    """
    key = _IN_TRACE.get(kind)
    if key is None or DELETED in schema or not all(c in schema for c in key):
        return [_ID]
    return list(key)


def _deduplicated(frame: pl.LazyFrame, key: Sequence[str] = (_ID,)) -> pl.LazyFrame:
    """Step 4: a record archived twice (a replay, or a trace recomputed after a late span)
    keeps its newest version, as Elasticsearch's overwrite does: part files are named in
    write order, and within one file the later row wins.

    Only replays write an id twice, so the newest-version rule runs on the rows whose id may
    repeat: those whose 64-bit hash of the id repeats (integers, so a cheap pass; a hash
    collision only sends a few more rows through the exact rule, which groups by the id
    itself). Every other row passes as it is. A window over every row, keyed by the text id
    and comparing text file names, cost several times the scan itself. Rows keep their order,
    except that the ones whose hash repeats come last (no job depends on row order).

    ``key``: the columns that name a record (:func:`_key`); with several, their hashes are
    combined and the exact rule groups by all of them.
    """
    key = list(key)
    hashed = pl.col(key[0]).hash()
    for seed, column in enumerate(key[1:], start=1):
        hashed = hashed ^ pl.col(column).hash(seed=seed)
    record = pl.struct(key) if len(key) > 1 else pl.col(key[0])
    # The hashes that repeat, found by sorting them (a fifth of is_duplicated's time at 10M
    # rows: its hash table outgrows the caches and is rebuilt as it grows); a row is marked
    # when its hash is one of them, an empty list when there are no replays. The column
    # holds the hash first, then whether it repeats.
    ordered = pl.col(_DUPLICATED).sort()
    repeated = ordered.filter(ordered == ordered.shift(1))
    marked = frame.with_columns(hashed.alias(_DUPLICATED)).with_columns(
        pl.col(_DUPLICATED).is_in(repeated.implode())
    )
    once = marked.filter(~pl.col(_DUPLICATED))
    twice = (
        marked.filter(pl.col(_DUPLICATED))
        .filter(pl.col(_FILE) == pl.col(_FILE).max().over(key))
        .filter(record.is_last_distinct())
    )
    kept = pl.concat([once, twice]).drop(_FILE, _DUPLICATED)
    if DELETED not in frame.collect_schema():
        return kept
    return kept.filter(~pl.col(DELETED).fill_null(value=False)).drop(DELETED)


def _split(
    directory: str, frame: pl.LazyFrame, kinds: set[str]
) -> Iterator[tuple[str, pl.LazyFrame]]:
    if directory != "coordination":
        yield directory, frame
        return
    schema = frame.collect_schema()
    record = pl.col(_RECORD) if _RECORD in schema else pl.lit(None, pl.String)
    is_2pc = (record == "2pc").fill_null(value=False)
    # A tombstone carries no record field: it goes to both kinds, to meet its record's rows.
    deleted = pl.col(DELETED).fill_null(value=False) if DELETED in schema else pl.lit(value=False)
    if "coordination" in kinds:
        yield "coordination", frame.filter(~is_2pc | deleted)
    if "two_phase_commits" in kinds:
        yield "two_phase_commits", frame.filter(is_2pc | deleted)


def load_parquet(
    root: Path,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    services: Sequence[str] | None = None,
    kinds: Sequence[str] = KINDS,
    progress: bool = True,
) -> Dataset:
    """Read the processors' Parquet archive into a :class:`Dataset` (lazy; nothing read yet).

    Parameters:
        root: the archive directory (``hopscope process --archive-dir``).
        since: first instant (inclusive, on ``@timestamp``); naive datetimes are UTC.
        until: end of the window (exclusive); naive datetimes are UTC.
        services: only records whose ``service.name`` is one of these (hops: the source
            service; traces: the root service; 2PC: the coordinator). ``None``: all.
        kinds: the dataset kinds to read; the others stay empty.
        progress: show a progress bar on stderr (part files inspected per kind).

    Returns:
        The dataset; its frames are lazy scans, deduplicated on the document id.

    Raises:
        LoaderError: ``root`` is not a directory or a part file is unreadable.
        ValueError: an unknown kind.

    Examples:
        >>> data = load_parquet(Path("archive"), since=datetime(2026, 3, 2, 10),
        ...                     progress=False)  # doctest: +SKIP
        >>> data.spans.group_by("service").len().collect()  # doctest: +SKIP
    """
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"kinds must be among {KINDS}, got {unknown}")
    if not root.is_dir():
        raise LoaderError(f"{root}: no such archive directory (expected <root>/<kind>/date=...)")
    by_directory: dict[str, set[str]] = defaultdict(set)
    for kind in KINDS:
        if kind in kinds:
            by_directory[_DIRECTORY[kind]].add(kind)
    files = {d: part_files(root, d, since, until) for d in by_directory}
    frames: dict[str, pl.LazyFrame] = {}
    with _progress(progress, {d: len(f) for d, f in files.items()}) as advancer:
        for directory, dataset_kinds in by_directory.items():
            if not files[directory]:
                continue
            frame = _scan(files[directory], _wanted(directory, dataset_kinds),
                          advancer(directory))  # fmt: skip
            # Split before deduplicating: the two kinds of the coordination directory have
            # disjoint ids (DESIGN.md §3: 2PC ids start with "2pc-"), and each kind's frame
            # then runs its own rule instead of both sharing one deduplicated plan that the
            # engine computed again per kind (2-3x the CPU of the directory's load).
            frame = _filters(frame, since, until, services)
            frames.update(
                (kind, _deduplicated(part, _key(kind, part.collect_schema())))
                for kind, part in _split(directory, frame, dataset_kinds)
            )
    return Dataset.from_documents(frames)
