"""The SDK against the real broker: what a payment service sends is what the Collector would."""

import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.trace import SpanKind

from hopscope.ingest import (
    ExportSettings,
    KafkaPipeline,
    configure,
    db_call,
    node_providers,
    rpc_call,
    rpc_server,
)
from tests.conftest import Services
from tests.fork_support import in_forked_child

pytestmark = pytest.mark.integration

PAN = "4111 1111 1111 1111"
PAN_PLAIN = "4111111111111111"


def read_all(bootstrap: str, topics: list[str], expected: int) -> list[Any]:
    """Every message of ``topics`` (at least ``expected`` of them), read by a raw consumer."""
    consumer = KafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=3000)  # fmt: skip
    messages: list[Any] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            batch = list(consumer)
            messages.extend(batch)
            if len(messages) >= expected and not batch:
                break
    finally:
        consumer.close()
    return messages


def spans_of(message: Any) -> list[Any]:
    request = ExportTraceServiceRequest.FromString(message.value)
    return [
        (rs.resource, span)
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    ]


def logs_of(message: Any) -> list[Any]:
    request = ExportLogsServiceRequest.FromString(message.value)
    return [rec for rl in request.resource_logs for sl in rl.scope_logs for rec in sl.log_records]


def attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in kvs}


@pytest.fixture
def topics(unique_name: Callable[[str], str]) -> tuple[str, str]:
    return unique_name("spans"), unique_name("logs")


def test_configure_sends_otlp_spans_and_logs(
    services: Services, topics: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    spans_topic, logs_topic = topics
    telemetry = configure(
        "payment-gateway", "gw-1", kafka_bootstrap=services.kafka_bootstrap,
        environment="test", region="eu-west-1", spans_topic=spans_topic,
        logs_topic=logs_topic, set_global=False,
    )  # fmt: skip
    tracer = telemetry.tracer()
    log = logging.getLogger("payments.gateway")
    try:
        for n in range(20):
            headers: dict[str, str] = {}
            with rpc_server(
                "payment-gateway",
                "Authorize",
                tracer=tracer,
                attributes={"payment.card_number": PAN, "payment.id": f"p{n}"},
            ):
                log.info("authorizing card %s", PAN_PLAIN, extra={"payment.id": f"p{n}"})
                with rpc_call("risk", "risk-1", "Score", headers=headers, tracer=tracer):
                    pass
                with db_call(
                    "postgresql",
                    "SELECT",
                    f"SELECT * FROM cards WHERE pan = '{PAN_PLAIN}'",
                    tracer=tracer,
                ):
                    pass  # fmt: skip
    finally:
        telemetry.shutdown(30)
    stats = telemetry.stats()
    assert stats["spans"]["exported"] == 60 and stats["logs"]["exported"] == 20
    assert stats["spans"]["dropped_queue_full"] == 0

    messages = read_all(services.kafka_bootstrap, [spans_topic, logs_topic], 40)
    span_messages = [m for m in messages if m.topic == spans_topic]
    log_messages = [m for m in messages if m.topic == logs_topic]
    for message in messages:  # the card number never left the process, in any form
        assert PAN.encode() not in message.value and PAN_PLAIN.encode() not in message.value

    # One message per trace, keyed by the trace id in lowercase hex.
    assert len(span_messages) == 20
    traces = set()
    for message in span_messages:
        decoded = spans_of(message)
        assert len(decoded) == 3
        trace_ids = {span.trace_id.hex() for _, span in decoded}
        assert trace_ids == {message.key.decode()}
        traces |= trace_ids
        resource = attrs(decoded[0][0].attributes)
        assert resource["service.name"] == "payment-gateway"
        assert resource["service.instance.id"] == "gw-1"
        assert resource["deployment.environment.name"] == "test"
        kinds = {span.kind for _, span in decoded}
        assert kinds == {SpanKind.SERVER.value + 1, SpanKind.CLIENT.value + 1}
        server = next(s for _, s in decoded if s.kind == SpanKind.SERVER.value + 1)
        assert attrs(server.attributes)["payment.card_number"] == "4111 11** **** 1111"
    assert len(traces) == 20

    records = [r for m in log_messages for r in logs_of(m)]
    assert len(records) == 20
    for record in records:
        assert record.trace_id.hex() in traces and len(record.span_id) == 8
        assert record.body.string_value == "authorizing card 411111******1111"
        assert attrs(record.attributes)["payment.id"].startswith("p")


def test_a_trace_too_big_for_one_message_is_split(
    services: Services, topics: tuple[str, str]
) -> None:
    spans_topic, logs_topic = topics
    pipeline = KafkaPipeline(ExportSettings(
        kafka_bootstrap=services.kafka_bootstrap, spans_topic=spans_topic,
        logs_topic=logs_topic, max_message_bytes=20_000,
    ))  # fmt: skip
    provider, _ = node_providers("ledger", "ledger-1", span_processors=[pipeline.span_processor])
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("batch settlement"):
        for i in range(300):
            with tracer.start_as_current_span(f"post entry {i}", attributes={"blob": "x" * 400}):
                pass
    pipeline.shutdown(30)
    messages = read_all(services.kafka_bootstrap, [spans_topic], 2)
    assert len(messages) > 1
    assert all(len(m.value) <= 20_000 for m in messages)
    assert len({m.key for m in messages}) == 1  # still one partition key: one trace
    assert sum(len(spans_of(m)) for m in messages) == 301


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_kafka_down_costs_the_request_thread_nothing(caplog: pytest.LogCaptureFixture) -> None:
    """Kafka unreachable: spans are queued, the oldest dropped and counted, shutdown on time.

    The exporter is stuck bootstrapping for its whole send timeout (60 s); the request thread
    records 30,000 spans meanwhile, which it could not do if it ever waited for the exporter.
    The warning says what is going on: an export waiting on that broker.
    """
    bootstrap = f"127.0.0.1:{_closed_port()}"
    pipeline = KafkaPipeline(ExportSettings(
        kafka_bootstrap=bootstrap, max_queue_size=1000, max_export_batch=100, send_timeout_s=60,
    ))  # fmt: skip
    provider, _ = node_providers("gw", "gw-1", span_processors=[pipeline.span_processor])
    tracer = provider.get_tracer("test")
    with caplog.at_level(logging.WARNING, logger="hopscope.ingest.bounded"):
        for _ in range(30_000):
            with tracer.start_as_current_span("Authorize"):
                pass
        stats = pipeline.stats()["spans"]
        assert stats["offered"] == 30_000
        # Only the queue (1000) and the batch the worker holds (≤100) are kept.
        assert 30_000 - 1100 <= stats["dropped_queue_full"] <= 30_000 - 1000
        warnings = [r.getMessage() for r in caplog.records if "queue full" in r.getMessage()]
        assert len(warnings) == 1
        assert f"an export has been waiting on Kafka at {bootstrap}" in warnings[0]
    started = time.monotonic()
    pipeline.shutdown(timeout_s=2)
    assert time.monotonic() - started < 2.5
    stats = pipeline.stats()["spans"]
    assert stats["exported"] == 0 and stats["queued"] == 0
    # Everything is accounted for; the batch stuck bootstrapping is counted when it returns.
    assert (
        stats["offered"]
        == stats["dropped_queue_full"] + stats["dropped_export_failed"] + (stats["in_flight"])
    )


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_keeps_exporting(services: Services, topics: tuple[str, str]) -> None:
    """``configure()``, then ``os.fork()``, as a pre-fork server does: the child's spans and
    logs reach the broker.

    The parent exports before forking, so the child inherits a connected producer (a master
    that logged while booting) and must not use it: its sender thread stayed in the parent.
    """
    spans_topic, logs_topic = topics
    telemetry = configure("payment-gateway", "gw-master", kafka_bootstrap=services.kafka_bootstrap,
                          spans_topic=spans_topic, logs_topic=logs_topic, set_global=False,
                          bridge_logging=False)  # fmt: skip
    tracer = telemetry.tracer()
    log = telemetry.logger_provider.get_logger("payments.gateway")
    with rpc_server("payment-gateway", "Boot", tracer=tracer):
        pass
    assert telemetry.force_flush(30)

    def child() -> str:
        pid = os.getpid()
        for n in range(20):
            attributes = {"worker.pid": pid, "payment.id": f"p{n}"}
            with rpc_server("payment-gateway", "Authorize", tracer=tracer, attributes=attributes):
                log.emit(body=f"authorized p{n}", attributes={"worker.pid": pid})
        flushed = telemetry.force_flush(30)
        telemetry.shutdown(30)
        stats = telemetry.stats()
        return f"{pid} {flushed} {stats['spans']['exported']} {stats['logs']['exported']}"

    pid, report = in_forked_child(child)
    assert report == f"{pid} True 20 20"  # the child's own counts: it exported everything
    # The parent keeps exporting too.
    with rpc_server("payment-gateway", "Settle", tracer=tracer):
        pass
    telemetry.shutdown(30)
    assert telemetry.stats()["spans"]["exported"] == 2

    messages = read_all(services.kafka_bootstrap, [spans_topic, logs_topic], 22 + 1)
    spans = [span for m in messages if m.topic == spans_topic for _, span in spans_of(m)]
    from_child = [s for s in spans if attrs(s.attributes).get("worker.pid") == pid]
    assert sorted(attrs(s.attributes)["payment.id"] for s in from_child) == sorted(
        f"p{n}" for n in range(20)
    )
    assert sorted(s.name for s in spans if s not in from_child) == [
        "payment-gateway/Boot", "payment-gateway/Settle"
    ]  # fmt: skip
    records = [r for m in messages if m.topic == logs_topic for r in logs_of(m)]
    assert sorted(r.body.string_value for r in records) == sorted(
        f"authorized p{n}" for n in range(20)
    )
    assert {attrs(r.attributes)["worker.pid"] for r in records} == {pid}


@pytest.fixture
def risk_process(services: Services, topics: tuple[str, str]) -> Iterator[int]:
    env = {**os.environ, "HOPSCOPE_KAFKA_BOOTSTRAP": services.kafka_bootstrap,
           "HOPSCOPE_SPANS_TOPIC": topics[0], "HOPSCOPE_LOGS_TOPIC": topics[1]}  # fmt: skip
    script = Path(__file__).parent / "services" / "risk_service.py"
    proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env=env, text=True)  # fmt: skip
    assert proc.stdout is not None and proc.stdin is not None
    port = int(proc.stdout.readline())
    yield port
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0
    proc.stdout.close()


def test_two_processes_continue_one_trace(
    services: Services, topics: tuple[str, str], risk_process: int
) -> None:
    spans_topic, logs_topic = topics
    telemetry = configure("payment-gateway", "gw-1", kafka_bootstrap=services.kafka_bootstrap,
                          spans_topic=spans_topic, logs_topic=logs_topic, set_global=False,
                          bridge_logging=False)  # fmt: skip
    tracer = telemetry.tracer()
    with rpc_server("payment-gateway", "Authorize", tracer=tracer) as root:
        headers = {"x-payment-id": "p-77"}
        with rpc_call("risk", "risk-1", "Score", rpc_system="http", port=risk_process,
                      headers=headers, tracer=tracer) as call:  # fmt: skip
            request = urllib.request.Request(
                f"http://127.0.0.1:{risk_process}/score", data=b"{}", headers=headers
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 200
    telemetry.shutdown(30)
    trace_id = format(root.get_span_context().trace_id, "032x")
    client_id = format(call.get_span_context().span_id, "016x")

    risk_service_done = read_all(services.kafka_bootstrap, [spans_topic], 2)
    by_service: dict[str, list[Any]] = {}
    for message in risk_service_done:
        for resource, span in spans_of(message):
            assert span.trace_id.hex() == trace_id
            by_service.setdefault(attrs(resource.attributes)["service.name"], []).append(span)
    assert sorted(by_service) == ["payment-gateway", "risk"]
    (server,) = by_service["risk"]
    assert server.parent_span_id.hex() == client_id  # W3C traceparent crossed the process
    assert server.kind == SpanKind.SERVER.value + 1
