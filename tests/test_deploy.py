"""deploy/compose.yaml: Docker users get Kafka (KRaft), Elasticsearch and Kibana, health-checked."""

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


def test_compose_file_parses_with_health_checks() -> None:
    services = _config()["services"]
    assert set(services) == {"kafka", "elasticsearch", "kibana"}
    assert all("healthcheck" in svc for svc in services.values())
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
