"""``hopscope stack`` against real processes: lifecycle, clear errors, nothing left behind.

These start their own stacks (in their own state directories, beside the session's), so they
are marked ``stack`` as well as ``integration``.
"""

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hopscope.cli import app
from hopscope.stack import processes
from hopscope.stack.ports import LOOPBACK

pytestmark = [pytest.mark.integration, pytest.mark.stack]

runner = CliRunner()


@pytest.fixture
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # Under /tmp: Elasticsearch's system user must be able to reach it when we run as root.
    path = tmp_path_factory.mktemp("stack")
    path.chmod(0o755)
    for parent in path.parents:
        if str(parent).startswith("/tmp/"):
            parent.chmod(0o755)
    yield path
    runner.invoke(app, ["stack", "down", "--state-dir", str(path), "--timeout", "10"])
    assert processes.pids_with_marker(str(path)) == []


def _ours(state: Path) -> list[int]:
    return processes.pids_with_marker(str(state))


def test_up_status_env_down(state_dir: Path) -> None:
    up = runner.invoke(app, ["stack", "up", "--state-dir", str(state_dir)])
    assert up.exit_code == 0, up.output
    # The session's stack already filled the cache: a second `up` downloads nothing.
    assert "fetching" not in up.output

    status = runner.invoke(app, ["stack", "status", "--json", "--state-dir", str(state_dir)])
    assert status.exit_code == 0, status.output
    # The Kafka client's own warnings (a line per probe) are for --log-level debug only.
    assert not status.stderr.strip(), status.stderr
    report = json.loads(status.stdout)
    assert {name: svc["up"] for name, svc in report.items()} == {
        "kafka": True,
        "elasticsearch": True,
    }
    assert report["kafka"]["version"].startswith("4.")
    assert report["elasticsearch"]["version"].startswith("8.19.")
    assert all(svc["pid"] and svc["port"] for svc in report.values())

    env = runner.invoke(app, ["stack", "env", "--state-dir", str(state_dir)])
    assert env.exit_code == 0
    lines = dict(line.removeprefix("export ").split("=", 1) for line in env.stdout.splitlines())
    assert lines["HOPSCOPE_KAFKA_BOOTSTRAP"] == f"{LOOPBACK}:{report['kafka']['port']}"
    assert lines["HOPSCOPE_ES_URL"] == f"http://{LOOPBACK}:{report['elasticsearch']['port']}"

    logs = runner.invoke(
        app, ["stack", "logs", "kafka", "-n", "400", "--state-dir", str(state_dir)]
    )
    assert logs.exit_code == 0 and "Kafka Server started" in logs.stdout

    again = runner.invoke(app, ["stack", "up", "--state-dir", str(state_dir)])
    assert again.exit_code == 0 and "already running" in again.output

    assert _ours(state_dir)
    down = runner.invoke(app, ["stack", "down", "--state-dir", str(state_dir)])
    assert down.exit_code == 0 and "kafka" in down.stdout and "elasticsearch" in down.stdout
    assert _ours(state_dir) == []

    after = runner.invoke(app, ["stack", "status", "--json", "--state-dir", str(state_dir)])
    assert after.exit_code == 3
    assert not any(svc["up"] for svc in json.loads(after.stdout).values())


def test_port_in_use_is_named(state_dir: Path) -> None:
    with socket.socket() as holder:
        holder.bind((LOOPBACK, 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = runner.invoke(
            app, ["stack", "up", "--state-dir", str(state_dir), "--es-port", str(port)]
        )
    assert result.exit_code == 1
    assert "PortInUseError" in result.output and f"{LOOPBACK}:{port}" in result.output
    assert "Elasticsearch HTTP" in result.output
    assert "Traceback" not in result.output
    assert _ours(state_dir) == []


def test_missing_java_is_a_clear_error(state_dir: Path, tmp_path: Path) -> None:
    bogus = tmp_path / "jdk-that-is-not-there"
    result = runner.invoke(
        app, ["stack", "up", "--state-dir", str(state_dir), "--java-home", str(bogus)]
    )
    assert result.exit_code == 1
    assert "JavaError" in result.output and "no Java runtime found" in result.output
    assert str(bogus) in result.output.replace("\n", "")
    assert "Traceback" not in result.output


def test_service_that_exits_during_start_shows_its_log(state_dir: Path) -> None:
    # An unknown setting makes Elasticsearch exit during start, as a typo would.
    result = runner.invoke(
        app,
        ["stack", "up", "--state-dir", str(state_dir), "--es-setting", "no.such.setting=1",
         "--timeout", "120"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "ServiceExitedError" in result.output
    assert "elasticsearch exited with code" in result.output
    assert "no.such.setting" in result.output  # the log tail names the culprit
    assert "Traceback" not in result.output
    # The half-started stack was taken down again: no Kafka or Elasticsearch of ours is left.
    assert _ours(state_dir) == []
