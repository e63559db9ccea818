"""Start service processes in their own session, find them again later, stop them for good.

Each service runs in a new session (so its process group is its whole tree: Elasticsearch's
launcher spawns the server JVM) and is identified by pid *and* a marker in its command line, so a
recycled pid is never mistaken for ours.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

# Children we started in this process, kept so that they are reaped (no zombies, no
# "subprocess still running" warnings) when we stop them or they exit.
_children: dict[int, subprocess.Popen[bytes]] = {}


def start(
    command: Sequence[str],
    *,
    log_file: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``command`` detached from our terminal, stdout and stderr appended to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        child = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            user=user,
            start_new_session=True,
        )
    _children[child.pid] = child
    return child


def exited(pid: int) -> int | None:
    """The exit code of a child started here, or None while it runs (or is not ours)."""
    child = _children.get(pid)
    return child.poll() if child is not None else None


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def is_ours(pid: int, marker: str) -> bool:
    """True when ``pid`` is alive and its command line contains ``marker`` (our state dir)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user (Elasticsearch's system user): check the marker
    return marker in _cmdline(pid)


def pids_with_marker(marker: str) -> list[int]:
    """Every live process whose command line contains ``marker`` (like ``pgrep -f``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if (
            entry.name.isdigit()
            and int(entry.name) != os.getpid()
            and marker in _cmdline(int(entry.name))
        ):
            found.append(int(entry.name))
    return found


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop(pgid: int, marker: str, *, timeout: float = 30.0) -> bool:
    """SIGTERM the process group, wait up to ``timeout`` s, then SIGKILL what is left.

    Also kills any straggler carrying ``marker`` outside the group (a JVM that changed its
    session). Returns True when something was running.
    """
    was_running = bool(pids_with_marker(marker))
    if pgid > 0:
        _signal_group(pgid, signal.SIGTERM)
    for pid in pids_with_marker(marker):
        _kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pids_with_marker(marker):
        time.sleep(0.2)
    if pgid > 0:
        _signal_group(pgid, signal.SIGKILL)
    for pid in pids_with_marker(marker):
        _kill(pid, signal.SIGKILL)
    # SIGKILL is not instant: wait until the kernel has reaped them.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and pids_with_marker(marker):
        time.sleep(0.1)
    child = _children.pop(pgid, None)
    if child is not None:
        child.wait(timeout=10)
    return was_running


def _kill(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file ('' when it does not exist)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 256 * 1024))
            data = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def log_excerpt(path: Path, lines: int = 25) -> str:
    """The end of a log without Java stack frames, so the cause stays in view.

    A JVM that dies prints dozens of ``at ...`` lines after the one line that matters.
    """
    kept = [
        line[:400]
        for line in tail(path, 2000).splitlines()
        if not line.lstrip().startswith(("at ", "... "))
    ]
    return "\n".join(kept[-lines:])
