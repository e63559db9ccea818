"""Apache Kafka in KRaft combined mode (broker + controller in one JVM) on loopback.

The plain broker of the local stack listens with PLAINTEXT. A secured broker (the tests of Kafka
security) replaces that listener with ``SASL_SSL``: TLS with a PEM key store and trust store
(certificates from :mod:`hopscope.stack.certs`), SCRAM users written into the metadata log when
the storage is formatted (:func:`prepare` with ``scram_users``), optionally the KRaft ACL
authorizer. The controller listener stays PLAINTEXT on loopback.
"""

from __future__ import annotations

import base64
import re
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from hopscope.stack import processes
from hopscope.stack.certs import ServerCerts
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


# Partitions of a topic created on a local cluster: enough for several processors per group
# (a group has at most one active member per partition).
CLUSTER_PARTITIONS = 6


def cluster_overrides(node: int, controller_ports: Sequence[int]) -> dict[str, str]:
    """Broker properties of broker ``node`` (from 1) in a local KRaft cluster of
    ``len(controller_ports)`` combined broker+controller nodes.

    Every node votes in the controller quorum (static voters). Topics are created with three
    replicas (fewer on a two-node cluster) and ``min.insync.replicas`` 2: with ``acks=all``
    (our producers) a write survives one broker down, and is refused rather than kept on a
    single copy when two are. The internal topics (offsets, transactions) get the same.

    >>> cluster_overrides(2, [9093, 9095, 9097])["controller.quorum.voters"]
    '1@127.0.0.1:9093,2@127.0.0.1:9095,3@127.0.0.1:9097'
    """
    brokers = len(controller_ports)
    if not 1 <= node <= brokers:
        raise ValueError(f"node must be within 1..{brokers}, got {node}")
    replicas, isr = str(min(3, brokers)), str(min(2, brokers))
    voters = ",".join(f"{n}@{LOOPBACK}:{port}" for n, port in enumerate(controller_ports, 1))
    return {
        "node.id": str(node),
        "controller.quorum.voters": voters,
        "num.partitions": str(CLUSTER_PARTITIONS),
        "default.replication.factor": replicas,
        "min.insync.replicas": isr,
        "offsets.topic.replication.factor": replicas,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": isr,
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": isr,
        # A broker that dies without a controlled shutdown (SIGKILL) keeps leading its
        # partitions until the controller fences it for missing heartbeats: 9 s by default,
        # a stall of every producer and consumer of those partitions. Loopback has no network
        # to be patient with.
        "broker.session.timeout.ms": "4000",
        "broker.heartbeat.interval.ms": "1000",
    }


SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
# Names and passwords go into --add-scram and a JAAS line unquoted: keep them to characters
# neither syntax gives a meaning to (secrets.token_urlsafe() produces exactly these).
_SAFE_CREDENTIAL = re.compile(r"[A-Za-z0-9._~-]+")


@dataclass(frozen=True)
class ScramUser:
    """A SCRAM user created when the storage is formatted. The password never shows in repr."""

    name: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        if not _SAFE_CREDENTIAL.fullmatch(self.name):
            raise ValueError(f"SCRAM user name {self.name!r} must match {_SAFE_CREDENTIAL.pattern}")
        if not _SAFE_CREDENTIAL.fullmatch(self.password):
            # The rule, not the value: this is a secret.
            raise ValueError(
                f"the password of SCRAM user {self.name!r} must match {_SAFE_CREDENTIAL.pattern}"
            )


@dataclass(frozen=True)
class SaslSslListener:
    """How a secured broker listens: ``SASL_SSL`` with SCRAM, and who its administrator is.

    ``admin`` authenticates the broker's own inter-broker connections and is a super user when
    ``authorizer`` turns on KRaft's ``StandardAuthorizer`` (then every other user needs ACLs:
    nothing is allowed without one).
    """

    certs: ServerCerts
    admin: ScramUser
    mechanism: str = "SCRAM-SHA-512"
    authorizer: bool = False

    def __post_init__(self) -> None:
        if self.mechanism not in SCRAM_MECHANISMS:
            raise ValueError(
                f"mechanism {self.mechanism!r} is not one of {', '.join(SCRAM_MECHANISMS)}"
            )


def pem_keystore(certs: ServerCerts, path: Path) -> Path:
    """Write the server key followed by its certificate into one PEM file (owner-only).

    Kafka's ``ssl.keystore.type=PEM`` with ``ssl.keystore.location`` reads the private key
    (PKCS#8, unencrypted here, so no ``ssl.key.password``) and the certificate chain from one
    file.
    """
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(certs.key.read_bytes() + certs.cert.read_bytes())
    return path


def sasl_ssl_overrides(
    layout: KafkaLayout, port: int, controller_port: int, listener: SaslSslListener
) -> dict[str, str]:
    """Broker properties that turn the client listener into ``SASL_SSL`` on loopback.

    Pass them to :func:`prepare` as ``overrides`` (with ``scram_users`` holding at least
    ``listener.admin``). The key store is written next to the configuration.
    """
    keystore = pem_keystore(listener.certs, layout.root / "keystore.pem")
    mechanism = listener.mechanism
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{listener.admin.name}" password="{listener.admin.password}";'
    )
    settings = {
        "listeners": f"SASL_SSL://{LOOPBACK}:{port},CONTROLLER://{LOOPBACK}:{controller_port}",
        "advertised.listeners": f"SASL_SSL://{LOOPBACK}:{port}",
        "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "SASL_SSL",
        "sasl.enabled.mechanisms": mechanism,
        "sasl.mechanism.inter.broker.protocol": mechanism,
        f"listener.name.sasl_ssl.{mechanism.lower()}.sasl.jaas.config": jaas,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(listener.certs.ca),
        "ssl.client.auth": "none",
    }
    if listener.authorizer:
        settings |= {
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            # The broker registers with its controller over the PLAINTEXT loopback listener,
            # where it is ANONYMOUS; that listener is reachable only from this machine, and the
            # SASL_SSL listener never yields ANONYMOUS.
            "super.users": f"User:{listener.admin.name};User:ANONYMOUS",
        }
    return settings


def _scram_arguments(users: Sequence[ScramUser], mechanism: str) -> list[str]:
    args: list[str] = []
    for user in users:
        args += ["--add-scram", f"{mechanism}=[name={user.name},password={user.password}]"]
    return args


def _redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


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
    *,
    scram_users: Sequence[ScramUser] = (),
    scram_mechanism: str = "SCRAM-SHA-512",
    cluster_id: str | None = None,
) -> None:
    """Write the configuration and format the storage directory.

    ``scram_users`` are created in the metadata log by the formatter (a broker that needs SCRAM
    for its own listener cannot create them itself); they are added only when the storage is
    formatted for the first time. The formatter takes their passwords on its command line,
    visible to ``ps`` on this machine for the seconds it runs: fine for test brokers; the
    output it prints on failure is shown with the passwords masked.

    ``cluster_id``: the id every broker of a multi-broker cluster is formatted with (default:
    the one this broker was formatted with before, else a new one).
    """
    layout.root.mkdir(parents=True, exist_ok=True)
    # Owner-only: a secured broker's configuration holds its inter-broker password.
    layout.config.touch(mode=0o600, exist_ok=True)
    layout.config.chmod(0o600)
    layout.config.write_text(server_properties(layout, port, ctl_port, overrides))
    layout.log4j.write_text(
        resources.files("hopscope.stack").joinpath("resources/kafka-log4j2.properties").read_text()
    )
    # A restart keeps its data, and formatted storage only accepts its own cluster id.
    if layout.cluster_id_file.exists():  # kept even when a cluster id is given
        cluster_id = layout.cluster_id_file.read_text().strip()
    else:
        cluster_id = cluster_id or new_cluster_id()
        layout.cluster_id_file.write_text(cluster_id)
    command = _java_command(
        java, libs, layout,
        "kafka.tools.StorageTool", "format", "--ignore-formatted",
        "-t", cluster_id, "-c", str(layout.config),
        *_scram_arguments(scram_users, scram_mechanism),
    )  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    if proc.returncode != 0:
        output = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        output = _redact(output, [user.password for user in scram_users])
        raise ServiceExitedError(
            f"Kafka storage format failed (exit {proc.returncode}) for {layout.data}:\n{output}"
        )


def start(java: JavaRuntime, libs: Path, layout: KafkaLayout) -> int:
    """Start the broker; return its pid (also its process group id)."""
    command = _java_command(java, libs, layout, "kafka.Kafka", str(layout.config))
    return processes.start(command, log_file=layout.log, cwd=layout.root).pid


def broker_count(bootstrap: str) -> int:
    """Live brokers in the cluster as ``bootstrap`` sees it (0 when nothing answers)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    except (KafkaError, OSError):
        return 0
    try:
        return len(admin.describe_cluster().get("brokers") or ())
    except (KafkaError, OSError):
        return 0
    finally:
        admin.close()


def is_healthy(bootstrap: str, client_options: Mapping[str, Any] | None = None) -> bool:
    """True when the broker answers a metadata request and lists itself as a live broker.

    ``client_options`` are kafka-python security settings (see
    :meth:`hopscope.core.kafka_security.KafkaSecurity.client_options`): with them the metadata
    request is an authenticated one.
    """
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    from hopscope.core.kafka_security import mask_in_kafka_logs

    if client_options and client_options.get("sasl_plain_password"):
        # The admin client logs its whole configuration at debug level.
        mask_in_kafka_logs(str(client_options["sasl_plain_password"]))
    # A plain TCP probe first: the Kafka client logs every refused connection as an error.
    host, _, port = bootstrap.rpartition(":")
    if host == LOOPBACK and not port_accepts(int(port)):
        return False
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=5000, **(client_options or {})
        )
    except (KafkaError, OSError):  # not reachable yet
        return False
    try:
        cluster = admin.describe_cluster()
        return bool(cluster.get("brokers"))
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()
