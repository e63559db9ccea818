"""Bring the local stack up, report on it and take it down.

The stack is one Kafka broker (KRaft, combined mode) and one Elasticsearch node, both bound to
127.0.0.1, with everything they write under one state directory. ``stack.json`` in that
directory records pids, ports and versions; every command other than ``up`` reads it.

As an option it is a cluster on loopback: ``kafka_brokers`` combined broker+controller nodes
(one KRaft quorum; topics with three replicas and ``min.insync.replicas`` 2, see
:func:`hopscope.stack.kafka.cluster_overrides`) and ``es_nodes`` Elasticsearch nodes forming
one cluster (each master-eligible and a data node, 512 MB heap each). The first node of each
keeps the single-node names and directories (``kafka``, ``elasticsearch``); the others are
``kafka-2``, ``elasticsearch-2``, ... Endpoints then list every node, comma-separated.

``up`` follows these steps:

1. Reuse a running, healthy stack in the same state directory.
2. Find Java and choose ports (given ones must be free; the others are picked free).
3. Fetch Kafka and Elasticsearch from Maven Central unless cached.
4. Configure both (format Kafka's storage; write Elasticsearch's settings, drop root).
5. Start both, and record them in ``stack.json`` at once, so ``down`` can always clean up.
6. Wait until both are healthy; a process that exits meanwhile fails ``up`` with its log tail.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hopscope.core.settings import Settings
from hopscope.stack import artifacts as artifacts_mod
from hopscope.stack import elasticsearch as es
from hopscope.stack import kafka, processes
from hopscope.stack.errors import ServiceExitedError, StackError, StackNotRunningError
from hopscope.stack.java import find_java
from hopscope.stack.ports import LOOPBACK, free_port, require_free

STATE_FILE = "stack.json"
SERVICES = ("kafka", "elasticsearch")
# A cluster larger than this would not fit the machines the local stack is for.
MAX_NODES = 5


def service_name(kind: str, node: int) -> str:
    """The name (and directory) of node ``node`` (from 1) of ``kind``: the first keeps the
    single-node name.

    >>> service_name("kafka", 1), service_name("elasticsearch", 3)
    ('kafka', 'elasticsearch-3')
    """
    return kind if node == 1 else f"{kind}-{node}"


def service_kind(name: str) -> str:
    """'kafka' or 'elasticsearch' for a service name such as ``kafka-2``."""
    kind = name.split("-", 1)[0]
    if kind not in SERVICES:
        raise StackError(f"unknown service {name!r}: kafka[-N] or elasticsearch[-N]")
    return kind


Report = Callable[[str], None]


def _quiet(_message: str) -> None:
    return None


@dataclass
class ServiceState:
    """One started service, as recorded in ``stack.json``."""

    name: str
    pid: int
    port: int
    version: str
    log: str
    marker: str
    endpoint: str


@dataclass
class StackState:
    """The recorded stack: what ``status``, ``env`` and ``down`` work from."""

    state_dir: str
    java: str
    started_at: float
    services: dict[str, ServiceState] = field(default_factory=dict)

    def nodes(self, kind: str) -> list[ServiceState]:
        """The recorded nodes of ``kind`` ('kafka' or 'elasticsearch'), in node order."""
        return [svc for name, svc in self.services.items() if service_kind(name) == kind]

    @property
    def kafka_bootstrap(self) -> str:
        """Every broker, comma-separated (what Kafka clients take as bootstrap servers)."""
        return ",".join(svc.endpoint for svc in self.nodes("kafka"))

    @property
    def es_url(self) -> str:
        """Every Elasticsearch node's URL, comma-separated
        (:func:`hopscope.core.es_security.es_client` takes them all)."""
        return ",".join(svc.endpoint for svc in self.nodes("elasticsearch"))

    def save(self) -> None:
        path = Path(self.state_dir) / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, state_dir: Path) -> StackState | None:
        path = state_dir / STATE_FILE
        try:
            raw: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        services = {name: ServiceState(**svc) for name, svc in raw.pop("services", {}).items()}
        return cls(services=services, **raw)


@dataclass(frozen=True)
class ServiceStatus:
    """What ``status`` reports for one service."""

    name: str
    up: bool
    pid: int | None
    port: int | None
    version: str | None
    endpoint: str | None
    log: str | None


@dataclass(frozen=True)
class Endpoints:
    kafka_bootstrap: str
    es_url: str


@dataclass(frozen=True)
class StackOptions:
    """How to start the stack. ``None`` ports are picked free."""

    cache_dir: Path
    state_dir: Path
    kafka_port: int | None = None
    es_port: int | None = None
    java_home: Path | None = None
    start_timeout: float = 180.0
    # Extra broker properties / node settings, applied last (tuning, or a listener of one's own).
    kafka_config: dict[str, str] = field(default_factory=dict)
    es_settings: dict[str, str] = field(default_factory=dict)
    # Nodes of each: 1 is the single-node stack; more form a cluster (ports always picked free
    # for the nodes after the first).
    kafka_brokers: int = 1
    es_nodes: int = 1

    def __post_init__(self) -> None:
        for name in ("kafka_brokers", "es_nodes"):
            value = getattr(self, name)
            if not 1 <= value <= MAX_NODES:
                raise ValueError(f"{name} must be within 1..{MAX_NODES}, got {value}")


def _healthy(name: str, endpoint: str) -> bool:
    if service_kind(name) == "kafka":
        return kafka.is_healthy(endpoint)
    return es.is_healthy(endpoint)


def status(state_dir: Path) -> list[ServiceStatus]:
    """Each service (every node of a cluster) up or down, with pid, port and version (down
    when never started)."""
    state = StackState.load(state_dir)
    result = []
    for name in list(state.services) if state else SERVICES:
        svc = state.services.get(name) if state else None
        if svc is None:
            result.append(ServiceStatus(name, False, None, None, None, None, None))
            continue
        alive = bool(processes.pids_with_marker(svc.marker))
        up = alive and _healthy(name, svc.endpoint)
        result.append(
            ServiceStatus(name, up, svc.pid if alive else None, svc.port, svc.version,
                          svc.endpoint, svc.log)
        )  # fmt: skip
    return result


def read_endpoints(state_dir: Path) -> Endpoints | None:
    """Endpoints of the running stack in ``state_dir``, or None when it is not running."""
    state = StackState.load(state_dir)
    if state is None or not all(state.nodes(kind) for kind in SERVICES):
        return None
    if not all(processes.pids_with_marker(svc.marker) for svc in state.services.values()):
        return None
    return Endpoints(state.kafka_bootstrap, state.es_url)


def resolve_settings(settings: Settings | None = None) -> Settings:
    """Endpoints from the arguments or environment (``settings``, default
    :meth:`Settings.from_env`), else from the stack running in its state directory.

    The one place the dev-stack fallback is applied: the CLI, the demo, benchmarks and tests call
    this; the SDK and the library never do.
    """
    return (settings or Settings.from_env()).resolved(fallback=read_endpoints)


def env_lines(state_dir: Path) -> str:
    """``export`` lines pointing every hopscope command (and the tests) at the running stack."""
    endpoints = read_endpoints(state_dir)
    if endpoints is None:
        raise StackNotRunningError(
            f"no running stack in {state_dir}: start one with `hopscope stack up`"
        )
    return (
        f"export HOPSCOPE_KAFKA_BOOTSTRAP={endpoints.kafka_bootstrap}\n"
        f"export HOPSCOPE_ES_URL={endpoints.es_url}\n"
    )


def log_path(state_dir: Path, service: str) -> Path:
    """The log file of ``service`` ('kafka' or 'elasticsearch', or a cluster node such as
    'kafka-2')."""
    if service_kind(service) == "kafka":
        return kafka.KafkaLayout(state_dir / service).log
    return es.EsLayout(state_dir / service).log


def _marker(state_dir: Path, name: str) -> str:
    if service_kind(name) == "kafka":
        return kafka.KafkaLayout(state_dir / name).marker
    return es.EsLayout(state_dir / name).marker


def _known_services(state_dir: Path, state: StackState | None) -> list[str]:
    """Every service that may run from ``state_dir``: recorded, or with a directory there."""
    names = dict.fromkeys(state.services if state else ())
    names.update(dict.fromkeys(SERVICES))
    for kind in SERVICES:
        for path in sorted(state_dir.glob(f"{kind}-*")):
            if path.is_dir() and path.name.removeprefix(f"{kind}-").isdigit():
                names[path.name] = None
    return list(names)


def down(state_dir: Path, timeout: float = 30.0, report: Report = _quiet) -> list[str]:
    """Stop every service of the stack (SIGTERM, SIGKILL after ``timeout``); return their names.

    Works from the markers too, so processes are found even when ``stack.json`` is gone.
    """
    state = StackState.load(state_dir)
    stopped = []
    for name in _known_services(state_dir, state):
        svc = state.services.get(name) if state else None
        report(f"stopping {name}")
        if processes.stop(svc.pid if svc else 0, _marker(state_dir, name), timeout=timeout):
            stopped.append(name)
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    return stopped


def up(options: StackOptions, report: Report = _quiet) -> StackState:
    """Start the stack (or reuse the running one) and wait until it is healthy."""
    state_dir = options.state_dir.resolve()
    # Step 1: reuse.
    existing = StackState.load(state_dir)
    if existing is not None:
        if all(s.up for s in status(state_dir)):
            shape = (len(existing.nodes("kafka")), len(existing.nodes("elasticsearch")))
            if shape != (options.kafka_brokers, options.es_nodes):
                raise StackError(
                    f"the stack in {state_dir} runs {shape[0]} Kafka broker(s) and {shape[1]} "
                    f"Elasticsearch node(s), not the {options.kafka_brokers} and "
                    f"{options.es_nodes} asked for: `hopscope stack down` first"
                )
            report("stack already running")
            return existing
        report("cleaning up a stack that is partly down")
        down(state_dir, report=report)

    # Step 2: Java and ports (client ports of the first nodes as given; every other port free).
    java = find_java(options.java_home)
    kafka_port = require_free(options.kafka_port, "Kafka") if options.kafka_port else free_port()
    es_port = (
        require_free(options.es_port, "Elasticsearch HTTP") if options.es_port else free_port()
    )
    brokers, nodes = options.kafka_brokers, options.es_nodes
    free = iter(_distinct_free_ports(2 * brokers + 2 * nodes - 2, {kafka_port, es_port}))
    kafka_ports = [kafka_port, *(next(free) for _ in range(brokers - 1))]
    controller_ports = [next(free) for _ in range(brokers)]
    es_ports = [es_port, *(next(free) for _ in range(nodes - 1))]
    transport_ports = [next(free) for _ in range(nodes)]

    # Step 3: artifacts.
    cached = artifacts_mod.cached_artifacts(options.cache_dir)
    if not artifacts_mod.is_cached(cached):
        report(
            f"fetching Kafka {cached.versions.kafka} and Elasticsearch "
            f"{cached.versions.elasticsearch} from Maven Central into {options.cache_dir}"
        )
    arts = artifacts_mod.fetch_artifacts(options.cache_dir, java)

    # Step 4: configure.
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o755)
    k_layouts = [kafka.KafkaLayout(state_dir / service_name("kafka", n))
                 for n in range(1, brokers + 1)]  # fmt: skip
    e_layouts = [es.EsLayout(state_dir / service_name("elasticsearch", n))
                 for n in range(1, nodes + 1)]  # fmt: skip
    report("formatting Kafka storage")
    cluster_id = kafka.new_cluster_id()
    for n, layout in enumerate(k_layouts, 1):
        overrides = kafka.cluster_overrides(n, controller_ports) if brokers > 1 else {}
        kafka.prepare(
            java, arts.kafka_libs, layout, kafka_ports[n - 1], controller_ports[n - 1],
            {**overrides, **options.kafka_config}, cluster_id=cluster_id,
        )  # fmt: skip
    report("configuring Elasticsearch")
    es_homes = [
        es.prepare(
            arts.es_home, layout, es_ports[n - 1], transport_ports[n - 1], options.es_settings,
            cluster=es.EsCluster(n, tuple(transport_ports)) if nodes > 1 else None,
            heap_mb=es.CLUSTER_HEAP_MB if nodes > 1 else es.ES_HEAP_MB,
        )
        for n, layout in enumerate(e_layouts, 1)
    ]  # fmt: skip

    # Step 5: start and record.
    state = StackState(state_dir=str(state_dir), java=f"{java.version} ({java.home})",
                       started_at=time.time())  # fmt: skip
    report(f"starting Kafka {arts.versions.kafka} and Elasticsearch {arts.versions.elasticsearch}")
    try:
        for n, k_layout in enumerate(k_layouts, 1):
            k_pid = kafka.start(java, arts.kafka_libs, k_layout)
            state.services[k_layout.root.name] = ServiceState(
                k_layout.root.name, k_pid, kafka_ports[n - 1], arts.versions.kafka,
                str(k_layout.log), k_layout.marker, f"{LOOPBACK}:{kafka_ports[n - 1]}",
            )  # fmt: skip
            state.save()
        for n, (e_layout, es_home) in enumerate(zip(e_layouts, es_homes, strict=True), 1):
            e_pid = es.start(java, es_home, e_layout)
            state.services[e_layout.root.name] = ServiceState(
                e_layout.root.name, e_pid, es_ports[n - 1], arts.versions.elasticsearch,
                str(e_layout.log), e_layout.marker, f"http://{LOOPBACK}:{es_ports[n - 1]}",
            )  # fmt: skip
            state.save()
        # Step 6: health, then every node in its cluster.
        _wait_healthy(state, options.start_timeout, report)
        _wait_formed(state, options.start_timeout, report)
    except BaseException:
        down(state_dir, timeout=10)
        raise
    running = es.version(state.nodes("elasticsearch")[0].endpoint)
    if running:
        for svc in state.nodes("elasticsearch"):
            svc.version = running
    state.save()
    return state


def _wait_formed(state: StackState, timeout: float, report: Report) -> None:
    """Wait until every broker and every node sees the whole cluster (a node that answers
    health may not have joined its peers yet)."""
    deadline = time.monotonic() + timeout
    brokers, nodes = state.nodes("kafka"), state.nodes("elasticsearch")
    checks: list[tuple[str, int, Callable[[], int]]] = []
    if len(brokers) > 1:
        checks.append(("Kafka brokers", len(brokers),
                       lambda: kafka.broker_count(state.kafka_bootstrap)))  # fmt: skip
    if len(nodes) > 1:
        checks.append(("Elasticsearch nodes", len(nodes),
                       lambda: min(es.node_count(n.endpoint) for n in nodes)))  # fmt: skip
    for what, wanted, seen in checks:
        while (found := seen()) < wanted:
            if time.monotonic() > deadline:
                raise ServiceExitedError(
                    f"only {found} of {wanted} {what} formed a cluster within {timeout:.0f} s; "
                    f"see the logs under {state.state_dir}"
                )
            time.sleep(0.5)
        report(f"{wanted} {what} in one cluster")


def stop_service(state_dir: Path, name: str, timeout: float = 60.0) -> None:
    """Stop one service of a running stack (SIGTERM, SIGKILL after ``timeout``), keeping its
    data, configuration and record: :func:`start_service` brings it back as it was.

    What an operator does to one node during an incident drill; ``down`` stops everything.
    """
    svc = require_running(state_dir).services.get(name)
    if svc is None:
        raise StackNotRunningError(f"no {name} recorded in {state_dir}")
    processes.stop(svc.pid, svc.marker, timeout=timeout)
    if processes.pids_with_marker(svc.marker):
        raise StackError(f"{name} (pid {svc.pid}) is still running after {timeout:.0f} s")


def start_service(
    state_dir: Path,
    name: str,
    cache_dir: Path,
    timeout: float = 180.0,
    report: Report = _quiet,
    *,
    wait: bool = True,
) -> StackState:
    """Start a stopped service again on its recorded configuration, data and port; wait until
    it is healthy (unless ``wait`` is False: a cluster node rejoining in the background).

    ``up`` cannot do this: on a partly-down stack it takes everything down and starts afresh
    on newly picked ports, and the clients of the surviving service would lose it.
    """
    state = require_running(state_dir)
    svc = state.services.get(name)
    if svc is None:
        raise StackNotRunningError(f"no {name} recorded in {state_dir}")
    if processes.pids_with_marker(svc.marker):
        raise StackError(f"{name} is still running (pid {svc.pid}); stop it first")
    java = find_java()
    cached = artifacts_mod.cached_artifacts(cache_dir)
    if service_kind(name) == "kafka":
        svc.pid = kafka.start(java, cached.kafka_libs, kafka.KafkaLayout(state_dir / name))
    else:
        layout = es.EsLayout(state_dir / name)
        home = layout.home_mirror if layout.home_mirror.exists() else cached.es_home
        svc.pid = es.start(java, home, layout)
    state.save()
    report(f"started {name} again (pid {svc.pid})")
    if not wait:
        return state
    _wait_healthy(StackState(state.state_dir, state.java, state.started_at, {name: svc}),
                  timeout, report)  # fmt: skip
    return state


def _distinct_free_ports(count: int, taken: set[int]) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in taken and port not in ports:
            ports.append(port)
    return ports


def _wait_healthy(state: StackState, timeout: float, report: Report) -> None:
    deadline = time.monotonic() + timeout
    pending = set(state.services)
    while pending:
        for name in sorted(pending):
            svc = state.services[name]
            code = processes.exited(svc.pid)
            if code is not None:
                raise ServiceExitedError(
                    f"{name} exited with code {code} during start; last lines of {svc.log}:\n"
                    f"{processes.log_excerpt(Path(svc.log))}"
                )
            if _healthy(name, svc.endpoint):
                report(f"{name} healthy at {svc.endpoint}")
                pending.discard(name)
        if pending and time.monotonic() > deadline:
            name = sorted(pending)[0]
            svc = state.services[name]
            raise ServiceExitedError(
                f"{name} did not become healthy within {timeout:.0f} s; last lines of "
                f"{svc.log}:\n{processes.log_excerpt(Path(svc.log))}"
            )
        if pending:
            time.sleep(0.5)


def require_running(state_dir: Path) -> StackState:
    """The recorded state, or :class:`StackNotRunningError`."""
    state = StackState.load(state_dir)
    if state is None:
        raise StackNotRunningError(f"no stack recorded in {state_dir}: run `hopscope stack up`")
    return state


__all__ = [
    "Endpoints",
    "ServiceStatus",
    "StackError",
    "StackOptions",
    "StackState",
    "down",
    "env_lines",
    "log_path",
    "read_endpoints",
    "require_running",
    "resolve_settings",
    "service_kind",
    "service_name",
    "start_service",
    "status",
    "stop_service",
    "up",
]
