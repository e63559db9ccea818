"""The searchable fields of each record kind and their Elasticsearch types.

Two sources, both code, so the Kibana assets cannot drift from what the processors write:

- the explicit ``properties`` of :func:`hopscope.processors.templates.index_template`;
- the derived records that :mod:`hopscope.processors.documents` spreads under ``hopscope.*``
  (one field per dataclass field), typed the way the template's dynamic templates map them:
  strings and string tuples to ``keyword``, ints to ``long``, bools to ``boolean``.

Fields the template disables (``enabled: false`` objects) and the open ``attributes.*`` /
``resource.*`` namespaces are not listed: Kibana cannot aggregate on the former, and the latter
depend on what services send.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, Final

from hopscope.processors.templates import KINDS, index_template

NUMERIC: Final = frozenset({"long", "integer", "short", "byte", "double", "float", "half_float",
                            "scaled_float", "unsigned_long"})  # fmt: skip
DATES: Final = frozenset({"date", "date_nanos"})
AGGREGATABLE: Final = NUMERIC | DATES | {"keyword", "boolean"}


def _derived_sources() -> dict[str, list[tuple[str, type]]]:
    """Per kind, the (namespace, record type) pairs documents.py spreads into its documents."""
    from hopscope.processors.derive.coordination import CoordinationDelay, TwoPhaseCommit
    from hopscope.processors.derive.failovers import Failover
    from hopscope.processors.derive.hops import Hop
    from hopscope.processors.derive.summary import TraceSummary

    return {
        "hops": [("hopscope.hop", Hop)],
        "traces": [("hopscope.trace", TraceSummary)],
        "failovers": [("hopscope.failover", Failover)],
        "coordination": [
            ("hopscope.coordination", CoordinationDelay),
            ("hopscope.two_phase_commit", TwoPhaseCommit),
        ],
    }


# Mapping-valued record fields become one numeric field per key; the keys are fixed by design.
def _mapping_keys() -> dict[str, tuple[str, ...]]:
    from hopscope.processors.derive.critical_path import SEGMENT_KINDS

    return {"hopscope.trace.critical_by_kind": tuple(SEGMENT_KINDS)}


def _es_type(annotation: Any) -> str | None:
    """The type the template's dynamic mapping gives a value of this Python type."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _es_type(args[0])
    if origin is tuple and args and args[0] is str:
        return "keyword"
    if annotation is bool:
        return "boolean"
    if annotation is int:
        return "long"
    if annotation is float:
        return "float"
    if annotation is str:
        # The template's catch-all "strings" dynamic template: keyword.
        return "keyword"
    return None


def _explicit(kind: str) -> dict[str, str]:
    """The explicitly mapped, indexed fields of ``kind``'s template."""
    properties = index_template("hopscope", kind)["template"]["mappings"]["properties"]
    found = {}
    for name, mapping in properties.items():
        if mapping.get("type") == "object" or mapping.get("enabled") is False:
            continue
        found[name] = mapping["type"]
    return found


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
    found = _explicit(kind)
    disabled = {
        name
        for name, mapping in index_template("hopscope", kind)["template"]["mappings"][
            "properties"
        ].items()
        if mapping.get("enabled") is False
    }
    mapping_keys = _mapping_keys()
    if kind == "coordination":
        found["hopscope.record"] = "keyword"  # "delay" or "2pc": which record the doc holds
    for namespace, record in _derived_sources().get(kind, []):
        hints = typing.get_type_hints(record)
        for field in dataclasses.fields(record):
            name = f"{namespace}.{field.name}"
            if name in disabled or name in found:
                continue
            if name in mapping_keys:
                for key in mapping_keys[name]:
                    found[f"{name}.{key}"] = "long"
                continue
            es_type = _es_type(hints[field.name])
            if es_type is not None:
                found[name] = es_type
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
