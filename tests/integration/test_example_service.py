"""The README's example service (examples/payment_service.py), run as the README says.

Started as a subprocess against the real broker, sent one payment over HTTP, stopped with
SIGTERM; then its spans and logs are read back from Kafka, decoded and derived as the
processors do, and the hops, the lock wait, the database calls and the logs are checked.
"""

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from hopscope.processors.decode import decode_logs, decode_spans
from hopscope.processors.derive import derive_all
from tests.conftest import Services
from tests.integration.test_sdk_kafka import read_all

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "payment_service.py"
PAN = "4111 1111 1111 1111"


def test_example_payment_service_sends_the_trace_the_readme_describes(
    services: Services, unique_name: Callable[[str], str]
) -> None:
    spans_topic, logs_topic = unique_name("spans"), unique_name("logs")
    env = {
        **os.environ,
        "HOPSCOPE_KAFKA_BOOTSTRAP": services.kafka_bootstrap,
        "HOPSCOPE_SPANS_TOPIC": spans_topic,
        "HOPSCOPE_LOGS_TOPIC": logs_topic,
    }
    service = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--port", "0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert service.stdout is not None
    try:
        line = service.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:"), line
        url = line.removeprefix("listening on ").strip()
        body = json.dumps({"account": "acc-1", "amount_cents": 1250, "card": PAN}).encode()
        request = urllib.request.Request(f"{url}/payments", data=body)
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)
        assert answer["status"] == "approved" and answer["risk_score"] == 12
    finally:
        service.send_signal(signal.SIGTERM)
        _, stderr = service.communicate(timeout=90)
    assert service.returncode == 0, stderr

    messages = read_all(services.kafka_bootstrap, [spans_topic, logs_topic], 3)
    for message in messages:  # the card number never left the process
        assert PAN.encode() not in message.value
    spans = [s for m in messages if m.topic == spans_topic for s in decode_spans(m.value)]
    logs = [r for m in messages if m.topic == logs_topic for r in decode_logs(m.value)]

    # One trace across the two services; the risk service's process continued it.
    assert len({s.trace_id for s in spans}) == 1
    assert sorted((s.name, s.kind, s.service) for s in spans) == [
        ("SELECT payments", "client", "payment-service"),
        ("UPDATE payments", "client", "payment-service"),
        ("lock_wait", "internal", "payment-service"),
        ("payment-service/Pay", "server", "payment-service"),
        ("risk/Score", "client", "payment-service"),
        ("risk/Score", "server", "risk"),
    ]
    by_name = {s.name: s for s in spans}
    lock = by_name["lock_wait"]
    assert lock.attributes["hopscope.coordination.kind"] == "lock_wait"
    assert lock.attributes["hopscope.coordination.resource"] == "account:acc-1"
    assert by_name["UPDATE payments"].attributes["db.query.text"] == (
        "UPDATE accounts SET balance_cents = balance_cents - ? WHERE id = ?"
    )

    derived = derive_all(spans, logs)
    (risk_hop,) = [h for h in derived.hops if h.target_service == "risk"]
    assert risk_hop.source_service == "payment-service"
    assert risk_hop.server_span_id is not None and risk_hop.network_ns is not None
    assert any(h.target_node == "payments-db" for h in derived.hops)
    assert [c.resource for c in derived.coordination] == ["account:acc-1"]

    # The logging bridge: each record carries the trace and span it was written in, masked.
    assert {r.service for r in logs} == {"payment-service", "risk"}
    assert all(r.trace_id == spans[0].trace_id and r.span_id for r in logs)
    assert any("4111 11** **** 1111" in r.body for r in logs)
