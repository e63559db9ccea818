"""The searchable fields of each record kind and their Elasticsearch types.

Read from the record schema (:mod:`hopscope.processors.schema`), the same tables the documents
and the index templates come from, so the Kibana assets cannot drift from what the processors
write. Fields kept in ``_source`` only (``enabled: false`` objects) and the open
``attributes.*`` / ``resource.*`` namespaces are not listed: Kibana cannot aggregate on the
former, and the latter depend on what services send.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Mapping
from typing import Final

from hopscope.processors.schema import DYNAMIC, index_fields
from hopscope.processors.templates import KINDS

NUMERIC: Final = frozenset({"long", "integer", "short", "byte", "double", "float", "half_float",
                            "scaled_float", "unsigned_long"})  # fmt: skip
DATES: Final = frozenset({"date", "date_nanos"})
AGGREGATABLE: Final = NUMERIC | DATES | {"keyword", "boolean"}


@functools.cache
def field_types(kind: str) -> Mapping[str, str]:
    """Every searchable field of ``kind`` and its Elasticsearch type.

    >>> field_types("hops")["hopscope.hop.network_ns"]
    'long'
    >>> field_types("spans")["service.name"]
    'keyword'
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    found = {
        name: field.es
        for name, field in index_fields(kind).items()
        if field.searchable and field.es != DYNAMIC
    }
    return types.MappingProxyType(dict(sorted(found.items())))


def field_type(kinds: str | tuple[str, ...], name: str) -> str | None:
    """The type of ``name`` in the first of ``kinds`` that has it, else None."""
    for kind in (kinds,) if isinstance(kinds, str) else kinds:
        found = field_types(kind).get(name)
        if found is not None:
            return found
    return None


def duration_fields(kind: str) -> list[str]:
    """The nanosecond fields of ``kind``: ``event.duration`` and every ``*_ns`` number."""
    return [
        name
        for name, es_type in field_types(kind).items()
        if es_type in NUMERIC
        and (name == "event.duration" or name.endswith("_ns") or ".critical_by_kind." in name)
        # Epoch instants, not durations.
        and not name.endswith((".start_ns", ".time_ns"))
    ]
