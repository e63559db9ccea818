"""Exported trace files -> a :class:`~hopscope.analysis.schema.Dataset`, without a cluster.

:func:`load_files` reads several files at once (paths, directories, glob patterns): the spans
of a trace spread over several files are gathered before anything is derived, and
``since``/``until`` keep the traces that start in the window. Three formats:

- **OTLP/JSON**: ``ExportTraceServiceRequest`` / ``ExportLogsServiceRequest`` as JSON, one
  object or one per line (what the OpenTelemetry Collector's file exporter writes); Jaeger v2's
  ``/api/v3/traces`` answer (``{"result": {"resourceSpans": ...}}``) too. Decoded by the
  processors' own :func:`~hopscope.processors.decode.decode_spans` /
  :func:`~hopscope.processors.decode.decode_logs`.
- **Jaeger JSON**: the query API and the UI's "Download JSON" format,
  ``{"data": [{"traceID", "spans": [...], "processes": {...}}]}`` (a bare trace object or a
  list of them is accepted too). Times are microseconds; ``span.kind`` tags give the kind,
  ``otel.status_code=ERROR`` or ``error=true`` the error status, the process tags
  ``service.instance.id`` (else ``hostname``, else ``ip``) the node; the first ``CHILD_OF``
  reference is the parent, the other references become links.
- **CSV** (files named ``*.csv``): one span per row, columns named by a :class:`CsvFormat`
  (by default ``traceID,spanID,parentSpanID,service,operation,start,duration``, times in
  microseconds; see :class:`CsvFormat` for the optional columns and the units).

Other people's telemetry is read as the processors read it
(:mod:`hopscope.processors.foreign`): ids that are not hex are hashed, errors come from
other exporters' conventions too, spans without a kind get their kind from cross-service links.
On top of that, a file loader sees whole traces, so it also pairs **shared span ids**: Zipkin's
instrumentation writes the client and the server half of a call under one span id (two spans,
kinds CLIENT and SERVER). The server half gets an id of its own (a hash of the shared id), the
client as its parent, and the children recorded under the shared id in the server's service;
the result does not depend on the order of the spans in the files. (The stream path cannot do
this: there the second half overwrites the first, as its document does in Elasticsearch.)

Either way the spans go through the processors' derivations
(:func:`~hopscope.analysis.loaders.dataset_from_records`), and card numbers in strings are
masked again (:func:`~hopscope.ingest.redaction.mask_pans`), as at ingestion.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import glob
import hashlib
import io
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final

from hopscope.analysis.errors import LoaderError
from hopscope.analysis.loaders._records import dataset_from_records
from hopscope.analysis.schema import Dataset
from hopscope.ingest import conventions as c
from hopscope.ingest.redaction import mask_pans
from hopscope.processors import sanitize
from hopscope.processors.errors import DecodeError
from hopscope.processors.foreign import error_status, hex_id
from hopscope.processors.pipeline import decode
from hopscope.processors.records import (
    CLIENT,
    CONSUMER,
    ERROR,
    INTERNAL,
    OK,
    PRODUCER,
    SERVER,
    UNSET,
    LogRecord,
    SpanEvent,
    SpanLink,
    SpanRecord,
)

_EXPECTED: Final = (
    "OTLP/JSON (ExportTraceServiceRequest or ExportLogsServiceRequest, one object or JSON "
    'lines) or Jaeger JSON ({"data": [{"traceID", "spans", "processes"}]})'
)
_OTLP_SPANS: Final = frozenset({"resourceSpans", "resource_spans"})
_OTLP_LOGS: Final = frozenset({"resourceLogs", "resource_logs"})

_JAEGER_KINDS: Final = {k: k for k in (CLIENT, SERVER, PRODUCER, CONSUMER, INTERNAL)}
# Span tags that are the span's own fields in hopscope's records, not attributes.
_JAEGER_FIELD_TAGS: Final = frozenset(
    {"span.kind", "otel.status_code", "otel.status_description", "error", "internal.span.format"}
)
_NODE_TAGS: Final = (c.SERVICE_INSTANCE_ID, "hostname", "ip")
_US: Final = 1_000  # Jaeger times are microseconds


def _documents(text: str, path: Path) -> list[Any]:
    """The JSON values of the file: one document, or one per non-empty line."""
    try:
        return [json.loads(text)]
    except json.JSONDecodeError:
        pass
    documents = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            documents.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise LoaderError(
                f"{path}: line {number} is not JSON ({error.msg}); expected {_EXPECTED}"
            ) from None
    return documents


def _format(document: Any) -> str | None:
    if isinstance(document, list):
        return "jaeger" if document and all(_is_jaeger_trace(t) for t in document) else None
    if not isinstance(document, dict):
        return None
    if isinstance(document.get("result"), dict):  # Jaeger v2 query API: OTLP inside
        return _format(document["result"])
    if set(document) & _OTLP_SPANS:
        return "otlp_spans"
    if set(document) & _OTLP_LOGS:
        return "otlp_logs"
    data = document.get("data")
    if isinstance(data, list) and all(_is_jaeger_trace(t) for t in data):
        return "jaeger"
    if _is_jaeger_trace(document):
        return "jaeger"
    return None


def _is_jaeger_trace(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("spans"), list)


_TIME_UNITS: Final = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
# CSV fields -> the default column names: the common shape of span tables in public datasets.
DEFAULT_CSV_COLUMNS: Final[Mapping[str, str]] = {
    "trace_id": "traceID",
    "span_id": "spanID",
    "parent_id": "parentSpanID",
    "service": "service",
    "operation": "operation",
    "start": "start",
    "duration": "duration",
    "kind": "kind",
    "status": "status",
    "node": "node",
}
_CSV_REQUIRED: Final = ("trace_id", "span_id", "service", "start", "duration")
# Parent cells that mean "no parent" in the exports seen in the wild.
_NO_PARENT: Final = frozenset({"", "0", "-1", "null", "none", "nan"})
_ERROR_STATUS: Final = frozenset({"error", "true", "1", "status_code_error", "failed"})
_OK_STATUS: Final = frozenset({"ok", "status_code_ok"})


@dataclass(frozen=True)
class CsvFormat:
    """How a CSV file of spans maps onto span records: one span per row, a header row.

    ``columns`` maps each field to its column name; the defaults are
    :data:`DEFAULT_CSV_COLUMNS` (``traceID,spanID,parentSpanID,service,operation,start,
    duration``, and the optional ``kind``, ``status``, ``node``), and a mapping given here
    replaces the defaults of the fields it names. Required columns: trace id, span id,
    service, start, duration. ``start`` is a number in ``start_unit`` since the Unix epoch
    (``ns``, ``us``, ``ms`` or ``s``; default ``us``, as Jaeger writes) or an ISO 8601 time;
    ``duration`` is a number in ``duration_unit`` (default ``us``). ``kind`` holds
    ``client``/``server``/``producer``/``consumer``/``internal`` (else the kind is inferred
    from cross-service links), ``status`` ``error``/``true``/``1`` or ``ok``. Every other
    column becomes a span attribute under its own name (so ``http.status_code`` or
    ``rpc.grpc.status_code`` columns mark errors, as in any span).

    >>> CsvFormat(columns={"start": "startTime"}).column("start")
    'startTime'
    >>> CsvFormat(start_unit="weeks")
    Traceback (most recent call last):
    ...
    ValueError: CsvFormat start_unit must be one of ['ms', 'ns', 's', 'us'], got 'weeks'
    """

    columns: Mapping[str, str] = field(default_factory=dict)
    start_unit: str = "us"
    duration_unit: str = "us"

    def __post_init__(self) -> None:
        for name in ("start_unit", "duration_unit"):
            unit = getattr(self, name)
            if unit not in _TIME_UNITS:
                raise ValueError(
                    f"CsvFormat {name} must be one of {sorted(_TIME_UNITS)}, got {unit!r}"
                )
        unknown = set(self.columns) - set(DEFAULT_CSV_COLUMNS)
        if unknown:
            raise ValueError(
                f"CsvFormat columns: unknown field(s) {sorted(unknown)}; the fields are "
                f"{sorted(DEFAULT_CSV_COLUMNS)}"
            )

    def column(self, name: str) -> str:
        """The column name of field ``name``."""
        return self.columns.get(name, DEFAULT_CSV_COLUMNS[name])


def expand_paths(paths: Iterable[Path | str]) -> list[Path]:
    """Files named by ``paths``: files as given, directories by every file under them (hidden
    ones skipped), glob patterns (``exports/*.json``, ``**`` for any depth) by their matches.

    Returns the files sorted and without repeats.

    Raises:
        LoaderError: a path that does not exist and is no pattern, or a pattern matching
            nothing.
    """
    found: set[Path] = set()
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found.update(
                p
                for p in path.rglob("*")
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.exists() or not glob.has_magic(str(given)):
            found.add(path)  # a missing file is reported when it is read
        else:
            # glob.glob, not Path.glob: the pattern may be absolute ("/data/**/*.json").
            matches = [Path(m) for m in glob.glob(str(given), recursive=True)]  # noqa: PTH207
            files = [m for m in matches if m.is_file()]
            if not files:
                raise LoaderError(f"{given}: the pattern matches no file")
            found.update(files)
    return sorted(found)


def load_file(path: Path, *, csv_format: CsvFormat | None = None) -> Dataset:
    """Read an exported trace file (OTLP/JSON, Jaeger JSON or CSV) into a :class:`Dataset`.

    Parameters:
        path: the file; its format is detected from the content (CSV: from the name).
        csv_format: the column mapping of a CSV file (default: :class:`CsvFormat`).

    Returns:
        The dataset of its spans (and logs, for OTLP logs), with hops, failovers,
        coordination and trace summaries derived as the processors do; every trace is taken
        as complete.

    Raises:
        LoaderError: the file is unreadable, in none of the formats, or holds a malformed
            span.

    Examples:
        >>> data = load_file(Path("trace-4bf92f35.json"))  # doctest: +SKIP
        >>> data.hops.select("source_service", "network_ns").collect()  # doctest: +SKIP
    """
    return load_files([path], csv_format=csv_format)


def load_files(
    paths: Iterable[Path | str],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    csv_format: CsvFormat | None = None,
    services: Sequence[str] | None = None,
) -> Dataset:
    """Read exported trace files (paths, directories, glob patterns) into one dataset.

    Parameters:
        paths: what to read (:func:`expand_paths`).
        since: keep the traces whose first span starts at or after this instant (naive
            datetimes are UTC); logs outside any trace by their own time.
        until: ... and before this one (exclusive).
        csv_format: the column mapping of CSV files (default: :class:`CsvFormat`).
        services: only these services' records, selected after the whole traces are derived
            (:meth:`Dataset.of_services`, as the other loaders select). ``None``: all.

    Returns:
        As :func:`load_file`, over the spans of every file together (a trace split over
        several files is one trace), shared client/server span ids paired.

    Raises:
        LoaderError: no file given, or a file as for :func:`load_file`.
    """
    files = expand_paths(paths)
    if not files:
        raise LoaderError(f"no trace file given; expected {_EXPECTED}")
    spans: list[SpanRecord] = []
    logs: list[LogRecord] = []
    for path in files:
        file_spans, file_logs = read_file(path, csv_format=csv_format)
        spans += file_spans
        logs += file_logs
    spans, logs = in_window(pair_shared_ids(spans), logs, since, until)
    data = dataset_from_records(spans, logs)
    return data if services is None else data.of_services(services)


def read_file(
    path: Path, *, csv_format: CsvFormat | None = None
) -> tuple[list[SpanRecord], list[LogRecord]]:
    """The span and log records of one file, as recorded (nothing derived, nothing paired).

    Raises:
        LoaderError: as for :func:`load_file`.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise LoaderError(f"{path}: cannot read the file: {error}") from None
    if path.suffix.lower() == ".csv":
        try:
            return csv_spans(text, csv_format or CsvFormat()), []
        except LoaderError as error:
            raise LoaderError(f"{path}: {error}") from None
    documents = _documents(text, path)
    if not documents:
        raise LoaderError(f"{path}: the file is empty; expected {_EXPECTED}")
    spans: list[SpanRecord] = []
    logs: list[LogRecord] = []
    for number, document in enumerate(documents, start=1):
        where = f"{path}" if len(documents) == 1 else f"{path}: document {number}"
        kind = _format(document)
        if kind is None:
            keys = sorted(document)[:5] if isinstance(document, dict) else type(document).__name__
            raise LoaderError(f"{where}: unknown format (found {keys}); expected {_EXPECTED}")
        if isinstance(document, dict) and isinstance(document.get("result"), dict):
            document = document["result"]
        try:
            if kind in ("otlp_spans", "otlp_logs"):
                # Strict: a malformed span in a file the user handed in fails the load.
                payload = json.dumps(document).encode()
                decoded = decode("spans" if kind == "otlp_spans" else "logs", payload, strict=True)
                spans += decoded.spans
                logs += decoded.logs
            else:
                spans += jaeger_spans(document)
        except (DecodeError, LoaderError) as error:
            raise LoaderError(f"{where}: {error}") from None
    return spans, logs


def _utc_ns(moment: datetime) -> int:
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1_000


def in_window(
    spans: Sequence[SpanRecord],
    logs: Sequence[LogRecord],
    since: datetime | None,
    until: datetime | None,
) -> tuple[list[SpanRecord], list[LogRecord]]:
    """The traces whose first span starts in ``[since, until)``, whole (a trace is never cut
    at the window's edge), their logs, and the logs outside any trace by their own time."""
    if since is None and until is None:
        return list(spans), list(logs)
    low = _utc_ns(since) if since is not None else None
    high = _utc_ns(until) if until is not None else None

    def inside(ns: int) -> bool:
        return (low is None or ns >= low) and (high is None or ns < high)

    first: dict[str, int] = {}
    for span in spans:
        known = first.get(span.trace_id)
        if known is None or span.start_ns < known:
            first[span.trace_id] = span.start_ns
    kept = {trace for trace, start in first.items() if inside(start)}
    return (
        [s for s in spans if s.trace_id in kept],
        [g for g in logs if (g.trace_id in kept if g.trace_id in first else inside(g.time_ns))],
    )


def _server_half_id(trace_id: str, span_id: str) -> str:
    """The id given to the server half of a shared span id: deterministic, in the id space."""
    return hashlib.sha256(f"{trace_id}/{span_id}/server".encode()).hexdigest()[:16]


def pair_shared_ids(spans: Iterable[SpanRecord]) -> list[SpanRecord]:
    """Spans with shared client/server span ids split into a client and a server span (module
    docstring), in the order given; other spans unchanged.

    >>> client = SpanRecord("t", "a1", "r", "pay", "client", 0, 10, "gateway")
    >>> server = SpanRecord("t", "a1", "r", "pay", "server", 2, 9, "payment")
    >>> [(s.span_id, s.parent_id, s.kind) for s in pair_shared_ids([server, client])]
    [('9b406b353697b51d', 'a1', 'server'), ('a1', 'r', 'client')]
    """
    spans = list(spans)
    groups: dict[tuple[str, str], list[SpanRecord]] = defaultdict(list)
    for span in spans:
        groups[(span.trace_id, span.span_id)].append(span)
    # Shared id -> (the server half's new id, its service).
    servers: dict[tuple[str, str], tuple[str, str]] = {}
    for (trace_id, span_id), group in groups.items():
        distinct: list[SpanRecord] = []
        for span in group:
            if span not in distinct:  # identical copies are one span (redelivery)
                distinct.append(span)
        kinds = sorted(span.kind for span in distinct)
        if len(distinct) == 2 and kinds == [CLIENT, SERVER]:
            server = next(span for span in distinct if span.kind == SERVER)
            servers[(trace_id, span_id)] = (_server_half_id(trace_id, span_id), server.service)
    if not servers:
        return spans
    out: list[SpanRecord] = []
    for span in spans:
        shared = servers.get((span.trace_id, span.span_id))
        if shared is not None and span.kind == SERVER:
            span = dataclasses.replace(span, span_id=shared[0], parent_id=span.span_id)
        elif span.parent_id is not None:
            parent = servers.get((span.trace_id, span.parent_id))
            # Zipkin's server-side children name the shared id: they belong to the server half.
            if parent is not None and span.service == parent[1]:
                span = dataclasses.replace(span, parent_id=parent[0])
        out.append(span)
    return out


# -- CSV --------------------------------------------------------------------------------------


def _csv_number(text: str, what: str, row: int) -> Decimal:
    try:
        return Decimal(text.strip())
    except InvalidOperation:
        raise LoaderError(f"row {row}: {what} {text!r} is not a number") from None


def _csv_start(text: str, unit: int, row: int) -> int:
    try:
        return int(_csv_number(text, "start", row) * unit)
    except LoaderError:
        try:
            return _utc_ns(datetime.fromisoformat(text.strip().replace("Z", "+00:00")))
        except ValueError:
            raise LoaderError(
                f"row {row}: start {text!r} is neither a number nor an ISO 8601 time"
            ) from None


def csv_spans(text: str, fmt: CsvFormat) -> list[SpanRecord]:
    """The spans of a CSV table (:class:`CsvFormat` gives the columns and units).

    Raises:
        LoaderError: a required column is missing, or a row's times are no numbers.

    Examples:
        >>> table = "traceID,spanID,parentSpanID,service,operation,start,duration\\n"
        >>> table += "4bf92f35,a,,gateway,POST /pay,1000,250\\n"
        >>> (span,) = csv_spans(table, CsvFormat())
        >>> span.service, span.kind, span.start_ns, span.duration_ns, span.flags
        ('gateway', 'internal', 1000000, 250000, ('kind_unspecified',))
    """
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [fmt.column(f) for f in _CSV_REQUIRED if fmt.column(f) not in header]
    if missing:
        raise LoaderError(
            f"CSV without the column(s) {missing} (found {header[:10]}); name the columns "
            "with the CSV column mapping (--csv-column FIELD=COLUMN)"
        )
    own = {fmt.column(f) for f in DEFAULT_CSV_COLUMNS}
    start_unit, duration_unit = _TIME_UNITS[fmt.start_unit], _TIME_UNITS[fmt.duration_unit]
    spans: list[SpanRecord] = []
    for number, row in enumerate(reader, start=2):  # row 1 is the header

        def cell(name: str, row: dict[str, Any] = row) -> str:
            return str(row.get(fmt.column(name)) or "").strip()

        flags: set[str] = set()
        trace_id, hashed_trace = hex_id(cell("trace_id"), 32)
        span_id, hashed_span = hex_id(cell("span_id"), 16)
        if not trace_id or not span_id:
            raise LoaderError(f"row {number}: no trace id or span id")
        parent_text = cell("parent_id")
        parent_id, hashed_parent = (
            (None, False) if parent_text.lower() in _NO_PARENT else hex_id(parent_text, 16)
        )
        if hashed_trace or hashed_span or hashed_parent:
            flags.add(sanitize.ID_HASHED)
        kind = _JAEGER_KINDS.get(cell("kind").lower().removeprefix("span_kind_"))
        if kind is None:
            kind = INTERNAL
            flags.add(sanitize.KIND_UNSPECIFIED)
        status_text = cell("status").lower()
        status = (
            ERROR if status_text in _ERROR_STATUS else OK if status_text in _OK_STATUS else UNSET
        )
        attributes = {
            str(k): mask_pans(str(v))
            for k, v in row.items()
            if k is not None and k not in own and v not in (None, "")
        }
        status, message, inferred = error_status(status, None, attributes)
        if inferred:
            flags.add(sanitize.STATUS_INFERRED)
        start_ns = _csv_start(cell("start"), start_unit, number)
        duration_ns = int(_csv_number(cell("duration"), "duration", number) * duration_unit)
        service = cell("service") or "unknown_service"
        node = cell("node") or None
        spans.append(
            SpanRecord(
                trace_id=trace_id,
                span_id=span_id,
                parent_id=parent_id,
                name=mask_pans(cell("operation")),
                kind=kind,
                start_ns=start_ns,
                end_ns=start_ns + duration_ns,
                service=service,
                node=node,
                status=status,
                status_message=message,
                attributes=attributes,
                resource={c.SERVICE_NAME: service}
                | ({c.SERVICE_INSTANCE_ID: node} if node else {}),
                flags=tuple(sorted(flags)),
            )
        )
    return spans


# -- Jaeger JSON -----------------------------------------------------------------------------


def _traces(document: Any) -> list[Mapping[str, Any]]:
    if isinstance(document, list):
        return document
    if isinstance(document.get("data"), list):
        return list(document["data"])
    return [document]


def _plain(value: Any) -> Any:
    return mask_pans(value) if isinstance(value, str) else value


def _tag_value(tag: Mapping[str, Any]) -> Any:
    """A Jaeger tag's value as a plain Python value (JSON may carry int64 as text)."""
    kind = str(tag.get("type", "string")).lower()
    value = tag.get("value")
    try:
        if kind == "bool":
            return value if isinstance(value, bool) else str(value).lower() == "true"
        if kind == "int64":
            return int(value)  # type: ignore[arg-type]
        if kind == "float64":
            return float(value)  # type: ignore[arg-type]
        if kind == "binary" and isinstance(value, bytes):
            return base64.b64encode(value).decode()
    except (TypeError, ValueError):
        pass  # kept as given below
    return _plain(value)


def _tags(tags: Iterable[Mapping[str, Any]] | None) -> dict[str, Any]:
    return {str(t["key"]): _tag_value(t) for t in tags or () if "key" in t}


def _hex_id(value: Any, width: int, what: str, flags: set[str] | None = None) -> str:
    """A Jaeger id as ``width`` hex digits: Jaeger drops leading zeros and allows 64-bit trace
    ids (padded to OTel's width); an id that is not hex is hashed (flagged ``id_hashed``)."""
    text, hashed = hex_id(str(value or ""), width)
    if not text:
        raise LoaderError(f"{what} is missing")
    if hashed and flags is not None:
        flags.add(sanitize.ID_HASHED)
    return text


def _status(tags: Mapping[str, Any]) -> str:
    code = str(tags.get("otel.status_code", "")).upper()
    if code == "ERROR" or tags.get("error") is True or str(tags.get("error")).lower() == "true":
        return ERROR
    return OK if code == "OK" else UNSET


def _jaeger_span(
    span: Mapping[str, Any], processes: Mapping[str, Any], trace_id: str
) -> SpanRecord:
    flags: set[str] = set()
    if trace_id != str(span.get("traceID") or trace_id).lower().zfill(32):
        flags.add(sanitize.ID_HASHED)
    span_id = _hex_id(span.get("spanID"), 16, "spanID", flags)
    tags = _tags(span.get("tags"))
    process = processes.get(str(span.get("processID")), {})
    resource = _tags(process.get("tags"))
    service = str(process.get("serviceName") or resource.get(c.SERVICE_NAME) or "unknown_service")
    resource.setdefault(c.SERVICE_NAME, service)
    node = next((resource[k] for k in _NODE_TAGS if resource.get(k) is not None), None)
    parent_id: str | None = None
    links: list[SpanLink] = []
    for reference in span.get("references") or ():
        ref_trace = _hex_id(reference.get("traceID") or trace_id, 32, "reference traceID")
        ref_span = _hex_id(reference.get("spanID"), 16, "reference spanID", flags)
        if parent_id is None and reference.get("refType") == "CHILD_OF" and ref_trace == trace_id:
            parent_id = ref_span
        else:
            links.append(SpanLink(ref_trace, ref_span))
    if parent_id is None and span.get("parentSpanID"):  # older exports
        parent_id = _hex_id(span["parentSpanID"], 16, "parentSpanID", flags)
    start_ns = int(span.get("startTime") or 0) * _US
    events = []
    for log in span.get("logs") or ():
        fields = _tags(log.get("fields"))
        name = str(fields.pop("event", "log"))
        events.append(SpanEvent(name, int(log.get("timestamp") or 0) * _US, fields))
    message = tags.get("otel.status_description")
    kind = _JAEGER_KINDS.get(str(tags.get("span.kind", "")).lower())
    if kind is None:
        flags.add(sanitize.KIND_UNSPECIFIED)
    attributes = {k: v for k, v in tags.items() if k not in _JAEGER_FIELD_TAGS}
    status, status_message, inferred = error_status(
        _status(tags), str(message) if message else None, attributes, events
    )
    if inferred:
        flags.add(sanitize.STATUS_INFERRED)
    return SpanRecord(
        trace_id=trace_id,
        span_id=span_id,
        parent_id=parent_id,
        name=mask_pans(str(span.get("operationName") or "")),
        kind=kind or INTERNAL,
        start_ns=start_ns,
        end_ns=start_ns + int(span.get("duration") or 0) * _US,
        service=service,
        node=str(node) if node is not None else None,
        status=status,
        status_message=status_message,
        attributes=attributes,
        events=tuple(events),
        links=tuple(links),
        resource=resource,
        flags=tuple(sorted(flags)),
    )


def jaeger_spans(document: Any) -> list[SpanRecord]:
    """The spans of a Jaeger JSON document (query API / UI download) as span records.

    Parameters:
        document: the parsed JSON: ``{"data": [trace, ...]}``, a trace, or a list of traces.

    Returns:
        One :class:`~hopscope.processors.records.SpanRecord` per span, strings PAN-masked.

    Raises:
        LoaderError: a span without a ``spanID``/``traceID`` or with non-numeric times (ids
            that are not hex are hashed, not refused).

    Examples:
        >>> trace = {"traceID": "4bf92f3577b34da6a3ce929d0e0e4736", "processes": {
        ...     "p1": {"serviceName": "gateway", "tags": []}}, "spans": [{
        ...     "traceID": "4bf92f3577b34da6a3ce929d0e0e4736", "spanID": "00f067aa0ba902b7",
        ...     "operationName": "POST /pay", "references": [], "startTime": 1000,
        ...     "duration": 250, "tags": [{"key": "span.kind", "type": "string",
        ...     "value": "server"}], "processID": "p1"}]}
        >>> span = jaeger_spans({"data": [trace]})[0]
        >>> (span.service, span.kind, span.start_ns, span.duration_ns)
        ('gateway', 'server', 1000000, 250000)
    """
    spans: list[SpanRecord] = []
    for trace in _traces(document):
        processes = trace.get("processes") or {}
        for span in trace.get("spans") or ():
            trace_id = _hex_id(span.get("traceID") or trace.get("traceID"), 32, "traceID")
            try:
                spans.append(_jaeger_span(span, processes, trace_id))
            except (TypeError, ValueError) as error:
                raise LoaderError(
                    f"span {span.get('spanID')!r} of trace {trace_id}: {error}"
                ) from None
    return spans
