"""Balance job: shares, imbalance and the suggested strategy on hand-made requests; the lb-skew
scenario's overloaded node found with high impact, and no high finding anywhere else."""

from __future__ import annotations

import math
from collections.abc import Sequence

import polars as pl
import pytest

from hopscope.analysis.jobs import balance
from hopscope.analysis.loaders import dataset_from_records
from hopscope.analysis.schema import Dataset
from hopscope.processors.records import ERROR, SpanRecord
from tests.analysis_support import MS, SCENARIOS, START, simulated


def request(
    i: int,
    node: str,
    duration_ms: int,
    *,
    strategy: str,
    client: str,
    failed: bool = False,
) -> list[SpanRecord]:
    """One payment: gateway root (with the client address) → client span → payment server."""
    trace_id = f"{i:032x}"
    start = START + i * 10 * MS
    server_ns = duration_ms * MS
    status = ERROR if failed else "unset"
    return [
        SpanRecord(
            trace_id, f"{i:08x}00000001", None, "gateway/POST /v1/payments", "server", start,
            start + server_ns + 2 * MS, "gateway", "gateway-1",
            attributes={"client.address": client},
        ),
        SpanRecord(
            trace_id, f"{i:08x}00000002", f"{i:08x}00000001", "payment/Authorize", "client",
            start + MS // 2, start + server_ns + MS + MS // 2, "gateway", "gateway-1",
            status=status,
            attributes={"peer.service": "payment", "server.address": node,
                        "hopscope.lb.strategy": strategy},
        ),
        SpanRecord(
            trace_id, f"{i:08x}00000003", f"{i:08x}00000002", "payment/Authorize", "server",
            start + MS, start + MS + server_ns, "payment", node, status=status,
        ),
    ]  # fmt: skip


def build(
    plan: Sequence[tuple[str, int, int]], *, strategy: str, clients: dict[str, Sequence[str]]
) -> Dataset:
    """``plan``: (node, requests, server duration ms); clients per node, cycled."""
    spans: list[SpanRecord] = []
    i = 0
    for node, count, duration_ms in plan:
        addresses = clients[node]
        for k in range(count):
            spans += request(
                i, node, duration_ms, strategy=strategy, client=addresses[k % len(addresses)]
            )
            i += 1
    return dataset_from_records(spans).collect()


def test_ip_hash_skew_on_a_slower_node_is_high() -> None:
    data = build(
        [("payment-1", 60, 30), ("payment-2", 20, 10), ("payment-3", 20, 10)],
        strategy="ip_hash",
        clients={
            "payment-1": ["192.0.2.1", "192.0.2.2"],
            "payment-2": [f"198.51.100.{k}" for k in range(20)],
            "payment-3": [f"203.0.113.{k}" for k in range(20)],
        },
    )
    result = balance.run(data)
    nodes = result.tables["nodes"].filter(pl.col("service") == "payment")
    assert nodes.select("node", "requests", "p50_ns", "p99_ns").rows() == [
        ("payment-1", 60, 30 * MS, 30 * MS),
        ("payment-2", 20, 10 * MS, 10 * MS),
        ("payment-3", 20, 10 * MS, 10 * MS),
    ]
    assert nodes.get_column("share").to_list() == pytest.approx([0.6, 0.2, 0.2])
    assert nodes.get_column("error_rate").to_list() == [0.0, 0.0, 0.0]
    # No children under the server spans: self time is the whole duration.
    assert nodes.get_column("mean_self_ns").to_list() == [30 * MS, 10 * MS, 10 * MS]
    # Two addresses carry all of payment-1's requests; 5 of 20 on the others.
    assert nodes.get_column("top_clients_share").to_list() == pytest.approx([1.0, 0.25, 0.25])

    services = result.tables["services"]
    # The gateway runs on one node: nothing to balance.
    assert services.get_column("service").to_list() == ["payment"]
    row = services.row(0, named=True)
    assert row["nodes"] == 3 and row["requests"] == 100
    assert row["max_over_mean"] == pytest.approx(0.6 / (1 / 3))
    std = math.sqrt(((60 - 100 / 3) ** 2 + 2 * (20 - 100 / 3) ** 2) / 3)
    assert row["cv"] == pytest.approx(std / (100 / 3))
    assert (row["strategy"], row["suggested_strategy"]) == ("ip_hash", "least_conn")

    (finding,) = result.findings
    assert finding.kind == "lb_imbalance"
    assert finding.impact == "high"
    assert dict(finding.subject) == {
        "service": "payment",
        "node": "payment-1",
        "strategy": "ip_hash",
    }
    # (30 ms - 10 ms) on 60 % of the requests.
    assert finding.gain_ns == 12 * MS
    assert finding.evidence["top_clients"] == [
        {"client_address": "192.0.2.1", "requests": 30},
        {"client_address": "192.0.2.2", "requests": 30},
    ]
    assert "least_conn" in finding.recommendation
    assert "bounded loads" in finding.recommendation
    assert len(finding.example_traces) == 3


def test_skew_the_node_absorbs_is_medium() -> None:
    data = build(
        [("payment-1", 60, 10), ("payment-2", 20, 10), ("payment-3", 20, 10)],
        strategy="round_robin",
        clients={n: ["192.0.2.1"] for n in ("payment-1", "payment-2", "payment-3")},
    )
    result = balance.run(data)
    (finding,) = result.findings
    assert finding.impact == "medium"
    assert finding.gain_ns == 0
    assert result.tables["services"].row(0, named=True)["suggested_strategy"] == "keep"


def test_balanced_round_robin_keeps_its_strategy() -> None:
    data = build(
        [("payment-1", 20, 10), ("payment-2", 20, 10), ("payment-3", 20, 10)],
        strategy="round_robin",
        clients={n: ["192.0.2.1"] for n in ("payment-1", "payment-2", "payment-3")},
    )
    result = balance.run(data)
    row = result.tables["services"].row(0, named=True)
    assert (row["max_over_mean"], row["cv"]) == (1.0, 0.0)
    assert (row["strategy"], row["suggested_strategy"]) == ("round_robin", "keep")
    assert result.findings == []


def test_round_robin_with_a_slow_node_suggests_least_conn() -> None:
    data = build(
        [("payment-1", 20, 30), ("payment-2", 20, 10), ("payment-3", 20, 10)],
        strategy="round_robin",
        clients={n: ["192.0.2.1"] for n in ("payment-1", "payment-2", "payment-3")},
    )
    row = balance.run(data).tables["services"].row(0, named=True)
    assert row["p50_spread"] == pytest.approx(3.0)
    assert row["suggested_strategy"] == "least_conn"


def test_error_rate_per_node() -> None:
    spans = request(0, "payment-1", 10, strategy="ip_hash", client="a", failed=True)
    spans += request(1, "payment-1", 10, strategy="ip_hash", client="a")
    spans += request(2, "payment-2", 10, strategy="ip_hash", client="b")
    nodes = balance.run(dataset_from_records(spans)).tables["nodes"]
    assert nodes.select("node", "error_rate").rows() == [("payment-1", 0.5), ("payment-2", 0.0)]


def test_min_nodes_is_validated() -> None:
    with pytest.raises(ValueError, match="min_nodes"):
        balance.run(dataset_from_records([]), min_nodes=1)


def test_lb_skew_scenario_names_the_overloaded_node() -> None:
    data = simulated("lb-skew")
    truth = data.ground_truth["injected"][0]
    result = balance.run(data.dataset)
    high = [f for f in result.findings if f.impact == "high"]
    assert len(high) == 1
    assert dict(high[0].subject) == {
        "service": "payment",
        "node": truth["overloaded_node"],
        "strategy": truth["strategy"],
    }
    assert high[0].gain_ns > 0
    # The aggregator's addresses are the busiest node's top clients.
    top = {c["client_address"] for c in high[0].evidence["top_clients"]}
    assert set(truth["client_addresses"]) <= top
    share = data.ground_truth["effect"]["share_by_node"][truth["overloaded_node"]]
    assert high[0].evidence["share"] == pytest.approx(share, abs=0.02)
    payment = result.tables["services"].filter(pl.col("service") == "payment")
    assert payment.row(0, named=True)["suggested_strategy"] == "least_conn"


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "lb-skew"])
def test_no_high_finding_outside_lb_skew(scenario: str) -> None:
    result = balance.run(simulated(scenario).dataset)
    assert [f.title for f in result.findings if f.impact == "high"] == []
    if scenario == "baseline":
        assert result.findings == []
