"""The fault suite on a cluster: three Kafka brokers (topics with three replicas,
``min.insync.replicas`` 2) and three Elasticsearch nodes (one replica per shard), started once
for the module (``hopscope stack up --kafka-brokers 3 --es-nodes 3``). Each case runs steady
traffic, kills one node or worker mid-stream, and settles the same ledger as the single-node
cases (tests/faults/harness.py): produced = indexed + DLQ, no duplicate ids, derived records
equal to a clean replay's.

What the cluster adds over docs/DESIGN.md §4: a node or broker that dies is a fault the
cluster absorbs (a replica takes over), not an outage the processors wait out; a worker that
dies is restarted by its supervisor, and the group gives its partitions to the others.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kafka.admin import KafkaAdminClient

from hopscope import stack
from hopscope.core.settings import default_cache_dir
from hopscope.stack import processes
from tests.faults.harness import LedgerRow
from tests.faults.test_faults import WAIT_S, Case

pytestmark = [pytest.mark.integration, pytest.mark.stack, pytest.mark.faults]

NODES = 3
ROLL_TIMEOUT_S = 180.0


@pytest.fixture(scope="module")
def cluster_stack() -> Iterator[tuple[Path, stack.StackState]]:
    """Three brokers and three Elasticsearch nodes of the module's own, on loopback."""
    parent = os.environ.get("HOPSCOPE_TEST_STATE_DIR")
    base = Path(parent).parent if parent else Path("/tmp")
    state_dir = Path(tempfile.mkdtemp(prefix="hopscope-cluster-", dir=base))
    state_dir.chmod(0o755)
    options = stack.StackOptions(
        cache_dir=default_cache_dir(), state_dir=state_dir, kafka_brokers=NODES, es_nodes=NODES
    )
    try:
        yield state_dir, stack.up(options)
    finally:
        # The cluster's data is thrown away: no need to wait for six graceful shutdowns.
        stack.down(state_dir, timeout=5)
        shutil.rmtree(state_dir, ignore_errors=True)
    assert processes.pids_with_marker(str(state_dir)) == []


@pytest.fixture
def cluster_case(
    cluster_stack: tuple[Path, stack.StackState], waits: dict[str, float], tmp_path: Path
) -> Iterator[Callable[..., Case]]:
    """``cluster_case(name, seed=…, partitions=…, workers=…)`` on the module's cluster; topics
    replicated on every broker; every case cleaned up afterwards."""
    made: list[Case] = []

    def make(name: str, **options: int) -> Case:
        options.setdefault("partitions", 3)
        made.append(Case(name, cluster_stack, waits, tmp_path, replication=NODES, **options))
        return made[-1]

    yield make
    for case in made:
        case.close()


def kill_service(state_dir: Path, name: str) -> None:
    """SIGKILL one node of the stack (its whole process group): no shutdown of any kind."""
    state = stack.StackState.load(state_dir)
    assert state is not None
    svc = state.services[name]
    with contextlib.suppress(ProcessLookupError):
        os.killpg(svc.pid, signal.SIGKILL)
    for pid in processes.pids_with_marker(svc.marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while processes.pids_with_marker(svc.marker):
        assert time.monotonic() < deadline, f"{name} survived SIGKILL"
        time.sleep(0.1)
    processes.stop(svc.pid, svc.marker, timeout=1)  # reaps the child we started


def es_node_service(state: stack.StackState, node_name: str) -> str:
    """The stack's service name of the Elasticsearch node called ``node_name``."""
    number = int(node_name.rsplit("-", 1)[1])
    return stack.service_name("elasticsearch", number)


def master_node(case: Case) -> str:
    return str(case.es.cat.master(format="json")[0]["node"])


def wait_green(case: Case, timeout_s: float = WAIT_S) -> None:
    """Every node in the cluster (green alone holds with two of three) and every shard
    allocated."""
    health = case.es.options(request_timeout=timeout_s + 30).cluster.health(
        wait_for_status="green", wait_for_nodes=str(NODES), timeout=f"{timeout_s:.0f}s"
    )
    assert health["status"] == "green" and health["number_of_nodes"] == NODES, health


def committed_total(case: Case) -> int:
    return sum(case.lag.committed_now().values())


def test_cluster_env_lists_every_node(cluster_stack: tuple[Path, stack.StackState]) -> None:
    state_dir, state = cluster_stack
    statuses = stack.status(state_dir)
    assert [s.name for s in statuses] == [
        "kafka", "kafka-2", "kafka-3", "elasticsearch", "elasticsearch-2", "elasticsearch-3",
    ]  # fmt: skip
    assert all(s.up for s in statuses)
    env = stack.env_lines(state_dir)
    assert f"HOPSCOPE_KAFKA_BOOTSTRAP={state.kafka_bootstrap}\n" in env
    assert state.kafka_bootstrap.count(",") == 2 and state.es_url.count(",") == 2


def test_es_data_node_kill(
    cluster_case: Callable[..., Case], waits: dict[str, float], ledger: list[LedgerRow]
) -> None:
    case = cluster_case("es-data-node-kill", seed=21)
    processor = case.start()
    settings = case.es.indices.get_settings(index=f"{case.prefix}-spans-*")
    assert all(s["settings"]["index"]["number_of_replicas"] == "1" for s in settings.values())
    wait_green(case)
    master = master_node(case)
    primaries = [
        shard["node"]
        for shard in case.es.cat.shards(index=f"{case.prefix}-*", format="json")
        if shard["prirep"] == "p" and shard["node"] != master
    ]
    victim = Counter(primaries).most_common(1)[0][0] if primaries else (
        next(n["name"] for n in case.es.cat.nodes(format="json") if n["name"] != master)
    )  # fmt: skip
    name = es_node_service(case_state(case), victim)
    before = committed_total(case)
    kill_service(case.state_dir, name)
    time.sleep(waits["cluster_outage_s"])
    # The replicas took over: the group went on committing without the node.
    during = committed_total(case)
    # The node rejoins while the case settles (an Elasticsearch start takes a minute on two
    # busy cores); the cluster is green again before the next case.
    stack.start_service(case.state_dir, name, default_cache_dir(), wait=False)
    cleared_at = time.monotonic()
    assert processor.alive(), processor.tail()
    assert during > before, "nothing was committed while one data node was down"
    row = case.finish([processor], cleared_at, notes=f"Killed {victim} ({name}).")
    wait_green(case)
    ledger.append(row)


def case_state(case: Case) -> stack.StackState:
    state = stack.StackState.load(case.state_dir)
    assert state is not None
    return state


def test_es_master_kill(
    cluster_case: Callable[..., Case], waits: dict[str, float], ledger: list[LedgerRow]
) -> None:
    case = cluster_case("es-master-kill", seed=22)
    processor = case.start()
    wait_green(case)
    victim = master_node(case)
    name = es_node_service(case_state(case), victim)
    kill_service(case.state_dir, name)
    time.sleep(waits["cluster_outage_s"])
    successor = master_node(case)
    assert successor != victim
    stack.start_service(case.state_dir, name, default_cache_dir(), wait=False)
    cleared_at = time.monotonic()
    assert processor.alive(), processor.tail()
    row = case.finish(
        [processor], cleared_at, notes=f"Killed the master {victim}; {successor} was elected."
    )
    wait_green(case)
    ledger.append(row)


def test_kafka_broker_kill(
    cluster_case: Callable[..., Case], waits: dict[str, float], ledger: list[LedgerRow]
) -> None:
    case = cluster_case("kafka-broker-kill", seed=23)
    processor = case.start()
    admin = KafkaAdminClient(bootstrap_servers=case.bootstrap)
    try:
        leaders = Counter(
            partition["leader_id"]
            for topic in admin.describe_topics(list(case.topics.inputs))
            for partition in topic["partitions"]
        )
    finally:
        admin.close()
    node = leaders.most_common(1)[0][0]
    name = stack.service_name("kafka", node)
    before, refused = committed_total(case), case.traffic.failed_runs
    kill_service(case.state_dir, name)
    killed_at = time.monotonic()
    time.sleep(waits["cluster_outage_s"])
    # No pause: two in-sync replicas of three take every write, and the group goes on.
    during = committed_total(case)
    stack.start_service(case.state_dir, name, default_cache_dir())
    cleared_at = time.monotonic()
    assert during > before, "nothing was committed while one broker was down"
    assert case.traffic.failed_runs == refused, case.traffic.errors
    stalls = [
        later[0] - earlier[0]
        for earlier, later in zip(case.lag.samples, case.lag.samples[1:], strict=False)
        if earlier[0] >= killed_at - 1
    ]
    note = (
        f"Killed broker {node} (leader of {leaders[node]} of {sum(leaders.values())} "
        f"partitions); no simulator run refused; longest gap between lag samples "
        f"{max(stalls, default=0):.1f} s."
    )
    ledger.append(case.finish([processor], cleared_at, notes=note))


def test_worker_sigkill(cluster_case: Callable[..., Case], ledger: list[LedgerRow]) -> None:
    case = cluster_case("worker-sigkill", seed=24, partitions=6, workers=3)
    supervisor = case.start()
    deadline = time.monotonic() + WAIT_S
    while len(supervisor.worker_pids()) < 3:
        assert time.monotonic() < deadline, supervisor.tail()
        time.sleep(0.5)
    time.sleep(case.waits["settle_s"])
    victim = supervisor.worker_pids()[1]
    os.kill(victim, signal.SIGKILL)
    died = f"(pid {victim}) died: signal SIGKILL"
    while True:
        log = supervisor.log.read_text(errors="replace")
        if died in log and "started" in log.split(died)[-1]:
            break
        assert time.monotonic() < deadline, supervisor.tail()
        time.sleep(0.5)
    cleared_at = time.monotonic()
    ledger.append(
        case.finish([supervisor], cleared_at, notes="Worker 2 killed; restarted after 1 s.")
    )


def test_workers_rolling_restart(
    cluster_case: Callable[..., Case], ledger: list[LedgerRow]
) -> None:
    case = cluster_case("workers-rolling-restart", seed=25, partitions=6, workers=3)
    supervisor = case.start()
    deadline = time.monotonic() + WAIT_S
    while len(supervisor.worker_pids()) < 3:
        assert time.monotonic() < deadline, supervisor.tail()
        time.sleep(0.5)
    time.sleep(case.waits["settle_s"])
    old = set(supervisor.worker_pids())
    began = time.monotonic()
    supervisor.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + ROLL_TIMEOUT_S
    while True:
        pids = set(supervisor.worker_pids())
        if len(pids) == 3 and not pids & old:
            break
        assert time.monotonic() < deadline, supervisor.tail()
        time.sleep(0.5)
    took = time.monotonic() - began
    cleared_at = time.monotonic()
    log = supervisor.log.read_text(errors="replace")
    assert "died" not in log and "during the rolling restart" not in log, log
    ledger.append(
        case.finish(
            [supervisor], cleared_at,
            notes=f"All three replaced in {took:.0f} s; every old worker exited 0 on SIGTERM.",
        )
    )  # fmt: skip
