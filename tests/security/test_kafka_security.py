"""hopscope against a real Kafka broker that speaks only SASL_SSL (SCRAM-SHA-512) with ACLs.

The SDK, the simulator and the processor take their Kafka security from the ``HOPSCOPE_KAFKA_*``
variables (or the options built from them) and their messages arrive; wrong credentials, no TLS
and an untrusted CA fail within a bounded time with an error that says why; the password shows
in no log line (Kafka client debug logging on), no metric, no repr and no error message; and the
least-privilege ACLs of docs/SECURITY.md are enough for the SDK and the processor.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import ACLOperation, ResourceType
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from hopscope.core.kafka_security import KafkaConnectError
from hopscope.core.settings import ENV_ES_URL, ENV_KAFKA_BOOTSTRAP
from hopscope.ingest import ExportSettings, configure
from hopscope.ingest.kafka_exporter import KafkaWriter
from hopscope.ingest.simulator import SimulationConfig, parse_iso8601_ns, simulate_to_kafka
from hopscope.processors.runtime import Processor, ProcessorCounts
from hopscope.stack.certs import make_server_certs
from hopscope.stack.ports import free_port
from tests.conftest import Services
from tests.integration.processor_support import Topics, count, headers, processor_settings, refresh
from tests.security.conftest import SecuredKafka, allow, grant

pytestmark = pytest.mark.integration

START = "2026-03-02T09:00:00Z"
# Short enough to keep the failure tests quick, long enough for a TLS + SCRAM handshake.
BOOTSTRAP_TIMEOUT_MS = 4000


# -- helpers ---------------------------------------------------------------------------------


def setenv(monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]) -> None:
    for key, value in variables.items():
        monkeypatch.setenv(key, value)


def make_topics(secured: SecuredKafka, unique_name: Callable[[str], str]) -> Topics:
    """This test's input and dead-letter topics, created by the admin user."""
    topics = Topics(unique_name("spans"), unique_name("logs"), unique_name("dlq"))
    admin = secured.admin_client()
    try:
        names = (*topics.inputs, topics.dlq)
        one_partition = {"num_partitions": 1, "replication_factor": 1}
        admin.create_topics({name: one_partition for name in names}, wait_for_metadata=True)
    finally:
        admin.close()
    return topics


def read_topic(secured: SecuredKafka, topic: str, at_least: int = 0) -> list[Any]:
    """Every message of ``topic``, read by the admin user over SASL_SSL."""
    consumer = KafkaConsumer(
        topic, bootstrap_servers=secured.bootstrap, auto_offset_reset="earliest",
        enable_auto_commit=False, consumer_timeout_ms=1000, **secured.options("admin"),
    )  # fmt: skip
    messages: list[Any] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            batch = list(consumer)
            messages += batch
            if len(messages) >= at_least and not batch:
                break
    finally:
        consumer.close()
    return messages


def span_count(messages: Iterable[Any]) -> int:
    total = 0
    for message in messages:
        request = ExportTraceServiceRequest.FromString(message.value)
        total += sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    return total


def simulate(secured: SecuredKafka, topics: Topics, traces: int = 12) -> Any:
    """Simulated payment traffic into the topics, security from the environment (set by the
    caller); returns the simulation result."""
    config = SimulationConfig(start_ns=parse_iso8601_ns(START), traces=traces, seed=5)
    run = simulate_to_kafka(config, bootstrap=secured.bootstrap, spans_topic=topics.spans,
                            logs_topic=topics.logs, flush_timeout_s=30)  # fmt: skip
    return run.result


def send_undecodable(secured: SecuredKafka, topic: str, user: str = "alice") -> None:
    producer = KafkaProducer(bootstrap_servers=secured.bootstrap, **secured.options(user))
    try:
        producer.send(topic, key=b"junk", value=b"\x00 not OTLP protobuf").get(timeout=30)
    finally:
        producer.close(timeout=10)


def assert_indexed_and_dead_lettered(
    secured: SecuredKafka, es: Elasticsearch, prefix: str, topics: Topics, result: Any
) -> None:
    """Every simulated span and log record is in Elasticsearch; the junk message is the one
    dead letter, on the secured broker, with its source headers."""
    refresh(es, prefix)
    assert count(es, prefix, "spans") == result.spans
    assert count(es, prefix, "logs") == result.log_records
    dead = read_topic(secured, topics.dlq, at_least=1)
    assert len(dead) == 1
    assert dead[0].value == b"\x00 not OTLP protobuf"
    assert headers(dead[0])["hopscope.source.topic"] == topics.spans


def drain_in_thread(settings: Any, timeout_s: float = 90.0) -> ProcessorCounts | BaseException:
    """Run a processor until caught up in a thread; fail the test if it does not return."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            with Processor(settings) as processor:
                outcome["value"] = processor.run(drain=True)
        except BaseException as error:
            outcome["value"] = error

    thread = threading.Thread(target=run, name="processor-under-test", daemon=True)
    thread.start()
    thread.join(timeout_s)
    assert not thread.is_alive(), f"the processor did not return within {timeout_s:.0f} s"
    value: ProcessorCounts | BaseException = outcome["value"]
    return value


# -- the SDK and the simulator ---------------------------------------------------------------


def test_sdk_configure_exports_over_sasl_ssl_with_settings_from_the_environment(
    secured_kafka: SecuredKafka, unique_name: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spans_topic = unique_name("spans")
    setenv(monkeypatch, {**secured_kafka.env(), ENV_KAFKA_BOOTSTRAP: secured_kafka.bootstrap})
    telemetry = configure("payment-gateway", "gw-1", spans_topic=spans_topic,
                          set_global=False, bridge_logging=False)  # fmt: skip
    try:
        tracer = telemetry.tracer()
        for _ in range(5):
            with tracer.start_as_current_span("Authorize"):
                pass
        assert telemetry.force_flush(30)
    finally:
        telemetry.shutdown()
    assert span_count(read_topic(secured_kafka, spans_topic, at_least=1)) == 5
    assert telemetry.stats()["span_messages"]["failed_batches"] == 0
    assert secured_kafka.password not in repr(telemetry.pipeline.settings)


def test_simulator_exports_over_sasl_ssl_with_settings_from_the_environment(
    secured_kafka: SecuredKafka, unique_name: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    setenv(monkeypatch, secured_kafka.env())
    topics = Topics(unique_name("spans"), unique_name("logs"), unique_name("dlq"))
    result = simulate(secured_kafka, topics)
    assert span_count(read_topic(secured_kafka, topics.spans, at_least=1)) == result.spans
    assert len(read_topic(secured_kafka, topics.logs, at_least=1)) >= 1


# -- the processor ---------------------------------------------------------------------------


def test_processor_consumes_indexes_and_dead_letters_over_sasl_ssl(
    secured_kafka: SecuredKafka,
    services: Services,
    es_client: Elasticsearch,
    index_prefix: str,
    unique_name: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topics = make_topics(secured_kafka, unique_name)
    setenv(monkeypatch, secured_kafka.env())
    result = simulate(secured_kafka, topics)
    send_undecodable(secured_kafka, topics.spans)
    settings = processor_settings(
        secured_kafka.bootstrap, services.es_url, topics, index_prefix, unique_name("group"),
        kafka_options=secured_kafka.options(),
    )  # fmt: skip
    assert secured_kafka.password not in repr(settings)
    counts = drain_in_thread(settings)
    assert isinstance(counts, ProcessorCounts), counts
    assert counts.dead_letters == 1
    assert counts.indexed["spans"] == result.spans
    assert_indexed_and_dead_lettered(secured_kafka, es_client, index_prefix, topics, result)


def _metric(text: str, name: str, label: str) -> float:
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and label in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_processor_process_never_reveals_the_password(
    secured_kafka: SecuredKafka,
    services: Services,
    es_client: Elasticsearch,
    index_prefix: str,
    unique_name: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """``hopscope --log-level debug process`` with its settings in the environment: it indexes
    and dead-letters over SASL_SSL, and the password is in none of its stdout, stderr (Kafka
    client debug lines included), Prometheus metrics, nor the broker's log."""
    topics = make_topics(secured_kafka, unique_name)
    setenv(monkeypatch, secured_kafka.env())
    result = simulate(secured_kafka, topics, traces=8)
    send_undecodable(secured_kafka, topics.spans)
    port = free_port()
    env = {**os.environ, **secured_kafka.env(), ENV_KAFKA_BOOTSTRAP: secured_kafka.bootstrap,
           ENV_ES_URL: services.es_url}  # fmt: skip
    command = [
        sys.executable, "-m", "hopscope.cli", "--log-level", "debug", "process",
        "--group", unique_name("group"), "--index-prefix", index_prefix,
        "--spans-topic", topics.spans, "--logs-topic", topics.logs, "--dlq-topic", topics.dlq,
        "--trace-idle", "0.5", "--metrics-port", str(port), "--workers", "1",
    ]  # fmt: skip
    stdout, stderr = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    metrics = ""
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=err)
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                        metrics = r.read().decode()
                except OSError:
                    metrics = ""  # not serving yet
                indexed = _metric(metrics, "hopscope_records_indexed_total", 'kind="spans"')
                dead = _metric(metrics, "hopscope_dead_letters_total", 'reason="decode"')
                if indexed >= result.spans and dead >= 1:
                    break
                time.sleep(0.5)
        finally:
            process.terminate()
            code = process.wait(timeout=60)
    output = stdout.read_text(errors="replace") + stderr.read_text(errors="replace")
    assert code == 0, output[-3000:]
    assert "processed" in output
    assert "DEBUG kafka." in output  # the Kafka client's own debug lines were on
    assert "hopscope_records_indexed_total" in metrics
    assert_indexed_and_dead_lettered(secured_kafka, es_client, index_prefix, topics, result)
    broker_log = secured_kafka.log.read_text(errors="replace")
    for password in secured_kafka.passwords.values():
        assert password not in output
        assert password not in metrics
        assert password not in broker_log


# -- failures: wrong password, no TLS, no SASL, untrusted CA ---------------------------------


def _failure_options(secured: SecuredKafka, case: str, tmp_path: Path) -> dict[str, Any]:
    if case == "wrong password":
        return secured.security(password="pw-wrong-3b9f1e27d5").client_options()
    if case == "no TLS, no SASL":
        return {}
    if case == "TLS without SASL":
        return {"security_protocol": "SSL", "ssl_cafile": str(secured.ca)}
    other_ca = make_server_certs(tmp_path / "other").ca
    return {**secured.options(), "ssl_cafile": str(other_ca)}


@pytest.mark.parametrize(
    ("case", "explanation"),
    [
        # The broker hangs up on a refused login; the client may or may not read why first.
        ("wrong password", "HOPSCOPE_KAFKA_SASL_PASSWORD"),
        ("no TLS, no SASL", "HOPSCOPE_KAFKA_SECURITY_PROTOCOL"),
        ("TLS without SASL", "expects SASL"),
        ("untrusted CA", "HOPSCOPE_KAFKA_SSL_CAFILE"),
    ],
)
def test_processor_fails_in_bounded_time_with_a_clear_error(
    secured_kafka: SecuredKafka,
    services: Services,
    index_prefix: str,
    unique_name: Callable[[str], str],
    tmp_path: Path,
    case: str,
    explanation: str,
) -> None:
    options = _failure_options(secured_kafka, case, tmp_path)
    topics = Topics(unique_name("spans"), unique_name("logs"), unique_name("dlq"))
    settings = processor_settings(
        secured_kafka.bootstrap, services.es_url, topics, index_prefix, unique_name("group"),
        kafka_options={**options, "bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS},
    )  # fmt: skip
    error = drain_in_thread(settings)
    assert isinstance(error, KafkaConnectError), error
    message = str(error)
    assert secured_kafka.bootstrap in message
    assert explanation in message
    assert "pw-wrong-3b9f1e27d5" not in message
    assert secured_kafka.password not in message


def test_sdk_with_a_wrong_password_warns_why_and_drops(
    secured_kafka: SecuredKafka, unique_name: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    wrong = secured_kafka.security(password="pw-wrong-sdk-81c0aa").client_options()
    writer = KafkaWriter(secured_kafka.bootstrap, send_timeout_s=BOOTSTRAP_TIMEOUT_MS / 1000,
                         producer_options=wrong)  # fmt: skip
    try:
        with caplog.at_level(logging.WARNING, logger="hopscope.ingest"):
            assert not writer.send(unique_name("spans"), [(None, b"x")])
    finally:
        writer.close()
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("hopscope.ingest")]
    assert any("HOPSCOPE_KAFKA_SASL_PASSWORD" in w for w in warnings), warnings
    assert not any("pw-wrong-sdk-81c0aa" in w for w in warnings)
    settings = ExportSettings(secured_kafka.bootstrap, producer_options=wrong)
    assert "pw-wrong-sdk-81c0aa" not in repr(settings)


# -- least privilege: the ACLs of docs/SECURITY.md are enough --------------------------------


def test_documented_least_privilege_acls_are_enough(
    secured_kafka: SecuredKafka,
    services: Services,
    es_client: Elasticsearch,
    index_prefix: str,
    unique_name: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The SDK user may only Write to the input topics; the processor user may only Read the
    input topics and its group and Write to the dead-letter topic (docs/SECURITY.md)."""
    topics = make_topics(secured_kafka, unique_name)
    group = unique_name("group")
    grant(secured_kafka, [
        *allow("sdk", ResourceType.TOPIC, topics.spans, ACLOperation.WRITE),
        *allow("sdk", ResourceType.TOPIC, topics.logs, ACLOperation.WRITE),
        *allow("processor", ResourceType.TOPIC, topics.spans, ACLOperation.READ),
        *allow("processor", ResourceType.TOPIC, topics.logs, ACLOperation.READ),
        *allow("processor", ResourceType.GROUP, group, ACLOperation.READ),
        *allow("processor", ResourceType.TOPIC, topics.dlq, ACLOperation.WRITE),
    ])  # fmt: skip
    setenv(monkeypatch, secured_kafka.env("sdk"))
    result = simulate(secured_kafka, topics)
    send_undecodable(secured_kafka, topics.spans, user="admin")
    settings = processor_settings(
        secured_kafka.bootstrap, services.es_url, topics, index_prefix, group,
        kafka_options=secured_kafka.options("processor"),
    )  # fmt: skip
    counts = drain_in_thread(settings)
    assert isinstance(counts, ProcessorCounts), counts
    assert counts.dead_letters == 1
    assert_indexed_and_dead_lettered(secured_kafka, es_client, index_prefix, topics, result)
