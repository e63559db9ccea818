"""A trace delivered in parts ends with the derived records of the whole trace, no more.

During a broker failover some spans of a trace reach the processor seconds after the rest (the
producer retries a batch whose partition leader died): the assembler completes the trace at its
idle timeout, derives it, and derives it again when the late spans reopen it. Most derived ids
do not depend on which spans were there, but a 2PC transaction's does: its coordinator is the
entry span above the 2PC spans, and the ``clearing/Settle`` SERVER span ends (so is exported)
after them. Derived without it, the transaction was ``2pc-<trace>-None-<tx>``; derived again,
``2pc-<trace>-<settle span>-<tx>``; and the first document stayed in the index, one
coordination record more than a clean replay (the cluster fault case kafka-broker-kill).

Here every simulator scenario's traces are fed to the assembler in parts, an idle timeout
between them, through the pipeline's derivation into an in-memory sink: what the sink holds at
the end must be what the whole trace derives, ids and bodies.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hopscope.ingest import conventions as c
from hopscope.ingest.simulator import Scenario, SimulationConfig, parse_iso8601_ns, simulate
from hopscope.processors.archive import ParquetArchive
from hopscope.processors.assembly import DERIVED_KEY_BYTES, TraceAssembler
from hopscope.processors.decode import decode_spans
from hopscope.processors.documents import Document, deletion
from hopscope.processors.pipeline import derive_trace
from hopscope.processors.records import SERVER, SpanRecord
from hopscope.processors.sink import ElasticsearchSink, InMemorySink, bulk_body
from tests.unit.test_processor_loop import MS, SPANS, START, TRACE_A, Rig, spans_message

PREFIX = "hopscope"
IDLE_S = 1.0
TRACES_PER_SCENARIO = 8
Derived = dict[tuple[str, str, str], dict[str, Any]]


@functools.cache
def scenario_traces(scenario: Scenario) -> tuple[tuple[SpanRecord, ...], ...]:
    """The traces of one simulator run, each in the order its spans were exported (a span is
    exported when it ends: children before their parents)."""
    exporter = InMemorySpanExporter()
    config = SimulationConfig(start_ns=parse_iso8601_ns("2026-05-04T10:00:00Z"),
                              scenario=scenario, seed=17, run_id="late-spans",
                              traces=TRACES_PER_SCENARIO)  # fmt: skip
    simulate(config, span_processors=[SimpleSpanProcessor(exporter)])
    spans = decode_spans(encode_spans(exporter.get_finished_spans()).SerializeToString())
    by_trace: dict[str, list[SpanRecord]] = defaultdict(list)
    for span in spans:
        by_trace[span.trace_id].append(span)
    return tuple(tuple(trace) for trace in by_trace.values())


def derived_in(sink: InMemorySink) -> Derived:
    """The derived documents the sink holds (everything but span documents)."""
    return {d.key: d.body for d in sink.documents.values() if d.kind != "spans"}


def deliver(parts: Iterable[Iterable[SpanRecord]]) -> InMemorySink:
    """Each part one message, the trace idle (so derived) after each: as the runtime does."""
    now = [0.0]
    assembler = TraceAssembler(trace_idle_s=IDLE_S, clock=lambda: now[0])
    sink = InMemorySink()
    for offset, part in enumerate(parts):
        assembler.add_spans(part, ("otlp_spans", 0, offset))
        now[0] += 2 * IDLE_S
        sink.write([d for trace in assembler.due() for d in derive_trace(trace, PREFIX).documents])
    assert assembler.open_traces == 0
    return sink


def whole(spans: Iterable[SpanRecord]) -> Derived:
    return derived_in(deliver([list(spans)]))


@given(
    scenario=st.sampled_from(list(Scenario)),
    number=st.integers(0, TRACES_PER_SCENARIO - 1),
    shuffled=st.booleans(),
    data=st.data(),
)
@settings(max_examples=200, deadline=None)
def test_a_trace_delivered_in_parts_ends_with_the_records_of_the_whole_trace(
    scenario: Scenario, number: int, shuffled: bool, data: st.DataObject
) -> None:
    spans = list(scenario_traces(scenario)[number])
    if shuffled:  # redeliveries and retries of several producers: any order at all
        spans = data.draw(st.permutations(spans), label="order")
    cuts = data.draw(
        st.lists(st.integers(1, len(spans) - 1), min_size=1, max_size=3, unique=True),
        label="cuts",
    )
    bounds = [0, *sorted(cuts), len(spans)]
    parts = [spans[start:end] for start, end in itertools.pairwise(bounds)]
    assert derived_in(deliver(parts)) == whole(spans)


def two_phase_commit_ids(derived: Iterable[tuple[str, str, str]]) -> set[str]:
    return {doc_id for kind, _, doc_id in derived if kind == "coordination" and "2pc-" in doc_id}


@pytest.mark.parametrize("scenario", list(Scenario), ids=lambda s: s.value)
def test_a_2pc_transaction_derived_before_its_coordinator_span_came_is_deleted(
    scenario: Scenario,
) -> None:
    """The broker-kill case itself: the clearing SERVER span (the coordinator of the 2PC
    spans under it) arrives after the trace was derived without it."""
    trace = next(
        t for t in scenario_traces(scenario) if any(s.name == "clearing/Settle" for s in t)
    )
    settle = next(s for s in trace if s.name == "clearing/Settle" and s.kind == SERVER)
    early = [s for s in trace if s is not settle]
    sink = deliver([early, [settle]])
    first, last = sink.writes
    partial = two_phase_commit_ids(d.key for d in first)
    assert partial and all("-None-tx-" in doc_id for doc_id in partial)
    assert {d.id for d in last if d.delete} == partial
    assert derived_in(sink) == whole(trace)
    assert all(f"-{settle.span_id}-tx-" in i for i in two_phase_commit_ids(derived_in(sink)))


def test_the_runtime_deletes_what_a_late_span_made_stale() -> None:
    """Through the processor loop: a 2PC prepare span, then (after its trace was derived)
    the SERVER span it hangs under; the sink ends as after a clean drain of both."""
    settle, prepare = b"\x01" * 8, b"\x02" * 8
    coordinator = {"span_id": settle, "name": "clearing/Settle", "kind": Span.SPAN_KIND_SERVER,
                   "start": START, "end": START + 9 * MS}  # fmt: skip
    phase = {"span_id": prepare, "parent": settle, "name": "2pc.prepare",
             "start": START + MS, "end": START + 3 * MS,
             "attributes": {c.COORDINATION_KIND: c.TWO_PC_PREPARE,
                            c.COORDINATION_RESOURCE: "tx-1",
                            c.COORDINATION_PARTICIPANT: "ledger-1"}}  # fmt: skip
    late = Rig()
    late.produce(SPANS, spans_message(TRACE_A, phase))
    with late.processor() as processor:
        processor.run(drain=True)
        assert two_phase_commit_ids(derived_in(late.sink)) == {f"2pc-{TRACE_A.hex()}-None-tx-1"}
        late.produce(SPANS, spans_message(TRACE_A, coordinator))
        counts = processor.run(drain=True)
    assert counts.late_spans == 1
    clean = Rig()
    clean.produce(SPANS, spans_message(TRACE_A, phase))
    clean.produce(SPANS, spans_message(TRACE_A, coordinator))
    clean.drain()
    assert derived_in(late.sink) == derived_in(clean.sink)
    assert two_phase_commit_ids(derived_in(late.sink)) == {
        f"2pc-{TRACE_A.hex()}-{settle.hex()}-tx-1"
    }
    # A delay and a transaction per derivation; the deletion is not counted as indexed.
    assert counts.indexed["coordination"] == 4


class _BulkClient:
    """Answers a bulk request with one status per action (an action line, then a source line
    unless it is a delete); ``status`` is the answer to each delete."""

    def __init__(self, status: int) -> None:
        self.status = status

    def options(self, **_options: Any) -> _BulkClient:
        return self

    def bulk(self, operations: Iterable[bytes], **_params: Any) -> dict[str, Any]:
        lines = iter(json.loads(line) for line in operations)
        items = []
        for action in lines:
            (verb,) = action
            if verb != "delete":
                next(lines)
            items.append({verb: {"status": self.status if verb == "delete" else 201}})
        return {"errors": self.status >= 300, "items": items}


def test_a_deletion_is_a_bulk_delete_and_a_document_already_gone_is_acknowledged() -> None:
    index = "hopscope-coordination-2026.05.04"
    documents = [Document("coordination", index, "2pc-t-s-tx-1", {"a": 1}),
                 deletion("coordination", index, "2pc-t-None-tx-1")]  # fmt: skip
    assert bulk_body(documents).splitlines() == [
        b'{"index":{"_index":"hopscope-coordination-2026.05.04","_id":"2pc-t-s-tx-1"}}',
        b'{"a":1}',
        b'{"delete":{"_index":"hopscope-coordination-2026.05.04","_id":"2pc-t-None-tx-1"}}',
    ]
    for status in (200, 404):  # deleted, or not there (its first write was dead-lettered)
        outcome = ElasticsearchSink(_BulkClient(status)).write(documents)
        assert outcome.acknowledged == 2 and not outcome.rejected
    sink = InMemorySink()
    sink.write([Document("coordination", index, "2pc-t-None-tx-1", {"a": 0})])
    sink.write(documents)
    assert [d.id for d in sink.documents.values()] == ["2pc-t-s-tx-1"]


def test_a_flushed_trace_is_charged_for_the_documents_it_remembers() -> None:
    spans = scenario_traces(Scenario.BASELINE)[0]
    now = [0.0]
    assembler = TraceAssembler(trace_idle_s=IDLE_S, clock=lambda: now[0])
    assembler.add_spans(spans, ("otlp_spans", 0, 0))
    open_bytes = assembler.held_bytes
    now[0] += 2 * IDLE_S
    (trace,) = assembler.due()
    derive_trace(trace, PREFIX)
    assert assembler.held_spans == len(spans)
    assert assembler.held_bytes == open_bytes + DERIVED_KEY_BYTES * len(spans)


def test_the_archive_keeps_a_deletion_as_a_tombstone_that_the_loader_honours(
    tmp_path: Path,
) -> None:
    """The same writes into the Parquet archive: the loader gives the 2PC transactions that
    Elasticsearch holds, not the stale one (ES and Parquet give the same records)."""
    from hopscope.analysis.loaders.parquet import load_parquet

    trace = next(
        t for t in scenario_traces(Scenario.BASELINE) if any(s.name == "clearing/Settle" for s in t)
    )
    settle = next(s for s in trace if s.name == "clearing/Settle" and s.kind == SERVER)
    sink = deliver([[s for s in trace if s is not settle], [settle]])
    archive = ParquetArchive(tmp_path)
    archive.setup()
    for write in sink.writes:
        assert archive.write(write).acknowledged == len(write)
    tombstones = [d for d in sink.writes[-1] if d.delete]
    assert tombstones and all(d.body["@timestamp"] for d in tombstones)
    loaded = load_parquet(tmp_path, kinds=("two_phase_commits",), progress=False)
    transactions = loaded.two_phase_commits.collect()
    assert transactions.height == len(two_phase_commit_ids(derived_in(sink)))
    assert transactions.get_column("coordinator_service").null_count() == 0  # no stale one
