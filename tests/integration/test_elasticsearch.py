"""The real Elasticsearch node: bulk indexing with deterministic ids, search, aggregation."""

from typing import Any

import pytest
from elasticsearch import Elasticsearch, helpers

from tests.conftest import Services

pytestmark = pytest.mark.integration


def _spans(count: int) -> list[dict[str, Any]]:
    return [
        {
            "_id": f"trace{i // 5:04d}-span{i:05d}",
            "@timestamp": f"2026-11-26T10:00:{i % 60:02d}.000Z",
            "trace.id": f"trace{i // 5:04d}",
            "service.name": ("payment-gateway", "risk", "ledger")[i % 3],
            "event.duration": 1_000_000 * (i % 17 + 1),
        }
        for i in range(count)
    ]


def test_bulk_index_and_search(services: Services, es_client: Any, index_prefix: str) -> None:
    es: Elasticsearch = es_client
    # es.info() (GET /) needs the rest-root module, which the integ-test-zip lacks.
    nodes = es.nodes.info(node_id="_local", metric="_none")["nodes"]
    assert all(n["version"].split(".")[0] in {"8", "9"} for n in nodes.values())
    index = f"{index_prefix}-spans-2026.11.26"
    es.indices.create(
        index=index,
        mappings={
            "properties": {
                "@timestamp": {"type": "date"},
                "trace.id": {"type": "keyword"},
                "service.name": {"type": "keyword"},
                "event.duration": {"type": "long"},
            }
        },
    )
    docs = _spans(500)
    ok, errors = helpers.bulk(es, ({"_index": index, **d} for d in docs), refresh="wait_for")
    assert (ok, errors) == (500, [])

    # Replaying the same documents overwrites them: ids are deterministic.
    ok, _ = helpers.bulk(es, ({"_index": index, **d} for d in docs[:100]), refresh="wait_for")
    assert ok == 100
    assert es.count(index=index)["count"] == 500

    hits = es.search(index=index, query={"term": {"trace.id": "trace0007"}}, size=10)
    assert {h["_id"] for h in hits["hits"]["hits"]} == {
        f"trace0007-span{i:05d}" for i in range(35, 40)
    }
    aggs = es.search(
        index=f"{index_prefix}-spans-*",
        size=0,
        aggs={
            "by_service": {
                "terms": {"field": "service.name"},
                "aggs": {"p99": {"percentiles": {"field": "event.duration", "percents": [99]}}},
            }
        },
    )["aggregations"]["by_service"]["buckets"]
    assert {b["key"]: b["doc_count"] for b in aggs} == {
        "payment-gateway": 167,
        "risk": 167,
        "ledger": 166,
    }
    assert all(b["p99"]["values"]["99.0"] > 0 for b in aggs)


def test_the_sink_deletes_stale_derived_documents(es_client: Any, index_prefix: str) -> None:
    """What a trace derived again sends (processors/pipeline.py ``derive_trace``): the new
    document and the deletion of the stale one, in one bulk request; a deletion of a document
    that is not there (its first write was dead-lettered) is acknowledged too."""
    from hopscope.processors.documents import Document, deletion
    from hopscope.processors.sink import ElasticsearchSink

    es: Elasticsearch = es_client
    sink = ElasticsearchSink(es, index_prefix)
    sink.install_templates()
    index = f"{index_prefix}-coordination-2026.11.26"
    body = {"@timestamp": "2026-11-26T10:00:00.000Z", "trace.id": "t", "hopscope.record": "2pc"}
    stale = Document("coordination", index, "2pc-t-None-tx-1", body)
    assert sink.write([stale]).acknowledged == 1
    fresh = Document("coordination", index, "2pc-t-s-tx-1", body)
    outcome = sink.write([fresh, deletion("coordination", index, stale.id),
                          deletion("coordination", index, "2pc-t-None-tx-2")])  # fmt: skip
    assert (outcome.acknowledged, outcome.rejected) == (3, [])
    es.indices.refresh(index=index)
    hits = es.search(index=index, query={"match_all": {}}, size=10)["hits"]["hits"]
    assert [h["_id"] for h in hits] == ["2pc-t-s-tx-1"]
