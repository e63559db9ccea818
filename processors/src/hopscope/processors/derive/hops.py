"""Hops: one call from one service to another, with its network time (docs/DESIGN.md §3 "Hop").

Definition:

- **RPC hop**: a CLIENT span C paired with the SERVER span S whose parent is C, i.e.
  ``(trace_id, C.span_id) = (trace_id, S.parent_id)``. ``client_ns = C.dur``,
  ``server_ns = S.dur``, ``network_ns = C.dur − S.dur`` (both legs plus queueing, free of clock
  skew: each duration is read on one clock). ``request_leg_ns = S.start − C.start`` and
  ``response_leg_ns = C.end − S.end`` as measured; when either is negative the two clocks
  disagree: ``clock_skew_suspected`` is set and the adjusted legs are the symmetric split of
  ``network_ns`` (``network_ns // 2`` for the request leg, the rest for the response leg, so they
  add up exactly); otherwise the adjusted legs are the measured ones. Raw timestamps are never
  rewritten. ``kind`` is ``"db"`` when the client carries ``db.system``, else ``"rpc"``.
- **Client gave up**: a SERVER span that outlasts its CLIENT by more than
  :data:`ABANDON_TOLERANCE_NS` (and :data:`ABANDON_TOLERANCE_SHARE` of the client's duration)
  means the caller stopped waiting (a timeout, a cancelled request) while the callee went on.
  Durations do not depend on clock offset, so this is no skew: ``client_abandoned`` is set,
  ``network_ns`` and the adjusted legs are None (unknown), ``clock_skew_suspected`` is False.
  Within the tolerance (timestamps truncated to the millisecond make a server look up to 2 ms
  longer than its client) the hop is an ordinary one, its network time slightly negative.
- **Messaging hop**: a PRODUCER span P and a CONSUMER span that is P's child or links to P.
  ``queue_ns = consumer.start − producer.end``; a negative queue time sets
  ``clock_skew_suspected`` (it is kept as measured). The call is asynchronous, so there is no
  response leg: ``network_ns`` and the legs are None.
- **One-sided hop** to a virtual target: a CLIENT span without a SERVER partner but with
  ``peer.service``, ``server.address`` or ``db.system``; the target service is ``peer.service``,
  else ``db.system``, else ``server.address``; ``kind`` is ``"db"`` with ``db.system``, else
  ``"virtual"``; ``server_ns`` and the network figures are None. A PRODUCER span whose consumer is
  not in the trace (consumers often start a trace of their own and link back) is a one-sided
  ``"messaging"`` hop to ``peer.service``, else ``messaging.destination.name``, else
  ``messaging.system``, else ``server.address``.

Edge cases: ``hop_id`` is the client (producer) span id, the document id, so each client span
yields at most one hop: when several SERVER children answer one CLIENT span, the earliest one is
its partner (ties: smallest id); a producer read by several consumers is paired with its
earliest child consumer, else its earliest linking consumer. Durations of ``end < start`` spans
are 0 and their end is read as their start. ``error`` is set when either side failed (error
status or ``error.type``). ``attempt`` is the client's ``http.request.resend_count``.

The native core derives the hops when it is in use (:mod:`hopscope.processors.core`;
``processors/native/src/hops.rs``): :func:`_hops` is the specification, the Python core runs
it, and ``tests/unit/test_native_differential.py`` holds the two to the same records.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from hopscope.ingest import conventions as c
from hopscope.processors import core
from hopscope.processors.derive._common import (
    TraceIndex,
    attr_int,
    attr_str,
    call_operation,
    duration,
    end_of,
    failed,
)
from hopscope.processors.records import CLIENT, CONSUMER, PRODUCER, SpanRecord

# Hop kinds.
RPC: Final = "rpc"
MESSAGING: Final = "messaging"
DB: Final = "db"
VIRTUAL: Final = "virtual"

# A server longer than its client by more than this is a caller that gave up. Below it, coarse
# timestamps explain the gap: a start and an end each truncated to the millisecond can make a
# server span up to 2 ms longer than its client's.
ABANDON_TOLERANCE_NS: Final = 2_000_000
# ... and by more than this share of the client's duration (the critical path's 1.01× skew
# tolerance), so that long calls with coarse timestamps are not called abandoned either.
ABANDON_TOLERANCE_SHARE: Final = 0.01


@dataclass(frozen=True, slots=True)
class Hop:
    """One call between two services; every figure in ns (module docstring for definitions).

    ``server_span_id`` is the SERVER (or CONSUMER) span paired with the client, None for a
    one-sided hop; the figures that need both sides are None then.
    """

    trace_id: str
    hop_id: str
    kind: str
    source_service: str
    source_node: str | None
    target_service: str | None
    target_node: str | None
    operation: str
    start_ns: int
    client_ns: int
    server_ns: int | None
    network_ns: int | None
    request_leg_ns: int | None
    response_leg_ns: int | None
    clock_skew_suspected: bool
    adjusted_request_leg_ns: int | None
    adjusted_response_leg_ns: int | None
    queue_ns: int | None
    error: bool
    attempt: int | None
    server_span_id: str | None
    client_abandoned: bool = False

    @property
    def one_sided(self) -> bool:
        return self.server_span_id is None


def derive_hops(spans: Iterable[SpanRecord]) -> list[Hop]:
    """The hops of one trace, ordered by start time, then hop id.

    Parameters:
        spans: the spans of one trace, in any order.

    Returns:
        One :class:`Hop` per CLIENT or PRODUCER span that has a partner or names a target.

    Examples:
        >>> from hopscope.processors.records import SpanRecord
        >>> client = SpanRecord("t", "c1", None, "risk/Score", "client", 0, 100, "payment")
        >>> server = SpanRecord("t", "s1", "c1", "risk/Score", "server", 10, 80, "risk", "risk-2")
        >>> (hop,) = derive_hops([client, server])
        >>> hop.network_ns, hop.request_leg_ns, hop.response_leg_ns, hop.target_node
        (30, 10, 20, 'risk-2')
    """
    return _derive_hops(TraceIndex(spans))


def _earliest(spans: Iterable[SpanRecord]) -> SpanRecord | None:
    return min(spans, key=lambda s: (s.start_ns, s.span_id), default=None)


def _consumer_links(index: TraceIndex) -> dict[str, list[SpanRecord]]:
    """Producer span id → CONSUMER spans linking to it from the same trace."""
    links: dict[str, list[SpanRecord]] = {}
    for span in index.spans:
        if span.kind != CONSUMER:
            continue
        for link in span.links:
            producer = index.by_id.get(link.span_id)
            if (
                producer is not None
                and producer.kind == PRODUCER
                and link.trace_id == producer.trace_id
                and producer is not span
            ):
                links.setdefault(producer.span_id, []).append(span)
    return links


def _derive_hops(index: TraceIndex) -> list[Hop]:
    """The hops of the indexed trace: the native core's when it is in use
    (:mod:`hopscope.processors.core`), else :func:`_hops`, their specification."""
    native = core.native()
    if native is not None:
        hops: list[Hop] | None = native.hops(
            index.spans, index.server_of, index.raw_children, index.by_id, Hop
        )
        if hops is not None:
            return hops
    return _hops(index)


def _hops(index: TraceIndex) -> list[Hop]:
    """The module docstring's hops of the indexed trace (the reference the native core is
    held to)."""
    hops: list[Hop] = []
    links: dict[str, list[SpanRecord]] | None = None
    for span in index.spans:
        if span.kind == CLIENT:
            server = index.server_of.get(span.span_id)
            hop = _rpc_hop(span, server) if server else _virtual_hop(span)
        elif span.kind == PRODUCER:
            if links is None:
                links = _consumer_links(index)
            consumer = _earliest(
                s
                for s in index.raw_children.get(span.span_id, ())
                if s.kind == CONSUMER and s.trace_id == span.trace_id
            ) or _earliest(links.get(span.span_id, ()))
            hop = _messaging_hop(span, consumer)
        else:
            continue
        if hop is not None:
            hops.append(hop)
    hops.sort(key=lambda h: (h.start_ns, h.hop_id))
    return hops


def client_gave_up(client_ns: int, server_ns: int) -> bool:
    """Whether a server span of ``server_ns`` outlasts its client of ``client_ns`` by more than
    coarse timestamps explain (module docstring, "Client gave up").

    >>> client_gave_up(100_000_000, 101_000_000), client_gave_up(100_000_000, 130_000_000)
    (False, True)
    """
    excess = server_ns - client_ns
    return excess > ABANDON_TOLERANCE_NS and excess > ABANDON_TOLERANCE_SHARE * client_ns


def _rpc_hop(client: SpanRecord, server: SpanRecord) -> Hop:
    client_ns, server_ns = duration(client), duration(server)
    request_leg = server.start_ns - client.start_ns
    response_leg = end_of(client) - end_of(server)
    abandoned = client_gave_up(client_ns, server_ns)
    # A caller that gave up leaves the wire time unknown; its negative legs are no skew.
    network = None if abandoned else client_ns - server_ns
    skew = not abandoned and (request_leg < 0 or response_leg < 0)
    if network is None:
        adjusted: tuple[int | None, int | None] = (None, None)
    elif skew:
        # Symmetric split under skew (Jaeger/Zipkin's assumption); the halves add up exactly.
        adjusted = (network // 2, network - network // 2)
    else:
        adjusted = (request_leg, response_leg)
    return Hop(
        trace_id=client.trace_id,
        hop_id=client.span_id,
        kind=DB if attr_str(client.attributes, c.DB_SYSTEM) else RPC,
        source_service=client.service,
        source_node=client.node,
        target_service=server.service,
        target_node=server.node or attr_str(client.attributes, c.SERVER_ADDRESS),
        operation=call_operation(client, server),
        start_ns=client.start_ns,
        client_ns=client_ns,
        server_ns=server_ns,
        network_ns=network,
        request_leg_ns=request_leg,
        response_leg_ns=response_leg,
        clock_skew_suspected=skew,
        adjusted_request_leg_ns=adjusted[0],
        adjusted_response_leg_ns=adjusted[1],
        queue_ns=None,
        error=failed(client) or failed(server),
        attempt=attr_int(client.attributes, c.HTTP_RESEND_COUNT),
        server_span_id=server.span_id,
        client_abandoned=abandoned,
    )


def virtual_target(client: SpanRecord) -> str | None:
    """The target a one-sided CLIENT span names: ``peer.service``, ``db.system``,
    ``server.address``."""
    attrs = client.attributes
    return (
        attr_str(attrs, c.PEER_SERVICE)
        or attr_str(attrs, c.DB_SYSTEM)
        or attr_str(attrs, c.SERVER_ADDRESS)
    )


def _virtual_hop(client: SpanRecord) -> Hop | None:
    target = virtual_target(client)
    if target is None:
        return None
    return _one_sided(client, target, DB if attr_str(client.attributes, c.DB_SYSTEM) else VIRTUAL)


def _one_sided(client: SpanRecord, target: str, kind: str) -> Hop:
    return Hop(
        trace_id=client.trace_id,
        hop_id=client.span_id,
        kind=kind,
        source_service=client.service,
        source_node=client.node,
        target_service=target,
        # The endpoint map's node for the address (a database's primary, a cache), else the
        # address the client called.
        target_node=attr_str(client.attributes, c.PEER_NODE)
        or attr_str(client.attributes, c.SERVER_ADDRESS),
        operation=call_operation(client),
        start_ns=client.start_ns,
        client_ns=duration(client),
        server_ns=None,
        network_ns=None,
        request_leg_ns=None,
        response_leg_ns=None,
        clock_skew_suspected=False,
        adjusted_request_leg_ns=None,
        adjusted_response_leg_ns=None,
        queue_ns=None,
        error=failed(client),
        attempt=attr_int(client.attributes, c.HTTP_RESEND_COUNT),
        server_span_id=None,
    )


def _messaging_hop(producer: SpanRecord, consumer: SpanRecord | None) -> Hop | None:
    if consumer is None:
        attrs = producer.attributes
        target = (
            attr_str(attrs, c.PEER_SERVICE)
            or attr_str(attrs, c.MESSAGING_DESTINATION)
            or attr_str(attrs, c.MESSAGING_SYSTEM)
            or attr_str(attrs, c.SERVER_ADDRESS)
        )
        return None if target is None else _one_sided(producer, target, MESSAGING)
    queue = consumer.start_ns - end_of(producer)
    return Hop(
        trace_id=producer.trace_id,
        hop_id=producer.span_id,
        kind=MESSAGING,
        source_service=producer.service,
        source_node=producer.node,
        target_service=consumer.service,
        target_node=consumer.node or attr_str(producer.attributes, c.SERVER_ADDRESS),
        operation=call_operation(producer, consumer),
        start_ns=producer.start_ns,
        client_ns=duration(producer),
        server_ns=duration(consumer),
        network_ns=None,
        request_leg_ns=None,
        response_leg_ns=None,
        clock_skew_suspected=queue < 0,
        adjusted_request_leg_ns=None,
        adjusted_response_leg_ns=None,
        queue_ns=queue,
        error=failed(producer) or failed(consumer),
        attempt=attr_int(producer.attributes, c.HTTP_RESEND_COUNT),
        server_span_id=consumer.span_id,
    )
