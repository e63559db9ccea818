"""Exported trace files -> a :class:`~hopscope.analysis.schema.Dataset`, without a cluster.

Two formats, told apart by their content (not the file name):

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

Either way the spans go through the processors' derivations
(:func:`~hopscope.analysis.loaders.dataset_from_records`), and card numbers in strings are
masked again (:func:`~hopscope.ingest.redaction.mask_pans`), as at ingestion.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from hopscope.analysis.errors import LoaderError
from hopscope.analysis.loaders._records import dataset_from_records
from hopscope.analysis.schema import Dataset
from hopscope.ingest import conventions as c
from hopscope.ingest.redaction import mask_pans
from hopscope.processors.errors import DecodeError
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


def load_file(path: Path) -> Dataset:
    """Read an exported trace file (OTLP/JSON or Jaeger JSON) into a :class:`Dataset`.

    Parameters:
        path: the file; its format is detected from the content.

    Returns:
        The dataset of its spans (and logs, for OTLP logs), with hops, failovers,
        coordination and trace summaries derived as the processors do; every trace is taken
        as complete.

    Raises:
        LoaderError: the file is unreadable, in neither format, or holds a malformed span.

    Examples:
        >>> data = load_file(Path("trace-4bf92f35.json"))  # doctest: +SKIP
        >>> data.hops.select("source_service", "network_ns").collect()  # doctest: +SKIP
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise LoaderError(f"{path}: cannot read the file: {error}") from None
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
    return dataset_from_records(spans, logs)


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


def _hex_id(value: Any, width: int, what: str) -> str:
    text = str(value or "").lower()
    try:
        int(text, 16)
    except ValueError:
        raise LoaderError(f"{what} {value!r} is not a hex id") from None
    # Jaeger drops leading zeros and allows 64-bit trace ids: pad to OTel's width.
    return text.zfill(width)[-width:]


def _status(tags: Mapping[str, Any]) -> str:
    code = str(tags.get("otel.status_code", "")).upper()
    if code == "ERROR" or tags.get("error") is True or str(tags.get("error")).lower() == "true":
        return ERROR
    return OK if code == "OK" else UNSET


def _jaeger_span(
    span: Mapping[str, Any], processes: Mapping[str, Any], trace_id: str
) -> SpanRecord:
    span_id = _hex_id(span.get("spanID"), 16, "spanID")
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
        ref_span = _hex_id(reference.get("spanID"), 16, "reference spanID")
        if parent_id is None and reference.get("refType") == "CHILD_OF" and ref_trace == trace_id:
            parent_id = ref_span
        else:
            links.append(SpanLink(ref_trace, ref_span))
    if parent_id is None and span.get("parentSpanID"):  # older exports
        parent_id = _hex_id(span["parentSpanID"], 16, "parentSpanID")
    start_ns = int(span.get("startTime") or 0) * _US
    events = []
    for log in span.get("logs") or ():
        fields = _tags(log.get("fields"))
        name = str(fields.pop("event", "log"))
        events.append(SpanEvent(name, int(log.get("timestamp") or 0) * _US, fields))
    message = tags.get("otel.status_description")
    return SpanRecord(
        trace_id=trace_id,
        span_id=span_id,
        parent_id=parent_id,
        name=mask_pans(str(span.get("operationName") or "")),
        kind=_JAEGER_KINDS.get(str(tags.get("span.kind", "")).lower(), INTERNAL),
        start_ns=start_ns,
        end_ns=start_ns + int(span.get("duration") or 0) * _US,
        service=service,
        node=str(node) if node is not None else None,
        status=_status(tags),
        status_message=str(message) if message else None,
        attributes={k: v for k, v in tags.items() if k not in _JAEGER_FIELD_TAGS},
        events=tuple(events),
        links=tuple(links),
        resource=resource,
    )


def jaeger_spans(document: Any) -> list[SpanRecord]:
    """The spans of a Jaeger JSON document (query API / UI download) as span records.

    Parameters:
        document: the parsed JSON: ``{"data": [trace, ...]}``, a trace, or a list of traces.

    Returns:
        One :class:`~hopscope.processors.records.SpanRecord` per span, strings PAN-masked.

    Raises:
        LoaderError: a span without a valid ``spanID``/``traceID`` or with non-numeric times.

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
