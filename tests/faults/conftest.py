"""Fixtures of the fault suite: a stack of its own (its services get stopped and restarted),
the waits (full or ``--quick-faults``), and the ledger rows that become docs/RELIABILITY.md.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hopscope import stack
from hopscope.core.settings import default_cache_dir
from hopscope.stack import processes
from tests.faults.harness import LedgerRow
from tests.faults.report import render


@pytest.fixture(scope="session")
def waits(request: pytest.FixtureRequest) -> dict[str, float]:
    """How long each fault lasts. Quick waits shorten outages, never skip a case."""
    if request.config.getoption("--quick-faults"):
        return {"outage_s": 10, "block_s": 20, "broker_s": 5, "settle_s": 4, "rate": 5,
                "cluster_outage_s": 10}  # fmt: skip
    # The cluster cases (test_cluster_faults.py) keep their outages short: the cluster goes on
    # without the node, and CI time is what they cost.
    return {"outage_s": 30, "block_s": 60, "broker_s": 10, "settle_s": 8, "rate": 5,
            "cluster_outage_s": 10}  # fmt: skip


@pytest.fixture(scope="session")
def ledger(request: pytest.FixtureRequest, waits: dict[str, float]) -> Iterator[list[LedgerRow]]:
    """Rows appended by the cases; written to ``--reliability-report`` at the end."""
    rows: list[LedgerRow] = []
    yield rows
    target = request.config.getoption("--reliability-report")
    if target and rows:
        order = list(
            ("elasticsearch-outage", "elasticsearch-429", "processor-sigkill",
             "kafka-restart", "rebalance", "processor-sigterm",
             "es-data-node-kill", "es-master-kill", "kafka-broker-kill", "worker-sigkill",
             "workers-rolling-restart")
        )  # fmt: skip
        rows.sort(key=lambda r: order.index(r.case) if r.case in order else len(order))
        quick = bool(request.config.getoption("--quick-faults"))
        Path(target).write_text(render(rows, waits, quick))


@pytest.fixture(scope="session")
def fault_stack() -> Iterator[tuple[Path, stack.StackState]]:
    """Kafka and Elasticsearch of the suite's own: cases stop and restart them."""
    # World-traversable (Elasticsearch's system user must reach it as root): under /tmp, or
    # beside the test stack's directory when one is given (CI), whose clean-up then finds it.
    parent = os.environ.get("HOPSCOPE_TEST_STATE_DIR")
    base = Path(parent).parent if parent else Path("/tmp")
    state_dir = Path(tempfile.mkdtemp(prefix="hopscope-faults-", dir=base))
    state_dir.chmod(0o755)
    try:
        yield (
            state_dir,
            stack.up(stack.StackOptions(cache_dir=default_cache_dir(), state_dir=state_dir)),
        )
    finally:
        stack.down(state_dir, timeout=20)
        shutil.rmtree(state_dir, ignore_errors=True)
    assert processes.pids_with_marker(str(state_dir)) == []
