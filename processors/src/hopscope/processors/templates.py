"""Index templates: one composable template per record kind, installed at start.

Every field a document carries is mapped explicitly, from :mod:`hopscope.processors.schema`;
dynamic templates type only the keys of the open ``attributes`` / ``resource`` maps.

Indices are daily, ``<prefix>-<kind>-YYYY.MM.DD``; deleting a whole day is the retention. The
templates use nothing beyond the server core (no data streams, ILM, ingest pipelines, scripts or
``mapper-extras`` types such as ``match_only_text``): the integ-test-zip distribution has none.

OTel attributes live under ``attributes.*`` with ``subobjects: false``, so ``http.request`` and
``http.request.method`` can both be fields; strings map to ``keyword`` and numbers to numbers.
A field-count guard stops a flood of distinct attribute keys (a mapping explosion) from
rejecting documents: fields beyond the limit (``FIELD_LIMIT`` per index, so per day) are kept
in ``_source`` but not mapped, and Elasticsearch lists them in the document's ``_ignored``. The
decoder caps each span at 128 attributes (:mod:`hopscope.processors.sanitize`), so one span
cannot fill an index's mapping alone; many spans with distinct keys fill it for the rest of the
day, after which only the keys already mapped are searchable.
"""

from __future__ import annotations

import copy
import functools
from typing import Any, Final

from hopscope.processors.schema import (
    INDEX_KINDS,
    KEYWORD,
    NAMESPACES,
    OPEN_MAP,
    STORED,
    Field,
    index_fields,
)

KINDS: Final = INDEX_KINDS
FIELD_LIMIT: Final = 2000

# The only dynamic mappings: the open attribute maps, whose keys depend on what services send.
# Doc values only (``index: false``, see schema.FILTERED): the analysis reads and aggregates
# them (peer.service, db.system...) and Kibana can still filter on one by reading doc values,
# while nothing selects spans by an attribute's terms; a payment is found by the traces
# index's ``hopscope.trace.payment_id``, which is indexed.
_ATTRIBUTE_TEMPLATES = [
    {"attr_strings": {"path_match": "attributes.*", "match_mapping_type": "string",
                      "mapping": {"type": "keyword", "ignore_above": 1024, "index": False}}},
    # ignore_malformed: a number that is a card number arrives masked, as text
    # (redaction.mask_pan_number); kept in _source, it must not get the document rejected.
    {"attr_longs": {"path_match": "attributes.*", "match_mapping_type": "long",
                    "mapping": {"type": "long", "ignore_malformed": True, "index": False}}},
    {"attr_doubles": {"path_match": "attributes.*", "match_mapping_type": "double",
                      "mapping": {"type": "double", "ignore_malformed": True, "index": False}}},
    {"resource_strings": {"path_match": "resource.*", "match_mapping_type": "string",
                          "mapping": {"type": "keyword", "ignore_above": 1024, "index": False}}},
]  # fmt: skip


def _mapping(field: Field) -> dict[str, Any]:
    """The explicit mapping of one schema row."""
    if field.es == STORED:
        # Kept for analysis in _source, not searched (lists of entries, events, links).
        return {"type": "object", "enabled": False}
    if field.es == OPEN_MAP:
        # subobjects: false, so "http.request" and "http.request.method" can both be keys;
        # dynamic, while the rest of the document is not (the templates above type the keys).
        return {"type": "object", "subobjects": False, "dynamic": True}
    if not field.searchable:
        # A copy of another field (schema.COPIES): in _source only.
        return {"type": field.es, "index": False, "doc_values": False}
    mapping: dict[str, Any] = {"type": field.es}
    if field.es == KEYWORD and field.document.startswith(_DERIVED):
        # Derived names (operations, resources, transaction ids) may be long (sanitize lets
        # a value reach 32,768 chars): an over-long one stays in _source, unindexed, instead
        # of failing the document on Elasticsearch's 32,766-byte term limit.
        mapping["ignore_above"] = 1024
    if not field.filtered:
        # Doc values only (schema.FILTERED says why): no terms dictionary or points to build
        # and merge for ids, durations and names nobody selects by.
        mapping["index"] = False
    return mapping


_DERIVED: Final = tuple(f"{namespace}." for namespace in NAMESPACES)


@functools.cache
def _properties(kind: str) -> dict[str, Any]:
    return {name: _mapping(field) for name, field in index_fields(kind).items() if not field.in_map}


def index_template(prefix: str, kind: str, replicas: int = 0) -> dict[str, Any]:
    """The composable index template body for ``kind`` under ``prefix``.

    ``replicas``: copies of each shard besides the primary; 0 on one node (a replica could
    never be placed there and would keep the cluster yellow), 1 on a cluster
    (:meth:`~hopscope.processors.sink.ElasticsearchSink.install_templates` chooses).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return {
        "index_patterns": [f"{prefix}-{kind}-*"],
        # Above the built-in logs/traces templates (100-120), so ours wins for our indices.
        "priority": 200,
        "template": {
            "settings": {
                "number_of_shards": 1,
                "number_of_replicas": replicas,
                "index.mapping.total_fields.limit": FIELD_LIMIT,
                "index.mapping.total_fields.ignore_dynamic_beyond_limit": True,
                "index.refresh_interval": "1s",
            },
            "mappings": {
                # Every derived field is mapped explicitly from the schema; a field missing
                # there is kept in _source but not indexed, instead of guessed.
                "dynamic": False,
                "dynamic_templates": _ATTRIBUTE_TEMPLATES,
                "properties": copy.deepcopy(_properties(kind)),
            },
        },
        "_meta": {"managed_by": "hopscope", "kind": kind},
    }


def template_name(prefix: str, kind: str) -> str:
    return f"{prefix}-{kind}"


def index_name(prefix: str, kind: str, time_ns: int) -> str:
    """The daily index a record of ``kind`` at ``time_ns`` (UTC) belongs to.

    >>> index_name("hopscope", "spans", 1_764_150_000_000_000_000)
    'hopscope-spans-2025.11.26'
    """
    return f"{prefix}-{kind}-{_day(time_ns // 86_400_000_000_000)}"


@functools.lru_cache(maxsize=1024)
def _day(days_since_epoch: int) -> str:
    import datetime as dt

    return f"{dt.datetime.fromtimestamp(days_since_epoch * 86_400, tz=dt.UTC):%Y.%m.%d}"
