"""``hopscope process --workers N``: N processors under one supervisor, each an OS process of
its own and a full member of the consumer group (its own partitions, its own commits after
Elasticsearch acknowledged, docs/DESIGN.md §4).

What the supervisor does, as an SRE expects of a process manager (gunicorn, systemd):

- **Start**: each worker is ``python -m hopscope.cli._workers`` with its settings on stdin
  (pickled: credentials never appear on a command line). A worker dies with its supervisor
  (``PR_SET_PDEATHSIG``), so a supervisor killed with SIGKILL leaves no orphan consuming.
- **Stop** (SIGTERM or SIGINT): SIGTERM to every worker; each ends its iteration, commits what
  was acknowledged and exits 0. After ``stop_timeout_s`` the rest get SIGKILL. Exit 0 when
  every worker exited 0, else 1.
- **A worker that dies** (crash, OOM killer, an operator's ``kill``) is reported on stderr
  with its number, pid and exit code or signal, and started again after a back-off (1 s
  doubling to 30 s, reset after a minute of running). The group rebalances meanwhile; its
  partitions are re-read from their committed offsets, so nothing is lost or doubled.
- **Crash loop**: more than :data:`MAX_RESTARTS` unrequested exits within
  :data:`RESTART_WINDOW_S` stop every worker and exit 1. A wrong address or credentials do not
  heal by restarting, and the orchestrator above should see the failure.
- **SIGHUP**: a rolling restart, one worker at a time (SIGTERM, wait, start its replacement,
  :data:`ROLL_PAUSE_S` for it to join the group before the next).
- ``--drain``: each worker drains, none is restarted; exit 0 when all exited 0.

Metrics: worker *i* (from 1) serves on ``metrics_port + i - 1``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final

from hopscope.processors.settings import ProcessorSettings

# A crash loop: this many unrequested exits within the window stop the supervisor.
MAX_RESTARTS: Final = 5
RESTART_WINDOW_S: Final = 60.0
BACKOFF_INITIAL_S: Final = 1.0
BACKOFF_MAX_S: Final = 30.0
# A worker that ran this long is healthy again: its next restart starts from the first step.
HEALTHY_AFTER_S: Final = 60.0
# A replacement joins the group (one rebalance) before the next worker of a rolling restart
# leaves: never two rebalances in flight, never all partitions without an owner.
ROLL_PAUSE_S: Final = 5.0

_PR_SET_PDEATHSIG: Final = 1


@dataclass(frozen=True)
class WorkerJob:
    """What a worker process receives on stdin."""

    settings: ProcessorSettings
    number: int
    drain: bool
    log_level: str
    supervisor_pid: int


def default_workers() -> int:
    """One worker per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class _Worker:
    def __init__(self, number: int, backoff_s: float) -> None:
        self.number = number
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.backoff_s = backoff_s
        self.restart_at: float | None = None
        self.stopping = False


class Supervisor:
    """Runs ``workers`` processors in one group until stopped; see the module docstring.

    ``report`` gets one line per event (started, died, restarted, stopped): stderr in the CLI.
    """

    def __init__(
        self,
        settings: ProcessorSettings,
        workers: int,
        *,
        drain: bool = False,
        log_level: str = "warning",
        stop_timeout_s: float = 30.0,
        backoff_initial_s: float = BACKOFF_INITIAL_S,
        report: Callable[[str], None] = print,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.settings, self.drain, self.log_level = settings, drain, log_level
        self.stop_timeout_s, self.report = stop_timeout_s, report
        self.backoff_initial_s = backoff_initial_s
        self.workers = [_Worker(n, backoff_initial_s) for n in range(1, workers + 1)]
        self.restarts = 0
        self._exits: deque[float] = deque()
        self._stop_requested = False
        self._roll_requested = False

    # -- signals ---------------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop_requested = True

    def request_roll(self) -> None:
        self._roll_requested = True

    # -- workers ---------------------------------------------------------------------------

    def _start(self, worker: _Worker) -> None:
        settings = self.settings
        if settings.metrics_port is not None:
            settings = replace(settings, metrics_port=settings.metrics_port + worker.number - 1)
        job = WorkerJob(settings, worker.number, self.drain, self.log_level, os.getpid())
        proc = subprocess.Popen(
            [sys.executable, "-m", "hopscope.cli._workers"], stdin=subprocess.PIPE
        )
        assert proc.stdin is not None
        proc.stdin.write(pickle.dumps(job))
        proc.stdin.close()
        worker.proc, worker.started_at = proc, time.monotonic()
        worker.restart_at, worker.stopping = None, False
        self.report(f"worker {worker.number} started (pid {proc.pid})")

    def _terminate(self, worker: _Worker) -> None:
        if worker.proc is not None and worker.proc.poll() is None:
            worker.stopping = True
            with contextlib.suppress(ProcessLookupError):
                worker.proc.send_signal(signal.SIGTERM)

    def _wait_exit(self, workers: list[_Worker]) -> bool:
        """Wait for the terminated ``workers``; SIGKILL past the timeout. True when all
        exited 0."""
        deadline = time.monotonic() + self.stop_timeout_s
        clean = True
        for worker in workers:
            if worker.proc is None:
                continue
            try:
                code = worker.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                code = worker.proc.wait()
                self.report(f"worker {worker.number} (pid {worker.proc.pid}) killed: it did "
                            f"not stop within {self.stop_timeout_s:.0f} s")  # fmt: skip
            if code != 0:
                clean = False
            worker.proc = None
        return clean

    def pids(self) -> list[int]:
        """The pids of the running workers, in worker order."""
        return [w.proc.pid for w in self.workers if w.proc is not None and w.proc.poll() is None]

    def _died(self, worker: _Worker, code: int) -> bool:
        """Handle an exit nobody asked for; False when the crash loop limit is reached."""
        assert worker.proc is not None
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        now = time.monotonic()
        self.report(f"worker {worker.number} (pid {worker.proc.pid}) died: {how}")
        worker.proc = None
        self._exits.append(now)
        while self._exits and now - self._exits[0] > RESTART_WINDOW_S:
            self._exits.popleft()
        if len(self._exits) > MAX_RESTARTS:
            self.report(f"{len(self._exits)} worker exits within {RESTART_WINDOW_S:.0f} s: "
                        "giving up (a crash loop; see the workers' messages above)")  # fmt: skip
            return False
        if now - worker.started_at > HEALTHY_AFTER_S:
            worker.backoff_s = self.backoff_initial_s
        worker.restart_at = now + worker.backoff_s
        self.report(f"worker {worker.number} restarts in {worker.backoff_s:.1f} s")
        worker.backoff_s = min(BACKOFF_MAX_S, worker.backoff_s * 2)
        return True

    def _roll(self) -> None:
        self.report("rolling restart of every worker")
        for worker in self.workers:
            if self._stop_requested:
                return
            pid = worker.proc.pid if worker.proc is not None else None
            self._terminate(worker)
            if not self._wait_exit([worker]):
                self.report(f"worker {worker.number} (pid {pid}) did not exit 0 during the "
                            "rolling restart")  # fmt: skip
            self._start(worker)
            deadline = time.monotonic() + ROLL_PAUSE_S
            while time.monotonic() < deadline and not self._stop_requested:
                time.sleep(0.1)

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> int:
        """Start the workers and supervise them until stopped; the exit code (0: every
        worker stopped cleanly)."""
        for worker in self.workers:
            self._start(worker)
        failed = False
        while not self._stop_requested:
            if self._roll_requested:
                self._roll_requested = False
                self._roll()
                continue
            for worker in self.workers:
                if worker.proc is not None:
                    code = worker.proc.poll()
                    if code is None:
                        continue
                    if self.drain:
                        worker.proc = None
                        failed |= code != 0
                        if code != 0:
                            self.report(f"worker {worker.number} exited with code {code}")
                        continue
                    if not self._died(worker, code):
                        failed = True
                        self._stop_requested = True
                        break
                elif worker.restart_at is not None and time.monotonic() >= worker.restart_at:
                    self.restarts += 1
                    self._start(worker)
            if self.drain and all(w.proc is None for w in self.workers):
                return 1 if failed else 0
            time.sleep(0.2)
        for worker in self.workers:
            self._terminate(worker)
        clean = self._wait_exit(self.workers)
        self.report(f"{len(self.workers)} workers stopped"
                    + ("" if clean else " (not all cleanly)"))  # fmt: skip
        return 0 if clean and not failed else 1


def _die_with(parent_pid: int) -> None:
    """SIGKILL this process when its parent dies (Linux); exit at once if it already has."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)


def _worker_main() -> int:
    """One worker: the processor of ``hopscope process`` without the spinner."""
    job: WorkerJob = pickle.loads(sys.stdin.buffer.read())  # noqa: S301 - our own parent
    _die_with(job.supervisor_pid)
    from rich.text import Text

    from hopscope.cli._support import err, out
    from hopscope.cli.app import _configure_logging
    from hopscope.core.errors import HopscopeError
    from hopscope.processors.runtime import Processor, tune_allocator

    _configure_logging(job.log_level)
    # As ``hopscope process`` in one process: keep the heap between bulks unless a memory
    # budget made the settings lean (synchronous writes).
    if job.settings.max_bulks_in_flight > 0:
        tune_allocator()
    # The supervisor forwards SIGTERM; a Ctrl-C reaches the whole process group, and the
    # supervisor stops everyone: one request is enough.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with Processor.from_settings(job.settings) as processor:
            signal.signal(signal.SIGTERM, lambda *_: processor.stop())
            counts = processor.run(drain=job.drain)
    except HopscopeError as error:
        err.print(Text.assemble((f"worker {job.number}: {type(error).__name__}", "bold red"),
                                f": {error}"), soft_wrap=True)  # fmt: skip
        return 1
    indexed = ", ".join(f"{kind} {count}" for kind, count in sorted(counts.indexed.items()))
    out.print(
        f"worker {job.number} (pid {os.getpid()}) processed {counts.messages} messages: "
        f"{indexed or 'nothing indexed'}; dead letters {counts.dead_letters}, "
        f"retries {counts.retries}",
        markup=False, highlight=False, soft_wrap=True,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main())
