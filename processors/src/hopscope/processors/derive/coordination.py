"""Coordination delays and two-phase commits (docs/DESIGN.md §3 "Coordination delay").

**Coordination delay**: one record per span whose coordination kind is known — the
``hopscope.coordination.kind`` attribute, else the first matching :class:`CoordinationRule`
(name regex and/or attribute equality → kind). ``duration_ns`` is the span's duration;
``critical_ns`` its exclusive critical-path time in the trace (0 when it is not on the path);
``resource`` and ``participant`` are its ``hopscope.coordination.resource`` and
``.participant`` attributes as recorded.

**Two-phase commit**: the spans of kind ``2pc.prepare``, ``2pc.commit`` and ``2pc.abort`` that
share a resource (the transaction id) under one coordinator form a transaction. The
coordinator is the nearest SERVER/CONSUMER span above the 2PC span (the coordinator service's
span; for spans sharing a parent, it is the same one). A 2PC span recorded by the participant
itself — a SERVER/CONSUMER span, or a span without a participant attribute or naming its own
node or service — hangs under the participant's entry span, so the coordinator is the entry
span one hop further up. Without any entry span above, the tree top stands in (a 2PC span that
is itself a tree top has no coordinator: None). A span's participant is its participant
attribute, else its node, else its service.

Per transaction:

- ``prepare_ns``: the slowest participant's prepare (the longest prepare span);
- ``commit_ns``: the slowest second-phase span (commit or abort);
- ``straggler``: the participant whose prepare ended last (its last prepare, when it has
  several; ties: the smallest participant name);
- ``blocked_ns``: the coordinator's wait between the first and the last participant answer,
  ``last prepare end − first prepare end`` (answers per participant as for the straggler; 0 with
  one participant);
- ``outcome``: ``"aborted"`` with an abort span or a failed prepare, else ``"committed"`` with a
  commit span, else ``"in_doubt"`` (only prepares seen: the decision is not in the trace).

The phase figures are None when the phase has no span. Order: by start time, then resource.

Both run in the native core when it is in use (:mod:`hopscope.processors.core`;
``processors/native/src/coordination.rs``): :func:`_derive_coordination` and
:func:`_derive_two_phase_commits` are their specification, the Python core runs them, and
``tests/unit/test_native_differential.py`` holds the two to the same records.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from hopscope.ingest import conventions as c
from hopscope.processors import core
from hopscope.processors.derive._common import (
    ENTRY_KINDS,
    CoordinationRule,
    TraceIndex,
    attr_str,
    duration,
    end_of,
    failed,
)
from hopscope.processors.derive.critical_path import CriticalPath, _critical_path
from hopscope.processors.records import SpanRecord

# Transaction outcomes.
COMMITTED: Final = "committed"
ABORTED: Final = "aborted"
IN_DOUBT: Final = "in_doubt"

_TWO_PC_KINDS: Final = frozenset({c.TWO_PC_PREPARE, c.TWO_PC_COMMIT, c.TWO_PC_ABORT})


@dataclass(frozen=True, slots=True)
class CoordinationDelay:
    """Time a span spent coordinating (module docstring); figures in ns."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    service: str
    node: str | None
    resource: str | None
    participant: str | None
    start_ns: int
    duration_ns: int
    critical_ns: int
    error: bool


@dataclass(frozen=True, slots=True)
class TwoPhaseCommit:
    """One two-phase-commit transaction (module docstring); figures in ns."""

    trace_id: str
    resource: str
    coordinator_span_id: str | None
    coordinator_service: str | None
    start_ns: int
    participants: int
    participant_names: tuple[str, ...]
    prepare_ns: int | None
    commit_ns: int | None
    straggler: str | None
    blocked_ns: int | None
    outcome: str


def derive_coordination(
    spans: Iterable[SpanRecord],
    critical: CriticalPath | None = None,
    *,
    rules: Sequence[CoordinationRule] = (),
) -> list[CoordinationDelay]:
    """Coordination delays of one trace.

    Parameters:
        spans: the spans of one trace, in any order.
        critical: the trace's critical path, when already computed (else it is computed here,
            with the same ``rules``).
        rules: extra rules for spans without ``hopscope.coordination.kind``.

    Examples:
        >>> from hopscope.processors.records import SpanRecord
        >>> spans = [
        ...     SpanRecord("t", "r", None, "settle", "server", 0, 100, "clearing"),
        ...     SpanRecord("t", "w", "r", "lock", "internal", 20, 60, "clearing",
        ...                attributes={"hopscope.coordination.kind": "lock_wait"}),
        ... ]
        >>> [(d.kind, d.duration_ns, d.critical_ns) for d in derive_coordination(spans)]
        [('lock_wait', 40, 40)]
    """
    index = TraceIndex(spans)
    if critical is None:
        critical = _critical_path(index, rules)
    return _derive_coordination(index, critical, rules)


def derive_two_phase_commits(
    spans: Iterable[SpanRecord], *, rules: Sequence[CoordinationRule] = ()
) -> list[TwoPhaseCommit]:
    """Two-phase-commit transactions of one trace (module docstring for the grouping)."""
    return _derive_two_phase_commits(TraceIndex(spans), rules)


def _coordination_records(
    index: TraceIndex, critical: CriticalPath, rules: Sequence[CoordinationRule]
) -> tuple[list[CoordinationDelay], list[TwoPhaseCommit]]:
    """The delays and the transactions of the indexed trace: the native core's when it is in
    use (:mod:`hopscope.processors.core`), else :func:`_derive_coordination` and
    :func:`_derive_two_phase_commits`, their specification."""
    kinds = index.coordination_kinds(rules)
    if not kinds:  # most spans have no kind, and many traces none
        return [], []
    native = core.native()
    if native is not None:
        parts = native.coordination(
            kinds,
            index.by_id,
            index.tops,
            critical.exclusive_ns,
            CoordinationDelay,
            TwoPhaseCommit,
        )
        if parts is not None:
            return parts[0], parts[1]
    return _derive_coordination(index, critical, rules), _derive_two_phase_commits(index, rules)


def _derive_coordination(
    index: TraceIndex, critical: CriticalPath, rules: Sequence[CoordinationRule]
) -> list[CoordinationDelay]:
    """The module docstring's delays (the reference the native core is held to)."""
    delays: list[CoordinationDelay] = []
    # The spans with a kind, in the spans' order (most spans have none: no pass over them all).
    for span_id, kind in index.coordination_kinds(rules).items():
        span = index.by_id[span_id]
        delays.append(
            CoordinationDelay(
                trace_id=span.trace_id,
                span_id=span.span_id,
                parent_span_id=span.parent_id,
                name=span.name,
                kind=kind,
                service=span.service,
                node=span.node,
                resource=attr_str(span.attributes, c.COORDINATION_RESOURCE),
                participant=attr_str(span.attributes, c.COORDINATION_PARTICIPANT),
                start_ns=span.start_ns,
                duration_ns=duration(span),
                critical_ns=critical.exclusive_ns.get(span.span_id, 0),
                error=failed(span),
            )
        )
    delays.sort(key=lambda d: (d.start_ns, d.span_id))
    return delays


def _participant(span: SpanRecord) -> str:
    return attr_str(span.attributes, c.COORDINATION_PARTICIPANT) or span.node or span.service


def _coordinator(index: TraceIndex, span: SpanRecord) -> SpanRecord | None:
    """The coordinator's service span for a 2PC span (module docstring)."""
    own = attr_str(span.attributes, c.COORDINATION_PARTICIPANT)
    if span.kind in ENTRY_KINDS:
        return index.entry_above(span)
    entry = index.entry_above(span)
    participant_side = own is None or own in (span.node, span.service)
    if participant_side and entry is not None and entry.kind in ENTRY_KINDS:
        return index.entry_above(entry) or entry
    return entry


def _derive_two_phase_commits(
    index: TraceIndex, rules: Sequence[CoordinationRule]
) -> list[TwoPhaseCommit]:
    """The module docstring's transactions (the reference the native core is held to)."""
    groups: dict[tuple[str | None, str], list[tuple[str, SpanRecord]]] = {}
    coordinators: dict[str | None, SpanRecord | None] = {}
    for span_id, kind in index.coordination_kinds(rules).items():  # spans with a kind
        if kind not in _TWO_PC_KINDS:
            continue
        span = index.by_id[span_id]
        resource = attr_str(span.attributes, c.COORDINATION_RESOURCE)
        if resource is None:  # no transaction id: nothing ties it to the other phases
            continue
        coordinator = _coordinator(index, span)
        coordinator_id = coordinator.span_id if coordinator else None
        coordinators[coordinator_id] = coordinator
        groups.setdefault((coordinator_id, resource), []).append((kind or "", span))

    commits: list[TwoPhaseCommit] = []
    for (coordinator_id, resource), members in groups.items():
        prepares = [s for kind, s in members if kind == c.TWO_PC_PREPARE]
        finishes = [s for kind, s in members if kind != c.TWO_PC_PREPARE]
        # A participant answers when its (last) prepare ends.
        answers: dict[str, int] = {}
        for span in prepares:
            who = _participant(span)
            answers[who] = max(answers.get(who, end_of(span)), end_of(span))
        ranked = sorted(answers.items())  # by name, so max() breaks ties on the smallest
        straggler = max(ranked, key=lambda item: item[1])[0] if ranked else None
        names = sorted(answers) if answers else sorted({_participant(s) for _, s in members})
        if any(kind == c.TWO_PC_ABORT for kind, _ in members) or any(map(failed, prepares)):
            outcome = ABORTED
        elif finishes:
            outcome = COMMITTED
        else:
            outcome = IN_DOUBT
        coordinator = coordinators[coordinator_id]
        commits.append(
            TwoPhaseCommit(
                trace_id=members[0][1].trace_id,
                resource=resource,
                coordinator_span_id=coordinator_id,
                coordinator_service=coordinator.service if coordinator else None,
                start_ns=min(s.start_ns for _, s in members),
                participants=len(names),
                participant_names=tuple(names),
                prepare_ns=max(map(duration, prepares)) if prepares else None,
                commit_ns=max(map(duration, finishes)) if finishes else None,
                straggler=straggler,
                blocked_ns=max(answers.values()) - min(answers.values()) if answers else None,
                outcome=outcome,
            )
        )
    commits.sort(key=lambda t: (t.start_ns, t.resource, t.coordinator_span_id or ""))
    return commits
