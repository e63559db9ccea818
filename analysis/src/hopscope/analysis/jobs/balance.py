"""Load balance per service and node: who gets how much traffic, how fast, under which strategy.

For every service running on two or more nodes (its SERVER spans, grouped by ``node``):

1. Per node: requests, share of the service's requests, p50/p99 of the server span duration,
   mean self time (duration minus its direct children's durations, never below zero: the
   node's own CPU and queueing, free of downstream latency) and error rate.
2. Per service: ``max_over_mean`` (the busiest node's share over the mean share; 1.0 is even)
   and the coefficient of variation of requests per node (population standard deviation over
   the mean). The strategy is the ``hopscope.lb.strategy`` the *callers* put on their CLIENT
   spans to the service (the load balancer lives in the caller); the client-address
   concentration is the share of the busiest node's requests carried by its few most frequent
   ``client.address`` values (taken from the trace's spans, usually the edge server span).
3. Suggestion: ``ip_hash`` with a skew whose busy node is slower → ``least_conn`` (sticky
   clients behind one NAT address pin a node); ``round_robin`` whose nodes differ in latency →
   ``least_conn``; otherwise ``keep``.

A finding ``lb_imbalance`` is ``high`` when the skew is large *and* the busy node is clearly
slower than its peers; a skew the node absorbs (or one that follows an ejected node's traffic
moving to the survivors) is at most ``medium``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import polars as pl

from hopscope.analysis.expr import error_rate, example_traces, percentile_ns, share
from hopscope.analysis.findings import Finding, Impact, JobResult
from hopscope.analysis.ids import LEFT_ROW, RIGHT_ROW, id_pairs
from hopscope.analysis.render import ms
from hopscope.analysis.schema import Dataset

JOB: Final = "balance"
KIND: Final = "lb_imbalance"

# Busiest node at 1.5× its fair share: with three nodes, one takes half the traffic. Below
# that, ordinary randomness and failover shifts (a dead node's third split over two
# survivors gives 1.33) explain the skew.
IMBALANCE_MAX_OVER_MEAN: Final = 1.5
# "Clearly slower": the busy node's median 25 % above its peers', or its mean self time 50 %
# above theirs. Medians and means, not p99s: when the skew is strong the peers serve few
# requests and their p99 is one or two outliers (an issuer tail), not their latency.
SLOWER_P50_RATIO: Final = 1.25
SLOWER_SELF_RATIO: Final = 1.5
# Below this many requests on a node, its latency figures are anecdotes.
MIN_NODE_REQUESTS: Final = 20
# Round robin spreads evenly by construction; a node whose median is this much above the
# fastest peer's keeps its equal share although it cannot keep up: least_conn would adapt.
SPREAD_P50_RATIO: Final = 1.5
# "A few client addresses": this many of the busiest node's most frequent addresses.
TOP_CLIENTS: Final = 5

KEEP: Final = "keep"
LEAST_CONN: Final = "least_conn"
IP_HASH: Final = "ip_hash"
ROUND_ROBIN: Final = "round_robin"


def _server_spans(spans: pl.LazyFrame) -> pl.DataFrame:
    """Server spans with their self time (duration minus direct children's durations).

    Columns: trace_id, span_id, service, node, duration_ns, error, self_ns.
    """
    servers = (
        spans.filter((pl.col("kind") == "server") & pl.col("node").is_not_null())
        .select("trace_id", "span_id", "service", "node", "duration_ns", "error")
        .collect()
    )
    # Children of server spans only: a one-column filter on the servers' span ids drops most
    # spans cheaply. The exact (trace, parent) match is then a join on one integer key of
    # the two ids' hashes, the ids compared where keys meet (id_pairs): grouping the children
    # by the two text columns and joining on them again hashed the text twice (a semi join
    # before the sum, once more: 1 CPU-s at 10M spans).
    children = (
        spans.select("trace_id", "parent_id", "duration_ns")
        .filter(pl.col("parent_id").is_in(servers.get_column("span_id").implode()))
        .collect()
    )
    pairs = id_pairs(servers, children, ["trace_id", "span_id"], ["trace_id", "parent_id"])
    children_ns = (
        pairs.with_columns(children.get_column("duration_ns").gather(pairs.get_column(RIGHT_ROW)))
        .group_by(LEFT_ROW)
        .agg(pl.col("duration_ns").sum().alias("children_ns"))
    )
    return (
        servers.with_row_index(LEFT_ROW)
        .join(children_ns, on=LEFT_ROW, how="left", maintain_order="left")
        .with_columns(
            (pl.col("duration_ns") - pl.col("children_ns").fill_null(0))
            .clip(lower_bound=0)
            .alias("self_ns")
        )
        .drop(LEFT_ROW, "children_ns")
    )


def _client_addresses(spans: pl.LazyFrame) -> pl.LazyFrame:
    """One client address per trace (the first span that carries one, in time order)."""
    return (
        spans.filter(pl.col("client_address").is_not_null())
        .sort("time", "span_id")
        .group_by("trace_id")
        .agg(pl.col("client_address").first())
    )


def node_clients(servers: pl.LazyFrame, spans: pl.LazyFrame) -> pl.LazyFrame:
    """Requests per service, node and client address: ``from_client``."""
    return (
        servers.join(_client_addresses(spans), on="trace_id", how="inner")
        .group_by("service", "node", "client_address")
        .agg(pl.len().alias("from_client"))
    )


def node_table(servers: pl.LazyFrame, clients: pl.LazyFrame) -> pl.LazyFrame:
    """The ``nodes`` table: per service (with ≥2 nodes) and node, its requests and latency.

    Parameters:
        servers: the server spans (:func:`_server_spans`).
        clients: their requests per client address (:func:`node_clients`).

    Columns: service, node, requests, share, p50_ns, p99_ns, error_rate, mean_self_ns,
    top_clients_share (the share of the node's requests from its :data:`TOP_CLIENTS` most
    frequent client addresses; null without addresses).
    """
    top = clients.group_by("service", "node").agg(
        pl.col("from_client").top_k(TOP_CLIENTS).sum().alias("top_clients")
    )
    return (
        servers.group_by("service", "node")
        .agg(
            pl.len().cast(pl.Int64).alias("requests"),
            percentile_ns("duration_ns", 0.5).alias("p50_ns"),
            percentile_ns("duration_ns", 0.99).alias("p99_ns"),
            error_rate("error").alias("error_rate"),
            pl.col("self_ns").mean().cast(pl.Int64).alias("mean_self_ns"),
        )
        .with_columns(
            share("requests", over="service").alias("share"),
            pl.len().over("service").alias("_nodes"),
        )
        .filter(pl.col("_nodes") >= 2)
        .join(top, on=["service", "node"], how="left")
        .with_columns((pl.col("top_clients") / pl.col("requests")).alias("top_clients_share"))
        .select(
            "service",
            "node",
            "requests",
            "share",
            "p50_ns",
            "p99_ns",
            "error_rate",
            "mean_self_ns",
            "top_clients_share",
        )
        .sort("service", "node")
    )


def strategies(spans: pl.LazyFrame) -> pl.LazyFrame:
    """The strategy callers use towards each service: ``(service, strategy)``.

    The most frequent ``lb_strategy`` on CLIENT spans per ``peer_service`` (ties: by name).
    """
    return (
        spans.filter(
            (pl.col("kind") == "client")
            & pl.col("lb_strategy").is_not_null()
            & pl.col("peer_service").is_not_null()
        )
        .group_by("peer_service", "lb_strategy")
        .agg(pl.len().alias("calls"))
        .sort(["peer_service", "calls", "lb_strategy"], descending=[False, True, False])
        .group_by("peer_service", maintain_order=True)
        .agg(pl.col("lb_strategy").first().alias("strategy"))
        .rename({"peer_service": "service"})
    )


def _peer_figures(nodes: pl.DataFrame, service: str, busiest: str) -> dict[str, Any]:
    """The busiest node against its peers (their requests pooled)."""
    peers = nodes.filter((pl.col("service") == service) & (pl.col("node") != busiest))
    weights = peers.get_column("requests")
    total = int(weights.sum())
    if total == 0:
        return {"requests": 0, "p50_ns": None, "p99_ns": None, "mean_self_ns": None}

    def weighted(column: str) -> int | None:
        values = peers.get_column(column)
        if values.null_count() == len(values):
            return None
        return int((values.fill_null(0) * weights).sum() / total)

    return {
        "requests": total,
        "min_requests": int(weights.min()),  # type: ignore[arg-type]
        "p50_ns": weighted("p50_ns"),
        "p99_ns": weighted("p99_ns"),
        "mean_self_ns": weighted("mean_self_ns"),
    }


def _ratio(a: int | None, b: int | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return a / b


def _suggest(strategy: str | None, imbalanced: bool, slower: bool, spread: float | None) -> str:
    if imbalanced and slower and strategy in (IP_HASH, None):
        return LEAST_CONN
    if strategy == ROUND_ROBIN and spread is not None and spread >= SPREAD_P50_RATIO:
        return LEAST_CONN
    return KEEP


def _service_rows(nodes: pl.DataFrame, strategy_of: Mapping[str, str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for service in sorted(set(nodes.get_column("service").to_list())):
        mine = nodes.filter(pl.col("service") == service).sort(
            ["requests", "node"], descending=[True, False]
        )
        requests = mine.get_column("requests")
        count = len(mine)
        mean = float(requests.mean())  # type: ignore[arg-type]
        std = float(requests.std(ddof=0))  # type: ignore[arg-type]
        busiest = mine.row(0, named=True)
        peers = _peer_figures(nodes, service, busiest["node"])
        enough = busiest["requests"] >= MIN_NODE_REQUESTS and (
            peers.get("min_requests", 0) >= MIN_NODE_REQUESTS
        )
        p50_ratio = _ratio(busiest["p50_ns"], peers["p50_ns"])
        self_ratio = _ratio(busiest["mean_self_ns"], peers["mean_self_ns"])
        slower = enough and (
            (p50_ratio is not None and p50_ratio >= SLOWER_P50_RATIO)
            or (self_ratio is not None and self_ratio >= SLOWER_SELF_RATIO)
        )
        max_over_mean = float(busiest["requests"]) / mean
        p50s = mine.filter(pl.col("requests") >= MIN_NODE_REQUESTS).get_column("p50_ns")
        spread = (
            float(p50s.max()) / float(p50s.min())  # type: ignore[arg-type]
            if len(p50s) >= 2 and (p50s.min() or 0) > 0  # type: ignore[operator]
            else None
        )
        strategy = strategy_of.get(service)
        imbalanced = max_over_mean >= IMBALANCE_MAX_OVER_MEAN
        rows.append(
            {
                "service": service,
                "nodes": count,
                "requests": int(requests.sum()),
                "max_over_mean": max_over_mean,
                "cv": std / mean if mean else 0.0,
                "strategy": strategy,
                "suggested_strategy": _suggest(strategy, imbalanced, slower, spread),
                "busiest_node": busiest["node"],
                "busiest_share": busiest["share"],
                "p50_ratio": p50_ratio,
                "self_ratio": self_ratio,
                "p50_spread": spread,
                "_busiest": busiest,
                "_peers": peers,
                "_slower": slower,
                "_imbalanced": imbalanced,
            }
        )
    return rows


def _top_clients(clients: pl.DataFrame, service: str, node: str) -> list[dict[str, Any]]:
    top = (
        clients.filter((pl.col("service") == service) & (pl.col("node") == node))
        .select("client_address", pl.col("from_client").alias("requests"))
        .sort(["requests", "client_address"], descending=[True, False])
        .head(TOP_CLIENTS)
    )
    return [{"client_address": a, "requests": n} for a, n in top.iter_rows()]


def _examples(servers: pl.DataFrame, service: str, node: str) -> list[str]:
    ids = (
        servers.filter((pl.col("service") == service) & (pl.col("node") == node))
        .select(example_traces("duration_ns"))
        .to_series()
    )
    return ids.to_list()


def _finding(
    row: Mapping[str, Any], servers: pl.DataFrame, clients_of: pl.DataFrame
) -> Finding | None:
    if not row["_imbalanced"]:
        return None
    service, busiest, peers = row["service"], row["_busiest"], row["_peers"]
    node, strategy = busiest["node"], row["strategy"]
    impact: Impact = "high" if row["_slower"] else "medium"
    # Latency the busy node adds per request: its p99 over the peers'; when the peers' p99 is
    # below the busy node's only by noise (few requests), the median gap is the floor.
    p99_gap = (busiest["p99_ns"] or 0) - (peers["p99_ns"] or 0)
    p50_gap = (busiest["p50_ns"] or 0) - (peers["p50_ns"] or 0)
    excess = max(0, p99_gap, p50_gap)
    gain_ns = int(excess * busiest["share"])
    clients = _top_clients(clients_of, service, node)
    concentrated = (busiest["top_clients_share"] or 0.0) >= 0.5
    if strategy == IP_HASH:
        cause = (
            f"ip_hash pins clients to nodes; {len(clients)} client addresses carry "
            f"{(busiest['top_clients_share'] or 0):.0%} of {node}'s requests"
            if concentrated
            else "ip_hash maps a disproportionate set of client addresses to it"
        )
        advice = (
            "Switch the gateways' payment pool to least_conn (or round_robin when no client "
            "affinity is needed); if affinity is needed, use consistent hashing with bounded "
            "loads so a hot client spills over to the next node instead of queueing."
        )
    elif strategy in (ROUND_ROBIN, LEAST_CONN):
        cause = (
            f"{strategy} should spread evenly, so the skew comes from outside the balancer: "
            "ejected or draining peers, or callers that bypass it"
        )
        advice = (
            "Check the peers' health and ejections (the failover job), and whether some callers "
            "reach the node directly; add capacity while its peers are out."
        )
    else:
        cause = "the callers do not report their strategy (hopscope.lb.strategy)"
        advice = (
            "Spread with least_conn at the callers, and record hopscope.lb.strategy on their "
            "client spans."
        )
    slower_text = (
        f"its p50 is {ms(busiest['p50_ns'])} against {ms(peers['p50_ns'])} on its peers and its "
        f"mean self time {ms(busiest['mean_self_ns'])} against {ms(peers['mean_self_ns'])}"
    )
    title = (
        f"{service}: {node} takes {busiest['share']:.0%} of requests "
        f"({row['max_over_mean']:.1f}× its fair share) under {strategy or 'an unknown strategy'}"
    )
    return Finding(
        job=JOB,
        kind=KIND,
        title=title,
        impact=impact,
        gain_ns=gain_ns,
        subject={"service": service, "node": node, "strategy": strategy},
        evidence={
            "nodes": row["nodes"],
            "requests": row["requests"],
            "share": round(busiest["share"], 4),
            "max_over_mean": round(row["max_over_mean"], 3),
            "cv": round(row["cv"], 3),
            "p50_ns": busiest["p50_ns"],
            "p99_ns": busiest["p99_ns"],
            "mean_self_ns": busiest["mean_self_ns"],
            "peers_p50_ns": peers["p50_ns"],
            "peers_p99_ns": peers["p99_ns"],
            "peers_mean_self_ns": peers["mean_self_ns"],
            "top_clients_share": busiest["top_clients_share"],
            "top_clients": clients,
            "slower_than_peers": row["_slower"],
        },
        recommendation=(
            f"{node} is overloaded: {cause}; {slower_text}. {advice}"
            if row["_slower"]
            else f"{node} takes more than its share ({cause}) but is not slower than its peers "
            f"yet ({slower_text}). {advice}"
        ),
        gain=(
            f"spreading {service}'s requests evenly removes about {ms(excess)} from the "
            f"{busiest['share']:.0%} of requests on {node}: ~{ms(gain_ns)} at p99"
        ),
        example_traces=_examples(servers, service, node),
    )


def run(data: Dataset, *, min_nodes: int = 2) -> JobResult:
    """Load balance per service with at least ``min_nodes`` nodes.

    Parameters:
        data: the analysis window.
        min_nodes: services on fewer nodes have nothing to balance.

    Returns:
        Tables ``nodes`` (service, node, requests, share, p50_ns, p99_ns, error_rate,
        mean_self_ns, top_clients_share) and ``services`` (service, nodes, requests,
        max_over_mean, cv, strategy, suggested_strategy, busiest_node, busiest_share,
        p50_ratio, self_ratio, p50_spread); ``lb_imbalance`` findings.

    Raises:
        ValueError: ``min_nodes`` below 2.
    """
    if min_nodes < 2:
        raise ValueError(f"min_nodes must be >= 2, got {min_nodes}")
    # The server spans and their requests per client address are read by the table and by
    # every finding: computed once.
    servers = _server_spans(data.spans)
    clients, strategy_frame = pl.collect_all(
        [node_clients(servers.lazy(), data.spans), strategies(data.spans)]
    )
    nodes = node_table(servers.lazy(), clients.lazy()).collect()
    nodes = nodes.filter(pl.len().over("service") >= min_nodes)
    strategy_of = dict(strategy_frame.iter_rows())
    rows = _service_rows(nodes, strategy_of)
    services = pl.DataFrame(
        [{k: v for k, v in row.items() if not k.startswith("_")} for row in rows],
        schema={
            "service": pl.String,
            "nodes": pl.Int64,
            "requests": pl.Int64,
            "max_over_mean": pl.Float64,
            "cv": pl.Float64,
            "strategy": pl.String,
            "suggested_strategy": pl.String,
            "busiest_node": pl.String,
            "busiest_share": pl.Float64,
            "p50_ratio": pl.Float64,
            "self_ratio": pl.Float64,
            "p50_spread": pl.Float64,
        },
    )
    findings = [f for row in rows if (f := _finding(row, servers, clients)) is not None]
    return JobResult(JOB, {"nodes": nodes, "services": services}, findings)
