"""``hopscope simulate`` into the real broker, read back by a raw OTLP consumer.

For every scenario: every message decodes with the opentelemetry-proto classes, the traces have
the structure and attributes docs/DESIGN.md §3 prescribes, every log record written inside a request
carries its trace and span ids, the seeded card numbers never appear in any byte, the counts
match the ground truth, and the same seed, run id and start give the same span content.
"""

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hopscope.cli import app
from hopscope.core.kafka_security import KafkaConnectError
from hopscope.ingest import conventions as c
from hopscope.ingest.simulator import (
    Scenario,
    SimulationConfig,
    parse_iso8601_ns,
    simulate_to_kafka,
)
from tests.conftest import Services
from tests.integration.test_sdk_kafka import attrs, logs_of, read_all, spans_of

pytestmark = pytest.mark.integration

runner = CliRunner()
START = "2026-03-02T09:00:00Z"
SERVER, CLIENT = 2, 3  # OTLP SpanKind numbers


RUN_ID = "kafka-test"


def run_cli(
    services: Services,
    scenario: str,
    spans: str,
    logs: str,
    truth: Path,
    traces: int = 40,
    run_id: str | None = RUN_ID,
) -> Any:
    """``hopscope simulate`` with seed 11 and the run id (``None``: the default, a fresh one)."""
    pinned = [] if run_id is None else ["--run-id", run_id]
    result = runner.invoke(app, [
        "simulate", "--scenario", scenario, "--traces", str(traces), "--seed", "11", *pinned,
        "--start", START, "--ground-truth", str(truth), "--bootstrap", services.kafka_bootstrap,
        "--spans-topic", spans, "--logs-topic", logs,
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    return result


def span_content(messages: list[Any]) -> list[tuple[Any, ...]]:
    """Every span as comparable content: ids, parent, name, kind, times, attributes."""
    content = []
    for message in messages:
        for resource, span in spans_of(message):
            content.append((
                attrs(resource.attributes)[c.SERVICE_INSTANCE_ID], span.trace_id.hex(),
                span.span_id.hex(), span.parent_span_id.hex(), span.name, span.kind,
                span.start_time_unix_nano, span.end_time_unix_nano,
                json.dumps(attrs(span.attributes), sort_keys=True), span.status.code,
            ))  # fmt: skip
    return sorted(content)


@pytest.mark.parametrize("scenario", [s.value for s in Scenario])
def test_every_scenario_reaches_kafka_as_valid_otlp(
    services: Services, unique_name: Callable[[str], str], tmp_path: Path, scenario: str
) -> None:
    spans_topic, logs_topic = unique_name("spans"), unique_name("logs")
    truth_file = tmp_path / "truth.json"
    result = run_cli(services, scenario, spans_topic, logs_topic, truth_file)
    truth = json.loads(truth_file.read_text())
    counts = truth["counts"]
    assert result.stdout.strip() == (
        f"simulated {counts['traces']} traces, {counts['spans']} spans, "
        f"{counts['log_records']} log records (scenario {scenario}, seed 11, run id {RUN_ID})"
    )
    assert truth["run_id"] == RUN_ID

    messages = read_all(services.kafka_bootstrap, [spans_topic, logs_topic], 2)
    pans = [p.encode() for p in truth["seeded_pans"] + truth["seeded_pan_texts"]]
    assert pans
    for message in messages:
        for pan in pans:
            assert pan not in message.value, f"a seeded card number reached {message.topic}"

    span_messages = [m for m in messages if m.topic == spans_topic]
    by_id: dict[str, Any] = {}
    service_of: dict[str, str] = {}
    for message in span_messages:
        for resource, span in spans_of(message):
            assert span.trace_id.hex() == message.key.decode()  # keyed by trace id
            assert attrs(resource.attributes)[c.RUN_ID] == RUN_ID
            by_id[span.span_id.hex()] = span
            service_of[span.span_id.hex()] = attrs(resource.attributes)[c.SERVICE_NAME]
    assert len(by_id) == counts["spans"]
    roots = [s for s in by_id.values() if not s.parent_span_id]
    assert len(roots) == counts["traces"]
    assert {service_of[r.span_id.hex()] for r in roots} == {"gateway"}
    assert all(r.kind == SERVER for r in roots)
    for span_id, span in by_id.items():
        if span.parent_span_id:
            parent = by_id[span.parent_span_id.hex()]  # no orphan
            assert parent.trace_id == span.trace_id
        if span.kind == SERVER and span.parent_span_id:
            client = by_id[span.parent_span_id.hex()]
            assert client.kind == CLIENT and service_of[client.span_id.hex()] != service_of[span_id]
        a = attrs(span.attributes)
        if span.kind == CLIENT and c.DB_SYSTEM not in a:
            assert {c.PEER_SERVICE, c.SERVER_ADDRESS, c.RPC_SYSTEM, c.RPC_METHOD} <= set(a)
        if c.DB_SYSTEM in a:
            assert a[c.DB_ROLE] in c.DB_ROLES and "?" in a[c.DB_QUERY_TEXT]
        if c.COORDINATION_KIND in a:
            assert a[c.COORDINATION_KIND] in c.COORDINATION_KINDS
            assert a[c.COORDINATION_RESOURCE]

    records = [r for m in messages if m.topic == logs_topic for r in logs_of(m)]
    assert len(records) == counts["log_records"]
    cluster = Counter()
    for record in records:
        name = record.event_name or attrs(record.attributes).get(c.EVENT_NAME)
        if name in c.CLUSTER_EVENTS:
            cluster[name] += 1  # cluster events may stand outside any trace
        else:
            assert len(record.trace_id) == 16 and len(record.span_id) == 8
            assert record.span_id.hex() in by_id
    if scenario == Scenario.NODE_FAILURE.value:
        assert cluster[c.LOG_FAILOVER] > 0 and cluster[c.LOG_NODE_DOWN] > 0


def test_same_seed_run_id_and_start_give_the_same_spans(
    services: Services, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    runs = []
    for n in range(2):
        spans_topic, logs_topic = unique_name(f"spans{n}"), unique_name(f"logs{n}")
        run_cli(services, "slow-hop", spans_topic, logs_topic, tmp_path / f"t{n}.json")
        runs.append(span_content(read_all(services.kafka_bootstrap, [spans_topic], 2)))
    assert runs[0] == runs[1] and len(runs[0]) > 100


def test_more_traces_than_the_queue_holds_lose_nothing(
    services: Services, unique_name: Callable[[str], str]
) -> None:
    config = SimulationConfig(start_ns=parse_iso8601_ns(START), seed=5, traces=1500)
    run = simulate_to_kafka(
        config,
        bootstrap=services.kafka_bootstrap,
        spans_topic=unique_name("spans"),
        logs_topic=unique_name("logs"),
    )
    assert run.stats["spans"]["exported"] == run.result.spans > 20_000  # > the queue size
    assert run.stats["spans"]["dropped_queue_full"] == 0


def test_an_unreachable_broker_is_an_error_not_a_silent_loss() -> None:
    config = SimulationConfig(start_ns=parse_iso8601_ns(START), traces=300)
    # Found before anything is simulated: nothing emitted into a broker that is not there.
    with pytest.raises(KafkaConnectError, match=r"127\.0\.0\.1:9 .*ECONNREFUSED"):
        simulate_to_kafka(config, bootstrap="127.0.0.1:9", flush_timeout_s=2)


def test_the_foreign_pans_option_writes_other_sdks_telemetry_unmasked(
    services: Services, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    """``--foreign-pans``: other SDKs' spans and logs reach the topics raw, card numbers and
    all (what the processors must mask: tests/integration/test_pan_audit.py)."""
    spans_topic, logs_topic = unique_name("spans"), unique_name("logs")
    truth_file = tmp_path / "truth.json"
    result = runner.invoke(app, [
        "simulate", "--traces", "3", "--start", START, "--foreign-pans",
        "--bootstrap", services.kafka_bootstrap, "--spans-topic", spans_topic,
        "--logs-topic", logs_topic, "--ground-truth", str(truth_file),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    truth = json.loads(truth_file.read_text())
    foreign = truth["foreign"]
    assert result.stdout.splitlines()[-1] == (
        f"other SDKs: {foreign['spans']} spans, {foreign['log_records']} log records, "
        f"{len(foreign['seeded_pans'])} card numbers"
    )
    expected = truth["counts"]["spans"] + foreign["spans"]
    messages = read_all(services.kafka_bootstrap, [spans_topic, logs_topic], 2)
    spans = [s for m in messages if m.topic == spans_topic for s in spans_of(m)]
    services_seen = Counter(attrs(resource.attributes)[c.SERVICE_NAME] for resource, _ in spans)
    assert services_seen["issuer-gateway"] > 0 and services_seen["token-vault"] > 0
    assert len(spans) == expected
    raw = b"".join(m.value for m in messages)
    assert any(p.encode() in raw for p in foreign["seeded_pan_texts"]), "nothing seeded raw"
