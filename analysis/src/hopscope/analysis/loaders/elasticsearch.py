"""Elasticsearch -> a :class:`~hopscope.analysis.schema.Dataset`: sliced point-in-time reads.

Procedure, per index pattern ``<prefix>-<kind>-*`` (the coordination pattern holds both the
``delay`` and the ``2pc`` documents, split afterwards into ``coordination`` and
``two_phase_commits``):

1. ``_field_caps`` tells which of :func:`~hopscope.analysis.schema.document_fields` are mapped
   and as what, so every page is parsed with a fixed polars schema (unmapped fields are not
   asked for and come out null);
2. one point in time (PIT) is opened, so every slice sees the same snapshot;
3. ``slices`` sliced searches run in parallel threads, each paging with ``search_after`` on
   ``_shard_doc`` (no scroll context, no deep-paging cost). The time range (``@timestamp``),
   the services (``service.name``: a hop's source service, a trace's root service) and the
   traces (``trace.id``) are filters of the query, so Elasticsearch skips what is not wanted;
4. every page is read as raw bytes straight into polars (``read_json`` with the schema of
   step 1), never as per-hit Python dicts. Two ways to fetch (``fetch``):

   - ``"source"`` (default): each hit's whole ``_source``, which Elasticsearch copies from
     its stored bytes without parsing; about twice as fast as docvalues here (1M spans:
     79k against 31k docs/s on a 2-core machine running Elasticsearch too). A page whose
     ``_source`` does not fit the mapped types (a list where a scalar was mapped) is read
     again with docvalues, and so is the rest of its slice;
   - ``"docvalues"``: ``_source`` and stored fields off, only ``docvalue_fields`` (columnar
     on disk; ``@timestamp`` in a nanosecond format), plus the two per-trace lists, stored
     but not indexed, as ``_source`` includes;

5. the PIT is closed, also on error.

A pattern that matches no index gives an empty frame. Errors raise
:class:`~hopscope.analysis.errors.LoaderError` naming the pattern and Elasticsearch's answer.

Given a URL, the loaders make their client with :func:`hopscope.core.es_security.es_client`, so the
``HOPSCOPE_ES_*`` credentials and CA file apply; the raw searches of step 3 go through that
client's own nodes and headers, so its TLS settings and ``Authorization`` apply to them too.
The reader role they need is :func:`hopscope.core.es_security.reader_role`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal

import polars as pl

from hopscope.analysis.errors import LoaderError
from hopscope.analysis.schema import SCHEMAS, TIME, Dataset, document_fields
from hopscope.core.es_security import (
    EsUnreachableError,
    access_problem,
    es_client,
    wait_reachable,
)
from hopscope.core.settings import DEFAULT_INDEX_PREFIX
from hopscope.processors.schema import ANALYSIS_KINDS, RECORD_FIELD, TABLES

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

# The derived kinds and the log records (the window comparison counts error logs).
KINDS: Final = (*ANALYSIS_KINDS, "logs")

# Dataset kind -> the document kind (index pattern) it is read from (the record schema's).
_INDEX_KIND: Final = {kind: TABLES[kind].index for kind in KINDS}
_RECORD: Final = RECORD_FIELD  # "delay" or "2pc" in the coordination indices

# 10,000 hits is Elasticsearch's largest page (index.max_result_window applies to size too);
# fewer, larger requests keep the per-request overhead (HTTP, query parsing) small.
PAGE_SIZE: Final = 10_000
# Long enough for one page under load; each request extends it again.
KEEP_ALIVE: Final = "2m"
REQUEST_TIMEOUT_S: Final = 120.0
# date_nanos as text keeps every digit; the integ-test-zip distribution has no epoch_micros
# and epoch_millis would round. Parsed by polars with one vectorised strptime per page.
_DATE_FORMAT: Final = "strict_date_optional_time_nanos"
_STRPTIME: Final = "%Y-%m-%dT%H:%M:%S%.fZ"

# Per trace lists kept in _source only (``enabled: false`` in the traces template).
_SOURCE_FIELDS: Final = {
    name: dtype
    for name, dtype in ((s, d) for s, d in SCHEMAS["traces"].values())
    if isinstance(dtype, pl.List)
}

_NUMERIC: Final = {"long", "integer", "short", "byte", "unsigned_long"}
_FLOATS: Final = {"double", "float", "half_float", "scaled_float"}
_DATES: Final = {"date", "date_nanos"}
_MAPS: Final = ("attributes", "resource")  # flat maps inside _source (subobjects: false)
_DOC_VALUES: Final = _NUMERIC | _FLOATS | _DATES | {"keyword", "boolean", "constant_keyword"}


def default_slices() -> int:
    """Slices per index pattern when not given: one more than the cores, from two to four.

    Elasticsearch answers one slice's page while the client parses another's, so a slice
    beyond the core count keeps both busy; on a 2-core node shared with Elasticsearch, 1M
    span documents read at 57k docs/s with 2 slices, 79k with 3 and 69k with 4.
    """
    return max(2, min(4, (os.cpu_count() or 1) + 1))


def _as_utc(moment: datetime) -> datetime:
    # Naive datetimes are read as UTC, like every time in the documents.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return _as_utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# Elasticsearch's default index.max_terms_count: the most values one terms query may hold.
MAX_TRACE_IDS: Final = 65_536


def _check_trace_ids(trace_ids: Collection[str] | None) -> list[str] | None:
    if trace_ids is None:
        return None
    if isinstance(trace_ids, str):  # a lone id would be read as its characters
        raise ValueError("trace_ids must be a collection of trace ids, not one string")
    if len(trace_ids) > MAX_TRACE_IDS:
        raise ValueError(
            f"trace_ids holds {len(trace_ids)} ids, more than the {MAX_TRACE_IDS} one "
            "Elasticsearch terms query accepts; select by time instead"
        )
    return sorted(trace_ids)


def _query(
    since: datetime | None,
    until: datetime | None,
    services: Sequence[str] | None,
    extra: Sequence[Mapping[str, Any]] = (),
    trace_ids: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The filter every kind shares: ``since <= @timestamp < until``, ``service.name`` in,
    ``trace.id`` in."""
    filters: list[Mapping[str, Any]] = list(extra)
    if trace_ids is not None:
        filters.append({"terms": {"trace.id": list(trace_ids)}})
    if since is not None or until is not None:
        bounds: dict[str, Any] = {"format": _DATE_FORMAT}
        if since is not None:
            bounds["gte"] = _iso(since)
        if until is not None:
            bounds["lt"] = _iso(until)
        filters.append({"range": {"@timestamp": bounds}})
    if services is not None:
        filters.append({"terms": {"service.name": list(services)}})
    return {"bool": {"filter": filters}} if filters else {"match_all": {}}


def _record_filter(wanted: set[str]) -> list[dict[str, Any]]:
    """For the coordination pattern: only delays or only 2PC documents when one is wanted."""
    if wanted == {"two_phase_commits"}:
        return [{"term": {_RECORD: "2pc"}}]
    if wanted == {"coordination"}:
        return [{"bool": {"must_not": [{"term": {_RECORD: "2pc"}}]}}]
    return []


@contextmanager
def _client(client_or_url: Elasticsearch | str) -> Iterator[Elasticsearch]:
    if not isinstance(client_or_url, str):
        yield client_or_url
        return
    client = es_client(client_or_url, request_timeout=REQUEST_TIMEOUT_S)
    try:
        try:
            # A URL that never answers is a configuration error: said in one line after a
            # few seconds, not as the client's retries of the first request.
            wait_reachable(client, client_or_url)
        except EsUnreachableError as error:
            raise LoaderError(str(error)) from None
        yield client
    finally:
        client.close()


class _RawSearch:
    """``POST <target>`` returning the raw response bytes, for polars to parse.

    The client's API methods decode every answer into Python dicts, which at 10,000 hits a
    page costs more than the search itself; this talks to a node of the client's own pool
    (same TLS, connection reuse and headers) and hands the bytes over untouched.
    """

    def __init__(self, client: Elasticsearch) -> None:
        from elastic_transport import HttpHeaders

        self._pool = client.transport.node_pool
        # The client keeps its authentication and product headers here, not in the nodes (a
        # node's own perform_request would go out without credentials and get a 401).
        headers = HttpHeaders(getattr(client, "_headers", None) or {})
        headers["content-type"] = "application/json"
        headers["accept"] = "application/json"
        self._headers = headers

    def post(self, target: str, body: Mapping[str, Any], what: str) -> bytes:
        from elastic_transport import TransportError

        node = self._pool.get()
        try:
            meta, raw = node.perform_request(
                "POST", target, body=json.dumps(body).encode(), headers=self._headers,
                request_timeout=REQUEST_TIMEOUT_S,
            )  # fmt: skip
        except TransportError as error:
            problem = access_problem(error, node.base_url)
            if problem is not None:
                raise LoaderError(f"{what}: {problem}") from None
            self._pool.mark_dead(node)
            raise LoaderError(
                f"{what}: Elasticsearch at {node.base_url} unreachable: {error}"
            ) from None
        self._pool.mark_live(node)
        if meta.status != 200:
            text = bytes(raw[:2000]).decode(errors="replace")
            hint = {
                401: "; the credentials were rejected (HOPSCOPE_ES_API_KEY, or "
                "HOPSCOPE_ES_USERNAME and HOPSCOPE_ES_PASSWORD)",
                403: "; the user or API key lacks a privilege: give it the reader role in "
                "docs/SECURITY.md",
            }.get(meta.status, "")
            raise LoaderError(f"{what}: Elasticsearch answered {meta.status}{hint}: {text}")
        return bytes(raw)


def _api(call: Callable[[], Any], what: str) -> Any:
    from elastic_transport import TransportError
    from elasticsearch import ApiError

    try:
        return call()
    except (ApiError, TransportError) as error:
        raise LoaderError(f"{what}: {access_problem(error) or error}") from None


def _read_dtype(types: Mapping[str, Any]) -> pl.DataType | None:
    """The polars type a docvalue of these mapped types is read as (None: not readable).

    A field mapped differently in two daily indices is read as text: numbers parse into a
    string column, not the other way round, and the canonical cast follows in ``normalize``.
    """
    names = set(types)
    if not names <= _DOC_VALUES:
        return None
    if names <= _DATES:
        return pl.String()
    if names <= _NUMERIC:
        return pl.Int64()
    if names <= _NUMERIC | _FLOATS:
        return pl.Float64()
    if names == {"boolean"}:
        return pl.Boolean()
    return pl.String()


@dataclass
class _Pattern:
    """One index pattern to read: what to fetch, how to parse it, what was read."""

    kind: str  # document kind: spans, traces, hops, failovers, coordination
    pattern: str
    query: dict[str, Any]
    dtypes: dict[str, pl.DataType] = field(default_factory=dict)  # docvalue field -> dtype
    source: dict[str, pl.DataType] = field(default_factory=dict)  # _source field -> dtype
    pit: str | None = None
    frames: list[pl.DataFrame] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def docvalue_fields(self) -> list[Any]:
        return [
            {"field": name, "format": _DATE_FORMAT} if name == "@timestamp" else name
            for name in self.dtypes
        ]

    def _source_struct(self) -> pl.Struct:
        """The ``_source`` shape: flat top-level names, attributes/resource as flat maps."""
        top: dict[str, pl.DataType] = {}
        nested: dict[str, dict[str, pl.DataType]] = {m: {} for m in _MAPS}
        for name, dtype in self.dtypes.items():
            head, _, key = name.partition(".")
            if head in nested and key:
                nested[head][key] = dtype
            else:
                top[name] = dtype
        top.update({m: pl.Struct(keys) for m, keys in nested.items() if keys})
        return pl.Struct({**top, **self.source})

    def page_schema(self, fetch: str) -> dict[str, pl.DataType]:
        hit: dict[str, pl.DataType] = {"sort": pl.List(pl.Int64())}
        if fetch == "source":
            hit["_source"] = self._source_struct()
        else:
            hit["fields"] = pl.Struct({n: pl.List(d) for n, d in self.dtypes.items()})
            if self.source:
                hit["_source"] = pl.Struct(self.source)
        return {
            "pit_id": pl.String(),
            "hits": pl.Struct(
                {
                    "total": pl.Struct({"value": pl.Int64()}),
                    "hits": pl.List(pl.Struct(hit)),
                }
            ),
        }

    def columns(self, fetch: str) -> list[pl.Expr]:
        """Expressions from one exploded hit to the document-named columns."""
        hit = pl.col("hits")
        source = hit.struct.field("_source")
        if fetch == "source":
            out = []
            for name in self.dtypes:
                head, _, key = name.partition(".")
                if head in _MAPS and key:
                    out.append(source.struct.field(head).struct.field(key).alias(name))
                else:
                    out.append(source.struct.field(name))
        else:
            fields = hit.struct.field("fields")
            out = [fields.struct.field(name).list.first() for name in self.dtypes]
        return out + [source.struct.field(name) for name in self.source]

    def body(self, fetch: str) -> tuple[dict[str, Any], list[str]]:
        """The search body (without PIT, slice, search_after) and its ``filter_path``."""
        body: dict[str, Any] = {
            "size": PAGE_SIZE,
            "query": self.query,
            "sort": [{"_shard_doc": "asc"}],
            "track_total_hits": True,  # first page only: sizes the progress bar
        }
        paths = ["pit_id", "hits.total.value", "hits.hits.sort", "hits.hits._source"]
        if fetch == "source":
            # The whole _source: Elasticsearch copies the stored bytes without parsing them
            # (any includes would make it parse and filter every document).
            body["_source"] = True
            return body, paths
        body["docvalue_fields"] = self.docvalue_fields()
        paths.append("hits.hits.fields")
        if self.source:
            body["_source"] = {"includes": list(self.source)}
        else:
            # No stored fields, not even _id: loading them decompresses a stored-field block
            # per hit, a large share of the fetch phase once _source is off.
            body["_source"] = False
            body["stored_fields"] = "_none_"
        return body, paths


def _fields_wanted(kind: str, dataset_kinds: set[str]) -> list[str]:
    wanted: dict[str, None] = {}
    for dataset_kind in sorted(dataset_kinds):
        wanted.update(dict.fromkeys(document_fields(dataset_kind)))
    if kind == "coordination":
        wanted[_RECORD] = None
    return [name for name in wanted if name not in _SOURCE_FIELDS]


def _prepare(client: Elasticsearch, target: _Pattern, dataset_kinds: set[str]) -> None:
    """Step 1: the mapped fields and their read types."""
    wanted = _fields_wanted(target.kind, dataset_kinds)
    answer = _api(
        lambda: client.field_caps(
            index=target.pattern, fields=wanted, ignore_unavailable=True, allow_no_indices=True
        ),
        f"field capabilities of {target.pattern}",
    )
    caps: Mapping[str, Mapping[str, Any]] = answer.get("fields", {})
    for name in wanted:
        dtype = _read_dtype(caps[name]) if name in caps else None
        if dtype is not None:
            target.dtypes[name] = dtype
    if target.kind == "traces":
        target.source = dict(_SOURCE_FIELDS)


def _page(
    raw: bytes, target: _Pattern, fetch: str
) -> tuple[pl.DataFrame, int | None, str | None, int | None]:
    """One search answer -> (document-named frame, last sort value, PIT id, total hits)."""
    page = pl.read_json(io.BytesIO(raw), schema=target.page_schema(fetch))
    envelope = page.select(
        pl.col("pit_id"),
        pl.col("hits").struct.field("total").struct.field("value").alias("total"),
    ).row(0)
    hits = page.select(pl.col("hits").struct.field("hits")).explode("hits").drop_nulls()
    if hits.height == 0:
        return pl.DataFrame(), None, envelope[0], envelope[1]
    frame = hits.select(target.columns(fetch))
    if "@timestamp" in frame.columns:
        # Parsed here, per page in the reading thread, with the one format ES writes.
        frame = frame.with_columns(pl.col("@timestamp").str.strptime(TIME, _STRPTIME, strict=False))
    last = hits.select(pl.col("hits").struct.field("sort").list.last()).item(-1, 0)
    return frame, last, envelope[0], envelope[1]


def _read_slice(
    raw: _RawSearch,
    target: _Pattern,
    slice_id: int,
    slices: int,
    fetch: str,
    advance: Callable[..., None],
) -> None:
    """Steps 3-4: one slice of one pattern, page by page, until a short page.

    With ``fetch="source"`` a page whose ``_source`` does not fit the mapped types (a list
    where a scalar was mapped, a document written by another producer) is fetched again with
    docvalues, and so is the rest of the slice.
    """
    body, paths = target.body(fetch)
    if slices > 1:
        body["slice"] = {"id": slice_id, "max": slices}
    pit = target.pit
    what = f"search of {target.pattern} (slice {slice_id + 1} of {slices})"
    after: list[Any] | None = None
    while True:
        body["pit"] = {"id": pit, "keep_alive": KEEP_ALIVE}
        if after is not None:
            body["search_after"] = after
        answer = raw.post("/_search?filter_path=" + ",".join(paths), body, what)
        try:
            frame, last, pit_id, total = _page(answer, target, fetch)
        except (pl.exceptions.ComputeError, pl.exceptions.SchemaError):
            if fetch != "source":
                raise
            fetch = "docvalues"
            tracking = body["track_total_hits"]
            body, paths = target.body(fetch)
            body["track_total_hits"] = tracking
            if slices > 1:
                body["slice"] = {"id": slice_id, "max": slices}
            continue
        pit = pit_id or pit
        if total is not None:
            advance(total=total)
            body["track_total_hits"] = False
        if frame.height:
            with target.lock:
                target.frames.append(frame)
            advance(advance=frame.height)
        if frame.height < PAGE_SIZE or last is None:
            return
        after = [last]


class _Progress:
    """A rich progress bar on stderr, one row per index pattern, docs read of docs matched."""

    def __init__(self, enabled: bool, kinds: Sequence[str]) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("docs"), TimeElapsedColumn(),
            console=Console(stderr=True), disable=not enabled,
        )  # fmt: skip
        self.tasks = {kind: self.progress.add_task(kind, total=0) for kind in kinds}

    def advancer(self, kind: str) -> Callable[..., None]:
        task = self.tasks[kind]
        lock = threading.Lock()

        def advance(*, total: int = 0, advance: int = 0) -> None:
            with lock:  # totals arrive per slice: add, never overwrite
                if total:
                    current = self.progress.tasks[self.tasks[kind]].total or 0
                    self.progress.update(task, total=current + total)
                if advance:
                    self.progress.advance(task, advance)

        return advance


def _split(target: _Pattern, dataset_kinds: set[str]) -> dict[str, pl.LazyFrame]:
    """Step 5: the pages of one pattern as document-named frames per dataset kind."""
    if not target.frames:
        return {}
    frame = pl.concat(target.frames, how="vertical", rechunk=False).lazy()
    target.frames.clear()
    if target.kind != "coordination":
        return {target.kind: frame}
    record = pl.col(_RECORD) if _RECORD in target.dtypes else pl.lit(None, pl.String)
    is_2pc = (record == "2pc").fill_null(value=False)
    out: dict[str, pl.LazyFrame] = {}
    if "coordination" in dataset_kinds:
        out["coordination"] = frame.filter(~is_2pc)
    if "two_phase_commits" in dataset_kinds:
        out["two_phase_commits"] = frame.filter(is_2pc)
    return out


def _check_kinds(kinds: Sequence[str]) -> set[str]:
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"kinds must be among {KINDS}, got {unknown}")
    return set(kinds)


def load_elasticsearch(
    client_or_url: Elasticsearch | str,
    *,
    index_prefix: str = DEFAULT_INDEX_PREFIX,
    since: datetime | None = None,
    until: datetime | None = None,
    services: Sequence[str] | None = None,
    trace_ids: Collection[str] | None = None,
    kinds: Sequence[str] = KINDS,
    slices: int | None = None,
    fetch: Literal["source", "docvalues"] = "source",
    progress: bool = True,
) -> Dataset:
    """Read the records of a time window from Elasticsearch into a :class:`Dataset`.

    Parameters:
        client_or_url: an ``elasticsearch.Elasticsearch`` client (left open) or a URL (a
            client is made with the ``HOPSCOPE_ES_*`` credentials and CA, and closed).
        index_prefix: the processors' index prefix; indices are ``<prefix>-<kind>-*``.
        since: first instant (inclusive) on ``@timestamp``; naive datetimes are UTC.
        until: end of the window (exclusive); naive datetimes are UTC.
        services: only documents whose ``service.name`` is one of these (spans: the span's
            service; hops: the source service; traces: the root service; 2PC: the
            coordinator). ``None`` reads every service.
        trace_ids: only documents of these traces (``trace.id``), e.g. the traces of one
            simulator run; at most :data:`MAX_TRACE_IDS`. ``None`` reads every trace.
        kinds: the dataset kinds to read (``spans``, ``traces``, ``hops``, ``failovers``,
            ``coordination``, ``two_phase_commits``); the others stay empty.
        slices: parallel sliced searches per index pattern (default :func:`default_slices`).
        fetch: ``"source"`` reads each hit's whole ``_source`` (Elasticsearch copies the
            stored bytes; measured about twice as fast as docvalues on the same node);
            ``"docvalues"`` reads ``docvalue_fields`` with ``_source`` off (less data on the
            wire when documents carry many unread attributes). Either way only the mapped
            schema fields become columns.
        progress: show a progress bar on stderr (documents read per kind).

    Returns:
        The dataset; its frames are lazy views of data already in memory (a missing index
        pattern gives an empty frame).

    Raises:
        LoaderError: Elasticsearch is unreachable or refuses a request.
        ValueError: an unknown kind, ``slices < 1`` or too many trace ids.

    Examples:
        >>> data = load_elasticsearch("http://127.0.0.1:9200", since=datetime(2026, 3, 2),
        ...                           services=["gateway"], progress=False)  # doctest: +SKIP
        >>> data.hops.group_by("target_service").len().collect()  # doctest: +SKIP
    """
    dataset_kinds = _check_kinds(kinds)
    traces = _check_trace_ids(trace_ids)
    slices = default_slices() if slices is None else slices
    if slices < 1:
        raise ValueError(f"slices must be at least 1, got {slices}")
    if fetch not in ("source", "docvalues"):
        raise ValueError(f"fetch must be 'source' or 'docvalues', got {fetch!r}")
    by_pattern: dict[str, set[str]] = {}
    for kind in KINDS:  # fixed order: spans first, the largest and slowest
        if kind in dataset_kinds:
            by_pattern.setdefault(_INDEX_KIND[kind], set()).add(kind)
    frames: dict[str, pl.LazyFrame] = {}
    with _client(client_or_url) as client, ExitStack() as stack:
        targets = []
        for kind, wanted in by_pattern.items():
            extra = _record_filter(wanted) if kind == "coordination" else []
            target = _Pattern(kind, f"{index_prefix}-{kind}-*",
                              _query(since, until, services, extra, traces))  # fmt: skip
            _prepare(client, target, wanted)
            targets.append(target)
        for target in targets:
            if not target.dtypes:
                continue  # no index matches the pattern: nothing to read
            answer = _api(
                lambda t=target: client.open_point_in_time(  # type: ignore[misc]
                    index=t.pattern, keep_alive=KEEP_ALIVE, ignore_unavailable=True
                ),
                f"opening a point in time on {target.pattern}",
            )
            target.pit = str(answer["id"])
            stack.callback(_close_pit, client, target)
        raw = _RawSearch(client)
        bar = _Progress(progress, list(by_pattern))
        stack.enter_context(bar.progress)
        jobs = [
            (target, slice_id, bar.advancer(target.kind))
            for target in targets
            if target.pit is not None
            for slice_id in range(slices)
        ]
        with ThreadPoolExecutor(max_workers=slices, thread_name_prefix="es-loader") as pool:
            futures = [pool.submit(_read_slice, raw, t, i, slices, fetch, a) for t, i, a in jobs]
            for future in futures:
                future.result()  # the first error raises; the others finish or fail alike
        for target in targets:
            frames.update(_split(target, by_pattern[target.kind]))
    return Dataset.from_documents(frames)


def _close_pit(client: Elasticsearch, target: _Pattern) -> None:
    from elastic_transport import TransportError
    from elasticsearch import ApiError

    if target.pit is None:
        return
    # A failed close is harmless: the PIT expires after KEEP_ALIVE, the data is already read.
    with contextlib.suppress(ApiError, TransportError):
        client.close_point_in_time(id=target.pit)


def count_elasticsearch(
    client_or_url: Elasticsearch | str,
    *,
    index_prefix: str = DEFAULT_INDEX_PREFIX,
    since: datetime | None = None,
    until: datetime | None = None,
    services: Sequence[str] | None = None,
    trace_ids: Collection[str] | None = None,
    kinds: Sequence[str] = KINDS,
) -> dict[str, int]:
    """How many documents :func:`load_elasticsearch` would read per kind, with the same filters.

    Parameters:
        client_or_url: an ``elasticsearch.Elasticsearch`` client or a URL.
        index_prefix, since, until, services, trace_ids, kinds: as for
            :func:`load_elasticsearch`.

    Returns:
        Documents per dataset kind (0 where no index matches), e.g. to size a window or to
        turn a load time into documents per second.
    """
    dataset_kinds = _check_kinds(kinds)
    traces = _check_trace_ids(trace_ids)
    counts: dict[str, int] = {}
    with _client(client_or_url) as client:
        for kind in KINDS:
            if kind not in dataset_kinds:
                continue
            index_kind = _INDEX_KIND[kind]
            extra = _record_filter({kind}) if index_kind == "coordination" else []
            pattern = f"{index_prefix}-{index_kind}-*"
            answer = _api(
                lambda p=pattern, e=extra: client.count(  # type: ignore[misc]
                    index=p,
                    query=_query(since, until, services, e, traces),
                    ignore_unavailable=True,
                    allow_no_indices=True,
                ),
                f"counting {pattern}",
            )
            counts[kind] = int(answer["count"])
    return counts
