"""Index templates: one composable template per record kind, installed at start.

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

import functools
from typing import Any, Final

KINDS: Final = ("spans", "logs", "hops", "traces", "failovers", "coordination")
FIELD_LIMIT: Final = 2000

_KEYWORD = {"type": "keyword"}
_LONG = {"type": "long"}
_BOOL = {"type": "boolean"}

_ATTRIBUTE_TEMPLATES = [
    {"attr_strings": {"path_match": "attributes.*", "match_mapping_type": "string",
                      "mapping": {"type": "keyword", "ignore_above": 1024}}},
    # ignore_malformed: a number that is a card number arrives masked, as text
    # (redaction.mask_pan_number); kept in _source, it must not get the document rejected.
    {"attr_longs": {"path_match": "attributes.*", "match_mapping_type": "long",
                    "mapping": {"type": "long", "ignore_malformed": True}}},
    {"attr_doubles": {"path_match": "attributes.*", "match_mapping_type": "double",
                      "mapping": {"type": "double", "ignore_malformed": True}}},
    {"resource_strings": {"path_match": "resource.*", "match_mapping_type": "string",
                          "mapping": {"type": "keyword", "ignore_above": 1024}}},
    # Derived records: every other string is an identifier or a name.
    {"strings": {"match_mapping_type": "string", "mapping": {"type": "keyword",
                                                             "ignore_above": 1024}}},
]  # fmt: skip

_COMMON = {
    "@timestamp": {"type": "date_nanos"},
    "trace.id": _KEYWORD,
    "span.id": _KEYWORD,
    "service.name": _KEYWORD,
    "service.node.name": _KEYWORD,
    "attributes": {"type": "object", "subobjects": False},
    "resource": {"type": "object", "subobjects": False},
    # What the processor sanitized (reason codes, hopscope.processors.sanitize) and recorded
    # times it replaced: text, since a uint64 may not fit a long.
    "hopscope.sanitized": _KEYWORD,
    "hopscope.original.start_ns": _KEYWORD,
    "hopscope.original.end_ns": _KEYWORD,
    "hopscope.original.time_ns": _KEYWORD,
}

_KIND_FIELDS: dict[str, dict[str, Any]] = {
    "spans": {
        "parent.id": _KEYWORD,
        "span.name": _KEYWORD,
        "span.kind": _KEYWORD,
        "span.status.message": {"type": "text"},
        "event.duration": _LONG,
        "event.outcome": _KEYWORD,
        "span.events": {"type": "object", "enabled": False},
        "span.links": {"type": "object", "enabled": False},
    },
    "logs": {
        "message": {"type": "text"},
        "log.level": _KEYWORD,
        "event.name": _KEYWORD,
    },
    "hops": {"event.duration": _LONG, "event.outcome": _KEYWORD},
    "traces": {
        "event.duration": _LONG,
        "event.outcome": _KEYWORD,
        "payment.id": _KEYWORD,
        # Pairs (operation or service, exclusive ns): kept for analysis, not searched.
        "hopscope.trace.critical_by_operation": {"type": "object", "enabled": False},
        "hopscope.trace.critical_by_service": {"type": "object", "enabled": False},
    },
    "failovers": {"event.outcome": _KEYWORD},
    "coordination": {"event.duration": _LONG},
}


def index_template(prefix: str, kind: str) -> dict[str, Any]:
    """The composable index template body for ``kind`` under ``prefix``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return {
        "index_patterns": [f"{prefix}-{kind}-*"],
        # Above the built-in logs/traces templates (100-120), so ours wins for our indices.
        "priority": 200,
        "template": {
            "settings": {
                "number_of_shards": 1,
                "number_of_replicas": 0,
                "index.mapping.total_fields.limit": FIELD_LIMIT,
                "index.mapping.total_fields.ignore_dynamic_beyond_limit": True,
                "index.refresh_interval": "1s",
            },
            "mappings": {
                "dynamic_templates": _ATTRIBUTE_TEMPLATES,
                "properties": {**_COMMON, **_KIND_FIELDS[kind]},
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
