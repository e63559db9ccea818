"""What a job returns: its tables and its findings (docs/DESIGN.md §6).

A :class:`Finding` is one thing worth changing, with the figures that show it, a
recommendation in the operator's terms and the expected gain. ``gain_ns`` is what ranks findings
across jobs: the latency the fix is expected to remove from the p99 payment (or, where the
cause is not latency, an equivalent the job states in ``gain``). ``impact`` is the level a
person reads: ``high`` (act now), ``medium`` (plan it), ``low`` (noted).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import polars as pl

Impact = Literal["high", "medium", "low"]
IMPACTS: Final[tuple[Impact, ...]] = ("high", "medium", "low")
_IMPACT_RANK: Final = {level: rank for rank, level in enumerate(IMPACTS)}
# Kinds that cost no latency and explain no incident on their own: ranked after every other
# finding, whatever their impact level, so that they lead only when nothing else was found.
RANKED_LAST: Final = frozenset({"clock_skew"})


@dataclass(frozen=True)
class Finding:
    """One ranked finding.

    Attributes:
        job: the job that found it (``bottlenecks``, ``hops``, ``failovers``...).
        kind: what was found, stable for machines (``slow_edge``, ``node_failure``,
            ``lock_contention``, ``replica_lag``, ``cache_degradation``, ``lb_imbalance``,
            ``clock_skew``, ``slow_statement``, ``critical_operation``, ``tail_attribute``...).
        title: one line for a person, naming the subject ("payment → risk: +40 ms network").
        impact: ``high`` / ``medium`` / ``low``.
        gain_ns: expected p99 latency saved by the recommendation (ranks findings).
        subject: what it is about, e.g. ``{"service": "payment", "node": "payment-2"}``.
        evidence: the figures that show it (plain JSON values; durations in ns).
        recommendation: what to change, in load-balancing / database / cache / coordination /
            network terms.
        gain: the expected gain in words ("removing X's critical-path time saves Y ms at p99").
        example_traces: trace ids a person can open (a few, most telling first).
    """

    job: str
    kind: str
    title: str
    impact: Impact
    gain_ns: int
    subject: Mapping[str, Any]
    evidence: Mapping[str, Any]
    recommendation: str
    gain: str
    example_traces: Sequence[str] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "kind": self.kind,
            "title": self.title,
            "impact": self.impact,
            "gain_ns": self.gain_ns,
            "subject": dict(self.subject),
            "evidence": dict(self.evidence),
            "recommendation": self.recommendation,
            "gain": self.gain,
            "example_traces": list(self.example_traces),
        }


def rank(findings: Sequence[Finding]) -> list[Finding]:
    """Most important first: impact level, then expected gain, then title (stable output);
    the kinds of :data:`RANKED_LAST` after all others."""
    return sorted(
        findings,
        key=lambda f: (f.kind in RANKED_LAST, _IMPACT_RANK[f.impact], -f.gain_ns, f.title),
    )


@dataclass(frozen=True)
class JobResult:
    """A job's output: named tables (polars frames, for terminal/JSON/HTML) and findings."""

    job: str
    tables: Mapping[str, pl.DataFrame] = field(default_factory=dict)
    findings: Sequence[Finding] = ()
