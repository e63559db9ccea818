"""Apache Kafka in KRaft combined mode (broker + controller in one JVM) on loopback."""

from __future__ import annotations

import base64
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from hopscope.stack import processes
from hopscope.stack.errors import ServiceExitedError
from hopscope.stack.java import JavaRuntime
from hopscope.stack.ports import LOOPBACK, port_accepts

# The machine has 2 cores and shares them with Elasticsearch and the tests: a small fixed heap.
KAFKA_HEAP = ["-Xms256m", "-Xmx512m"]


@dataclass(frozen=True)
class KafkaLayout:
    """Where one Kafka instance keeps its files under the stack's state directory."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "server.properties"

    @property
    def log4j(self) -> Path:
        return self.root / "log4j2.properties"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "kafka.log"

    @property
    def cluster_id_file(self) -> Path:
        return self.root / "cluster.id"

    @property
    def marker(self) -> str:
        """Appears in the broker's command line: how we recognise our process."""
        return str(self.config)


def new_cluster_id() -> str:
    """A KRaft cluster id: unpadded URL-safe Base64 of 16 random bytes, not starting with '-'.

    >>> len(new_cluster_id())
    22
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def server_properties(
    layout: KafkaLayout, port: int, controller_port: int, overrides: Mapping[str, str] | None = None
) -> str:
    """The broker configuration: single node, static controller quorum, loopback only."""
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        # Static voters: with them the storage formatter takes no --standalone flag.
        "controller.quorum.voters": f"1@{LOOPBACK}:{controller_port}",
        "listeners": f"PLAINTEXT://{LOOPBACK}:{port},CONTROLLER://{LOOPBACK}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(layout.data),
        "num.partitions": "1",
        # One broker: every internal topic has one replica.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # Tests join and leave groups constantly; the default 3 s delay would dominate them.
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "true",
    }
    settings.update(overrides or {})
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def _java_command(java: JavaRuntime, libs: Path, layout: KafkaLayout, *args: str) -> list[str]:
    return [
        str(java.executable),
        *KAFKA_HEAP,
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={layout.log4j}",
        "-cp",
        f"{libs}/*",
        *args,
    ]


def prepare(
    java: JavaRuntime,
    libs: Path,
    layout: KafkaLayout,
    port: int,
    ctl_port: int,
    overrides: Mapping[str, str] | None = None,
) -> None:
    """Write the configuration and format the storage directory."""
    layout.root.mkdir(parents=True, exist_ok=True)
    layout.config.write_text(server_properties(layout, port, ctl_port, overrides))
    layout.log4j.write_text(
        resources.files("hopscope.stack").joinpath("resources/kafka-log4j2.properties").read_text()
    )
    # A restart keeps its data, and formatted storage only accepts its own cluster id.
    if layout.cluster_id_file.exists():
        cluster_id = layout.cluster_id_file.read_text().strip()
    else:
        cluster_id = new_cluster_id()
        layout.cluster_id_file.write_text(cluster_id)
    command = _java_command(
        java, libs, layout,
        "kafka.tools.StorageTool", "format", "--ignore-formatted",
        "-t", cluster_id, "-c", str(layout.config),
    )  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    if proc.returncode != 0:
        output = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise ServiceExitedError(
            f"Kafka storage format failed (exit {proc.returncode}) for {layout.data}:\n{output}"
        )


def start(java: JavaRuntime, libs: Path, layout: KafkaLayout) -> int:
    """Start the broker; return its pid (also its process group id)."""
    command = _java_command(java, libs, layout, "kafka.Kafka", str(layout.config))
    return processes.start(command, log_file=layout.log, cwd=layout.root).pid


def is_healthy(bootstrap: str) -> bool:
    """True when the broker answers a metadata request and lists itself as a live broker."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    # A plain TCP probe first: the Kafka client logs every refused connection as an error.
    host, _, port = bootstrap.rpartition(":")
    if host == LOOPBACK and not port_accepts(int(port)):
        return False
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    except (KafkaError, OSError):  # not reachable yet
        return False
    try:
        cluster = admin.describe_cluster()
        return bool(cluster.get("brokers"))
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()
