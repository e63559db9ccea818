"""The processor against the real broker and node: everything indexed once, nothing lost."""

import json
from collections.abc import Callable
from typing import Any

import pytest
from elasticsearch import helpers
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from hopscope.ingest.simulator import SimulationConfig, parse_iso8601_ns, simulate_to_kafka
from hopscope.processors.runtime import Processor
from hopscope.processors.settings import ProcessorSettings
from tests.conftest import Services

pytestmark = pytest.mark.integration


def run_processor(services: Services, topics: dict[str, str], prefix: str, group: str) -> Any:
    settings = ProcessorSettings(
        kafka_bootstrap=services.kafka_bootstrap, es_url=services.es_url, group=group,
        spans_topic=topics["spans"], logs_topic=topics["logs"], dlq_topic=topics["dlq"],
        index_prefix=prefix, trace_idle_s=0.5,
    )  # fmt: skip
    with Processor(settings) as processor:
        return processor.run(drain=True)


def counts(es: Any, prefix: str) -> dict[str, int]:
    es.indices.refresh(index=f"{prefix}-*")
    rows = es.cat.indices(index=f"{prefix}-*", format="json", h="index,docs.count")
    totals: dict[str, int] = {}
    for row in rows:
        kind = row["index"].removeprefix(f"{prefix}-").rsplit("-", 1)[0]
        totals[kind] = totals.get(kind, 0) + int(row["docs.count"])
    return totals


@pytest.fixture
def topics(unique_name: Callable[[str], str]) -> dict[str, str]:
    return {kind: unique_name(kind) for kind in ("spans", "logs", "dlq")}


def test_simulated_traffic_is_indexed_exactly_once(
    services: Services, topics: dict[str, str], index_prefix: str, es_client: Any,
    unique_name: Callable[[str], str],
) -> None:  # fmt: skip
    config = SimulationConfig(
        start_ns=parse_iso8601_ns("2026-04-01T08:00:00Z"),
        scenario="node-failure",
        seed=4,
        traces=150,
    )  # type: ignore[arg-type]
    run = simulate_to_kafka(config, bootstrap=services.kafka_bootstrap,
                            spans_topic=topics["spans"], logs_topic=topics["logs"])  # fmt: skip
    truth = run.result.ground_truth
    expected = truth["counts"]

    group = unique_name("g1")
    first = run_processor(services, topics, index_prefix, group)
    assert first.dead_letters == 0 and first.incomplete_traces == 0
    stored = counts(es_client, index_prefix)
    assert stored["spans"] == expected["spans"]
    assert stored["logs"] == expected["log_records"]
    assert stored["traces"] == expected["traces"]
    assert stored["failovers"] == truth["effect"]["failovers"] > 0
    assert stored["hops"] > expected["traces"] and stored["coordination"] > 0

    # Offsets were committed to the end of both topics, and only after the writes.
    checker = KafkaConsumer(bootstrap_servers=services.kafka_bootstrap, group_id=group)
    try:
        partitions = [TopicPartition(t, p) for t in (topics["spans"], topics["logs"])
                      for p in checker.partitions_for_topic(t) or ()]  # fmt: skip
        ends = checker.end_offsets(partitions)
        assert {tp: checker.committed(tp) for tp in partitions} == ends
    finally:
        checker.close()

    # Replaying everything with a new group overwrites: not one document more.
    second = run_processor(services, topics, index_prefix, unique_name("g2"))
    assert second.indexed["spans"] == expected["spans"]
    assert counts(es_client, index_prefix) == stored

    # The failed-over node and the failover targets match the ground truth.
    failovers = [
        h["_source"]
        for h in helpers.scan(
            es_client, index=f"{index_prefix}-failovers-*", query={"query": {"match_all": {}}}
        )
    ]
    injected = truth["injected"][0]
    assert {f["hopscope.failover.from_node"] for f in failovers} == {injected["node"]}
    assert {f["hopscope.failover.to_node"] for f in failovers} <= set(injected["failover_to"])

    # No seeded card number reached any index, in any field.
    pans = truth["seeded_pans"] + truth["seeded_pan_texts"]
    for hit in helpers.scan(es_client, index=f"{index_prefix}-*",
                            query={"query": {"match_all": {}}}):  # fmt: skip
        text = json.dumps(hit["_source"])
        assert not any(pan in text for pan in pans), hit["_index"]


def test_undecodable_messages_go_to_the_dead_letter_topic(
    services: Services, topics: dict[str, str], index_prefix: str, es_client: Any,
    unique_name: Callable[[str], str],
) -> None:  # fmt: skip
    config = SimulationConfig(start_ns=parse_iso8601_ns("2026-04-01T08:00:00Z"), traces=5)
    run = simulate_to_kafka(config, bootstrap=services.kafka_bootstrap,
                            spans_topic=topics["spans"], logs_topic=topics["logs"])  # fmt: skip
    producer = KafkaProducer(bootstrap_servers=services.kafka_bootstrap)
    bad = [b"\x0a\xff\xffnot protobuf", b'{"resourceSpans": 7}', b""]
    sent = [producer.send(topics["spans"], value=v, key=b"k").get(timeout=30) for v in bad]
    producer.close()

    result = run_processor(services, topics, index_prefix, unique_name("g"))
    assert result.dead_letters == 3
    assert counts(es_client, index_prefix)["spans"] == run.result.spans  # the rest went on

    consumer = KafkaConsumer(topics["dlq"], bootstrap_servers=services.kafka_bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=5000)  # fmt: skip
    letters = list(consumer)
    consumer.close()
    assert sorted(m.value for m in letters) == sorted(bad)
    for letter in letters:
        headers = {k: v.decode() for k, v in letter.headers}
        assert headers["hopscope.source.topic"] == topics["spans"]
        source = next(s for s, v in zip(sent, bad, strict=True) if v == letter.value)
        assert headers["hopscope.source.offset"] == str(source.offset)
        assert headers["hopscope.source.partition"] == str(source.partition)
        assert headers["hopscope.error"].startswith(("invalid OTLP", "empty traces"))


def test_metrics_endpoint_reports_throughput_lag_and_hop_latency(
    services: Services, topics: dict[str, str], index_prefix: str,
    unique_name: Callable[[str], str],
) -> None:  # fmt: skip
    import threading
    import time
    import urllib.request

    from hopscope.stack.ports import free_port

    config = SimulationConfig(start_ns=parse_iso8601_ns("2026-04-01T08:00:00Z"), traces=40)
    run = simulate_to_kafka(config, bootstrap=services.kafka_bootstrap,
                            spans_topic=topics["spans"], logs_topic=topics["logs"])  # fmt: skip
    port = free_port()
    settings = ProcessorSettings(
        kafka_bootstrap=services.kafka_bootstrap, es_url=services.es_url,
        group=unique_name("g"), spans_topic=topics["spans"], logs_topic=topics["logs"],
        dlq_topic=topics["dlq"], index_prefix=index_prefix, trace_idle_s=0.3, metrics_port=port,
    )  # fmt: skip
    with Processor(settings) as processor:
        worker = threading.Thread(target=processor.run)
        worker.start()
        try:
            deadline = time.monotonic() + 60
            text = ""
            while time.monotonic() < deadline:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    text = r.read().decode()
                if f'hopscope_records_indexed_total{{kind="traces"}} {float(40)}' in text:
                    break
                time.sleep(0.5)
        finally:
            processor.stop()
            worker.join(30)
    assert f'hopscope_records_indexed_total{{kind="spans"}} {float(run.result.spans)}' in text
    assert f'hopscope_records_indexed_total{{kind="traces"}} {float(40)}' in text
    assert 'hopscope_hop_client_seconds_bucket{le="0.5",source="gateway",target="payment"}' in text
    assert "hopscope_consumer_lag{" in text and "hopscope_bulk_seconds_count" in text
    assert "hopscope_open_traces" in text


def test_parquet_archive_holds_the_same_records(
    services: Services, topics: dict[str, str], index_prefix: str, es_client: Any,
    unique_name: Callable[[str], str], tmp_path: Any,
) -> None:  # fmt: skip
    import polars as pl

    config = SimulationConfig(start_ns=parse_iso8601_ns("2026-04-01T08:59:59.5Z"), traces=80)
    run = simulate_to_kafka(config, bootstrap=services.kafka_bootstrap,
                            spans_topic=topics["spans"], logs_topic=topics["logs"])  # fmt: skip
    settings = ProcessorSettings(
        kafka_bootstrap=services.kafka_bootstrap, es_url=services.es_url,
        group=unique_name("g"), spans_topic=topics["spans"], logs_topic=topics["logs"],
        dlq_topic=topics["dlq"], index_prefix=index_prefix, trace_idle_s=0.5,
        archive_dir=tmp_path / "archive",
    )  # fmt: skip
    with Processor(settings) as processor:
        processor.run(drain=True)
    stored = counts(es_client, index_prefix)

    def archived(kind: str) -> pl.DataFrame:
        # Part files differ in columns (one per attribute key present): read each, then union.
        parts = sorted((tmp_path / "archive" / kind).glob("date=*/hour=*/*.parquet"))
        return pl.concat([pl.read_parquet(p) for p in parts], how="diagonal_relaxed")

    for kind, expected in stored.items():
        assert archived(kind)["_id"].n_unique() == expected, kind
    spans = archived("spans")
    assert spans.height == run.result.spans
    assert {"trace.id", "span.id", "event.duration", "attributes.payment.id"} <= set(spans.columns)
    assert "attributes" not in spans.columns
    assert spans.schema["@timestamp"] == pl.Datetime("ns", "UTC")  # parsed once, at write time
    critical = archived("traces").schema["hopscope.trace.critical_by_operation"]
    assert isinstance(critical, pl.List) and isinstance(critical.inner, pl.Struct)
    # The run crosses an hour boundary: hourly partitions.
    hours = {p.name for p in (tmp_path / "archive" / "spans").glob("date=*/hour=*")}
    assert hours == {"hour=08", "hour=09"}


def test_gzip_and_lz4_batches_are_both_read(
    services: Services, topics: dict[str, str], index_prefix: str, es_client: Any,
    unique_name: Callable[[str], str],
) -> None:  # fmt: skip
    """hopscope's producers write lz4 (kafka_topics.COMPRESSION); older SDKs and other
    producers write gzip: the processor reads both from one topic."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from hopscope.core.kafka_topics import COMPRESSION
    from hopscope.ingest.otlp_wire import encode_trace_request

    assert COMPRESSION == "lz4"
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("codec-test")
    for codec in ("gzip", "lz4"):
        with (tracer.start_as_current_span(f"{codec} root"),
              tracer.start_as_current_span(f"{codec} child")):  # fmt: skip
            pass
        spans = memory.get_finished_spans()
        memory.clear()
        producer = KafkaProducer(bootstrap_servers=services.kafka_bootstrap,
                                 compression_type=codec)  # fmt: skip
        producer.send(topics["spans"], key=format(spans[0].context.trace_id, "032x").encode(),
                      value=encode_trace_request(spans))  # fmt: skip
        producer.flush()
        producer.close()
    provider.shutdown()

    done = run_processor(services, topics, index_prefix, unique_name("g"))
    assert done.dead_letters == 0
    es_client.indices.refresh(index=f"{index_prefix}-spans-*")
    names = {hit["_source"]["span.name"] for hit in es_client.search(
        index=f"{index_prefix}-spans-*", size=10)["hits"]["hits"]}  # fmt: skip
    assert names == {"gzip root", "gzip child", "lz4 root", "lz4 child"}
