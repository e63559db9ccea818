"""The report: every job over one dataset, findings ranked across jobs (DESIGN.md §6)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl

from hopscope.analysis.findings import Finding, JobResult


@dataclass(frozen=True)
class Report:
    """What ``hopscope analyze report`` shows.

    Attributes:
        source: where the records came from ("elasticsearch http://... hopscope-*",
            "parquet /path", "file trace.json").
        window: (start, end) of the analysed records, None when empty.
        counts: records per kind (spans, traces, hops...).
        latency: one row per trace: ``trace_id``, ``time``, ``duration_ns``, ``error``
            (the latency distribution plot).
        results: each job's tables and findings, by job name.
        findings: every job's findings, most important first.
    """

    source: str
    window: tuple[datetime, datetime] | None
    counts: Mapping[str, int]
    latency: pl.DataFrame
    results: Mapping[str, JobResult]
    findings: Sequence[Finding] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``findings`` ordered most important first, tables as row lists."""
        return {
            "source": self.source,
            "window": [t.isoformat() for t in self.window] if self.window else None,
            "counts": dict(self.counts),
            "findings": [f.to_dict() for f in self.findings],
            "tables": {
                job: {name: table.to_dicts() for name, table in result.tables.items()}
                for job, result in self.results.items()
            },
        }
