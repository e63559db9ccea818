"""A real Prometheus scrapes a running processor; every Grafana expression returns series.

Uses Debian's ``prometheus`` package (``apt-get install prometheus``): the test starts
``/usr/bin/prometheus`` on loopback with a generated configuration and a temporary storage
directory, feeds the processor simulated traffic (and one undecodable message, so the
dead-letter counter has a series), and runs each PromQL expression of the dashboard.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from hopscope.dashboards import alerts, grafana
from hopscope.ingest.simulator import (
    Scenario,
    SimulationConfig,
    parse_iso8601_ns,
    simulate_to_kafka,
)
from hopscope.processors.runtime import Processor
from tests.conftest import Services
from tests.integration.processor_support import Topics, create_topics, processor_settings

pytestmark = pytest.mark.integration

PROMETHEUS = "/usr/bin/prometheus"
WINDOW = "30s"  # stands in for Grafana's $__rate_interval: many 1 s scrapes


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    with urllib.request.urlopen(url, timeout=10) as response:
        answer = json.load(response)
    assert answer["status"] == "success", answer
    return list(answer["data"]["result"])


@pytest.fixture
def prometheus_binary() -> str:
    binary = shutil.which("prometheus") or PROMETHEUS
    if not Path(binary).is_file():
        pytest.fail(
            f"{PROMETHEUS} not found: install Debian's Prometheus server with "
            "`apt-get install -y prometheus` (the test starts it itself, on loopback)"
        )
    return binary


@pytest.fixture
def prometheus(prometheus_binary: str, tmp_path: Path) -> Iterator[Callable[[int], str]]:
    """Start Prometheus scraping 127.0.0.1:<port> every second; yields the starter."""
    started: list[subprocess.Popen[bytes]] = []

    def start(metrics_port: int) -> str:
        config = tmp_path / "prometheus.yml"
        # The rules too, at the alert test's time scale: the SLO panels read recorded series.
        rules = alerts.write_rules(tmp_path / "rules", scale=1 / 60)
        config.write_text(grafana.prometheus_config(
            [f"127.0.0.1:{metrics_port}"], scrape_interval="1s",
            rule_files=[str(r) for r in rules],
        ))  # fmt: skip
        port = _free_port()
        with (tmp_path / "prometheus.log").open("wb") as log:  # the child keeps its own fd
            process = subprocess.Popen(
                [prometheus_binary, f"--config.file={config}",
                 f"--storage.tsdb.path={tmp_path / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        started.append(process)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"{base}/-/ready", timeout=2):
                    return base
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"Prometheus not ready: {(tmp_path / 'prometheus.log').read_text()}")

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def test_every_grafana_expression_returns_series_from_a_real_scrape(
    services: Services, index_prefix: str, unique_name: Callable[[str], str],
    prometheus: Callable[[int], str],
) -> None:  # fmt: skip
    topics = Topics(unique_name("spans"), unique_name("logs"), unique_name("dlq"))
    create_topics(services.kafka_bootstrap, [topics.spans, topics.logs, topics.dlq])
    config = SimulationConfig(start_ns=parse_iso8601_ns("2026-04-01T08:00:00Z"),
                              scenario=Scenario.NODE_FAILURE, seed=4, traces=40)  # fmt: skip
    run = simulate_to_kafka(config, bootstrap=services.kafka_bootstrap,
                            spans_topic=topics.spans, logs_topic=topics.logs)  # fmt: skip
    producer = KafkaProducer(bootstrap_servers=services.kafka_bootstrap)
    producer.send(topics.spans, value=b"\x0a\xff\xffnot protobuf", key=b"k").get(timeout=30)
    producer.close()

    metrics_port = _free_port()
    settings = processor_settings(services.kafka_bootstrap, services.es_url, topics,
                                  index_prefix, unique_name("group"),
                                  metrics_port=metrics_port)  # fmt: skip
    with Processor(settings) as processor:
        worker = threading.Thread(target=processor.run, daemon=True)
        worker.start()
        try:
            base = prometheus(metrics_port)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if processor.counts.indexed["spans"] >= run.result.spans:
                    break
                time.sleep(0.5)
            assert processor.counts.indexed["spans"] == run.result.spans
            assert processor.counts.dead_letters == 1

            # Scraped, and several times since the traffic: rate() needs two samples.
            up: list[dict[str, Any]] = []
            until = time.monotonic() + 30
            while not up and time.monotonic() < until:
                up = _query(base, f'up{{job="{grafana.JOB}"}} == 1')
                time.sleep(0.5)
            assert len(up) == 1, "Prometheus never scraped the processor's metrics port"
            time.sleep(5)

            missing: dict[str, Any] = {}
            for expr in grafana.expressions():
                promql = expr.replace(grafana.RATE_WINDOW, WINDOW)
                series: list[dict[str, Any]] = []
                until = time.monotonic() + 20
                while not series and time.monotonic() < until:
                    series = _query(base, promql)
                    if not series:
                        time.sleep(1)
                if not series:
                    missing[promql] = series
            assert not missing, f"expressions without a series: {sorted(missing)}"

            # The per-edge hop histograms carry the simulated services as labels.
            network = next(e for e in grafana.expressions() if "hop_network_seconds" in e)
            edges = _query(base, network.replace(grafana.RATE_WINDOW, WINDOW))
            assert {"source", "target"} <= set(edges[0]["metric"])
        finally:
            processor.stop()
            worker.join(30)
    assert not worker.is_alive()
