"""The card-number (PAN) audit, end to end: no index, no archive file holds a card number.

The simulator with ``foreign_pans`` (``hopscope simulate --foreign-pans``) writes the payment
network's telemetry through hopscope's SDK (which masks on export) and, straight to Kafka, that
of a Java and a Go service instrumented with other SDKs, with Luhn-valid card numbers in every
place telemetry has: names, status messages, attributes of every type, events, links,
resources, URLs, SQL, log bodies of every shape. One processor drains the topics into
Elasticsearch and a Parquet archive. Then:

- Elasticsearch finds no seeded card number's digits (``query_string`` over every field), and
  no seeded card number, neither as written nor as bare digits, is in the text of any document
  of any kind (every ``_source`` scrolled: raw JSON, every value, bytes values base64-decoded,
  digit groups with their separators removed);
- every span and log record that carried one is indexed, with the card masked to first six and
  last four digits where it was (so the audit cannot pass by dropping them);
- the other SDKs' spans took part in the traces' derived records;
- nothing was dead-lettered: the masking is the processing, not a refusal (not even where a
  masked number, now text, meets a key that holds numbers);
- the Parquet archive holds no card number either."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from hopscope.ingest.simulator import SimulationConfig, parse_iso8601_ns, simulate_to_kafka
from hopscope.processors.runtime import Processor
from hopscope.processors.templates import KINDS
from tests.conftest import Services
from tests.integration.processor_support import (
    Topics,
    create_topics,
    hits,
    processor_settings,
    read_topic,
    refresh,
)
from tests.pan_support import expected_mask

pytestmark = pytest.mark.integration

START = "2026-03-02T09:00:00Z"
TRACES = 16
FOREIGN_SERVICES = ("issuer-gateway", "token-vault")
# A written card number: digits in groups joined by the separators people and URL encoders use.
_DIGIT_GROUPS = re.compile(r"[0-9]+(?:(?:[ +-]|%20|%2[Dd])[0-9]+)*")
# A value that may be bytes: base64 of 16 bytes or more.
_BASE64 = re.compile(r"[A-Za-z0-9+/]{20,}={0,2}")


def leaves(node: Any) -> Iterator[str]:
    """Every key and scalar of a JSON document as text; base64 values also decoded."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield str(key)
            yield from leaves(value)
    elif isinstance(node, list):
        for item in node:
            yield from leaves(item)
    elif node is not None:
        text = str(node)
        yield text
        if isinstance(node, str) and _BASE64.fullmatch(node) and len(node) % 4 == 0:
            yield base64.b64decode(node).decode("latin-1")


def readable_text(documents: Iterable[Any]) -> str:
    """What a person could read in ``documents``: the raw JSON, every value as text, and every
    run of digit groups with its separators removed (one per line)."""
    lines: list[str] = []
    for document in documents:
        lines.append(json.dumps(document, ensure_ascii=False))
        for text in leaves(document):
            lines.append(text)
            lines.extend(re.sub(r"[^0-9]|%20|%2[Dd]", "", g) for g in _DIGIT_GROUPS.findall(text))
    return "\n".join(lines)


def every_document(es: Elasticsearch, prefix: str) -> dict[str, list[dict[str, Any]]]:
    """Every document of every kind under ``prefix`` (scrolled, no size limit)."""
    refresh(es, prefix)
    return {kind: hits(es, prefix, kind) for kind in KINDS}


def searches_finding(es: Elasticsearch, prefix: str, values: list[str]) -> dict[str, int]:
    """How many documents of any kind Elasticsearch finds for each value, searched as a phrase
    in every field: a text field's tokens, a keyword's whole value, a number's value.

    Substrings of keywords (a card inside a URL) are the raw scan's part: leading-wildcard
    searches over every field cost seconds per value.
    """
    found: dict[str, int] = {}
    for start in range(0, len(values), 100):
        chunk = values[start : start + 100]
        searches: list[dict[str, Any]] = []
        for value in chunk:
            quoted = value.replace("\\", "\\\\").replace('"', '\\"')
            searches.append({"index": f"{prefix}-*"})
            searches.append({
                "size": 0, "track_total_hits": True,
                "query": {"query_string": {"query": f'"{quoted}"', "fields": ["*"],
                                           "lenient": True}},
            })  # fmt: skip
        answer = es.msearch(searches=searches)
        for value, response in zip(chunk, answer["responses"], strict=True):
            assert "error" not in response, response
            found[value] = response["hits"]["total"]["value"]
    return found


def test_no_index_or_archive_holds_a_card_number(
    services: Services,
    unique_name: Callable[[str], str],
    index_prefix: str,
    es_client: Elasticsearch,
    tmp_path: Path,
) -> None:
    bootstrap = services.kafka_bootstrap
    topics = Topics(unique_name("spans"), unique_name("logs"), unique_name("dlq"))
    create_topics(bootstrap, [*topics.inputs, topics.dlq])
    config = SimulationConfig(start_ns=parse_iso8601_ns(START), seed=13, traces=TRACES,
                              foreign_pans=True)  # fmt: skip
    run = simulate_to_kafka(config, bootstrap=bootstrap, spans_topic=topics.spans,
                            logs_topic=topics.logs)  # fmt: skip
    truth = run.result.ground_truth
    foreign = truth["foreign"]
    seeds = foreign["seeds"]
    assert foreign["issuer_calls"] > 0 and len(seeds) > 300
    assert run.stats["foreign"]["messages"] == foreign["messages"]

    archive = tmp_path / "archive"
    settings = processor_settings(bootstrap, services.es_url, topics, index_prefix,
                                  unique_name("g"), archive_dir=archive)  # fmt: skip
    with Processor(settings) as processor:
        counts = processor.run(drain=True)

    # Processed, not refused: nothing dead-lettered, the topic empty.
    assert counts.dead_letters == 0
    assert read_topic(bootstrap, topics.dlq, idle_ms=1500) == []

    documents = every_document(es_client, index_prefix)
    assert len(documents["spans"]) == truth["counts"]["spans"] + foreign["spans"]
    assert len(documents["logs"]) == truth["counts"]["log_records"] + foreign["log_records"]
    assert all(documents[kind] for kind in ("hops", "traces", "coordination"))

    # Every seeded card number of both origins, as written and as bare digits.
    secrets = sorted({*truth["seeded_pans"], *truth["seeded_pan_texts"],
                      *foreign["seeded_pans"], *foreign["seeded_pan_texts"]})  # fmt: skip

    # 1. Elasticsearch finds none of them, in any field. The same search finds what is there:
    # a node name, and a card's masked form (so it does look into the fields that held them).
    control = expected_mask(
        next(s["text"] for s in seeds if s["signal"] == "log" and s["shape"] == "int")
    )
    digit_forms = sorted({*truth["seeded_pans"], *foreign["seeded_pans"]})
    found = searches_finding(es_client, index_prefix, [*digit_forms, "token-vault-1", control])
    assert found.pop("token-vault-1") > 0 and found.pop(control) > 0
    assert {value: n for value, n in found.items() if n} == {}

    # 2. No document of any kind holds one, read as raw text in every way.
    text = readable_text(doc["_source"] for kind in KINDS for doc in documents[kind])
    assert [secret for secret in secrets if secret in text] == []

    # 3. What carried them is indexed, masked where it was.
    spans = {doc["_id"]: doc["_source"] for doc in documents["spans"]}
    logs = {doc["_source"]["attributes"].get("log.record.uid"): doc["_source"]
            for doc in documents["logs"]
            if doc["_source"]["service.name"] in FOREIGN_SERVICES}  # fmt: skip
    unmasked: list[dict[str, Any]] = []
    for seed in seeds:
        if seed["signal"] == "span":
            document = spans[f"{seed['trace_id']}-{seed['span_id']}"]
            if seed["where"].startswith("links."):
                continue  # span documents keep a link's ids, not its attributes
        elif seed["signal"] == "log":
            document = logs[seed["uid"]]
        else:
            document = next(d for d in spans.values() if d["service.node.name"] == seed["node"])
        if expected_mask(seed["text"]) not in "\n".join(leaves(document)):
            unmasked.append(seed)
    assert unmasked == []

    # 4. The other SDKs' spans are part of the traces: derived like the rest.
    foreign_traces = {seed["trace_id"] for seed in seeds if seed["signal"] == "span"}
    summaries = {doc["_source"]["trace.id"]: doc["_source"] for doc in documents["traces"]}
    for trace_id in foreign_traces:
        assert set(FOREIGN_SERVICES) <= set(summaries[trace_id]["hopscope.trace.services"])
    hop_sources = {doc["_source"]["service.name"] for doc in documents["hops"]}
    assert set(FOREIGN_SERVICES) <= hop_sources

    # 5. The Parquet archive: the same records, no card number either.
    import polars as pl

    parts = sorted(archive.rglob("*.parquet"))
    assert {path.relative_to(archive).parts[0] for path in parts} >= {"spans", "logs", "hops"}
    rows = [row for path in parts for row in pl.read_parquet(path).to_dicts()]
    assert sum(row.get("service.name") in FOREIGN_SERVICES for row in rows) > 0
    archived = readable_text(json.loads(json.dumps(row, default=str)) for row in rows)
    assert [secret for secret in secrets if secret in archived] == []
