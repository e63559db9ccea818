"""Bring the local stack up, report on it and take it down.

The stack is one Kafka broker (KRaft, combined mode) and one Elasticsearch node, both bound to
127.0.0.1, with everything they write under one state directory. ``stack.json`` in that
directory records pids, ports and versions; every command other than ``up`` reads it.

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

    @property
    def kafka_bootstrap(self) -> str:
        return self.services["kafka"].endpoint

    @property
    def es_url(self) -> str:
        return self.services["elasticsearch"].endpoint

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


def _healthy(name: str, endpoint: str) -> bool:
    return kafka.is_healthy(endpoint) if name == "kafka" else es.is_healthy(endpoint)


def status(state_dir: Path) -> list[ServiceStatus]:
    """Each service up or down, with pid, port and version (down when never started)."""
    state = StackState.load(state_dir)
    result = []
    for name in SERVICES:
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
    if state is None or set(state.services) != set(SERVICES):
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
    """The log file of ``service`` ('kafka' or 'elasticsearch')."""
    if service == "kafka":
        return kafka.KafkaLayout(state_dir / "kafka").log
    return es.EsLayout(state_dir / "elasticsearch").log


def down(state_dir: Path, timeout: float = 30.0, report: Report = _quiet) -> list[str]:
    """Stop every service of the stack (SIGTERM, SIGKILL after ``timeout``); return their names.

    Works from the markers too, so processes are found even when ``stack.json`` is gone.
    """
    state = StackState.load(state_dir)
    markers = {
        "kafka": kafka.KafkaLayout(state_dir / "kafka").marker,
        "elasticsearch": es.EsLayout(state_dir / "elasticsearch").marker,
    }
    stopped = []
    for name in SERVICES:
        svc = state.services.get(name) if state else None
        report(f"stopping {name}")
        if processes.stop(svc.pid if svc else 0, markers[name], timeout=timeout):
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
            report("stack already running")
            return existing
        report("cleaning up a stack that is partly down")
        down(state_dir, report=report)

    # Step 2: Java and ports.
    java = find_java(options.java_home)
    kafka_port = require_free(options.kafka_port, "Kafka") if options.kafka_port else free_port()
    es_port = (
        require_free(options.es_port, "Elasticsearch HTTP") if options.es_port else free_port()
    )
    taken = {kafka_port, es_port}
    controller_port, transport_port = _distinct_free_ports(2, taken)

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
    k_layout = kafka.KafkaLayout(state_dir / "kafka")
    e_layout = es.EsLayout(state_dir / "elasticsearch")
    report("formatting Kafka storage")
    kafka.prepare(
        java, arts.kafka_libs, k_layout, kafka_port, controller_port, options.kafka_config
    )
    report("configuring Elasticsearch")
    es_home = es.prepare(arts.es_home, e_layout, es_port, transport_port, options.es_settings)

    # Step 5: start and record.
    state = StackState(state_dir=str(state_dir), java=f"{java.version} ({java.home})",
                       started_at=time.time())  # fmt: skip
    report(f"starting Kafka {arts.versions.kafka} and Elasticsearch {arts.versions.elasticsearch}")
    k_pid = kafka.start(java, arts.kafka_libs, k_layout)
    state.services["kafka"] = ServiceState(
        "kafka", k_pid, kafka_port, arts.versions.kafka, str(k_layout.log), k_layout.marker,
        f"{LOOPBACK}:{kafka_port}",
    )  # fmt: skip
    state.save()
    try:
        e_pid = es.start(java, es_home, e_layout)
        state.services["elasticsearch"] = ServiceState(
            "elasticsearch", e_pid, es_port, arts.versions.elasticsearch, str(e_layout.log),
            e_layout.marker, f"http://{LOOPBACK}:{es_port}",
        )  # fmt: skip
        state.save()
        # Step 6: health.
        _wait_healthy(state, options.start_timeout, report)
    except BaseException:
        down(state_dir, timeout=10)
        raise
    running = es.version(state.es_url)
    if running:
        state.services["elasticsearch"].version = running
    state.save()
    return state


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
    state_dir: Path, name: str, cache_dir: Path, timeout: float = 180.0, report: Report = _quiet
) -> StackState:
    """Start a stopped service again on its recorded configuration, data and port; wait until
    it is healthy.

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
    if name == "kafka":
        svc.pid = kafka.start(java, cached.kafka_libs, kafka.KafkaLayout(state_dir / "kafka"))
    else:
        layout = es.EsLayout(state_dir / "elasticsearch")
        home = layout.home_mirror if layout.home_mirror.exists() else cached.es_home
        svc.pid = es.start(java, home, layout)
    state.save()
    report(f"started {name} again (pid {svc.pid})")
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
    "start_service",
    "status",
    "stop_service",
    "up",
]
