"""Span helpers that make the payment conventions the easy path.

Each helper is a context manager around one span: it sets the attributes docs/DESIGN.md §3 expects,
makes the span current, records an escaping exception (status ERROR, ``error.type``) and ends
the span. All take an optional ``tracer`` (default: the global one ``configure()`` installs) and
an optional ``clock`` returning nanoseconds, for callers that keep their own time (the simulator
runs on a virtual clock; a replay tool would use recorded times).

Calls between processes carry the W3C ``traceparent`` header: :func:`rpc_call` injects it into
the ``headers`` dict you pass, :func:`rpc_server` continues the trace from the ``headers`` it
receives.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagate import extract, inject
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from hopscope.ingest import conventions as c

Clock = Callable[[], int]
Attributes = Mapping[str, Any]

SCOPE = "hopscope.ingest"

# Literals in SQL: quoted strings, numbers (not inside identifiers), booleans/NULL stay.
_SQL_STRING = re.compile(r"'(?:[^']|'')*'")
_SQL_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])")
_SQL_IN_LIST = re.compile(r"\(\s*\?(?:\s*,\s*\?)+\s*\)")


def strip_sql_parameters(statement: str) -> str:
    """Replace literal values in a SQL statement by ``?`` (``db.query.text`` carries no data).

    >>> strip_sql_parameters("SELECT * FROM accounts WHERE id = 42 AND pan = '4111 1111'")
    'SELECT * FROM accounts WHERE id = ? AND pan = ?'
    >>> strip_sql_parameters("DELETE FROM holds WHERE id IN (1, 2, 3)")
    'DELETE FROM holds WHERE id IN (?)'
    """
    text = _SQL_STRING.sub("?", statement)
    text = _SQL_NUMBER.sub("?", text)
    return _SQL_IN_LIST.sub("(?)", text)


def mark_error(span: Span, error_type: str, description: str | None = None) -> None:
    """Mark a span failed without an exception (a timeout, a declined call, a 5xx)."""
    span.set_attribute(c.ERROR_TYPE, error_type)
    span.set_status(Status(StatusCode.ERROR, description))


@contextmanager
def _span(
    name: str,
    kind: SpanKind,
    attributes: Attributes,
    *,
    tracer: trace.Tracer | None,
    clock: Clock | None,
    context: Context | None = None,
) -> Iterator[Span]:
    tracer = tracer or trace.get_tracer(SCOPE)
    span = tracer.start_span(
        name,
        context=context,
        kind=kind,
        attributes=dict(attributes),
        start_time=clock() if clock else None,
    )
    try:
        with trace.use_span(
            span, end_on_exit=False, record_exception=False, set_status_on_exception=False
        ):
            yield span
    except BaseException as exc:
        span.record_exception(exc, timestamp=clock() if clock else None)
        mark_error(span, type(exc).__qualname__, f"{type(exc).__name__}: {exc}")
        raise
    finally:
        span.end(end_time=clock() if clock else None)


@contextmanager
def rpc_call(
    target_service: str,
    target_node: str,
    method: str,
    *,
    attempt: int = 0,
    rpc_system: str = "grpc",
    port: int | None = None,
    headers: MutableMapping[str, str] | None = None,
    attributes: Attributes | None = None,
    tracer: trace.Tracer | None = None,
    clock: Clock | None = None,
) -> Iterator[Span]:
    """An outgoing call: a CLIENT span to ``target_service`` on node ``target_node``.

    ``attempt`` counts retries and failovers (0 for the first try). When ``headers`` is given,
    the W3C trace context of this span is written into it for the callee.
    """
    attrs: dict[str, Any] = {
        c.PEER_SERVICE: target_service,
        c.SERVER_ADDRESS: target_node,
        c.RPC_SYSTEM: rpc_system,
        c.RPC_SERVICE: target_service,
        c.RPC_METHOD: method,
        c.HTTP_RESEND_COUNT: attempt,
    }
    if port is not None:
        attrs[c.SERVER_PORT] = port
    attrs.update(attributes or {})
    name = f"{target_service}/{method}"
    with _span(name, SpanKind.CLIENT, attrs, tracer=tracer, clock=clock) as span:
        if headers is not None:
            inject(headers)
        yield span


@contextmanager
def rpc_server(
    service: str,
    method: str,
    *,
    headers: Mapping[str, str] | None = None,
    rpc_system: str = "grpc",
    attributes: Attributes | None = None,
    tracer: trace.Tracer | None = None,
    clock: Clock | None = None,
) -> Iterator[Span]:
    """An incoming call: a SERVER span continuing the caller's trace.

    With ``headers`` (the request's), the parent comes from their ``traceparent``; without, from
    the current context (in-process calls).
    """
    attrs: dict[str, Any] = {c.RPC_SYSTEM: rpc_system, c.RPC_SERVICE: service, c.RPC_METHOD: method}
    attrs.update(attributes or {})
    context = extract(headers) if headers is not None else None
    name = f"{service}/{method}"
    with _span(name, SpanKind.SERVER, attrs, tracer=tracer, clock=clock, context=context) as span:
        yield span


@contextmanager
def coordination(
    kind: str,
    resource: str,
    *,
    participant: str | None = None,
    name: str | None = None,
    attributes: Attributes | None = None,
    tracer: trace.Tracer | None = None,
    clock: Clock | None = None,
) -> Iterator[Span]:
    """Time spent coordinating: a lock wait, a 2PC phase, a consensus append, a queue wait.

    ``kind`` is one of :data:`~hopscope.ingest.conventions.COORDINATION_KINDS`. The span is
    named ``kind`` unless ``name`` is given: span names stay low-cardinality (OpenTelemetry's
    rule; the analysis groups by them), the resource is an attribute.
    """
    if kind not in c.COORDINATION_KINDS:
        raise ValueError(f"kind must be one of {sorted(c.COORDINATION_KINDS)}, got {kind!r}")
    attrs: dict[str, Any] = {c.COORDINATION_KIND: kind, c.COORDINATION_RESOURCE: resource}
    if participant is not None:
        attrs[c.COORDINATION_PARTICIPANT] = participant
    attrs.update(attributes or {})
    with _span(name or kind, SpanKind.INTERNAL, attrs, tracer=tracer, clock=clock) as span:
        yield span


@contextmanager
def lock_wait(
    resource: str,
    *,
    attributes: Attributes | None = None,
    tracer: trace.Tracer | None = None,
    clock: Clock | None = None,
) -> Iterator[Span]:
    """Waiting for a lock (a row, an account, a partition) named ``resource``."""
    with coordination(
        c.LOCK_WAIT, resource, attributes=attributes, tracer=tracer, clock=clock
    ) as span:
        yield span


def failover(
    from_node: str,
    to_node: str,
    reason: str,
    *,
    span: Span | None = None,
    clock: Clock | None = None,
) -> None:
    """Record that a caller moved from ``from_node`` to ``to_node`` (an event on ``span``,
    default the current span)."""
    target = span or trace.get_current_span()
    target.add_event(
        c.EVENT_FAILOVER,
        {c.FAILOVER_FROM: from_node, c.FAILOVER_TO: to_node, c.FAILOVER_REASON: reason},
        timestamp=clock() if clock else None,
    )


@contextmanager
def db_call(
    system: str,
    operation: str,
    statement: str,
    *,
    role: str = c.PRIMARY,
    node: str | None = None,
    namespace: str | None = None,
    attributes: Attributes | None = None,
    tracer: trace.Tracer | None = None,
    clock: Clock | None = None,
) -> Iterator[Span]:
    """A database call: a CLIENT span with ``db.*`` and ``hopscope.db.role``.

    The statement's literal values are stripped before they reach the span.
    """
    if role not in c.DB_ROLES:
        raise ValueError(f"role must be one of {sorted(c.DB_ROLES)}, got {role!r}")
    attrs: dict[str, Any] = {
        c.DB_SYSTEM: system,
        c.DB_OPERATION: operation,
        c.DB_QUERY_TEXT: strip_sql_parameters(statement),
        c.DB_ROLE: role,
    }
    if node is not None:
        attrs[c.SERVER_ADDRESS] = node
    if namespace is not None:
        attrs[c.DB_NAMESPACE] = namespace
    attrs.update(attributes or {})
    name = f"{operation} {namespace}" if namespace else operation
    with _span(name, SpanKind.CLIENT, attrs, tracer=tracer, clock=clock) as span:
        yield span


@contextmanager
def cache_lookup(
    cache: str,
    *,
    hit: bool | None = None,
    attributes: Attributes | None = None,
    tracer: trace.Tracer | None = None,
    clock: Clock | None = None,
) -> Iterator[Span]:
    """A cache lookup. Pass ``hit`` when known up front, or set it on the yielded span with
    ``span.set_attribute(CACHE_HIT, ...)`` once the lookup answered."""
    attrs: dict[str, Any] = {"hopscope.cache.name": cache}
    if hit is not None:
        attrs[c.CACHE_HIT] = hit
    attrs.update(attributes or {})
    with _span(f"cache {cache}", SpanKind.INTERNAL, attrs, tracer=tracer, clock=clock) as span:
        yield span


__all__ = [
    "Clock",
    "cache_lookup",
    "coordination",
    "db_call",
    "failover",
    "lock_wait",
    "mark_error",
    "rpc_call",
    "rpc_server",
    "strip_sql_parameters",
]
