"""Analysis jobs: each module's ``run(data, ...)`` reads a Dataset and returns a JobResult.

:data:`JOBS` lists them, by hand, in the order a report runs them, under the names
``hopscope analyze <job>`` uses. Adding a job is a module with a ``run`` function plus one line
here (and a member of ``AnalyzeJob`` in the CLI): nothing is discovered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from hopscope.analysis.findings import JobResult
from hopscope.analysis.jobs import (
    balance,
    bottlenecks,
    cache,
    coordination,
    database,
    failovers,
    hops,
    tail,
)
from hopscope.analysis.schema import Dataset

__all__ = ["JOBS", "JOB_NAMES", "UNREAD", "Job", "job"]


@dataclass(frozen=True)
class Job:
    """One analysis job: the name a person types and the function that runs it."""

    name: str
    run: Callable[[Dataset], JobResult]


JOBS: Final[tuple[Job, ...]] = (
    Job("bottlenecks", bottlenecks.run),
    Job("hops", hops.run),
    Job("failovers", failovers.run),
    Job("coordination", coordination.run),
    Job("tail", tail.run),
    Job("balance", balance.run),
    Job("db", database.run),
    Job("cache", cache.run),
)
JOB_NAMES: Final[tuple[str, ...]] = tuple(j.name for j in JOBS)
# Per dataset kind, the columns no job (nor the report around them) reads: a report does not
# load them (``Dataset.collect(unread=...)``). Payment ids on every span and the per-service
# critical path of every trace are a large share of the archive's bytes.
# tests/unit/test_analysis_unread.py fails when a job names one of them.
UNREAD: Final[dict[str, tuple[str, ...]]] = {
    "spans": ("error_type", "coordination_resource", "payment_id"),
    "traces": (
        "payment_id", "root_service", "span_count", "complete", "critical_self_ns",
        "critical_network_ns", "critical_coordination_ns", "failover_count", "retry_count",
        "hop_count", "critical_by_service",
    ),
    "hops": ("source_node", "adjusted_request_leg_ns", "adjusted_response_leg_ns", "queue_ns",
             "attempt"),
}  # fmt: skip


def job(name: str) -> Callable[[Dataset], JobResult]:
    """The ``run`` function of job ``name`` (one of :data:`JOB_NAMES`).

    >>> job("hops").__module__, JOB_NAMES[:3]
    ('hopscope.analysis.jobs.hops', ('bottlenecks', 'hops', 'failovers'))
    """
    for entry in JOBS:
        if entry.name == name:
            return entry.run
    raise ValueError(f"unknown job {name!r}; jobs: {', '.join(JOB_NAMES)}")
