"""Commands the CLI prints for the user to paste work as printed, also before ``hopscope`` is on
PATH (``make demo`` runs ``.venv/bin/hopscope``; the README's ``make shell`` puts it on PATH).

The stack in these tests is a recorded one whose endpoints are the session's real Kafka and
Elasticsearch and whose "processes" are placeholders carrying the recorded markers, so
``hopscope stack up`` finds it running and prints its hint without starting anything.
"""

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hopscope.stack.launcher import ServiceState, StackState
from tests.conftest import Services

pytestmark = pytest.mark.integration

# The console script of this environment: what `make demo` runs.
HOPSCOPE = Path(sys.executable).parent / "hopscope"


@dataclass(frozen=True)
class RecordedStack:
    state_dir: Path
    services: Services


@pytest.fixture
def recorded_stack(services: Services, tmp_path: Path) -> Iterator[RecordedStack]:
    state_dir = tmp_path / "state with space"  # the hint must quote it
    state_dir.mkdir()
    placeholders = []
    recorded = {}
    endpoints = {"kafka": services.kafka_bootstrap, "elasticsearch": services.es_url}
    for name, endpoint in endpoints.items():
        marker = f"hopscope-hint-test-{name}-{tmp_path.name}"
        # A process whose command line carries the marker, as the real service's does.
        proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; sys.stdin.read()", marker], stdin=subprocess.PIPE
        )
        placeholders.append(proc)
        recorded[name] = ServiceState(
            name=name, pid=proc.pid, port=int(endpoint.rsplit(":", 1)[1].strip("/")),
            version="-", log=str(tmp_path / f"{name}.log"), marker=marker, endpoint=endpoint,
        )  # fmt: skip
    StackState(str(state_dir), java="-", started_at=0.0, services=recorded).save()
    yield RecordedStack(state_dir, services)
    for proc in placeholders:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)


def _path_without_hopscope() -> str:
    """PATH as a fresh login has it after `make demo`: the virtualenv's bin not on it."""
    venv_bin = str(HOPSCOPE.parent)
    return os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != venv_bin)


def _hint(stderr: str) -> str:
    (line,) = [line for line in stderr.splitlines() if "point commands and tests at it:" in line]
    return line.split("point commands and tests at it:", 1)[1].strip()


@pytest.mark.parametrize("on_path", [False, True], ids=["not-on-path", "after-make-shell"])
def test_stack_up_prints_an_env_command_that_works_as_shown(
    recorded_stack: RecordedStack, on_path: bool
) -> None:
    path = _path_without_hopscope()
    if on_path:  # what `make shell` (or activating .venv) does
        path = os.pathsep.join([str(HOPSCOPE.parent), path])
    if not on_path and shutil.which("hopscope", path=path):
        pytest.fail("another hopscope is on PATH; the test needs PATH without one")
    env = {**os.environ, "PATH": path, "COLUMNS": "300"}
    for name in ("HOPSCOPE_KAFKA_BOOTSTRAP", "HOPSCOPE_ES_URL"):
        env.pop(name, None)

    up = subprocess.run(
        [str(HOPSCOPE), "stack", "up", "--state-dir", str(recorded_stack.state_dir)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert up.returncode == 0, up.stderr
    assert "already running" in up.stderr
    hint = _hint(up.stderr)
    assert hint.startswith('eval "$(hopscope ' if on_path else f'eval "$({HOPSCOPE} ')

    # Pasted into a shell as printed, it exports the stack's endpoints.
    shell = subprocess.run(
        ["bash", "-c", f'{hint} && echo "$HOPSCOPE_KAFKA_BOOTSTRAP $HOPSCOPE_ES_URL"'],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert shell.returncode == 0, shell.stderr
    services = recorded_stack.services
    assert shell.stdout.split() == [services.kafka_bootstrap, services.es_url]
