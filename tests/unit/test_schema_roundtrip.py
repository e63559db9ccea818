"""The record schema (processors/schema.py) is complete, and both analysis paths agree with it.

- Every field of every record has a schema row and every row reads a real field, so a field
  added to a record without a row (or a row left behind by a removed field) fails here.
- Documents carry exactly the schema's fields; the index templates and Kibana's field list
  hold exactly its searchable ones.
- Property: for any derived record, document -> frame (what the Elasticsearch and Parquet
  loaders do) equals record -> frame (the in-memory ``--file`` path).
"""

from __future__ import annotations

import dataclasses
import doctest
import importlib
import typing
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from hopscope.analysis.loaders import dataset_from_documents
from hopscope.analysis.loaders._records import frame_from_records
from hopscope.analysis.schema import SCHEMAS
from hopscope.dashboards.kibana.fields import field_types
from hopscope.ingest import conventions as c
from hopscope.processors import schema
from hopscope.processors.derive import derive_all
from hopscope.processors.derive.coordination import CoordinationDelay, TwoPhaseCommit
from hopscope.processors.derive.failovers import Failover
from hopscope.processors.derive.hops import Hop
from hopscope.processors.documents import (
    Document,
    derived_documents,
    failover_document,
    log_document,
    span_document,
)
from hopscope.processors.records import LogRecord, SpanRecord
from hopscope.processors.schema import TABLES, Table, TraceRecord
from hopscope.processors.templates import index_template
from tests.unit.test_fuzz_derive import forests

T0 = 1_775_030_400_000_000_000
LONGS = st.integers(-(2**63), 2**63 - 1)
TIMES = st.integers(0, 2**62)
TEXT = st.text(max_size=12)


def _record_fields(path: str, record: type) -> list[str]:
    return [f"{path}{f.name}" for f in dataclasses.fields(record)]


def _covered_by(table: Table) -> list[str]:
    """The record fields a table must read: the record's own, or those of its ``covers``."""
    if not table.covers:
        return _record_fields("", table.record)
    return [name for path, record in table.covers for name in _record_fields(f"{path}.", record)]


def _names_a_field(record: type, path: str) -> bool:
    """Whether the dotted ``path`` names a field of ``record`` (through nested records)."""
    for part in path.split("."):
        if not dataclasses.is_dataclass(record):
            return False
        hints = typing.get_type_hints(record)
        if part not in hints:
            return False
        record = hints[part]
    return True


@pytest.mark.parametrize("kind", sorted(TABLES))
def test_every_record_field_has_a_row_and_every_row_reads_a_field(kind: str) -> None:
    table = TABLES[kind]
    read = {source for f in table.fields for source in f.source}
    missing = sorted(set(_covered_by(table)) - read)
    assert not missing, f"{table.record.__name__} fields without a schema row: {missing}"
    stray = sorted(s for s in read if not _names_a_field(table.record, s))
    assert not stray, f"{kind}: rows read what is no field of {table.record.__name__}: {stray}"
    documents = [f.document for f in table.fields]
    assert len(documents) == len(set(documents)), f"{kind}: a document field twice"


def test_tables_sharing_an_index_agree_on_shared_fields() -> None:
    delays, commits = TABLES["coordination"], TABLES["two_phase_commits"]
    shared = {f.document for f in delays.fields} & {f.document for f in commits.fields}
    for name in shared:
        a = next(f for f in delays.fields if f.document == name)
        b = next(f for f in commits.fields if f.document == name)
        assert a.es == b.es, name


@pytest.mark.parametrize("kind", schema.INDEX_KINDS)
def test_templates_and_kibana_hold_exactly_the_schema(kind: str) -> None:
    properties = index_template("hopscope", kind)["template"]["mappings"]["properties"]
    rows = schema.index_fields(kind)
    assert set(properties) == {name for name, f in rows.items() if not f.in_map}
    searchable = {n for n, f in rows.items() if f.searchable and not f.in_map}
    assert set(field_types(kind)) == searchable
    for name in searchable:
        assert properties[name]["type"] == rows[name].es == field_types(kind)[name]


@pytest.mark.parametrize("kind", schema.INDEX_KINDS)
def test_only_the_filtered_fields_keep_an_inverted_index(kind: str) -> None:
    properties = index_template("hopscope", kind)["template"]["mappings"]["properties"]
    for name, field in schema.index_fields(kind).items():
        if field.in_map or field.es in (schema.STORED, schema.OPEN_MAP):
            continue
        mapping = properties[name]
        if name in schema.COPIES:
            assert (mapping["index"], mapping["doc_values"]) == (False, False), name
        elif name in schema.FILTERED or field.es == schema.TEXT:
            assert "index" not in mapping and "doc_values" not in mapping, name
        else:
            # Doc values only: still read by the docvalues loader and aggregated.
            assert mapping["index"] is False and "doc_values" not in mapping, name


def test_what_queries_select_by_is_indexed_and_copies_are_real_fields() -> None:
    # The loaders' filters (analysis/loaders/elasticsearch.py _query, _record_filter).
    assert {"@timestamp", "trace.id", "service.name", schema.RECORD_FIELD} <= schema.FILTERED
    every = {name for kind in schema.INDEX_KINDS for name in schema.index_fields(kind)}
    assert not (schema.FILTERED - every) and not (schema.COPIES - every)
    # A copy is never what an analysis column reads.
    columns = {f.document for table in schema.TABLES.values() for f in table.columns()}
    assert not schema.COPIES & columns


def test_analysis_columns_are_the_schema_columns() -> None:
    for kind, columns in SCHEMAS.items():
        table = TABLES[kind]
        assert list(columns) == [f.column for f in table.columns()]
        assert [document for document, _ in columns.values()] == [
            f.document for f in table.columns()
        ]


# -- documents carry the schema's fields and nothing else ----------------------------------


def _assert_schema_fields(document: Document) -> None:
    allowed = {n for n, f in schema.index_fields(document.kind).items() if not f.in_map}
    extra = set(document.body) - allowed
    assert not extra, f"{document.kind} document fields without a schema row: {sorted(extra)}"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(forests())
def test_documents_carry_only_schema_fields(spans: list[SpanRecord]) -> None:
    for span in spans:
        _assert_schema_fields(span_document(span, "p"))
    for document in derived_documents(derive_all(spans), "p"):
        _assert_schema_fields(document)
    log = LogRecord(T0, "gw", None, "INFO", "hi", flags=("x",), original_time_ns=2**64 - 1)
    _assert_schema_fields(log_document(log, "p"))


# -- property: document -> frame equals record -> frame -------------------------------------


def _document_frame(kind: str, documents: list[Document]) -> pl.DataFrame:
    return getattr(dataset_from_documents(documents), kind).collect()


def _record_frame(kind: str, records: list[Any]) -> pl.DataFrame:
    return frame_from_records(TABLES[kind], records)


def _check(kind: str, records: list[Any], documents: list[Document]) -> None:
    assert_frame_equal(_document_frame(kind, documents), _record_frame(kind, records))


def _derived(record_type: type, **overrides: Any) -> st.SearchStrategy[Any]:
    """Any instance of a derived record: ints within Elasticsearch's long, short text."""
    hints = typing.get_type_hints(record_type)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for f in dataclasses.fields(record_type):
        hint = hints[f.name]
        optional = type(None) in typing.get_args(hint)
        base = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
        if base is bool:
            value: st.SearchStrategy[Any] = st.booleans()
        elif base is int:
            value = TIMES if f.name.endswith(("start_ns", "time_ns")) else LONGS
        elif base is str:
            value = TEXT
        elif typing.get_origin(base) is tuple:
            value = st.lists(TEXT, max_size=3).map(tuple)
        else:
            raise AssertionError(f"no strategy for {record_type.__name__}.{f.name}: {hint}")
        fields[f.name] = st.one_of(st.none(), value) if optional else value
    fields.update(overrides)
    return st.fixed_dictionaries(fields).map(lambda values: record_type(**values))


DERIVED = {
    "hops": (_derived(Hop), lambda h: derived_documents_of("hops", h)),
    "failovers": (_derived(Failover), lambda f: failover_document(f, "p")),
    "coordination": (
        _derived(CoordinationDelay), lambda d: derived_documents_of("coordination", d)
    ),
    "two_phase_commits": (
        _derived(TwoPhaseCommit, resource=TEXT),
        lambda t: derived_documents_of("two_phase_commits", t),
    ),
}  # fmt: skip


def derived_documents_of(kind: str, record: Any) -> Document:
    """The one document ``derived_documents`` writes for ``record`` of ``kind``."""
    table = TABLES[kind]
    return Document(table.index, "i", table.id(record), table.body(record))


@pytest.mark.parametrize("kind", sorted(DERIVED))
def test_document_frame_equals_record_frame_for_any_derived_record(kind: str) -> None:
    records, to_document = DERIVED[kind]

    @settings(max_examples=60, deadline=None)
    @given(st.lists(records, max_size=5, unique_by=TABLES[kind].id))
    def check(batch: list[Any]) -> None:
        _check(kind, batch, [to_document(r) for r in batch])

    check()


ATTRIBUTES = st.dictionaries(
    st.sampled_from([c.PEER_SERVICE, c.SERVER_ADDRESS, c.ERROR_TYPE, c.DB_SYSTEM,
                     "hopscope.cache.hit", "payment.id", "hopscope.db.role"]),
    st.one_of(TEXT, st.booleans(), st.integers(-(2**40), 2**40),
              st.sampled_from(["true", "False"])),
    max_size=4,
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.builds(
            SpanRecord,
            trace_id=st.just("a" * 32),
            span_id=st.text("0123456789abcdef", min_size=16, max_size=16),
            parent_id=st.none() | st.just("f" * 16),
            name=TEXT,
            kind=st.sampled_from(["client", "server", "internal"]),
            start_ns=TIMES,
            end_ns=TIMES,
            service=TEXT,
            node=st.none() | TEXT,
            status=st.sampled_from(["unset", "ok", "error"]),
            attributes=ATTRIBUTES,
            resource=st.dictionaries(st.just("cloud.region"), TEXT, max_size=1),
        ),
        max_size=5,
        unique_by=lambda s: s.span_id,
    )
)
def test_document_frame_equals_record_frame_for_any_span(spans: list[SpanRecord]) -> None:
    # Attribute values of any type: the document path leaves the casting to polars, the
    # record path must cast the same way. (Documents whose key holds two types in one batch
    # do not make a frame at all; the record path has no such limit.)
    assume(_one_type_per_key(spans))
    _check("spans", spans, [span_document(s, "p") for s in spans])


def _one_type_per_key(spans: list[SpanRecord]) -> bool:
    """Whether each attribute key holds one value type across ``spans`` (documents with mixed
    types in one key are rejected by the polars frame the document path builds)."""
    seen: dict[str, set[type]] = {}
    for span in spans:
        for key, value in span.attributes.items():
            seen.setdefault(key, set()).add(type(value))
    return all(len(types) == 1 for types in seen.values())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(forests())
def test_document_frame_equals_record_frame_for_any_derived_trace(
    spans: list[SpanRecord],
) -> None:
    derived = derive_all(spans)
    documents = list(derived_documents(derived, "p"))
    summary = TraceRecord(derived.summary, derived.critical_path)
    _check("traces", [summary], documents)
    _check("hops", _unique(TABLES["hops"], derived.hops), documents)
    _check("failovers", _unique(TABLES["failovers"], derived.failovers), documents)
    _check("coordination", _unique(TABLES["coordination"], derived.coordination), documents)
    commits = _unique(TABLES["two_phase_commits"], derived.two_phase_commits)
    _check("two_phase_commits", commits, documents)


def _unique(table: Table, records: Any) -> list[Any]:
    """Last record per document id (documents with one id overwrite each other)."""
    return list({table.id(r): r for r in records}.values())


DOCTESTED = ("hopscope.processors.schema", "hopscope.dashboards.kibana.fields")


@pytest.mark.parametrize("name", DOCTESTED)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


TRACE_IDS = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)


@pytest.mark.parametrize("kind", sorted({*DERIVED, "spans"}))
def test_document_ids_include_the_trace_id(kind: str) -> None:
    """Ids local to a trace (span ids) repeat across traces: every document id of a record in a
    trace holds its trace id, so one trace's record never overwrites another's (issue: a second
    simulator run replaced the first's hops). The same record always gets the same id."""
    table = TABLES[kind]
    records: st.SearchStrategy[Any] = (
        forests().filter(bool).map(lambda spans: spans[0]) if kind == "spans" else DERIVED[kind][0]
    )

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(records, TRACE_IDS, TRACE_IDS)
    def check(record: Any, first: str, second: str) -> None:
        assume(first != second)
        one = dataclasses.replace(record, trace_id=first)
        other = dataclasses.replace(record, trace_id=second)
        assert first in table.id(one) and table.id(one) == table.id(dataclasses.replace(one))
        assert table.id(one) != table.id(other)

    check()
