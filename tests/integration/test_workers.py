"""``hopscope process --workers N`` (hopscope.cli._workers): N processor processes in one
group under a supervisor. A worker SIGKILLed is reported and restarted, nothing is lost or
doubled, SIGTERM stops every worker cleanly; a crash loop ends the supervisor with exit 1.
The cluster cases under steady traffic are in tests/faults/test_cluster_faults.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from hopscope.cli._workers import Supervisor
from hopscope.core.settings import ENV_ES_URL, ENV_KAFKA_BOOTSTRAP
from hopscope.ingest.simulator import SimulationConfig, parse_iso8601_ns, simulate_to_kafka
from hopscope.processors.settings import ProcessorSettings
from tests.conftest import Services
from tests.integration.processor_support import (
    Topics,
    assert_once_each,
    create_topics,
    ids_by_kind,
    read_topic,
    refresh,
    span_doc_ids,
    wait_for_count,
)

pytestmark = pytest.mark.integration

START = parse_iso8601_ns("2026-04-02T08:00:00Z")
WAIT_S = 180.0


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _wait(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_workers_share_the_group_survive_a_kill_and_stop_on_sigterm(
    services: Services, unique_name: Callable[[str], str], index_prefix: str, tmp_path: Path
) -> None:
    topics = Topics(unique_name("spans"), unique_name("logs"), unique_name("dlq"))
    create_topics(services.kafka_bootstrap, topics.inputs, partitions=4)
    env = {
        **os.environ, ENV_KAFKA_BOOTSTRAP: services.kafka_bootstrap, ENV_ES_URL: services.es_url,
        "HOPSCOPE_SPANS_TOPIC": topics.spans, "HOPSCOPE_LOGS_TOPIC": topics.logs,
        "HOPSCOPE_DLQ_TOPIC": topics.dlq, "HOPSCOPE_INDEX_PREFIX": index_prefix, "NO_COLOR": "1",
    }  # fmt: skip
    err_log, out_log = tmp_path / "stderr.txt", tmp_path / "stdout.txt"
    command = [sys.executable, "-m", "hopscope.cli", "process", "--workers", "2",
               "--group", unique_name("group"), "--trace-idle", "0.5"]  # fmt: skip
    es = Elasticsearch(services.es_url, request_timeout=60)
    with err_log.open("wb") as err, out_log.open("wb") as out:
        supervisor = subprocess.Popen(command, env=env, stdout=out, stderr=err)
        try:
            _wait(lambda: len(_children(supervisor.pid)) == 2, "two workers")
            for seed in (1, 2):
                simulate_to_kafka(
                    SimulationConfig(start_ns=START + seed * 10**9, seed=seed, traces=40),
                    bootstrap=services.kafka_bootstrap, spans_topic=topics.spans,
                    logs_topic=topics.logs,
                )  # fmt: skip
                if seed == 1:
                    assert wait_for_count(es, index_prefix, "traces", 1, WAIT_S) >= 1
                    victim = _children(supervisor.pid)[0]
                    os.kill(victim, signal.SIGKILL)
                    _wait(lambda: "started" in err_log.read_text().split("died")[-1],
                          "the replacement worker")  # fmt: skip
            produced = span_doc_ids(read_topic(services.kafka_bootstrap, topics.spans))
            assert wait_for_count(es, index_prefix, "spans", len(produced), WAIT_S) == len(produced)
            assert wait_for_count(es, index_prefix, "traces", 80, WAIT_S) == 80
            supervisor.send_signal(signal.SIGTERM)
            code = supervisor.wait(timeout=60)
        finally:
            if supervisor.poll() is None:
                supervisor.kill()
                supervisor.wait()
    stderr = err_log.read_text()
    assert code == 0, stderr
    assert f"(pid {victim}) died: signal SIGKILL" in stderr
    assert "2 workers stopped" in stderr and "not all cleanly" not in stderr
    # Both workers printed their counts: each stopped through its own clean shutdown.
    assert out_log.read_text().count("processed") == 2, out_log.read_text()
    refresh(es, index_prefix)
    found = ids_by_kind(es, index_prefix)
    assert_once_each(found)
    assert set(found["spans"]) == set(produced)
    es.close()


def test_a_crash_loop_stops_the_supervisor_with_exit_1() -> None:
    # Nothing listens on port 9: every worker stops at once, restart after restart.
    settings = ProcessorSettings(
        kafka_bootstrap="127.0.0.1:9", es_url="http://127.0.0.1:9", startup_timeout_s=0.5
    )
    lines: list[str] = []
    supervisor = Supervisor(settings, 2, backoff_initial_s=0.1, report=lines.append)
    began = time.monotonic()
    assert supervisor.run() == 1
    assert time.monotonic() - began < 120
    assert any("giving up" in line for line in lines), lines
    assert supervisor.pids() == []
