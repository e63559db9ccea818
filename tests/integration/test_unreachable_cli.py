"""The commands against a service that is not there, and quiet when everything is.

Each command runs as a user runs it (a subprocess of the ``hopscope`` entry point), with one
of the two addresses pointing at a closed port: a port allocated and released, on which
nothing listens. Never reached since the start is a configuration error: one line on stderr
naming the address and the cause, exit 1, within seconds. Time bounds here are generous upper
bounds (a hang or a 30 s client default), not performance targets.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Services

pytestmark = pytest.mark.integration

# Generous: the start-up wait is 4 s, the interpreter and imports take one or two more.
UPPER_BOUND_S = 20.0


def _closed_port() -> int:
    """A loopback port nothing listens on: bound to get a free number, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _hopscope(*args: str, kafka: str, es: str, cwd: Path) -> tuple[int, str, str, float]:
    """Run ``hopscope ARGS``; exit code, stdout, stderr and seconds taken."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOPSCOPE_")}
    env |= {"HOPSCOPE_KAFKA_BOOTSTRAP": kafka, "HOPSCOPE_ES_URL": es, "NO_COLOR": "1",
            "COLUMNS": "400"}  # fmt: skip
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "hopscope.cli", *args], env=env, cwd=cwd,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _assert_one_line_error(stderr: str, *words: str) -> None:
    lines = _lines(stderr)
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_process_with_elasticsearch_never_reachable_stops_in_one_line(
    services: Services, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    code, _, stderr, took = _hopscope(
        "process", "--drain", "--group", unique_name("group"),
        "--spans-topic", unique_name("spans"), "--logs-topic", unique_name("logs"),
        "--dlq-topic", unique_name("dlq"),
        kafka=services.kafka_bootstrap, es=url, cwd=tmp_path,
    )  # fmt: skip
    assert code == 1, stderr
    _assert_one_line_error(stderr, "NeverReachedError", url, "connection refused",
                           "HOPSCOPE_ES_URL")  # fmt: skip
    assert took < UPPER_BOUND_S


def test_analyze_report_with_elasticsearch_never_reachable_is_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    code, stdout, stderr, took = _hopscope(
        "analyze", "report", kafka=f"127.0.0.1:{_closed_port()}", es=url, cwd=tmp_path
    )
    assert code == 1, stderr
    assert stdout == ""
    _assert_one_line_error(stderr, "LoaderError", url, "connection refused", "HOPSCOPE_ES_URL")
    assert took < UPPER_BOUND_S


@pytest.mark.parametrize(
    ("command", "who"),
    [(("simulate", "--traces", "5"), "the simulator"),
     (("process", "--drain"), "the processor")],
    ids=["simulate", "process"],
)  # fmt: skip
def test_kafka_never_reachable_is_one_line_within_seconds(
    services: Services, command: tuple[str, ...], who: str, tmp_path: Path
) -> None:
    bootstrap = f"127.0.0.1:{_closed_port()}"
    code, _, stderr, took = _hopscope(*command, kafka=bootstrap, es=services.es_url, cwd=tmp_path)
    assert code == 1, stderr
    _assert_one_line_error(stderr, "KafkaConnectError", who, bootstrap, "ECONNREFUSED",
                           "is the broker running")  # fmt: skip
    assert took < UPPER_BOUND_S


def test_simulate_then_process_into_new_topics_print_no_client_lines(
    services: Services, unique_name: Callable[[str], str], index_prefix: str, tmp_path: Path
) -> None:
    """Topics that do not exist yet are created before use, and nothing the Kafka and
    Elasticsearch clients log (``Topic ... not found`` among them) reaches the user."""
    from kafka import KafkaAdminClient

    topics = ["--spans-topic", unique_name("spans"), "--logs-topic", unique_name("logs")]
    where = {"kafka": services.kafka_bootstrap, "es": services.es_url, "cwd": tmp_path}
    code, stdout, stderr, _ = _hopscope("simulate", "--traces", "20", *topics, **where)  # type: ignore[arg-type]
    assert code == 0, stderr
    assert "simulated 20 traces" in stdout
    code, stdout, stderr, _ = _hopscope(
        "process", "--drain", "--trace-idle", "0.5", "--group", unique_name("group"),
        "--index-prefix", index_prefix, "--dlq-topic", unique_name("dlq"), *topics, **where,  # type: ignore[arg-type]
    )  # fmt: skip
    assert code == 0, stderr
    assert "processed" in stdout
    for noisy in ("kafka.", "elastic_transport", "not found", "WARNING", "ERROR"):
        assert noisy not in stderr, stderr
    admin = KafkaAdminClient(bootstrap_servers=services.kafka_bootstrap)
    try:
        existing = set(admin.list_topics())
        assert {topics[1], topics[3], unique_name("dlq")} <= existing
        admin.delete_topics([topics[1], topics[3], unique_name("dlq")])
    finally:
        admin.close()
