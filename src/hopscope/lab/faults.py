"""The faults the lab injects with real tools, each with its ground truth.

- ``none``: nothing (a control run: no high finding expected).
- ``node-kill``: ``SIGKILL`` of a payment node's process (restarted at the end);
  payment / payment-2.
- ``node-stop``: ``SIGSTOP`` of a payment node (``SIGCONT`` at the end): it accepts
  connections and never answers; payment / payment-2.
- ``latency``: the lab's TCP proxy between the payment nodes and the bank adapter holds each
  request; the edge payment → bank.
- ``lock-contention``: a batch job's Postgres session holding ``SELECT … FOR UPDATE`` on the
  hot account rows; ledger / the primary's ``accounts`` rows.
- ``replica-lag``: ``recovery_min_apply_delay`` on the replica (``ALTER SYSTEM`` + reload):
  the ledger's reads see stale rows and move to the primary; ledger / the replica.
- ``switchover``: a primary switchover: the Postgres primary stopped (``pg_ctl stop -m fast``),
  the replica promoted (``pg_ctl promote``), the primary's address (the lab's proxy, as a virtual
  IP) moved to it; the ledger's open primary sessions break and its next ones go to the new
  primary, which also serves the reads that went to the replica; ledger / the primary.
- ``cache-flush``: ``FLUSHALL`` on Redis every half second; risk / redis.
- ``cache-down``: the Redis server stopped (``SIGSTOP``: connections hang until the client's
  timeout); risk / redis.
- ``cpu``: the risk service's process in a cgroup (v1 ``cpu`` controller) whose CFS quota
  is :data:`CPU_QUOTA_PERCENT` % of a core, plus ``stress-ng --cpu`` pinned (``--taskset``) to
  the core the risk service is pinned to (``taskset``); risk / risk-1. Without a writable
  ``cpu`` controller (not root, cgroup v2 only) stress-ng alone, which a service using a few
  percent of a core barely notices (its fair share stays far above its need).

A fault is injected by :meth:`Fault.inject` and reverted by :meth:`Fault.revert`; the ground
truth says what was done, where (service, node, resource), and from when to when.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hopscope.lab._infra import psql, switch_primary, tool
from hopscope.lab._procs import LabState, stop_pid
from hopscope.lab.errors import LabError

# How long the lock-contention batch job holds the hot rows, and pauses between rounds.
LOCK_HOLD_S = 0.4
LOCK_PAUSE_S = 0.1
# Hot accounts the batch job locks: the load generator's first ones (it picks 1..50).
HOT_ACCOUNTS = 50
REPLICA_DELAY = "4s"
PROXY_LATENCY_MS = 250
FLUSH_EVERY_S = 0.5
# The risk service's CPU limit in the cpu fault. It needs 1–2 ms of CPU per payment, under 2 % of
# a core at 8 payments/s (a 5 % quota was never reached: no period throttled, nothing slowed),
# so 2 % leaves it throttled in most periods: a request that overruns the period's quota waits
# for the next period, up to 98 ms later, as under a container limit set too low.
CPU_QUOTA_PERCENT = 2
CPU_PERIOD_US = 100_000
# The cgroup v1 ``cpu`` controller's mount point (cgroup v2 mounts it unified, elsewhere).
CGROUP_CPU = Path("/sys/fs/cgroup/cpu")


@dataclass
class Fault:
    """One fault: what it does, where, and how it is injected and reverted."""

    name: str
    what: str
    service: str | None
    node: str | None
    resource: str | None
    tool: str
    measured: dict[str, Any] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _threads: list[threading.Thread] = field(default_factory=list, repr=False)

    def ground_truth(self) -> dict[str, Any]:
        return {
            "fault": self.name,
            "what": self.what,
            "tool": self.tool,
            "where": {"service": self.service, "node": self.node, "resource": self.resource},
            **({"measured": self.measured} if self.measured else {}),
        }

    def inject(self, state: LabState) -> None:
        """Start the fault (returns at once; background work runs in threads)."""
        handler = getattr(self, f"_inject_{self.name.replace('-', '_')}", None)
        if handler is not None:
            handler(state)

    def revert(self, state: LabState) -> None:
        """Undo the fault, join its threads."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        handler = getattr(self, f"_revert_{self.name.replace('-', '_')}", None)
        if handler is not None:
            handler(state)

    def _background(self, target: Any) -> None:
        thread = threading.Thread(target=target, name=f"fault-{self.name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    # node-kill / node-stop
    def _inject_node_kill(self, state: LabState) -> None:
        os.kill(state.find(str(self.node)).pid, signal.SIGKILL)

    def _revert_node_kill(self, state: LabState) -> None:
        from hopscope.lab._lab import start_service  # the lab's service launcher

        stop_pid(state.find(str(self.node)).pid, timeout_s=1)
        start_service(state, "payment", str(self.node))

    def _inject_node_stop(self, state: LabState) -> None:
        os.kill(state.find(str(self.node)).pid, signal.SIGSTOP)

    def _revert_node_stop(self, state: LabState) -> None:
        os.kill(state.find(str(self.node)).pid, signal.SIGCONT)

    # latency
    def _control(self, state: LabState) -> Path:
        return Path(state.config["proxies"]["bank"]["control"])

    def _inject_latency(self, state: LabState) -> None:
        self._control(state).write_text(json.dumps({"latency_ms": PROXY_LATENCY_MS}))

    def _revert_latency(self, state: LabState) -> None:
        self._control(state).write_text(json.dumps({"latency_ms": 0}))

    # lock-contention: a batch job's session holding the hot rows, round after round.
    def _inject_lock_contention(self, state: LabState) -> None:
        # module constants only, no input
        hot = f"SELECT id FROM accounts WHERE id <= {HOT_ACCOUNTS} ORDER BY id FOR UPDATE; "  # noqa: S608
        sql = f"{hot}SELECT pg_sleep({LOCK_HOLD_S});"
        pg = state.config["postgres"]

        def job() -> None:
            argv = [pg["psql"], "-h", "127.0.0.1", "-p", str(pg["primary"]["port"]), "-U",
                    "postgres", "-d", pg["dbname"], "-q", "-At"]  # fmt: skip
            if os.geteuid() == 0:
                argv = ["runuser", "-u", "postgres", "--", *argv]
            with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                  text=True) as session:  # fmt: skip
                assert session.stdin is not None
                while not self._stop.is_set():
                    session.stdin.write(f"BEGIN; {sql} COMMIT;\n")
                    session.stdin.flush()
                    self._stop.wait(LOCK_HOLD_S + LOCK_PAUSE_S)
                session.stdin.close()

        self._background(job)

    # replica-lag
    def _inject_replica_lag(self, state: LabState) -> None:
        delay = f"ALTER SYSTEM SET recovery_min_apply_delay = '{REPLICA_DELAY}'"
        psql(state.config, "replica", delay)
        psql(state.config, "replica", "SELECT pg_reload_conf()")

    def _revert_replica_lag(self, state: LabState) -> None:
        psql(state.config, "replica", "ALTER SYSTEM RESET recovery_min_apply_delay")
        psql(state.config, "replica", "SELECT pg_reload_conf()")

    # switchover: the primary's address follows the promoted replica, as an operator's
    # switchover or a failover manager moves it.
    def _inject_switchover(self, state: LabState) -> None:
        started = time.monotonic()
        switch_primary(state)
        promoted = state.config["postgres"]["clusters"]["replica"]["port"]
        control = Path(state.config["proxies"]["postgres"]["control"])
        control.write_text(json.dumps({"latency_ms": 0, "target_port": promoted}))
        self.measured = {"switch_s": round(time.monotonic() - started, 2)}

    # cache-flush / cache-down
    def _inject_cache_flush(self, state: LabState) -> None:
        cli = tool("redis-cli", "redis-tools")
        port = str(state.config["redis"]["port"])

        def flusher() -> None:
            while not self._stop.is_set():
                subprocess.run([cli, "-h", "127.0.0.1", "-p", port, "FLUSHALL"],
                               capture_output=True, check=False, timeout=10)  # fmt: skip
                self._stop.wait(FLUSH_EVERY_S)

        self._background(flusher)

    def _inject_cache_down(self, state: LabState) -> None:
        os.kill(state.find("redis").pid, signal.SIGSTOP)

    def _revert_cache_down(self, state: LabState) -> None:
        os.kill(state.find("redis").pid, signal.SIGCONT)

    # cpu: stress-ng on the core the risk service is pinned to; meanwhile every other process
    # of the lab (services, Postgres and its backends, Redis, the Collector) is moved to the
    # other cores, so the contention is the risk service's alone.
    def _others(self, state: LabState) -> list[int]:
        pids = [p.pid for p in state.processes if p.name not in {"risk-1", "stress-ng"}]
        for data in state.postgres_dirs:
            try:
                postmaster = int((Path(data) / "postmaster.pid").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            pids.append(postmaster)
            for task in Path(f"/proc/{postmaster}/task").glob("*/children"):
                pids += [int(pid) for pid in task.read_text().split()]
        return pids

    def _pin(self, state: LabState, cores: str) -> None:
        taskset = tool("taskset", "util-linux")
        for pid in self._others(state):
            subprocess.run([taskset, "-a", "-p", "-c", cores, str(pid)],
                           capture_output=True, check=False, timeout=10)  # fmt: skip

    def _cgroup(self, state: LabState) -> Path:
        return CGROUP_CPU / f"hopscope-lab-{state.config.get('run_id', 'run')}-risk"

    def _limit_cpu(self, state: LabState, pid: int) -> bool:
        """Move ``pid`` into a cgroup of its own with a CFS quota; False when cgroup v1's cpu
        controller is not there or not writable (the fault is then stress-ng alone)."""
        if not (CGROUP_CPU / "cgroup.procs").is_file() or not os.access(CGROUP_CPU, os.W_OK):
            return False
        group = self._cgroup(state)
        try:
            group.mkdir(exist_ok=True)
            (group / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
            quota = CPU_PERIOD_US * CPU_QUOTA_PERCENT // 100
            (group / "cpu.cfs_quota_us").write_text(str(quota))
            (group / "cgroup.procs").write_text(str(pid))  # every thread of the process
        except OSError:
            self._unlimit_cpu(state, pid)
            return False
        return True

    def _unlimit_cpu(self, state: LabState, pid: int) -> None:
        """Move ``pid`` back to the cpu controller's root and remove the fault's cgroup."""
        group = self._cgroup(state)
        if not group.exists():
            return
        with contextlib.suppress(OSError, ValueError):  # what the quota did, for the record
            stat = dict(line.split() for line in (group / "cpu.stat").read_text().splitlines())
            keys = ("nr_periods", "nr_throttled", "throttled_time")
            self.measured = {key: int(stat[key]) for key in keys if key in stat}
        # The process may be gone; an empty cgroup can be removed all the same.
        with contextlib.suppress(OSError):
            (CGROUP_CPU / "cgroup.procs").write_text(str(pid))
        try:
            group.rmdir()
        except OSError as error:
            raise LabError(f"could not remove the cpu fault's cgroup {group}: {error}") from error

    def _inject_cpu(self, state: LabState) -> None:
        stress = tool("stress-ng", "stress-ng")
        core = int(state.config["risk"].get("cpu", 0))
        count = os.cpu_count() or 1
        if count > 1:
            self._pin(state, ",".join(str(c) for c in range(count) if c != core))
        if self._limit_cpu(state, state.find("risk-1").pid):
            self.tool = f"cgroup cpu quota {CPU_QUOTA_PERCENT}% + stress-ng"
        state.start(
            "stress-ng", [stress, "--cpu", "2", "--taskset", str(core), "--timeout", "3600"]
        )

    def _revert_cpu(self, state: LabState) -> None:
        state.stop("stress-ng")
        self._unlimit_cpu(state, state.find("risk-1").pid)
        self._pin(state, f"0-{(os.cpu_count() or 1) - 1}")


FAULTS: dict[str, tuple[str, str | None, str | None, str | None, str]] = {
    "none": ("no fault (control run)", None, None, None, "none"),
    "node-kill": ("payment node killed", "payment", "payment-2", None, "SIGKILL"),
    "node-stop": ("payment node frozen", "payment", "payment-2", None, "SIGSTOP"),
    "latency": (
        f"{PROXY_LATENCY_MS} ms added to each request on the connections to the bank adapter",
        "bank", None, "edge payment -> bank", "TCP proxy",
    ),
    "lock-contention": (
        f"a batch job holds FOR UPDATE on the hot account rows ({LOCK_HOLD_S}s of every "
        f"{LOCK_HOLD_S + LOCK_PAUSE_S}s)",
        "ledger", "postgres-primary", "accounts rows 1..50", "psql session",
    ),
    "replica-lag": (
        f"replica applies WAL {REPLICA_DELAY} late (recovery_min_apply_delay)",
        "ledger", "postgres-replica", "streaming replication", "ALTER SYSTEM",
    ),
    "switchover": (
        "Postgres primary switchover: the primary stopped, the replica promoted, the primary's "
        "address moved to it",
        "ledger", "postgres-primary", "postgres primary", "pg_ctl stop + promote",
    ),
    "cache-flush": ("risk cache flushed every 0.5 s", "risk", "redis", "rules cache", "FLUSHALL"),
    "cache-down": ("risk cache stopped", "risk", "redis", "rules cache", "SIGSTOP"),
    "cpu": (
        f"the risk service limited to {CPU_QUOTA_PERCENT} % of a core (cgroup CFS quota), "
        "stress-ng on its core",
        "risk", "risk-1", "cpu", "stress-ng",
    ),
}  # fmt: skip


def remove_fault_cgroups(state: LabState) -> None:
    """Remove the cpu fault's cgroup if a run left it (``lab down`` after an interrupted run:
    its processes are stopped by then, so it is empty)."""
    with contextlib.suppress(OSError):
        make_fault("cpu")._cgroup(state).rmdir()


def make_fault(name: str) -> Fault:
    """The fault called ``name`` (see :data:`FAULTS`)."""
    if name not in FAULTS:
        raise LabError(f"unknown fault {name!r}: one of {', '.join(FAULTS)}")
    what, service, node, resource, used = FAULTS[name]
    return Fault(name, what, service, node, resource, used)
