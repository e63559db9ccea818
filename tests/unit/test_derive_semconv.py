"""What standard instrumentations leave out, inferred from hand-built spans shaped like theirs
(requests, SQLAlchemy/psycopg, redis): endpoint map, statement rules, cache outcome, and the
failover a retry on another node makes once the endpoint map names the nodes."""

from __future__ import annotations

from typing import Any

import pytest

from hopscope.ingest import conventions as c
from hopscope.processors.derive import derive_all, derive_failovers
from hopscope.processors.derive.semconv import (
    INFERRED,
    Endpoint,
    SemconvRules,
    StatementRule,
    enrich_span,
    enrich_spans,
    infer_cache,
    rules_from_document,
)
from hopscope.processors.records import CLIENT, ERROR, SERVER, SpanRecord

PRIMARY_PORT, REPLICA_PORT, REDIS_PORT = 5433, 5434, 6380
RULES = SemconvRules(
    (
        Endpoint("127.0.0.1", PRIMARY_PORT, service="postgres", node="pg-primary",
                 db_role="primary"),
        Endpoint("127.0.0.1", REPLICA_PORT, service="postgres", node="pg-replica",
                 db_role="replica"),
        Endpoint("127.0.0.1", REDIS_PORT, service="redis", node="redis-1", cache="risk-rules"),
        Endpoint("127.0.0.1", 8101, service="payment", node="payment-1"),
        Endpoint("127.0.0.1", 8102, service="payment", node="payment-2"),
    )
)  # fmt: skip


def span(
    sid: str, name: str, start: int, end: int, *, parent: str | None = "srv",
    service: str = "ledger", kind: str = CLIENT, status: str = "unset", **attrs: Any,
) -> SpanRecord:  # fmt: skip
    return SpanRecord("t1", sid, parent, name, kind, start, end, service, f"{service}-1",
                      status, attributes=attrs)  # fmt: skip


def sql(sid: str, text: str, port: int, start: int = 0, end: int = 10, **more: Any) -> SpanRecord:
    attrs = {"db.system.name": "postgresql", "db.query.text": text, "db.namespace": "ledger",
             "server.address": "127.0.0.1", "server.port": port, **more}  # fmt: skip
    return span(sid, text.split()[0], start, end, **attrs)


def test_endpoint_map_names_role_node_and_peer_service() -> None:
    enriched = enrich_span(sql("a", "SELECT balance FROM accounts", REPLICA_PORT), RULES)
    attrs = enriched.attributes
    assert attrs[c.DB_SYSTEM] == "postgresql"  # from the stable db.system.name
    assert attrs[c.DB_ROLE] == "replica"
    assert attrs[c.PEER_NODE] == "pg-replica"
    assert attrs[c.PEER_SERVICE] == "postgres"
    assert set(attrs[INFERRED]) == {c.DB_SYSTEM, c.DB_ROLE, c.PEER_NODE, c.PEER_SERVICE}
    assert c.COORDINATION_KIND not in attrs  # a plain read is no lock wait


def test_recorded_values_win_over_the_map() -> None:
    recorded = sql("a", "SELECT 1 FROM accounts", PRIMARY_PORT, **{c.DB_ROLE: "replica"})
    assert enrich_span(recorded, RULES).attributes[c.DB_ROLE] == "replica"


def test_unmatched_span_is_returned_unchanged() -> None:
    plain = span("h", "GET", 0, 5, **{"server.address": "10.0.0.9", "server.port": 80})
    assert enrich_span(plain, RULES) is plain


@pytest.mark.parametrize(
    ("text", "system", "resource"),
    [
        ("SELECT balance FROM accounts WHERE id = %(id)s FOR UPDATE", "postgresql",
         "ledger.accounts"),
        ("SELECT * FROM accounts WHERE id = $1 FOR NO KEY UPDATE", "postgresql",
         "ledger.accounts"),
        ("SELECT pg_advisory_xact_lock(%s)", "postgresql", None),
        ("LOCK TABLE entries IN EXCLUSIVE MODE", "postgresql", "ledger.entries"),
        ("SET lock:payment:42 ? NX PX ?", "redis", "lock:payment:42"),
    ],
)  # fmt: skip
def test_statement_rules_mark_lock_waits(text: str, system: str, resource: str | None) -> None:
    record = span("l", text.split()[0], 0, 10, **{"db.system": system, "db.query.text": text,
                                                  "db.namespace": "ledger"})  # fmt: skip
    attrs = enrich_span(record, RULES).attributes
    assert attrs[c.COORDINATION_KIND] == c.LOCK_WAIT
    assert attrs.get(c.COORDINATION_RESOURCE) == resource


def test_redis_set_without_nx_and_update_are_not_lock_waits() -> None:
    for text, system in [("SET rules:retail ? EX ?", "redis"),
                         ("UPDATE accounts SET balance = 1", "postgresql")]:  # fmt: skip
        record = span("x", "op", 0, 1, **{"db.system": system, "db.query.text": text})
        assert c.COORDINATION_KIND not in enrich_span(record, RULES).attributes


def test_inferred_lock_wait_is_a_coordination_delay() -> None:
    server = span("srv", "POST /debit", 0, 100, parent=None, kind=SERVER)
    lock = sql("l", "SELECT balance FROM accounts WHERE id = %(id)s FOR UPDATE", PRIMARY_PORT,
               10, 80)  # fmt: skip
    records = derive_all(enrich_spans([server, lock], RULES))
    (delay,) = records.coordination
    assert (delay.kind, delay.resource, delay.duration_ns) == ("lock_wait", "ledger.accounts", 70)


def redis(sid: str, op: str, start: int, end: int, status: str = "unset") -> SpanRecord:
    return span(sid, op, start, end, service="risk", status=status,
                **{"db.system": "redis", "db.query.text": f"{op} rules:retail",
                   "server.address": "127.0.0.1", "server.port": REDIS_PORT})  # fmt: skip


def test_cache_read_followed_by_the_guarded_database_read_is_a_miss() -> None:
    spans = enrich_spans(
        [redis("g", "GET", 0, 2), sql("q", "SELECT max(max_amount) FROM risk_rules", 5433, 3, 30),
         redis("s", "SET", 31, 33)],
        RULES,
    )  # fmt: skip
    (read,) = infer_cache(spans)
    assert read.span_id == "g"
    assert read.attributes[c.CACHE_HIT] is False
    assert read.attributes[c.CACHE_NAME] == "risk-rules"  # from the endpoint map


def test_a_database_system_that_is_not_a_name_is_no_cache() -> None:
    # Another SDK may send any value, an array included: no inference, no failure.
    odd = span("o", "GET", 0, 2, **{"db.system": ["redis", "mysql"], "db.operation.name": "GET"})
    assert infer_cache([odd]) == []
    assert enrich_span(odd, RULES) == odd


def test_cache_read_without_database_read_is_a_hit() -> None:
    (read,) = infer_cache([redis("g", "GET", 0, 2), span("o", "POST", 3, 9)])
    assert read.attributes[c.CACHE_HIT] is True
    assert read.attributes[c.CACHE_NAME] == "redis"


def test_failed_cache_read_is_a_miss_and_other_parents_do_not_count() -> None:
    failed = redis("g", "GET", 0, 2, status=ERROR)
    (read,) = infer_cache([failed])
    assert read.attributes[c.CACHE_HIT] is False
    other_parent = span("q2", "SELECT", 3, 9, parent="other", **{"db.system": "postgresql"})
    (hit,) = infer_cache([redis("g2", "GET", 0, 2), other_parent])
    assert hit.attributes[c.CACHE_HIT] is True


def test_retry_on_another_node_is_a_failover_once_the_map_names_the_nodes() -> None:
    root = span("srv", "POST /v1/payments", 0, 5_000, parent=None, service="gateway",
                kind=SERVER)  # fmt: skip
    first = span("a1", "POST", 10, 1_510, service="gateway", status=ERROR,
                 **{"server.address": "127.0.0.1", "server.port": 8102,
                    "error.type": "ReadTimeout"})  # fmt: skip
    second = span("a2", "POST", 1_520, 1_600, service="gateway",
                  **{"server.address": "127.0.0.1", "server.port": 8101})  # fmt: skip
    # Without the map both attempts are on "127.0.0.1": a retry, not a failover.
    assert derive_failovers([root, first, second]) == []
    (failover,) = derive_failovers(enrich_spans([root, first, second], RULES))
    assert (failover.from_node, failover.to_node, failover.detection_ns) == (
        "payment-2", "payment-1", 1_510
    )  # fmt: skip


def test_rules_from_hopscope_toml_tables() -> None:
    rules = rules_from_document(
        {"semconv": {
            "endpoints": [{"address": "127.0.0.1", "port": 5433, "db_role": "primary"}],
            "statements": [{"kind": "lock_wait", "pattern": "(?i)^GET_LOCK"}],
        }}
    )  # fmt: skip
    assert rules.endpoints == (Endpoint("127.0.0.1", 5433, db_role="primary"),)
    assert rules.statements[0] == StatementRule("lock_wait", "(?i)^GET_LOCK")
    with pytest.raises(ValueError, match="primary or replica"):
        rules_from_document({"semconv": {"endpoints": [{"port": 1, "db_role": "leader"}]}})
    with pytest.raises(ValueError, match="#1"):
        rules_from_document({"semconv": {"endpoints": [{"adress": "x"}]}})


def test_server_spans_are_not_mapped() -> None:
    # Flask's SERVER span records its own address and port as server.*.
    own = span("srv", "POST /debit", 0, 9, parent=None, kind=SERVER,
               **{"server.address": "127.0.0.1", "server.port": 8101})  # fmt: skip
    assert enrich_span(own, RULES) is own
