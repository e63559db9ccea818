"""Critical path of one trace: the last-finishing-child walk (Jaeger UI; CRISP, USENIX ATC'22).

Definition (docs/DESIGN.md §3 "Critical path"), in the order the code applies it:

1. **Tree.** Spans are linked as in :mod:`._common`: duplicates dropped, ``end < start`` read as
   zero length, parent cycles broken. The walk starts at the trace's main root (the
   earliest-starting root; see :mod:`._common` for the fallbacks); detached subtrees (other
   roots, orphans whose parent is missing, broken cycles) are not on the path.
2. **Blocking filter.** A CONSUMER child of a PRODUCER span does not block its parent: the
   subtree is pruned (Jaeger UI ``cpspan.ts``).
3. **Sanitize**, top-down, each child against its parent's sanitized interval:

   - a child inside its parent is kept as is;
   - a SERVER child of a CLIENT span lasting at most 1.01× the client is clock skew, not
     overflow (CRISP's ``server_lengthening_factor``): its duration is capped at the client's
     and its interval shifted into the client by the least amount; the shift is applied to its
     whole subtree too, since those spans were read on the same clock;
   - any other child wholly outside its parent is dropped with its subtree; one partly outside
     is clipped to the parent.

4. **Walk.** From the root: take the child that ends last (ties: the one that started first,
   then the smallest id), emit the parent's time after it, descend into it, then step back to the
   child that ended latest before the previous one started, and so on; the time before the
   first such child belongs to the parent. A child *happens before* the previous one when it
   ends no later than the previous one starts, or — clock skew between hosts — when it overlaps
   it by less than 1 % of the parent's duration, starts before it, ends before it, and no other
   child starts or ends inside the overlap (CRISP ``happensBefore``). An overlapping child is
   walked only up to the start of the one after it, so the segments never overlap.

5. **Exclusive time.** A span's exclusive critical-path time is the total length of its
   segments: its time on the path not covered by a path child. Segments tile the root's
   interval, so exclusive times (per span, per ``[service] operation``, per service, per kind)
   sum *exactly* to the root's duration. Without tolerated overlaps this equals CRISP's
   ``duration − Σ path children's durations``; with them, CRISP counts the overlap twice and we
   count it once, for the later child.

Each segment is classified: ``coordination`` in a span with a coordination kind (the
``hopscope.coordination.kind`` attribute or a :class:`CoordinationRule`); ``network`` in a CLIENT
span that has a SERVER child (its time not covered by the server is wire and queueing time);
``self`` otherwise — including a one-sided CLIENT call (database, external issuer), whose time
cannot be split between the wire and the uninstrumented callee.

Cost: O(n log n) for n spans (one sort of each parent's children), iterative throughout, so a
100k-deep chain does not hit Python's recursion limit.

Steps 2-5 run in the native core when it is in use (:mod:`hopscope.processors.core`;
``processors/native/src/critical.rs``): :func:`_walked` below is their specification, the
Python core runs it, and ``tests/unit/test_native_differential.py`` holds the two to the same
records on random trees, every simulator scenario and the edge cases above.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from hopscope.processors import core
from hopscope.processors.derive._common import (
    CoordinationRule,
    TraceIndex,
    end_of,
    operation_key,
)
from hopscope.processors.records import CLIENT, CONSUMER, PRODUCER, SERVER, SpanRecord

# Segment kinds.
SELF: Final = "self"
NETWORK: Final = "network"
COORDINATION: Final = "coordination"
SEGMENT_KINDS: Final = (SELF, NETWORK, COORDINATION)

# CRISP's constants (crisp/configuration.py), as integer ratios so the arithmetic stays exact.
# A SERVER child may outlast its CLIENT parent by 1 % and still be skew.
SERVER_LENGTHENING_PERCENT: Final = 101
# Siblings overlapping by less than 1 % of their parent's duration are sequential.
OVERLAP_ALLOWANCE_PERCENT: Final = 1


@dataclass(frozen=True, slots=True)
class PathSegment:
    """A stretch ``[start_ns, end_ns)`` of the critical path spent in one span, not covered by
    any of its children on the path (times are the sanitized ones: skew-shifted or clipped)."""

    span_id: str
    service: str
    operation: str  # "[service] span name"
    kind: str  # self | network | coordination
    start_ns: int
    end_ns: int

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


@dataclass(frozen=True, slots=True)
class CriticalPath:
    """The critical path of one trace and its exclusive times (module docstring).

    ``exclusive_ns`` has a key for every span the walk went through, 0 for a span whose path
    children cover it entirely; a span is on the path exactly when it has a key. The id tuples
    are diagnostics, sorted: ``detached_span_ids`` are the tops of subtrees outside the main
    root's tree, ``async_span_ids`` the pruned CONSUMER children of PRODUCER spans,
    ``dropped_span_ids`` the children wholly outside their parent (subtrees dropped),
    ``clipped_span_ids`` and ``skew_adjusted_span_ids`` the children clipped or shifted.
    """

    trace_id: str
    root_span_id: str | None
    start_ns: int
    end_ns: int
    segments: tuple[PathSegment, ...]
    exclusive_ns: Mapping[str, int]
    by_operation: Mapping[str, int]
    by_service: Mapping[str, int]
    by_kind: Mapping[str, int]
    # (operation, segment kind) -> exclusive ns; an operation's kinds sum to by_operation.
    by_operation_kind: Mapping[tuple[str, str], int] = field(default_factory=dict)
    detached_span_ids: tuple[str, ...] = ()
    async_span_ids: tuple[str, ...] = ()
    dropped_span_ids: tuple[str, ...] = ()
    clipped_span_ids: tuple[str, ...] = ()
    skew_adjusted_span_ids: tuple[str, ...] = ()

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    def on_path(self, span_id: str) -> bool:
        return span_id in self.exclusive_ns


def critical_path(
    spans: Iterable[SpanRecord], *, rules: Sequence[CoordinationRule] = ()
) -> CriticalPath:
    """The critical path of the trace made of ``spans``.

    Parameters:
        spans: the spans of one trace, in any order; garbage is tolerated (see module docs).
        rules: extra coordination rules for classifying segments as ``coordination``.

    Returns:
        The path segments in time order and the exclusive times; an empty path (no root,
        all zeros) for no spans.

    Examples:
        A root calls ``a`` then ``b`` in sequence; ``b`` ends last, so the walk takes ``b``,
        then steps back to ``a``, and the root keeps the gaps.

        >>> from hopscope.processors.records import SpanRecord
        >>> spans = [
        ...     SpanRecord("t", "r", None, "pay", "server", 0, 100, "gw"),
        ...     SpanRecord("t", "a", "r", "score", "internal", 10, 40, "gw"),
        ...     SpanRecord("t", "b", "r", "settle", "internal", 50, 90, "gw"),
        ... ]
        >>> path = critical_path(spans)
        >>> [(s.span_id, s.start_ns, s.end_ns) for s in path.segments]
        [('r', 0, 10), ('a', 10, 40), ('r', 40, 50), ('b', 50, 90), ('r', 90, 100)]
        >>> dict(path.by_operation)
        {'[gw] pay': 30, '[gw] score': 30, '[gw] settle': 40}
    """
    return _critical_path(TraceIndex(spans), rules)


class _Tree:
    """The sanitized tree under the main root: effective intervals and kept children."""

    def __init__(self, index: TraceIndex, root: SpanRecord) -> None:
        self.start: dict[str, int] = {root.span_id: root.start_ns}
        self.end: dict[str, int] = {root.span_id: end_of(root)}
        self.kids: dict[str, list[str]] = {}
        self.async_ids: list[str] = []
        self.dropped: list[str] = []
        self.clipped: list[str] = []
        self.skewed: list[str] = []
        # Shift applied to a span (and inherited by its subtree) to undo clock skew.
        shift: dict[str, int] = {root.span_id: 0}
        queue = [root]
        for parent in queue:  # grows while iterating: breadth-first, no recursion
            pid = parent.span_id
            p_start, p_end, p_shift = self.start[pid], self.end[pid], shift[pid]
            kept: list[str] = []
            for child in index.children.get(pid, ()):
                cid = child.span_id
                # Step 2: asynchronous children do not block (the producer does not wait).
                if parent.kind == PRODUCER and child.kind == CONSUMER:
                    self.async_ids.append(cid)
                    continue
                # Step 3: sanitize against the parent's sanitized interval.
                c_start, c_end, c_shift = child.start_ns + p_shift, end_of(child) + p_shift, p_shift
                if p_start <= c_start and c_end <= p_end:
                    pass
                elif (
                    parent.kind == CLIENT
                    and child.kind == SERVER
                    and (c_end - c_start) * 100 <= (p_end - p_start) * SERVER_LENGTHENING_PERCENT
                ):
                    # Clock skew: cap the server at the client's length, move it inside.
                    length = min(c_end - c_start, p_end - p_start)
                    moved = min(max(c_start, p_start), p_end - length)
                    c_shift += moved - c_start
                    c_start, c_end = moved, moved + length
                    self.skewed.append(cid)
                elif c_start >= p_end or c_end <= p_start:
                    self.dropped.append(cid)
                    continue
                else:
                    c_start, c_end = max(c_start, p_start), min(c_end, p_end)
                    self.clipped.append(cid)
                self.start[cid], self.end[cid], shift[cid] = c_start, c_end, c_shift
                kept.append(cid)
                queue.append(child)
            if kept:
                self.kids[pid] = kept
        self._events: dict[str, tuple[list[int], list[int]]] = {}

    def by_end_desc(self, span_id: str) -> list[str]:
        """Children, the last-finishing first; ties: the earliest start, then the smallest id."""
        kids = self.kids.get(span_id)
        if kids is None or len(kids) == 1:  # leaves and single children: nothing to sort
            return kids or []
        start, end = self.start, self.end
        return sorted(kids, key=lambda k: (-end[k], start[k], k))

    def events_between(self, span_id: str, low: int, high: int) -> int:
        """How many child starts and ends fall in ``[low, high]`` (CRISP's event count)."""
        if span_id not in self._events:
            kids = self.kids.get(span_id, ())
            self._events[span_id] = (
                sorted(self.start[k] for k in kids),
                sorted(self.end[k] for k in kids),
            )
        starts, ends = self._events[span_id]
        return (
            bisect_right(starts, high)
            - bisect_left(starts, low)
            + bisect_right(ends, high)
            - bisect_left(ends, low)
        )


class _Frame:
    """One span being walked: the bound t (the window's end, then the start of the path child
    walked last), that child's end, the children by end descending and a cursor into them."""

    __slots__ = ("bound", "cursor", "last_end", "order", "span_id")

    def __init__(self, span_id: str, bound: int, order: list[str]) -> None:
        self.span_id = span_id
        self.bound = bound
        self.last_end: int | None = None
        self.order = order
        self.cursor = 0


def _walk(tree: _Tree, root_id: str) -> tuple[list[tuple[str, int, int]], dict[str, int]]:
    """The last-finishing-child walk; returns segments (latest first) and exclusive times."""
    start, end = tree.start, tree.end
    segments: list[tuple[str, int, int]] = []
    exclusive: dict[str, int] = {root_id: 0}
    stack = [_Frame(root_id, end[root_id], tree.by_end_desc(root_id))]
    while stack:
        frame = stack[-1]
        sid, t, last_end, order = frame.span_id, frame.bound, frame.last_end, frame.order

        # The bound only moves back in time and path children come by decreasing end, so a
        # child that is not eligible now never will be: one pass over the sorted children.
        chosen: str | None = None
        while frame.cursor < len(order):
            kid = order[frame.cursor]
            frame.cursor += 1
            if last_end is None:
                eligible = start[kid] < t or end[kid] <= t  # first pick: inside the window
            elif end[kid] <= t:
                eligible = True
            else:
                eligible = (
                    start[kid] < t
                    and end[kid] < last_end
                    and (end[kid] - t) * 100 < (end[sid] - start[sid]) * OVERLAP_ALLOWANCE_PERCENT
                    # only the two events bounding the overlap: no third child inside it
                    and tree.events_between(sid, t, end[kid]) == 2
                )
            if eligible:
                chosen = kid
                break

        if chosen is None:
            if t > start[sid]:
                segments.append((sid, start[sid], t))
                exclusive[sid] += t - start[sid]
            stack.pop()
            continue
        kid_end = min(end[chosen], t)  # an overlapping child is walked up to t only
        if t > kid_end:
            segments.append((sid, kid_end, t))
            exclusive[sid] += t - kid_end
        frame.bound, frame.last_end = start[chosen], end[chosen]
        exclusive[chosen] = 0
        stack.append(_Frame(chosen, kid_end, tree.by_end_desc(chosen)))
    return segments, exclusive


def _segment_kind(
    span: SpanRecord, coordinating: Mapping[str, str], server_of: Mapping[str, Any]
) -> str:
    if span.span_id in coordinating:
        return COORDINATION
    if span.kind == CLIENT and span.span_id in server_of:
        return NETWORK  # the SERVER child may be clipped or off the path: still a paired call
    return SELF


class _Walked(NamedTuple):
    """What steps 2-5 give for the main root's tree (the :class:`CriticalPath` fields but the
    trace's ids and its detached tops); the native core returns the same, as a tuple."""

    start_ns: int
    end_ns: int
    segments: tuple[PathSegment, ...]
    exclusive_ns: dict[str, int]
    by_operation: dict[str, int]
    by_service: dict[str, int]
    by_kind: dict[str, int]
    by_operation_kind: dict[tuple[str, str], int]
    async_span_ids: tuple[str, ...]
    dropped_span_ids: tuple[str, ...]
    clipped_span_ids: tuple[str, ...]
    skew_adjusted_span_ids: tuple[str, ...]


def _critical_path(index: TraceIndex, rules: Sequence[CoordinationRule] = ()) -> CriticalPath:
    """Step 1 here (the index holds the tree), steps 2-5 in the native core when it is in use
    (:mod:`hopscope.processors.core`), else in :func:`_walked`, their specification."""
    root = index.main_root
    detached = tuple(sorted(s.span_id for s in index.detached))
    if root is None:
        return CriticalPath(
            trace_id=index.trace_id,
            root_span_id=None,
            start_ns=0,
            end_ns=0,
            segments=(),
            exclusive_ns={},
            by_operation={},
            by_service={},
            by_kind=dict.fromkeys(SEGMENT_KINDS, 0),
            detached_span_ids=detached,
        )
    coordinating = index.coordination_kinds(rules)
    native = core.native()
    parts = (
        None
        if native is None
        else native.critical_path(root, index.children, coordinating, index.server_of, PathSegment)
    )
    walked = _walked(index, root, coordinating) if parts is None else _Walked(*parts)
    return CriticalPath(
        trace_id=root.trace_id,
        root_span_id=root.span_id,
        detached_span_ids=detached,
        **walked._asdict(),
    )


def _walked(index: TraceIndex, root: SpanRecord, coordinating: Mapping[str, str]) -> _Walked:
    """Steps 2-5 of the module docstring over the main root's tree (the reference the native
    core is held to)."""
    # Steps 2-3: async subtrees pruned, children sanitized.
    tree = _Tree(index, root)
    # Step 4: the walk.
    raw_segments, exclusive = _walk(tree, root.span_id)

    # Step 5: exclusive times and segments. What each span on the path is, once: service,
    # operation key, segment kind.
    server_of = index.server_of
    info: dict[str, tuple[str, str, str]] = {}
    for sid in exclusive:
        span = index.by_id[sid]
        info[sid] = (
            span.service,
            operation_key(span),
            _segment_kind(span, coordinating, server_of),
        )

    # Segments in time order (the walk emits them latest first), adjacent pieces of the same
    # span merged (a zero-length child in between leaves two touching pieces).
    merged: list[tuple[str, int, int]] = []
    for sid, seg_start, seg_end in reversed(raw_segments):
        if merged and merged[-1][0] == sid and merged[-1][2] == seg_start:
            merged[-1] = (sid, merged[-1][1], seg_end)
        else:
            merged.append((sid, seg_start, seg_end))
    segments = tuple(PathSegment(sid, *info[sid], a, b) for sid, a, b in merged)

    # Aggregates over every span on the path (zero-time ones included: they are on the path).
    by_operation: dict[str, int] = {}
    by_service: dict[str, int] = {}
    by_kind = dict.fromkeys(SEGMENT_KINDS, 0)
    by_operation_kind: dict[tuple[str, str], int] = {}
    for sid, excl in exclusive.items():
        service, operation, kind = info[sid]
        by_operation[operation] = by_operation.get(operation, 0) + excl
        by_operation_kind[(operation, kind)] = by_operation_kind.get((operation, kind), 0) + excl
        by_service[service] = by_service.get(service, 0) + excl
        by_kind[kind] += excl

    return _Walked(
        start_ns=tree.start[root.span_id],
        end_ns=tree.end[root.span_id],
        segments=segments,
        exclusive_ns=exclusive,
        by_operation=dict(sorted(by_operation.items())),
        by_service=dict(sorted(by_service.items())),
        by_kind=by_kind,
        by_operation_kind=dict(sorted(by_operation_kind.items())),
        async_span_ids=tuple(sorted(tree.async_ids)),
        dropped_span_ids=tuple(sorted(tree.dropped)),
        clipped_span_ids=tuple(sorted(tree.clipped)),
        skew_adjusted_span_ids=tuple(sorted(tree.skewed)),
    )
