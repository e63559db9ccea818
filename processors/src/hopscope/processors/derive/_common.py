"""One trace's spans, indexed once and shared by every derivation.

The derivations take whatever the assembler hands them, which is not always a clean tree: spans
arrive twice (at-least-once delivery), parents go missing (a trace flushed as incomplete, an
uninstrumented hop), garbage ids make parent cycles, clocks make ``end < start``. The rules,
applied here once so that every module agrees:

- **Duplicates**: the first span with a given id wins; later ones are ignored (the assembler
  has already kept the last one in Kafka order, as Elasticsearch does: see
  :mod:`hopscope.processors.assembly`).
- **Unspecified kinds** (spans flagged ``kind_unspecified``: other people's telemetry, see
  :mod:`hopscope.processors.foreign`): a parent in one service with a child in another is a
  call between them, so an unspecified child of a parent in another service is read as a
  SERVER span, and an unspecified parent of a child in another service as a CLIENT span; a
  span that would be both (one span per service and request, as some tracers record) stays a
  SERVER: the call into its service is paired, the call out of it is not. Only the derivations
  see the inferred kinds; the span records (and documents) keep the kind as recorded.
- **Durations**: ``end < start`` counts as a zero-length span (:func:`end_of`, :func:`duration`).
  The record's raw timestamps are never changed.
- **Tree**: a span's tree parent is the span named by its ``parent_id`` when that span is in the
  trace. Tree tops are the *roots* (no parent id), the *orphans* (parent id not in the trace) and,
  for parent cycles (``a → b → a``, a span its own parent), one *cycle root* per cycle: the cycle
  member that starts first (ties: longest, then smallest id), whose parent link is ignored.
  Every span belongs to exactly one top's tree, so every walk over ``children`` terminates.
- **Main root**: the earliest-starting root (ties: the longest, then the smallest span id); when
  the trace has no root (its root span has not arrived), the earliest orphan by the same rule;
  when there is neither (every span sits in or below a parent cycle), the earliest cycle root.
  The other tops are *detached*: their subtrees count as spans of the trace but not towards its
  critical path.

Everything here is linear in the number of spans, apart from one sort of the unreached spans
when the trace has parent cycles.

The native core builds the index when it is in use (:mod:`hopscope.processors.core`;
``processors/native/src/index.rs``), and in the same pass pairs each CLIENT span with its SERVER
span (:attr:`TraceIndex.server_of`), reads the spans' ``hopscope.coordination.kind`` and checks
``end < start``: :meth:`TraceIndex._build` is the specification, the Python core runs it, and
so does a trace the native core hands back (kinds to infer, times past 64 bits, ids that are no
text). ``tests/unit/test_native_differential.py`` holds the two to the same fields.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Final

from hopscope.ingest import conventions as c
from hopscope.processors import core, sanitize
from hopscope.processors.records import CLIENT, CONSUMER, ERROR, INTERNAL, SERVER, SpanRecord

# A SERVER or CONSUMER span is where a service starts handling a request: the "service span" a
# coordinator's work hangs under.
ENTRY_KINDS: Final = frozenset({SERVER, CONSUMER})


def end_of(span: SpanRecord) -> int:
    """The span's end, never before its start (``end < start`` is a zero-length span)."""
    return max(span.start_ns, span.end_ns)


def duration(span: SpanRecord) -> int:
    """The span's duration in ns, never negative."""
    return max(0, span.end_ns - span.start_ns)


def attr_str(attributes: Mapping[str, Any], key: str) -> str | None:
    """An attribute as a non-empty string, or None (absent, None or empty)."""
    value = attributes.get(key)
    if value.__class__ is str:  # the common case first: this runs for every span, many times
        return value or None
    return None if value is None or value == "" else str(value)


def attr_int(attributes: Mapping[str, Any], key: str) -> int | None:
    """An integer attribute (ints, or strings of digits, as some exporters send), or None."""
    value = attributes.get(key)
    if isinstance(value, bool):  # bool is an int subclass; True is not "resend 1"
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def failed(span: SpanRecord) -> bool:
    """Error status, or ``error.type`` set (a timeout recorded without an error status)."""
    return span.status == ERROR or attr_str(span.attributes, c.ERROR_TYPE) is not None


def error_reason(span: SpanRecord) -> str | None:
    """Why a span failed: ``error.type``, else its status message; None when neither says (or
    the span did not fail)."""
    if not failed(span):
        return None
    return attr_str(span.attributes, c.ERROR_TYPE) or span.status_message or None


def operation_key(span: SpanRecord) -> str:
    """CRISP's operation key ``[service] operation``, the operation being the span name."""
    return f"[{span.service}] {span.name}"


def call_operation(client: SpanRecord, server: SpanRecord | None = None) -> str:
    """A call's operation: ``rpc.service/rpc.method`` (client's, else server's), else the
    client's span name."""
    for span in (client, server):
        if span is None:
            continue
        method = attr_str(span.attributes, c.RPC_METHOD)
        if method is not None:
            service = attr_str(span.attributes, c.RPC_SERVICE)
            return f"{service}/{method}" if service else method
    return client.name


@dataclass(frozen=True, slots=True)
class CoordinationRule:
    """Classify spans as coordination that were not instrumented with
    ``hopscope.coordination.kind`` (a driver's ``LOCK TABLE`` span, a Raft library's append).

    A rule matches when every condition given holds: ``name`` is a regular expression searched
    in the span name, ``attributes`` are compared for equality. At least one condition is
    required, and ``kind`` must be one of the coordination kinds of docs/DESIGN.md §3.
    An explicit ``hopscope.coordination.kind`` attribute always wins over the rules; among the
    rules, the first match wins.

    >>> rule = CoordinationRule("lock_wait", name=r"^SELECT .* FOR UPDATE")
    >>> rule.matches(SpanRecord("t", "s", None, "SELECT balance FOR UPDATE", "client", 0, 1, "db"))
    True
    """

    kind: str
    name: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    _pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if self.kind not in c.COORDINATION_KINDS:
            raise ValueError(
                f"CoordinationRule kind must be one of {sorted(c.COORDINATION_KINDS)}, "
                f"got {self.kind!r}"
            )
        if self.name is None and not self.attributes:
            raise ValueError("CoordinationRule needs a name pattern or attributes to match")
        if self.name is not None:
            try:
                pattern = re.compile(self.name)
            except re.error as exc:
                raise ValueError(
                    f"CoordinationRule name is not a valid regular expression: {self.name!r} "
                    f"({exc})"
                ) from exc
            object.__setattr__(self, "_pattern", pattern)  # frozen: set once, here

    def matches(self, span: SpanRecord) -> bool:
        """True when the span satisfies every condition of the rule."""
        if self._pattern is not None and self._pattern.search(span.name) is None:
            return False
        return all(
            key in span.attributes and span.attributes[key] == value
            for key, value in self.attributes.items()
        )


def coordination_kind(span: SpanRecord, rules: Sequence[CoordinationRule] = ()) -> str | None:
    """The span's coordination kind: its ``hopscope.coordination.kind``, else the first
    matching rule's kind, else None."""
    kind = attr_str(span.attributes, c.COORDINATION_KIND)
    if kind is not None:
        return kind
    for rule in rules:
        if rule.matches(span):
            return rule.kind
    return None


def _unspecified(span: SpanRecord) -> bool:
    return span.kind == INTERNAL and sanitize.KIND_UNSPECIFIED in span.flags


def infer_kinds(by_id: Mapping[str, SpanRecord]) -> dict[str, SpanRecord]:
    """The spans by id, unspecified kinds inferred from cross-service parent links (module
    docstring); ``by_id`` itself when nothing changes.

    >>> from hopscope.processors.sanitize import KIND_UNSPECIFIED as U
    >>> a = SpanRecord("t", "a", None, "GET /pay", "internal", 0, 9, "gateway", flags=(U,))
    >>> b = SpanRecord("t", "b", "a", "GET /pay", "internal", 1, 8, "payment", flags=(U,))
    >>> {k: s.kind for k, s in infer_kinds({"a": a, "b": b}).items()}
    {'a': 'client', 'b': 'server'}
    """
    servers: set[str] = set()
    clients: set[str] = set()
    for span in by_id.values():
        parent = by_id.get(span.parent_id) if span.parent_id else None
        if parent is None or parent is span or parent.service == span.service:
            continue
        if _unspecified(span):
            servers.add(span.span_id)
        if _unspecified(parent):
            clients.add(parent.span_id)
    clients -= servers
    if not servers and not clients:
        return dict(by_id)
    out = dict(by_id)
    for span_id in servers:
        out[span_id] = dataclasses.replace(out[span_id], kind=SERVER)
    for span_id in clients:
        out[span_id] = dataclasses.replace(out[span_id], kind=CLIENT)
    return out


def _earliest(spans: Iterable[SpanRecord]) -> SpanRecord | None:
    """The span that starts first; ties go to the longest, then to the smallest id."""
    return min(spans, key=lambda s: (s.start_ns, -duration(s), s.span_id), default=None)


class TraceIndex:
    """The spans of one trace, deduplicated and linked into a forest (module docstring).

    Trace ids are not compared: callers pass the spans of one trace.
    """

    def __init__(self, spans: Iterable[SpanRecord]) -> None:
        native = core.native()
        if native is not None:
            spans = spans if isinstance(spans, list | tuple) else list(spans)
            fields = native.trace_index(spans)
            if fields is not None:
                self._take(*fields)
                return
        self._build(spans)

    def _build(self, spans: Iterable[SpanRecord]) -> None:
        """The index as the module docstring defines it (the reference the native core is held
        to)."""
        by_id: dict[str, SpanRecord] = {}
        kindless = False  # any span of unspecified kind: then kinds are inferred
        self.conflicting_duplicates = 0  # same id, different content (identical: redelivery)
        for span in spans:
            known = by_id.setdefault(span.span_id, span)  # duplicates: the first one wins
            if known is not span and known != span:
                self.conflicting_duplicates += 1
            elif kindless is False and sanitize.KIND_UNSPECIFIED in span.flags:
                kindless = True
        if kindless:
            by_id = infer_kinds(by_id)
        self.by_id = by_id
        self.spans: list[SpanRecord] = list(by_id.values())
        self.trace_id = self.spans[0].trace_id if self.spans else ""

        # Children as recorded, by parent id, including parents missing from the trace.
        raw_children: dict[str, list[SpanRecord]] = {}
        for span in self.spans:
            if span.parent_id:
                raw_children.setdefault(span.parent_id, []).append(span)
        self.raw_children = raw_children

        self.roots = [s for s in self.spans if not s.parent_id]
        self.orphans = [s for s in self.spans if s.parent_id and s.parent_id not in by_id]
        self.cycle_roots: list[SpanRecord] = []
        self.children: dict[str, list[SpanRecord]] = {}
        self.top_down: list[SpanRecord] = []  # every span, each after its tree parent
        self._tops: set[str] = set()
        for top in (*self.roots, *self.orphans):
            self._grow(top)
        if len(self.top_down) < len(self.spans):
            self._break_cycles()

        self.main_root = (
            _earliest(self.roots) or _earliest(self.orphans) or _earliest(self.cycle_roots)
        )
        self.detached = [
            s for s in (*self.roots, *self.orphans, *self.cycle_roots) if s is not self.main_root
        ]
        self._kinds: tuple[tuple[CoordinationRule, ...], dict[str, str]] | None = None
        self._end_before_start: bool | None = None

    def _take(
        self,
        spans: list[SpanRecord],
        by_id: dict[str, SpanRecord],
        trace_id: str,
        conflicting_duplicates: int,
        raw_children: dict[str, list[SpanRecord]],
        roots: list[SpanRecord],
        orphans: list[SpanRecord],
        cycle_roots: list[SpanRecord],
        children: dict[str, list[SpanRecord]],
        top_down: list[SpanRecord],
        tops: set[str],
        main_root: SpanRecord | None,
        detached: list[SpanRecord],
        server_of: dict[str, SpanRecord],
        kinds: dict[str, str],
        end_before_start: bool,
    ) -> None:
        """The native core's index (``processors/native/src/index.rs``): the fields
        :meth:`_build` sets, the server pairing, the attribute's coordination kinds and the
        ``end < start`` check done in the same pass."""
        self.spans, self.by_id, self.trace_id = spans, by_id, trace_id
        self.conflicting_duplicates = conflicting_duplicates
        self.raw_children, self.children, self.top_down = raw_children, children, top_down
        self.roots, self.orphans, self.cycle_roots = roots, orphans, cycle_roots
        self._tops, self.main_root, self.detached = tops, main_root, detached
        self.__dict__["server_of"] = server_of  # the cached property, already computed
        self._kinds = ((), kinds)
        self._end_before_start = end_before_start

    def _grow(self, top: SpanRecord) -> None:
        """Attach ``top``'s subtree to the forest (iterative: 100k-deep chains are fine)."""
        self._tops.add(top.span_id)
        self.top_down.append(top)
        reached = len(self.top_down) - 1
        while reached < len(self.top_down):
            parent = self.top_down[reached]
            reached += 1
            for child in self.raw_children.get(parent.span_id, ()):
                # Only a cycle root (already a top) can be met again: each span has one parent.
                if child.span_id in self._tops:
                    continue
                self.children.setdefault(parent.span_id, []).append(child)
                self.top_down.append(child)

    def _break_cycles(self) -> None:
        """Spans not reached from a root or orphan sit in, or hang below, a parent cycle."""
        reached = {s.span_id for s in self.top_down}
        unreached = sorted(
            (s for s in self.spans if s.span_id not in reached),
            key=lambda s: (s.start_ns, -duration(s), s.span_id),
        )
        for span in unreached:
            if span.span_id in reached:
                continue
            # Walk up until a span repeats: that span is on the cycle. Every parent exists and
            # is unreached, else ``span`` would have been reached from it.
            seen: set[str] = set()
            current = span
            while current.span_id not in seen:
                seen.add(current.span_id)
                current = self.by_id[current.parent_id or ""]
            cycle = [current]
            member = self.by_id[current.parent_id or ""]
            while member is not current:
                cycle.append(member)
                member = self.by_id[member.parent_id or ""]
            top = _earliest(cycle)
            assert top is not None  # a cycle has at least one member
            self.cycle_roots.append(top)
            before = len(self.top_down)
            self._grow(top)
            reached.update(s.span_id for s in self.top_down[before:])

    @cached_property
    def anomalies(self) -> tuple[str, ...]:
        """Reason codes (:mod:`hopscope.processors.sanitize`) of what is wrong with the tree:
        orphans, no root, several roots, parent cycles, conflicting duplicate ids, spans that
        end before they start. Sorted; empty for a clean tree."""
        found = []
        if self.orphans:
            found.append(sanitize.ORPHAN_SPANS)
        if self.spans and not self.roots:
            found.append(sanitize.MISSING_ROOT)
        if len(self.roots) > 1:
            found.append(sanitize.MULTIPLE_ROOTS)
        if self.cycle_roots:
            found.append(sanitize.PARENT_CYCLE)
        if self.conflicting_duplicates:
            found.append(sanitize.DUPLICATE_SPAN_IDS)
        if self._end_before_start is None:
            self._end_before_start = any(span.end_ns < span.start_ns for span in self.spans)
        if self._end_before_start:
            found.append(sanitize.END_BEFORE_START)
        return tuple(sorted(found))

    def coordination_kinds(self, rules: Sequence[CoordinationRule] = ()) -> dict[str, str]:
        """Span id → coordination kind, for the spans that have one, in the order of
        :attr:`spans`; computed once per rule set (the critical path, the delays and the
        transactions all ask)."""
        key = tuple(rules)
        if self._kinds is None or self._kinds[0] != key:
            kinds: dict[str, str] = {}
            for span in self.spans:
                kind = coordination_kind(span, key)
                if kind is not None:
                    kinds[span.span_id] = kind
            self._kinds = (key, kinds)
        return self._kinds[1]

    @property
    def tops(self) -> set[str]:
        """The ids of the tree tops: roots, orphans and cycle roots."""
        return self._tops

    def is_top(self, span: SpanRecord) -> bool:
        return span.span_id in self._tops

    def parent(self, span: SpanRecord) -> SpanRecord | None:
        """The tree parent (None for roots, orphans and cycle roots)."""
        if span.span_id in self._tops:
            return None
        return self.by_id[span.parent_id or ""]

    @cached_property
    def server_of(self) -> dict[str, SpanRecord]:
        """CLIENT span id → the SERVER span answering it: a SERVER child in the same trace, the
        earliest one when several answer (ties: the smallest span id)."""
        servers: dict[str, SpanRecord] = {}
        for span in self.spans:
            if span.kind != SERVER or not span.parent_id:
                continue
            client = self.by_id.get(span.parent_id)
            if client is None or client.kind != CLIENT or client.trace_id != span.trace_id:
                continue
            known = servers.get(client.span_id)
            if known is None or (span.start_ns, span.span_id) < (known.start_ns, known.span_id):
                servers[client.span_id] = span
        return servers

    @cached_property
    def entry_of(self) -> dict[str, str]:
        """Span id → id of the nearest entry span (SERVER/CONSUMER) at or above it, or of its
        tree top when there is none."""
        entry: dict[str, str] = {}
        for span in self.top_down:  # parents first, so a lookup never misses
            parent = self.parent(span)
            if parent is None or span.kind in ENTRY_KINDS:
                entry[span.span_id] = span.span_id
            else:
                entry[span.span_id] = entry[parent.span_id]
        return entry

    def entry_above(self, span: SpanRecord) -> SpanRecord | None:
        """The nearest entry span (or tree top) strictly above ``span``; None for a top."""
        parent = self.parent(span)
        return None if parent is None else self.by_id[self.entry_of[parent.span_id]]
