"""Simulated datasets for analysis tests: simulator -> OTLP protobuf -> decode -> derive.

The same path as the processors (decode re-masks card numbers, derivations and documents are
the processors' own), in memory, so job tests run without Kafka or Elasticsearch. The
end-to-end tests read the same records back from the real services.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hopscope.analysis.loaders import dataset_from_records
from hopscope.analysis.schema import SCHEMAS, Dataset, empty
from hopscope.ingest.simulator import Scenario, SimulationConfig, parse_iso8601_ns, simulate
from hopscope.processors.decode import decode_logs, decode_spans

START = parse_iso8601_ns("2026-03-02T10:00:00Z")
MS = 1_000_000
SECOND = 1_000 * MS
SCENARIOS = tuple(scenario.value for scenario in Scenario)
# Arrivals per virtual second. The default rate shows most faults; row locks and the ip_hash
# skew need more concurrency to show clearly (as in the processor scenario tests).
RATES = {Scenario.LOCK_CONTENTION: 300.0, Scenario.LB_SKEW: 200.0}


@dataclass(frozen=True)
class SimulatedData:
    dataset: Dataset
    ground_truth: dict[str, Any]


@functools.cache
def simulated(scenario: str, *, traces: int = 600, seed: int = 7) -> SimulatedData:
    """One simulator run of ``scenario`` as a collected :class:`Dataset` (cached per args)."""
    span_exporter = InMemorySpanExporter()
    log_exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    # Seed and run id pinned together: the same data on every test run.
    config = SimulationConfig(start_ns=START, scenario=Scenario(scenario), seed=seed,
                              run_id="analysis", traces=traces)  # fmt: skip
    result = simulate(
        config,
        span_processors=[SimpleSpanProcessor(span_exporter)],
        log_processors=[SimpleLogRecordProcessor(log_exporter)],
    )
    spans = decode_spans(encode_spans(span_exporter.get_finished_spans()).SerializeToString())
    logs = decode_logs(encode_logs(log_exporter.get_finished_logs()).SerializeToString())
    return SimulatedData(dataset_from_records(spans, logs).collect(), result.ground_truth)


def frame(kind: str, rows: Sequence[Mapping[str, Any]]) -> pl.LazyFrame:
    """Canonical rows of ``kind`` (times as Unix ns); columns not given are null."""
    given = pl.DataFrame(list(rows), infer_schema_length=None)
    return given.lazy().select(
        pl.col(name).cast(dtype) if name in given.columns else pl.lit(None, dtype).alias(name)
        for name, (_, dtype) in SCHEMAS[kind].items()
    )


def dataset(**frames: pl.LazyFrame) -> Dataset:
    """A dataset of the given canonical frames; the other kinds empty."""
    kinds = ("spans", "traces", "hops", "failovers", "coordination", "two_phase_commits", "logs")
    return Dataset(**{k: frames.get(k, empty(k).lazy()) for k in kinds})
