"""What standard OpenTelemetry instrumentations leave out, inferred from what they record
(docs/DESIGN.md §3 "Inferred from standard semantic conventions").

Services instrumented with the stock instrumentations (``opentelemetry-instrumentation-
{flask,requests,sqlalchemy,psycopg,redis}``) record ``server.address``/``server.port``,
``db.system`` (or the stable ``db.system.name``), ``db.query.text`` and ``db.namespace``, but
no ``peer.service``, no node name for the peer, no database role, no cache outcome and no
coordination kind. The rules here add them as span attributes, only where the span lacks
them, and list what they added in ``hopscope.inferred``; a recorded value always wins.

Per span (:func:`enrich_span`, applied as each span is decoded):

1. ``db.system`` from the stable ``db.system.name``, ``db.query.text`` from the older
   ``db.statement``, ``db.namespace`` from ``db.name`` (the names the jobs read);
2. the endpoint map (``[[semconv.endpoints]]`` of ``hopscope.toml``), on spans other than
   SERVER spans (whose ``server.*`` name the server itself): the first entry whose
   ``address``, ``port`` and ``namespace`` (each optional, all given ones equal) match the
   span's ``server.address``, ``server.port`` and ``db.namespace`` sets ``peer.service``
   (``service``), ``hopscope.peer.node`` (``node``: the failover derivation's attempt node),
   ``hopscope.db.role`` (``db_role``: ``primary``/``replica``) and, on cache reads (step 4),
   ``hopscope.cache.name`` (``cache``);
3. statement rules (``[[semconv.statements]]``, after :data:`DEFAULT_STATEMENTS`): the first
   rule whose regular expression is found in the span's ``db.query.text`` (else its name), with
   the rule's ``system`` equal to ``db.system`` when given, sets
   ``hopscope.coordination.kind`` (default rules: ``SELECT … FOR UPDATE``/``FOR SHARE``,
   ``LOCK TABLE``, Postgres advisory locks, Redis ``SET … NX`` are ``lock_wait``) and
   ``hopscope.coordination.resource`` (the statement's first table, qualified by
   ``db.namespace``; for Redis the key when recorded). The span's duration is then its wait
   for the lock plus the statement's own (short) work: instrumentation cannot tell them
   apart.

Per trace (:func:`infer_cache`, before the trace's records are derived):

4. cache outcome: a cache read (``db.system`` in :data:`CACHE_SYSTEMS`, operation ``GET``,
   ``MGET``, ``HGET``, ``HGETALL``) is a *miss* when, under the same parent, a database call of
   another system starts after the read ended and before the parent's next cache call (the
   read the cache guards: cache-aside); else a *hit*. A failed read is a miss. The read gets
   ``hopscope.cache.hit`` and, when absent, ``hopscope.cache.name`` (its endpoint's ``cache``,
   else ``<db.system>``).

Failover needs no rule of its own: the failover derivation groups a parent's CLIENT spans by
``peer.service`` (from step 2) and reads ``hopscope.peer.node`` as the attempt's node, and an
attempt without ``http.request.resend_count`` (the requests instrumentation records none for
an application's own retry) continues a chain when it starts after the failed attempt ended.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

from hopscope.ingest import conventions as c
from hopscope.processors.records import SERVER, SpanRecord

INFERRED: Final = "hopscope.inferred"
PEER_NODE: Final = c.PEER_NODE
CACHE_NAME: Final = c.CACHE_NAME
DB_SYSTEM_NAME: Final = "db.system.name"  # stable database semconv
DB_STATEMENT_OLD: Final = "db.statement"
DB_NAME_OLD: Final = "db.name"
CACHE_SYSTEMS: Final = frozenset({"redis", "memcached"})
CACHE_READS: Final = frozenset({"GET", "MGET", "HGET", "HGETALL"})
_TABLE: Final = re.compile(r"(?i)\b(?:FROM|UPDATE|INTO|TABLE)\s+([A-Za-z_][\w.\"]*)")


@dataclass(frozen=True)
class Endpoint:
    """One entry of the endpoint map: what a peer address (and port, namespace) is."""

    address: str | None = None
    port: int | None = None
    namespace: str | None = None
    service: str | None = None
    node: str | None = None
    db_role: str | None = None
    cache: str | None = None

    def __post_init__(self) -> None:
        if self.address is None and self.port is None and self.namespace is None:
            raise ValueError("an endpoint needs address, port or namespace to match")
        if self.db_role is not None and self.db_role not in c.DB_ROLES:
            raise ValueError(f"endpoint db_role must be primary or replica, got {self.db_role!r}")

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        """Every given condition equals the span's attribute."""
        if self.address is not None and attributes.get(c.SERVER_ADDRESS) != self.address:
            return False
        if self.port is not None and _int(attributes.get(c.SERVER_PORT)) != self.port:
            return False
        return self.namespace is None or attributes.get(c.DB_NAMESPACE) == self.namespace


@dataclass(frozen=True)
class StatementRule:
    """A statement pattern that marks a database span as coordination (a lock wait).

    >>> rule = StatementRule("lock_wait", r"(?i)\\bFOR\\s+UPDATE\\b")
    >>> rule.matches({"db.system": "postgresql"}, "SELECT 1 FROM accounts FOR UPDATE")
    True
    """

    kind: str
    pattern: str
    system: str | None = None
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in c.COORDINATION_KINDS:
            raise ValueError(f"statement rule kind must be one of {sorted(c.COORDINATION_KINDS)}")
        try:
            object.__setattr__(self, "_regex", re.compile(self.pattern))
        except re.error as error:
            raise ValueError(f"statement rule pattern {self.pattern!r}: {error}") from error

    def matches(self, attributes: Mapping[str, Any], text: str) -> bool:
        if self.system is not None and attributes.get(c.DB_SYSTEM) != self.system:
            return False
        return self._regex.search(text) is not None


DEFAULT_STATEMENTS: Final = (
    StatementRule(c.LOCK_WAIT, r"(?i)\bFOR\s+(NO\s+KEY\s+)?UPDATE\b"),
    StatementRule(c.LOCK_WAIT, r"(?i)\bFOR\s+(KEY\s+)?SHARE\b"),
    StatementRule(c.LOCK_WAIT, r"(?i)^\s*LOCK\s+(TABLE\s+)?\w"),
    StatementRule(c.LOCK_WAIT, r"(?i)\bpg_(try_)?advisory_(xact_)?lock(_shared)?\s*\("),
    StatementRule(c.LOCK_WAIT, r"(?i)^\s*SET\s+\S+\s+.*\bNX\b", system="redis"),
)


@dataclass(frozen=True)
class SemconvRules:
    """The endpoint map and statement rules (module docstring); empty map by default."""

    endpoints: tuple[Endpoint, ...] = ()
    statements: tuple[StatementRule, ...] = DEFAULT_STATEMENTS


def rules_from_document(document: Mapping[str, Any]) -> SemconvRules:
    """Rules from a parsed ``hopscope.toml``: its ``[semconv]`` table (``endpoints``,
    ``statements``); :class:`ValueError` naming the entry when one is malformed."""
    table = document.get("semconv") or {}
    endpoints, statements = [], []
    for index, entry in enumerate(table.get("endpoints", [])):
        try:
            endpoints.append(Endpoint(**entry))
        except TypeError as error:
            raise ValueError(f"[[semconv.endpoints]] #{index + 1}: {error}") from error
    for index, entry in enumerate(table.get("statements", [])):
        try:
            statements.append(StatementRule(**entry))
        except TypeError as error:
            raise ValueError(f"[[semconv.statements]] #{index + 1}: {error}") from error
    return SemconvRules(tuple(endpoints), (*statements, *DEFAULT_STATEMENTS))


def load_rules(path: Path | None = None) -> SemconvRules:
    """The rules of ``path``, else of ``$HOPSCOPE_CONFIG``, else of ``./hopscope.toml`` when
    present, else the defaults (no endpoint map, the default statement rules)."""
    if path is None:
        configured = os.environ.get("HOPSCOPE_CONFIG")
        path = Path(configured) if configured else Path("hopscope.toml")
        if not path.is_file():
            return SemconvRules()
    document = tomllib.loads(path.read_text(encoding="utf-8"))
    return rules_from_document(document)


@lru_cache(maxsize=1)
def configured_rules() -> SemconvRules:
    """:func:`load_rules` once per process (the processors' default)."""
    return load_rules()


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _set(attributes: dict[str, Any], added: list[str], key: str, value: Any) -> None:
    if value is not None and key not in attributes:
        attributes[key] = value
        added.append(key)


def _resource(attributes: Mapping[str, Any], text: str) -> str | None:
    if _cache_system(attributes):
        parts = text.split()
        return parts[1] if len(parts) > 1 and parts[1] != "?" else None
    table = _TABLE.search(text)
    if table is None:
        return None
    namespace = attributes.get(c.DB_NAMESPACE)
    name = table.group(1).strip('"')
    return f"{namespace}.{name}" if namespace else name


def enrich_span(span: SpanRecord, rules: SemconvRules) -> SpanRecord:
    """Steps 1-3 of the module docstring; the span itself when nothing is added.

    >>> span = SpanRecord("t", "s", None, "SELECT ledger", "client", 0, 1, "ledger",
    ...     attributes={"db.system.name": "postgresql", "server.port": 5433,
    ...                 "db.query.text": "SELECT balance FROM accounts WHERE id = %s FOR UPDATE"})
    >>> rules = SemconvRules((Endpoint(port=5433, node="pg-primary", db_role="primary"),))
    >>> dict(enrich_span(span, rules).attributes)["hopscope.coordination.kind"]
    'lock_wait'
    """
    if not _may_enrich(span, rules):
        return span
    attributes = dict(span.attributes)
    added: list[str] = []
    # Step 1: the names the jobs read.
    _set(attributes, added, c.DB_SYSTEM, attributes.get(DB_SYSTEM_NAME))
    _set(attributes, added, c.DB_QUERY_TEXT, attributes.get(DB_STATEMENT_OLD))
    _set(attributes, added, c.DB_NAMESPACE, attributes.get(DB_NAME_OLD))
    # Step 2: the endpoint map.
    # (a SERVER span's server.address/port name itself, not a peer: Flask records its own)
    if span.kind != SERVER and (c.SERVER_ADDRESS in attributes or c.SERVER_PORT in attributes):
        for endpoint in rules.endpoints:
            if endpoint.matches(attributes):
                _set(attributes, added, c.PEER_SERVICE, endpoint.service)
                _set(attributes, added, PEER_NODE, endpoint.node)
                _set(attributes, added, c.DB_ROLE, endpoint.db_role)
                if _is_cache_read(attributes, span.name):
                    _set(attributes, added, CACHE_NAME, endpoint.cache)
                break
    # Step 3: statement rules, on database calls only.
    if c.DB_SYSTEM in attributes and c.COORDINATION_KIND not in attributes:
        text = str(attributes.get(c.DB_QUERY_TEXT) or span.name)
        for rule in rules.statements:
            if rule.matches(attributes, text):
                _set(attributes, added, c.COORDINATION_KIND, rule.kind)
                _set(attributes, added, c.COORDINATION_RESOURCE, _resource(attributes, text))
                break
    if not added:
        return span
    attributes[INFERRED] = [*list(attributes.get(INFERRED) or []), *added]
    return replace(span, attributes=attributes)


def _may_enrich(span: SpanRecord, rules: SemconvRules) -> bool:
    """Whether any step of :func:`enrich_span` reads an attribute the span has; most spans
    (no database call, no peer address) have none, and are passed on without a copy."""
    attributes = span.attributes
    return (
        c.DB_SYSTEM in attributes
        or DB_SYSTEM_NAME in attributes
        or DB_STATEMENT_OLD in attributes
        or DB_NAME_OLD in attributes
        or (
            bool(rules.endpoints)
            and span.kind != SERVER
            and (c.SERVER_ADDRESS in attributes or c.SERVER_PORT in attributes)
        )
    )


def _cache_system(attributes: Mapping[str, Any]) -> bool:
    # Any value may arrive (an array, from another SDK): only a name can be a cache's.
    system = attributes.get(c.DB_SYSTEM)
    return isinstance(system, str) and system in CACHE_SYSTEMS


def _operation_of(attributes: Mapping[str, Any], name: str) -> str:
    recorded = attributes.get(c.DB_OPERATION)
    text = str(recorded or attributes.get(c.DB_QUERY_TEXT) or name)
    return text.split(" ", 1)[0].upper() if text else ""


def _operation(span: SpanRecord) -> str:
    return _operation_of(span.attributes, span.name)


def _is_cache_read(attributes: Mapping[str, Any], name: str) -> bool:
    if not _cache_system(attributes):
        return False
    return _operation_of(attributes, name) in CACHE_READS


def _is_cache(span: SpanRecord) -> bool:
    return _cache_system(span.attributes)


def infer_cache(spans: Iterable[SpanRecord]) -> list[SpanRecord]:
    """Step 4 of the module docstring: the cache reads of one trace with their outcome set
    (only those that changed); the others are not returned."""
    spans = list(spans)
    # Only the siblings of a cache call can change (most parents have none): group those alone.
    parents = {span.parent_id for span in spans if _is_cache(span)}
    if not parents:
        return []
    children: dict[str | None, list[SpanRecord]] = defaultdict(list)
    for span in spans:
        if span.parent_id in parents:
            children[span.parent_id].append(span)
    changed: list[SpanRecord] = []
    for siblings in children.values():
        ordered = sorted(siblings, key=lambda s: (s.start_ns, s.span_id))
        for position, span in enumerate(ordered):
            if not _is_cache(span) or _operation(span) not in CACHE_READS:
                continue
            if c.CACHE_HIT in span.attributes:
                continue
            miss = span.failed
            for later in ordered[position + 1 :]:
                if _is_cache(later):
                    if later.start_ns >= span.end_ns and _operation(later) in CACHE_READS:
                        break
                    continue
                if c.DB_SYSTEM in later.attributes and later.start_ns >= span.end_ns:
                    miss = True
                    break
            attributes = dict(span.attributes)
            added: list[str] = []
            _set(attributes, added, c.CACHE_HIT, not miss)
            _set(attributes, added, CACHE_NAME, str(attributes.get(c.DB_SYSTEM)))
            attributes[INFERRED] = [*list(attributes.get(INFERRED) or []), *added]
            changed.append(replace(span, attributes=attributes))
    return changed


def enrich_spans(spans: Sequence[SpanRecord], rules: SemconvRules) -> list[SpanRecord]:
    """:func:`enrich_span` over ``spans``."""
    return [enrich_span(span, rules) for span in spans]
