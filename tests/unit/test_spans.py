"""Span helpers: conventions set for the caller, errors recorded, context propagated."""

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from hopscope.ingest import conventions as c
from hopscope.ingest.spans import (
    cache_lookup,
    coordination,
    db_call,
    failover,
    lock_wait,
    rpc_call,
    rpc_server,
)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    yield InMemorySpanExporter()


@pytest.fixture
def tracer(exporter: InMemorySpanExporter):  # type: ignore[no-untyped-def]
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test")
    provider.shutdown()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        self.now += 1_000
        return self.now


def test_rpc_pair_over_w3c_headers(tracer, exporter) -> None:  # type: ignore[no-untyped-def]
    headers: dict[str, str] = {}
    clock = Clock()
    with rpc_call("risk", "risk-2", "Score", attempt=1, headers=headers, tracer=tracer,
                  clock=clock, port=8443):  # fmt: skip
        pass
    assert headers["traceparent"].startswith("00-")
    with rpc_server("risk", "Score", headers=headers, tracer=tracer, clock=clock):
        pass
    client, server = exporter.get_finished_spans()
    assert client.kind is SpanKind.CLIENT and server.kind is SpanKind.SERVER
    assert server.parent is not None and server.parent.span_id == client.context.span_id
    assert server.context.trace_id == client.context.trace_id
    assert dict(client.attributes or {}) == {
        c.PEER_SERVICE: "risk", c.SERVER_ADDRESS: "risk-2", c.SERVER_PORT: 8443,
        c.RPC_SYSTEM: "grpc", c.RPC_SERVICE: "risk", c.RPC_METHOD: "Score",
        c.HTTP_RESEND_COUNT: 1,
    }  # fmt: skip
    assert (client.start_time, client.end_time) == (1_001_000, 1_002_000)


def test_exception_marks_span_failed(tracer, exporter) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TimeoutError), rpc_call("bank", "bank-1", "Authorize", tracer=tracer):
        raise TimeoutError("bank did not answer")
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})[c.ERROR_TYPE] == "TimeoutError"
    assert [e.name for e in span.events] == ["exception"]


def test_coordination_db_cache_and_failover(tracer, exporter) -> None:  # type: ignore[no-untyped-def]
    with rpc_call("ledger", "ledger-1", "Post", tracer=tracer) as call:
        failover("ledger-1", "ledger-2", "timeout", span=call)
        with coordination(c.TWO_PC_PREPARE, "tx-9", participant="shard-2", tracer=tracer):
            pass
        with lock_wait("account:42", tracer=tracer):
            pass
        with db_call("postgresql", "SELECT", "SELECT * FROM accounts WHERE id = 42",
                     role=c.REPLICA, tracer=tracer):  # fmt: skip
            pass
        with cache_lookup("risk-scores", tracer=tracer) as lookup:
            lookup.set_attribute(c.CACHE_HIT, False)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    prepare = dict(spans["2pc.prepare"].attributes or {})  # low-cardinality names
    assert prepare[c.COORDINATION_KIND] == "2pc.prepare"
    assert prepare[c.COORDINATION_PARTICIPANT] == "shard-2"
    lock = dict(spans["lock_wait"].attributes or {})
    assert lock[c.COORDINATION_KIND] == "lock_wait"
    assert lock[c.COORDINATION_RESOURCE] == "account:42"
    db = dict(spans["SELECT"].attributes or {})
    assert db[c.DB_QUERY_TEXT] == "SELECT * FROM accounts WHERE id = ?"
    assert db[c.DB_ROLE] == "replica" and spans["SELECT"].kind is SpanKind.CLIENT
    assert dict(spans["cache risk-scores"].attributes or {})[c.CACHE_HIT] is False
    (event,) = spans["ledger/Post"].events
    assert event.name == c.EVENT_FAILOVER
    assert dict(event.attributes or {}) == {"from": "ledger-1", "to": "ledger-2",
                                             "reason": "timeout"}  # fmt: skip


def test_unknown_kinds_and_roles_are_refused(tracer) -> None:  # type: ignore[no-untyped-def]
    with (
        pytest.raises(ValueError, match="kind must be one of"),
        coordination("mutex", "x", tracer=tracer),
    ):
        pass
    with (
        pytest.raises(ValueError, match="role must be one of"),
        db_call("postgresql", "SELECT", "SELECT 1", role="leader", tracer=tracer),
    ):
        pass
