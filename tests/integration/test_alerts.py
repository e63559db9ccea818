"""A real Prometheus evaluates the generated alerting rules against a real processor.

The processor consumes the simulator's baseline, slow-hop and node-failure traffic in turn
from the real Kafka (indexing into the real Elasticsearch); Prometheus (Debian's
``prometheus``) scrapes it every second and evaluates the rules of ``hopscope alerts generate
--scale`` 1/60, a test-only time scale: an hour's window becomes a minute, a 15-minute ``for``
15 seconds, so the multi-window alerts can fire within the test. When Debian's
``prometheus-alertmanager`` is installed, Prometheus also sends to a real Alertmanager whose
webhook receiver is a server in this test.

What is asserted: no alert fires on baseline traffic; the risk-check latency burn fires on
slow-hop; a failover away from the dead node fires on node-failure; the Alertmanager webhook
receives it. Times from each fault's first message to firing are printed, never asserted.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

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
from tests.integration.test_prometheus import _free_port, _query

pytestmark = pytest.mark.integration

SCALE = 1 / 60  # test-only: windows and `for` durations shrunk sixty-fold
START = parse_iso8601_ns("2026-04-01T08:00:00Z")


def _wait_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-2000:]
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"not ready: {url}: {log.read_text()[-2000:]}")


class _Webhook(BaseHTTPRequestHandler):
    """Alertmanager's webhook receiver: keeps every posted payload."""

    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def monitoring(tmp_path: Path) -> Iterator[Callable[[int], tuple[str, list[dict[str, Any]]]]]:
    """Start (Alertmanager and) Prometheus with the scaled rules; yields the starter, which
    returns Prometheus's base URL and the webhook's received payloads."""
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.fail("prometheus not found: `apt-get install -y prometheus`")
    alertmanager = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    started: list[subprocess.Popen[bytes]] = []
    servers: list[ThreadingHTTPServer] = []
    received: ClassVar[list[dict[str, Any]]] = []

    def start(metrics_port: int) -> tuple[str, list[dict[str, Any]]]:
        rules = alerts.write_rules(tmp_path / "rules", scale=SCALE)
        managers: list[str] = []
        if alertmanager:
            _Webhook.received = received
            webhook = ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
            servers.append(webhook)
            threading.Thread(target=webhook.serve_forever, daemon=True).start()
            am_port = _free_port()
            config = tmp_path / "alertmanager.yml"
            config.write_text(
                "route:\n  receiver: test\n  group_by: [alertname]\n  group_wait: 1s\n"
                "  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: test\n"
                "    webhook_configs:\n"
                f"      - url: http://127.0.0.1:{webhook.server_address[1]}/alerts\n"
            )
            log = tmp_path / "alertmanager.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [alertmanager, f"--config.file={config}",
                     f"--storage.path={tmp_path / 'am-data'}",
                     f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="],
                    stdout=out, stderr=subprocess.STDOUT,
                )  # fmt: skip
            started.append(process)
            _wait_ready(process, f"http://127.0.0.1:{am_port}/-/ready", log)
            managers.append(f"127.0.0.1:{am_port}")
        config = tmp_path / "prometheus.yml"
        config.write_text(grafana.prometheus_config(
            [f"127.0.0.1:{metrics_port}"], scrape_interval="1s",
            rule_files=[str(path) for path in rules], alertmanagers=managers,
        ))  # fmt: skip
        port = _free_port()
        log = tmp_path / "prometheus.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}"],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        started.append(process)
        base = f"http://127.0.0.1:{port}"
        _wait_ready(process, f"{base}/-/ready", log)
        return base, received

    yield start
    for process in reversed(started):
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    for server in servers:
        server.shutdown()
        server.server_close()


def _firing(base: str) -> list[dict[str, str]]:
    return [series["metric"] for series in _query(base, 'ALERTS{alertstate="firing"}')]


def _wait_for_alert(base: str, labels: dict[str, str], timeout: float) -> tuple[float, set[str]]:
    """Poll until an alert with ``labels`` fires; return when (monotonic) and every alert
    seen firing meanwhile (as ``name{slo or from_node}``)."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for alert in _firing(base):
            seen.add(f"{alert['alertname']}{{{alert.get('slo') or alert.get('from_node', '')}}}")
            if all(alert.get(k) == v for k, v in labels.items()):
                return time.monotonic(), seen
        time.sleep(0.5)
    raise AssertionError(f"{labels} never fired; firing: {_firing(base)}")


def test_alerts_fire_on_faults_and_not_on_baseline(
    services: Services, index_prefix: str, unique_name: Callable[[str], str],
    monitoring: Callable[[int], tuple[str, list[dict[str, Any]]]],
) -> None:  # fmt: skip
    topics = Topics(unique_name("spans"), unique_name("logs"), unique_name("dlq"))
    create_topics(services.kafka_bootstrap, [topics.spans, topics.logs, topics.dlq])
    metrics_port = _free_port()
    settings = processor_settings(services.kafka_bootstrap, services.es_url, topics,
                                  index_prefix, unique_name("group"),
                                  metrics_port=metrics_port)  # fmt: skip
    indexed = 0

    def feed(scenario: Scenario, seed: int, traces: int) -> float:
        """Produce one scenario's traffic; wait until the processor indexed its spans."""
        nonlocal indexed
        began = time.monotonic()
        config = SimulationConfig(start_ns=START + seed * 3_600_000_000_000,
                                  scenario=scenario, seed=seed, traces=traces)  # fmt: skip
        run = simulate_to_kafka(config, bootstrap=services.kafka_bootstrap,
                                spans_topic=topics.spans, logs_topic=topics.logs)  # fmt: skip
        indexed += run.result.spans
        deadline = time.monotonic() + 180
        while processor.counts.indexed["spans"] < indexed and time.monotonic() < deadline:
            time.sleep(0.5)
        assert processor.counts.indexed["spans"] == indexed
        return began

    with Processor(settings) as processor:
        worker = threading.Thread(target=processor.run, daemon=True)
        worker.start()
        try:
            base, webhooks = monitoring(metrics_port)
            until = time.monotonic() + 30
            while not _query(base, 'up{job="hopscope-processors"} == 1'):
                assert time.monotonic() < until, "Prometheus never scraped the processor"
                time.sleep(0.5)

            # Baseline: nothing fires, through the longest scaled `for` (15 s) and beyond.
            feed(Scenario.BASELINE, seed=11, traces=400)
            quiet_until = time.monotonic() + 30
            while time.monotonic() < quiet_until:
                assert _firing(base) == [], "an alert fired on baseline traffic"
                time.sleep(1)
            # The SLI counters did count: the absence of alerts is not the absence of data.
            assert _query(base, 'hopscope_slo_calls_total{slo="risk-check"} > 0')

            timings: dict[str, float] = {}
            began = feed(Scenario.SLOW_HOP, seed=12, traces=400)
            burn = {"alertname": "HopscopeLatencyBudgetBurnFast", "slo": "risk-check"}
            fired, seen = _wait_for_alert(base, burn, timeout=120)
            timings["slow-hop → HopscopeLatencyBudgetBurnFast{slo=risk-check}"] = fired - began
            # Only the slowed edge's SLO burns: no failover, no other SLO.
            assert {a.split("{")[1] for a in seen} == {"risk-check}"}, seen
            print("firing during slow-hop:", sorted(seen))
            # Failovers start a third into the node-failure arrivals.
            began = feed(Scenario.NODE_FAILURE, seed=13, traces=600)
            failover = {"alertname": "HopscopeNodeFailingOver", "from_node": "payment-2"}
            fired, seen = _wait_for_alert(base, failover, timeout=120)
            timings["node-failure → HopscopeNodeFailingOver{from_node=payment-2}"] = fired - began
            print("firing during node-failure:", sorted(seen))
            print("fault to firing:", {k: f"{v:.1f} s" for k, v in timings.items()})
            print("firing at the end:", sorted({a["alertname"] for a in _firing(base)}))

            if shutil.which("prometheus-alertmanager") or shutil.which("alertmanager"):
                deadline = time.monotonic() + 60
                names: set[str] = set()
                while "HopscopeNodeFailingOver" not in names and time.monotonic() < deadline:
                    names = {a["labels"]["alertname"] for p in webhooks for a in p["alerts"]}
                    time.sleep(0.5)
                assert "HopscopeNodeFailingOver" in names, webhooks
        finally:
            processor.stop()
            worker.join(30)
    assert not worker.is_alive()
