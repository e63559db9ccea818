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
import re
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
OFFSETS_TOPIC = "__consumer_offsets"
ROLL_TIMEOUT_S = 180.0


@pytest.fixture(scope="module")
def cluster_stack(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, stack.StackState]]:
    """Three brokers and three Elasticsearch nodes of the module's own, on loopback. Their
    logs are copied under pytest's temporary directory (``cluster-logs``) before the state is
    thrown away: a failed case is explained by what a broker or node logged."""
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
        logs = tmp_path_factory.mktemp("cluster-logs")
        for service in (
            stack.service_name(kind, n) for kind in ("kafka", "elasticsearch")
            for n in range(1, NODES + 1)
        ):  # fmt: skip
            with contextlib.suppress(OSError):
                shutil.copy(stack.log_path(state_dir, service), logs / f"{service}.log")
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
    # Short and few tries: asked again by the caller while a master is being elected.
    answer = case.es.options(request_timeout=10, max_retries=1).cat.master(format="json")
    return str(answer[0]["node"])


def wait_green(case: Case, timeout_s: float = WAIT_S) -> None:
    """Every node in the cluster (green alone holds with two of three) and every shard
    allocated."""
    health = case.es.options(request_timeout=timeout_s + 30).cluster.health(
        wait_for_status="green", wait_for_nodes=str(NODES), timeout=f"{timeout_s:.0f}s"
    )
    assert health["status"] == "green" and health["number_of_nodes"] == NODES, health


def committed_total(case: Case, timeout_s: float = 60.0) -> int:
    """The group's committed offsets summed, read now. Retried: with a node down, a read can
    go to the dead broker or to a coordinator still loading the group's offsets."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return sum(case.lag.committed_now().values())
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def wait_committed_beyond(case: Case, before: int, timeout_s: float) -> float:
    """Block until the group committed past ``before`` (summed offsets); returns when (the
    monotonic clock). Fails after ``timeout_s``: the group stalled without the node."""
    deadline = time.monotonic() + timeout_s
    while committed_total(case) <= before:
        assert time.monotonic() < deadline, f"nothing committed within {timeout_s:.0f} s"
        time.sleep(0.5)
    return time.monotonic()


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
    killed_at = time.monotonic()
    # The replicas took over: the group goes on committing without the node (waited for, a
    # loaded machine takes its time to fail the shards over).
    resumed_s = wait_committed_beyond(case, before, WAIT_S) - killed_at
    time.sleep(max(0.0, killed_at + waits["cluster_outage_s"] - time.monotonic()))
    # The node rejoins while the case settles (an Elasticsearch start takes a minute on two
    # busy cores); the next case waits for the cluster to be green before its fault.
    stack.start_service(case.state_dir, name, default_cache_dir(), wait=False)
    cleared_at = time.monotonic()
    assert processor.alive(), processor.tail()
    notes = f"Killed {victim} ({name}); commits went on {resumed_s:.1f} s after the kill."
    ledger.append(case.finish([processor], cleared_at, notes=notes))


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
    killed_at = time.monotonic()
    successor = wait_new_master(case, victim, WAIT_S)
    elected_s = time.monotonic() - killed_at
    time.sleep(max(0.0, killed_at + waits["cluster_outage_s"] - time.monotonic()))
    stack.start_service(case.state_dir, name, default_cache_dir(), wait=False)
    cleared_at = time.monotonic()
    assert processor.alive(), processor.tail()
    notes = f"Killed the master {victim}; {successor} was elected within {elected_s:.0f} s."
    ledger.append(case.finish([processor], cleared_at, notes=notes))


def wait_new_master(case: Case, old: str, timeout_s: float) -> str:
    """The master elected after ``old`` died. Until the others noticed, they name ``old`` or
    answer that no master is known (503): asked again."""
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(Exception):
            master = master_node(case)
            if master != old:
                return master
        assert time.monotonic() < deadline, f"no master elected {timeout_s:.0f} s after {old}"
        time.sleep(1.0)


def group_coordinator(admin: KafkaAdminClient, group: str) -> int:
    """The broker coordinating ``group``: the leader of its ``__consumer_offsets`` partition
    (Kafka's ``abs(group.hashCode()) % partitions``, with Java's string hash)."""
    described = admin.describe_topics([OFFSETS_TOPIC])[0]["partitions"]
    leaders = {p["partition_index"]: p["leader_id"] for p in described}
    java_hash = 0
    for char in group:
        java_hash = (31 * java_hash + ord(char)) & 0xFFFFFFFF
    return int(leaders[(java_hash & 0x7FFFFFFF) % len(leaders)])


def test_kafka_broker_kill(
    cluster_case: Callable[..., Case], waits: dict[str, float], ledger: list[LedgerRow]
) -> None:
    """SIGKILL the broker that coordinates the processor's group (its commits, heartbeats and
    rebalances), which also leads some of the case's partitions: both failovers at once, the
    harder of the two for a consumer. The broker stays down for at least the outage."""
    case = cluster_case("kafka-broker-kill", seed=23)
    processor = case.start()
    wait_green(case)  # the node killed by the case before has rejoined: one fault at a time
    admin = KafkaAdminClient(bootstrap_servers=case.bootstrap)
    try:
        node = group_coordinator(admin, case.group)
        leaders = Counter(
            partition["leader_id"]
            for topic in admin.describe_topics(list(case.topics.inputs))
            for partition in topic["partitions"]
        )
    finally:
        admin.close()
    name = stack.service_name("kafka", node)
    before, refused = committed_total(case), case.traffic.failed_runs
    kill_service(case.state_dir, name)
    killed_at = time.monotonic()
    # No pause: two in-sync replicas of three take every write, the group finds its new
    # coordinator, and commits go on without the broker. How soon depends on the machine (the
    # controller fences the broker after 4 s, then leaders and the coordinator move): waited
    # for, not assumed.
    resumed_s = wait_committed_beyond(case, before, WAIT_S) - killed_at
    time.sleep(max(0.0, killed_at + waits["cluster_outage_s"] - time.monotonic()))
    assert processor.alive(), processor.tail()
    stack.start_service(case.state_dir, name, default_cache_dir())
    cleared_at = time.monotonic()
    assert case.traffic.failed_runs == refused, case.traffic.errors
    stalls = [
        later[0] - earlier[0]
        for earlier, later in zip(case.lag.samples, case.lag.samples[1:], strict=False)
        if earlier[0] >= killed_at - 1
    ]
    note = (
        f"Killed broker {node}, the group's coordinator and leader of {leaders[node]} of "
        f"{sum(leaders.values())} partitions, for {cleared_at - killed_at:.0f} s; commits "
        f"went on {resumed_s:.1f} s after the kill; no simulator run refused; longest gap "
        f"between lag samples {max(stalls, default=0):.1f} s."
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
    started = re.search(rf"worker (\d+) started \(pid {victim}\)", supervisor.tail(100_000))
    number = started[1] if started else "?"
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    died = f"(pid {victim}) died: signal SIGKILL"
    while True:
        log = supervisor.log.read_text(errors="replace")
        if died in log and f"worker {number} started" in log.split(died)[-1]:
            break
        assert time.monotonic() < deadline, supervisor.tail()
        time.sleep(0.5)
    cleared_at = time.monotonic()
    notes = f"Worker {number} killed; restarted within {cleared_at - killed_at:.0f} s."
    ledger.append(case.finish([supervisor], cleared_at, notes=notes))


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
