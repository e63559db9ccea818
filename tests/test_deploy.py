"""deploy/compose.yaml: Docker users get Kafka (KRaft), Elasticsearch, Kibana with hopscope's saved
objects, the processors, Prometheus and Grafana, health-checked."""

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from hopscope.stack.artifacts import pinned_versions

COMPOSE = Path(__file__).resolve().parents[1] / "deploy" / "compose.yaml"


def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def _config() -> dict[str, Any]:
    """The file as Docker Compose itself normalises it, when a Compose CLI is installed
    (CI installs one); otherwise as YAML."""
    cli = _compose_cli()
    if cli is None:
        loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
        return loaded
    proc = subprocess.run(
        [*cli, "-f", str(COMPOSE), "config"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    normalised: dict[str, Any] = yaml.safe_load(proc.stdout)
    return normalised


ONE_SHOT = {"kibana-setup"}  # runs `hopscope kibana import` once, then exits


def test_compose_file_parses_with_health_checks() -> None:
    services = _config()["services"]
    assert set(services) == {
        "kafka", "elasticsearch", "kibana", "processors", "kibana-setup", "prometheus", "grafana",
        "alertmanager",
    }  # fmt: skip
    assert all("healthcheck" in svc for name, svc in services.items() if name not in ONE_SHOT)
    # Published on loopback only: a development stack, security off.
    for svc in services.values():
        for port in svc.get("ports", []):
            published = port if isinstance(port, str) else f"{port.get('host_ip')}:"
            assert str(published).startswith("127.0.0.1:")
    assert services["kibana"]["depends_on"]["elasticsearch"]["condition"] == "service_healthy"


def test_compose_uses_the_pinned_elasticsearch_version() -> None:
    services = _config()["services"]
    version = pinned_versions().elasticsearch
    assert services["elasticsearch"]["image"].endswith(f":{version}")
    assert services["kibana"]["image"].endswith(f":{version}")


def test_compose_wires_processors_prometheus_and_grafana() -> None:
    """The mounted files exist, Prometheus scrapes the processors' metrics port, Grafana is
    provisioned with the generated dashboard and the Prometheus datasource."""
    from hopscope.dashboards import grafana

    services = _config()["services"]
    processors = services["processors"]
    command = processors["command"]
    port = command[command.index("--metrics-port") + 1]
    assert grafana.COMPOSE_TARGET.endswith(f":{port}")
    assert processors["environment"]["HOPSCOPE_KAFKA_BOOTSTRAP"] == "kafka:19092"
    assert (COMPOSE.parent / processors["build"]["dockerfile"].removeprefix("deploy/")).is_file()
    # The processors listen on all addresses inside the compose network, where Prometheus
    # scrapes them by service name; only Prometheus's own port is published (on loopback).
    assert command[command.index("--metrics-addr") + 1] == "0.0.0.0"
    assert f"processors:{port}" == grafana.COMPOSE_TARGET
    assert "ports" not in processors and "network_mode" not in services["prometheus"]
    assert services["kibana-setup"]["command"][:2] == ["kibana", "import"]
    assert services["kibana-setup"]["depends_on"]["kibana"]["condition"] == "service_healthy"
    mounts = []
    for name in ("prometheus", "grafana", "alertmanager"):
        for volume in services[name]["volumes"]:
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            if "/" in str(source):
                mounts.append(
                    Path(source) if Path(source).is_absolute() else COMPOSE.parent / source
                )
    assert mounts and all(m.exists() for m in mounts), mounts
    generated = grafana.deploy_files()
    for relative, content in generated.items():
        assert (COMPOSE.parent / relative).read_text() == content, (
            f"deploy/{relative} is stale: run `hopscope kibana regenerate`"
        )
