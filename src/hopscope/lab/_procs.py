"""Processes the lab starts, recorded by pid in ``state.json`` so ``lab down`` stops exactly
those (never by name)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hopscope.lab.errors import LabError, LabNotRunningError

# The children this process started, by pid: kept so they are reaped here (a dropped Popen of
# a running child warns when collected) and polled rather than waited on behind its back.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass
class Started:
    """One process the lab started: its name, pid and command line."""

    name: str
    pid: int
    argv: list[str]
    log: str


@dataclass
class LabState:
    """What ``lab up`` started and where: processes, Postgres data directories, config."""

    state_dir: Path
    processes: list[Started] = field(default_factory=list)
    postgres_dirs: list[str] = field(default_factory=list)
    postgres_bin: str = ""
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.state_dir / "state.json"

    def save(self) -> None:
        document = {
            "processes": [asdict(p) for p in self.processes],
            "postgres_dirs": self.postgres_dirs,
            "postgres_bin": self.postgres_bin,
            "config": self.config,
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(document, indent=2), encoding="utf-8")
        tmp.replace(self.path)

    @classmethod
    def load(cls, state_dir: Path) -> LabState:
        path = state_dir / "state.json"
        if not path.is_file():
            raise LabNotRunningError(
                f"no lab state in {state_dir}: start one with `hopscope lab up`"
            )
        document = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            state_dir=state_dir,
            processes=[Started(**p) for p in document["processes"]],
            postgres_dirs=list(document["postgres_dirs"]),
            postgres_bin=str(document.get("postgres_bin", "")),
            config=dict(document["config"]),
        )

    def find(self, name: str) -> Started:
        for process in self.processes:
            if process.name == name:
                return process
        raise LabError(f"the lab has no process named {name!r}")

    def start(
        self, name: str, argv: list[str], *, env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Started:  # fmt: skip
        """Start ``argv`` in a session of its own, output to ``logs/<name>.log``."""
        logs = self.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{name}.log"
        with log_path.open("ab") as sink:
            child = subprocess.Popen(
                argv, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True,
            )  # fmt: skip
        _CHILDREN[child.pid] = child
        started = Started(name=name, pid=child.pid, argv=argv, log=str(log_path))
        self.processes = [p for p in self.processes if p.name != name] + [started]
        self.save()
        return started

    def stop(self, name: str, *, timeout_s: float = 10.0) -> None:
        """Stop one process by its recorded pid (SIGCONT first: it may be SIGSTOPped)."""
        process = self.find(name)
        stop_pid(process.pid, timeout_s=timeout_s)
        self.processes = [p for p in self.processes if p.name != name]
        self.save()


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie of ours is reaped and counts as gone)."""
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        _CHILDREN.pop(pid, None)
        return False
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_pid(pid: int, *, timeout_s: float = 10.0) -> None:
    """SIGCONT, SIGTERM, wait up to ``timeout_s``, then SIGKILL; a gone pid is fine."""
    for sig in (signal.SIGCONT, signal.SIGTERM):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive(pid):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    while alive(pid) and time.monotonic() < deadline + 5:
        time.sleep(0.1)


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _listening_inodes(port: int) -> set[str]:
    """Inodes of the TCP sockets listening on ``port`` (Linux ``/proc/net/tcp*``)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def _owns(pid: int, inodes: set[str]) -> bool | None:
    """Whether ``pid`` holds one of the socket ``inodes`` (None: cannot tell here)."""
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return None
    links = set()
    for fd in fds:
        try:
            links.add(str(fd.readlink()))
        except OSError:  # closed meanwhile
            continue
    return any(f"socket:[{inode}]" in links for inode in inodes)


def wait_port(port: int, *, timeout_s: float, what: str, pid: int | None = None) -> None:
    """Until 127.0.0.1:port accepts a connection — on Linux, a socket of ``pid`` itself, so
    another program that took the port first (a shared machine) is not mistaken for it;
    :class:`LabError` after ``timeout_s`` or when ``pid`` exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pid is not None and not alive(pid):
            raise LabError(
                f"{what} exited before listening on 127.0.0.1:{port} (taken by another "
                "program?); see its log"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                pass
        except OSError:
            time.sleep(0.2)
            continue
        if pid is None or _owns(pid, _listening_inodes(port)) is not False:
            return
        time.sleep(0.2)
    raise LabError(f"{what} did not listen on 127.0.0.1:{port} within {timeout_s:.0f} s")
