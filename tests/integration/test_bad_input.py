"""Every kind of bad input through the real broker to a real processor and Elasticsearch.

One drain over a topic mixing simulated payment traffic with each bad-input case of
docs/BAD_INPUT.md: each case gets its outcome (indexed with its flag, or dead-lettered with its
reason and source), the good traffic around them is indexed whole, and the processor finishes.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from hopscope.ingest.simulator import SimulationConfig, parse_iso8601_ns, simulate_to_kafka
from hopscope.processors import sanitize as s
from hopscope.processors.runtime import Processor
from hopscope.processors.templates import FIELD_LIMIT
from tests.conftest import Services
from tests.integration.processor_support import (
    Topics,
    count,
    headers,
    hits,
    processor_settings,
    read_topic,
    refresh,
    span_doc_ids,
    term,
)
from tests.otlp_builders import INVALID_MARKER, flood_spans, otlp_logs, otlp_spans

pytestmark = pytest.mark.integration

START = parse_iso8601_ns("2026-04-01T08:00:00Z")
MS = 1_000_000
CHAIN = 100_000  # spans of the deep-chain trace


@pytest.fixture
def topics(unique_name: Callable[[str], str], services: Services) -> Topics:
    """The test's topics; the spans topic takes 8 MiB messages (the 1 MiB attribute)."""
    names = Topics(unique_name("spans"), unique_name("logs"), unique_name("dlq"))
    admin = KafkaAdminClient(bootstrap_servers=services.kafka_bootstrap)
    try:
        admin.create_topics(
            [
                NewTopic(names.spans, 1, 1, topic_configs={"max.message.bytes": str(8 << 20)}),
                NewTopic(names.logs, 1, 1),
                NewTopic(names.dlq, 1, 1),  # the broker's default: 1 MiB messages
            ]
        )
    finally:
        admin.close()
    return names


class Cases:
    """Sends the cases and remembers where each went (for the dead-letter headers)."""

    def __init__(self, bootstrap: str, topics: Topics) -> None:
        self.topics = topics
        self.sent: dict[str, Any] = {}
        self.rng = random.Random(97)
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap, acks="all", max_request_size=8 << 20
        )

    def ids(self, count: int, size: int = 8) -> list[bytes]:
        return [self.rng.randbytes(size) for _ in range(count)]

    def send(self, name: str, value: bytes, *, logs: bool = False) -> None:
        topic = self.topics.logs if logs else self.topics.spans
        key = f"case-{name}".encode()
        self.sent[name] = self._producer.send(topic, key=key, value=value).get(timeout=60)

    def close(self) -> None:
        self._producer.close()


def span(span_id: bytes, parent: bytes | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "span_id": span_id,
        "parent": parent,
        "start": START + MS,
        "end": START + 9 * MS,
        **extra,
    }


def test_every_bad_input_gets_its_outcome_and_the_good_traffic_flows(
    services: Services,
    topics: Topics,
    index_prefix: str,
    es_client: Any,
    unique_name: Callable[[str], str],
) -> None:
    bootstrap = services.kafka_bootstrap
    simulated = simulate_to_kafka(
        SimulationConfig(start_ns=START, seed=61, traces=30),
        bootstrap=bootstrap,
        spans_topic=topics.spans,
        logs_topic=topics.logs,
    ).result.ground_truth["counts"]
    cases = Cases(bootstrap, topics)
    t = {
        name: cases.rng.randbytes(16)
        for name in (
            "json",
            "rejected",
            "orphan",
            "cycle",
            "duplicate",
            "huge_value",
            "utf8",
            "times",
            "reversed",
            "keys",
            "chain",
            "explosion",
        )
    }
    root, a, b = cases.ids(3)
    valid = otlp_spans(t["orphan"], [span(a)])
    dead = {  # case -> the start of its dead-letter reason
        "random bytes": "invalid OTLP protobuf traces",
        "truncated protobuf": "invalid OTLP protobuf traces",
        "JSON that is not OTLP": "JSON without OTLP traces content",
        "deeply nested JSON": "invalid OTLP/JSON traces",
        "empty message": "empty traces message (0 bytes)",
        "empty batch": "empty traces message: no spans",
        "1.5 MiB of random bytes": "invalid OTLP protobuf traces",
        "random bytes on the logs topic": "invalid OTLP protobuf logs",
        "a span with a 2-byte trace id": "span rejected: trace_id must be 16 bytes, got 2",
    }
    try:
        # Field 0 of wire type 7 first: no protobuf parser reads random bytes past it.
        cases.send("random bytes", b"\x07" + cases.rng.randbytes(300))
        cases.send("truncated protobuf", valid[: len(valid) // 2])
        cases.send("JSON that is not OTLP", b'{"level": "info", "msg": "payment approved"}')
        cases.send("deeply nested JSON", b'{"resourceSpans": ' + b"[" * 50_000)
        cases.send("empty message", b"")
        empty = ExportTraceServiceRequest()
        empty.resource_spans.add().scope_spans.add()
        cases.send("empty batch", empty.SerializeToString())
        cases.send("1.5 MiB of random bytes", b"\x07" + cases.rng.randbytes((3 << 19) - 1))
        cases.send("random bytes on the logs topic", b"\x07" + cases.rng.randbytes(99), logs=True)
        cases.send(
            "OTLP/JSON",
            json.dumps(
                {
                    "resourceSpans": [
                        {
                            "scopeSpans": [
                                {
                                    "spans": [
                                        {
                                            "traceId": t["json"].hex(),
                                            "spanId": root.hex(),
                                            "name": "from-json",
                                            "startTimeUnixNano": str(START),
                                            "endTimeUnixNano": str(START + MS),
                                        }
                                    ]
                                }
                            ]
                        }
                    ]
                }
            ).encode(),
        )
        cases.send(
            "a span with a 2-byte trace id",
            otlp_spans(t["rejected"], [span(root), span(a, root, trace_id=b"\x01\x02")]),
        )
        cases.send("unknown parent", otlp_spans(t["orphan"], [span(a, b"\xee" * 8)]))
        cases.send("parent cycle", otlp_spans(t["cycle"], [span(root), span(a, b), span(b, a)]))
        cases.send("duplicate, first", otlp_spans(t["duplicate"], [span(root, name="first")]))
        cases.send("duplicate, second", otlp_spans(t["duplicate"], [span(root, name="second")]))
        cases.send(
            "1 MiB attribute value",
            otlp_spans(
                t["huge_value"],
                [span(root, attributes={"blob": "x" * (1 << 20), "payment.id": "pay-huge"})],
            ),
        )
        cases.send(
            "invalid UTF-8",
            otlp_spans(
                t["utf8"], [span(root, name=f"pay {INVALID_MARKER}"), span(a, root, name="clean")]
            ),
        )
        cases.send(
            "times far off",
            otlp_spans(
                t["times"],
                [
                    span(root, start=0, end=0),
                    span(a, root, start=START, end=2**64 - 1),
                    span(
                        b,
                        root,
                        start=parse_iso8601_ns("2100-01-01T00:00:00Z"),
                        end=parse_iso8601_ns("2100-01-01T00:00:01Z"),
                    ),
                ],
            ),
        )
        cases.send(
            "end before start",
            otlp_spans(t["reversed"], [span(root, start=START + 9 * MS, end=START)]),
        )
        cases.send(
            "10,000 keys on one span",
            otlp_spans(
                t["keys"], [span(root, attributes={f"one.span.{i}": i for i in range(10_000)})]
            ),
        )
        # A mapping explosion: 10,000 distinct keys over 100 spans of one day's index.
        explosion = [
            span(
                x,
                root if x != root else None,
                attributes={f"explosion.{n}.{i}": "v" for i in range(100)},
            )
            for n, x in enumerate([root, *cases.ids(99)])
        ]
        cases.send("mapping explosion", otlp_spans(t["explosion"], explosion))
        # A 100,000-deep chain: each span the child of the one before.
        chain = [root, *cases.ids(CHAIN - 1)]
        for first in range(0, CHAIN, 10_000):
            part = chain[first : first + 10_000]
            parents = chain[max(0, first - 1) : first + len(part) - 1]
            cases.send(
                f"chain {first}",
                flood_spans(
                    [t["chain"]],
                    start_ns=START,
                    span_ids=part,
                    parents=[b"\0" * 8] * (first == 0) + parents,
                ),
            )
        cases.send(
            "logs with bad times and ids",
            otlp_logs(
                [
                    {"time": 0, "observed": 0, "body": f"log {INVALID_MARKER}"},
                    {"time": START, "trace_id": b"\x01\x02", "body": "short trace id"},
                ]
            ),
            logs=True,
        )
    finally:
        cases.close()
    # Good traffic after the bad: the same day's spans index, past the mapping explosion.
    later = simulate_to_kafka(
        SimulationConfig(start_ns=START + 60_000 * MS, seed=62, traces=30),
        bootstrap=bootstrap,
        spans_topic=topics.spans,
        logs_topic=topics.logs,
    ).result.ground_truth["counts"]

    settings = processor_settings(
        bootstrap, services.es_url, topics, index_prefix, unique_name("group")
    )
    started = time.monotonic()
    with Processor(settings) as processor:
        counts = processor.run(drain=True)  # returns: the processor did not stall or crash
    drain_s = time.monotonic() - started
    print(f"drain: {drain_s:.1f} s, {counts.messages} messages, {dict(counts.indexed)}")

    # Dead letters: one per case, with its reason and source.
    letters = read_topic(bootstrap, topics.dlq, idle_ms=3000)
    assert counts.dead_letters == len(letters) == len(dead)
    for name, reason in dead.items():
        meta = cases.sent[name]
        (letter,) = [
            m
            for m in letters
            if headers(m).get("hopscope.source.offset") == str(meta.offset)
            and headers(m)["hopscope.source.topic"] == meta.topic
        ]
        assert headers(letter)["hopscope.error"].startswith(reason), (name, headers(letter))
    (big,) = [m for m in letters if "hopscope.truncated" in headers(m)]
    assert headers(big)["hopscope.truncated"] == str(3 << 19) and len(big.value) == 512 * 1024
    (rejected,) = [m for m in letters if headers(m)["hopscope.error"].startswith("span rejected")]
    (only,) = ExportTraceServiceRequest.FromString(rejected.value).resource_spans
    assert [x.span_id for x in only.scope_spans[0].spans] == [a]

    refresh(es_client, index_prefix)

    def spans_of(name: str) -> list[dict[str, Any]]:
        found = hits(es_client, index_prefix, "spans", term("trace.id", t[name].hex()))
        return sorted((h["_source"] for h in found), key=lambda x: x["span.name"])

    def summary(name: str) -> dict[str, Any]:
        (found,) = hits(es_client, index_prefix, "traces", {"ids": {"values": [t[name].hex()]}})
        return dict(found["_source"])

    # Sanitized and indexed, each with its flag.
    assert [x["span.name"] for x in spans_of("json")] == ["from-json"]
    assert [x["span.id"] for x in spans_of("rejected")] == [root.hex()]
    assert summary("orphan")["hopscope.sanitized"] == [s.MISSING_ROOT, s.ORPHAN_SPANS]
    assert summary("cycle")["hopscope.sanitized"] == [s.PARENT_CYCLE]
    assert summary("cycle")["hopscope.trace.span_count"] == 3
    (duplicate,) = spans_of("duplicate")
    assert duplicate["span.name"] == "second"  # the later copy, in the index and the summary
    assert summary("duplicate")["hopscope.sanitized"] == [s.DUPLICATE_SPAN_IDS]
    (huge,) = spans_of("huge_value")
    assert len(huge["attributes"]["blob"]) == s.DEFAULT_LIMITS.max_value_chars
    assert huge["hopscope.sanitized"] == [s.VALUE_TRUNCATED]
    assert summary("huge_value")["payment.id"] == "pay-huge"
    clean, bad = spans_of("utf8")
    assert "\ufffd" in bad["span.name"] and bad["hopscope.sanitized"] == [s.INVALID_UTF8]
    assert "hopscope.sanitized" not in clean
    for doc in spans_of("times"):
        assert doc["hopscope.sanitized"] == [s.TIMESTAMP_OUT_OF_RANGE]
        assert "hopscope.original.start_ns" in doc and not doc["@timestamp"].startswith("1970")
    (reversed_span,) = spans_of("reversed")
    assert reversed_span["event.duration"] == 0
    assert reversed_span["hopscope.sanitized"] == [s.END_BEFORE_START]
    assert summary("reversed")["event.duration"] == 0
    (keys,) = spans_of("keys")
    assert len(keys["attributes"]) == s.DEFAULT_LIMITS.max_attributes
    assert keys["hopscope.sanitized"] == [s.ATTRIBUTES_DROPPED]
    # No index for 1970 or past 2262 was made: sanitized times routed by the Kafka timestamp.
    indices = list(es_client.indices.get(index=f"{index_prefix}-*"))
    years = {int(re.search(r"-(\d{4})\.\d\d\.\d\d$", i).group(1)) for i in indices}  # type: ignore[union-attr]
    assert all(2026 <= year < 2100 for year in years), indices

    # The 100,000-deep chain: derived whole, without a recursion error.
    chain_summary = summary("chain")
    assert chain_summary["hopscope.trace.span_count"] == CHAIN
    assert chain_summary["hopscope.trace.complete"] is True
    assert count(es_client, index_prefix, "spans", term("trace.id", t["chain"].hex())) == CHAIN

    # The mapping explosion: its spans accepted, the index's mapping capped, keys past the
    # limit kept in _source and listed in _ignored; and later spans still indexed.
    assert count(es_client, index_prefix, "spans", term("trace.id", t["explosion"].hex())) == 100
    (spans_index,) = [i for i in indices if i.endswith("spans-2026.04.01")]
    mapping = es_client.indices.get_mapping(index=spans_index)[spans_index]["mappings"]
    assert len(mapping["properties"]["attributes"]["properties"]) < FIELD_LIMIT
    assert count(es_client, index_prefix, "spans", {"exists": {"field": "_ignored"}}) > 0

    # The logs: indexed, sanitized.
    logs = [
        h["_source"]
        for h in hits(es_client, index_prefix, "logs", term("service.name", "bad-input"))
    ]
    assert sorted(tuple(x["hopscope.sanitized"]) for x in logs) == [
        (s.INVALID_TRACE_ID,),
        (s.INVALID_UTF8, s.TIMESTAMP_OUT_OF_RANGE),
    ]

    # The good traffic around the bad is indexed whole: every simulated span and trace.
    simulation = [
        m for m in read_topic(bootstrap, topics.spans) if not (m.key or b"").startswith(b"case-")
    ]
    expected = set(span_doc_ids(simulation))
    assert len(expected) == simulated["spans"] + later["spans"]
    found = {h["_id"] for h in hits(es_client, index_prefix, "spans", fields=["trace.id"])}
    assert expected <= found
    simulated_traces = {i.split("-")[0] for i in expected}
    summaries = {h["_id"] for h in hits(es_client, index_prefix, "traces", fields=["trace.id"])}
    assert simulated_traces <= summaries
    assert len(simulated_traces) == simulated["traces"] + later["traces"]
    assert count(es_client, index_prefix, "logs") == (
        simulated["log_records"] + later["log_records"] + 2
    )
    # Nothing lost: every span sent is indexed, or dead-lettered (the rejected one); the
    # duplicate is written twice under one id.
    case_spans = {
        "json": 1,
        "rejected": 1,
        "orphan": 1,
        "cycle": 3,
        "duplicate": 2,
        "huge_value": 1,
        "utf8": 2,
        "times": 3,
        "reversed": 1,
        "keys": 1,
        "explosion": 100,
        "chain": CHAIN,
    }
    assert counts.indexed["spans"] == len(expected) + sum(case_spans.values())
    assert count(es_client, index_prefix, "spans") == len(expected) + sum(case_spans.values()) - 1
