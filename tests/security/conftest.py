"""A real Kafka broker with a ``SASL_SSL`` listener (SCRAM-SHA-512, TLS), started once per run.

The broker is the stack's Kafka, configured by :mod:`hopscope.stack.kafka`: certificates made
by the test (:func:`hopscope.stack.certs.make_server_certs`), SCRAM users written at storage
format time, and KRaft's ACL authorizer on, so that a user can do only what an ACL allows.
It runs on free loopback ports from pytest's temporary directory under /tmp (where CI's clean-up
finds it after a crash, and where its log stays for a look after a failure) and is stopped at
the end of the run. Elasticsearch is the plain node of the ``services`` fixture.

Users (passwords fresh per run, recognisable so a test can search output for them):

- ``admin``: the broker's own inter-broker user and a super user; tests read back and create
  topics and ACLs with it.
- ``alice``: an ordinary client allowed everything on every topic and group (by ACL).
- ``processor`` and ``sdk``: no ACL at all; a test grants them the least privilege
  docs/SECURITY.md prescribes and checks that it is enough.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kafka.admin import (
    ACL,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    KafkaAdminClient,
    ResourcePattern,
    ResourceType,
)

from hopscope.core.kafka_security import (
    ENV_SASL_MECHANISM,
    ENV_SASL_PASSWORD,
    ENV_SASL_USERNAME,
    ENV_SECURITY_PROTOCOL,
    ENV_SSL_CAFILE,
    KafkaSecurity,
)
from hopscope.core.settings import default_cache_dir
from hopscope.stack import artifacts, kafka, processes
from hopscope.stack.certs import make_server_certs
from hopscope.stack.java import find_java
from hopscope.stack.ports import LOOPBACK, free_port

MECHANISM = "SCRAM-SHA-512"
START_TIMEOUT_S = 120.0
USERS = ("admin", "alice", "processor", "sdk")


@dataclass(frozen=True)
class SecuredKafka:
    """The running secured broker: where it is, the CA that signed it, who may log in."""

    bootstrap: str
    ca: Path
    log: Path
    passwords: dict[str, str] = field(repr=False)

    @property
    def user(self) -> str:
        return "alice"

    @property
    def password(self) -> str:
        return self.passwords[self.user]

    def security(self, user: str = "alice", password: str | None = None) -> KafkaSecurity:
        """Settings for ``user`` (its real password unless ``password`` is given)."""
        return KafkaSecurity(
            security_protocol="SASL_SSL",
            sasl_mechanism=MECHANISM,
            sasl_username=user,
            sasl_password=self.passwords[user] if password is None else password,
            ssl_cafile=self.ca,
        )

    def options(self, user: str = "alice", **extra: Any) -> dict[str, Any]:
        """kafka-python options for ``user``, plus ``extra`` client settings."""
        return {**self.security(user).client_options(), **extra}

    def env(self, user: str = "alice", password: str | None = None) -> dict[str, str]:
        """The ``HOPSCOPE_KAFKA_*`` variables a deployment would set for ``user``."""
        return {
            ENV_SECURITY_PROTOCOL: "SASL_SSL",
            ENV_SASL_MECHANISM: MECHANISM,
            ENV_SASL_USERNAME: user,
            ENV_SASL_PASSWORD: self.passwords[user] if password is None else password,
            ENV_SSL_CAFILE: str(self.ca),
        }

    def admin_client(self) -> KafkaAdminClient:
        return KafkaAdminClient(bootstrap_servers=self.bootstrap, **self.options("admin"))


def allow(
    principal: str, resource: ResourceType, name: str, *operations: ACLOperation
) -> list[ACL]:
    """ALLOW ACLs for ``principal`` on one literal resource (``*`` for every one)."""
    pattern = ResourcePattern(resource, name, ACLResourcePatternType.LITERAL)
    return [
        ACL(f"User:{principal}", "*", operation, ACLPermissionType.ALLOW, pattern)
        for operation in operations
    ]


def grant(secured: SecuredKafka, acls: list[ACL]) -> None:
    """Create ``acls`` with the admin user and fail on any refused one."""
    admin = secured.admin_client()
    try:
        result = admin.create_acls(acls)
    finally:
        admin.close()
    assert not result["failed"], result["failed"]


def _wait_healthy(secured: SecuredKafka, pid: int, layout: kafka.KafkaLayout) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    options = secured.options("admin")
    while not kafka.is_healthy(secured.bootstrap, options):
        code = processes.exited(pid)
        if code is not None:
            raise RuntimeError(
                f"the secured Kafka broker exited with code {code}:\n"
                f"{processes.log_excerpt(layout.log)}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the secured Kafka broker did not answer an authenticated metadata request "
                f"within {START_TIMEOUT_S:.0f} s:\n{processes.log_excerpt(layout.log)}"
            )
        time.sleep(0.5)


@pytest.fixture(scope="session")
def secured_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredKafka]:
    """Kafka with a ``SASL_SSL`` listener (SCRAM-SHA-512) and ACLs, for this test run."""
    root = tmp_path_factory.mktemp("secured-kafka")
    java = find_java()
    arts = artifacts.fetch_artifacts(default_cache_dir(), java)
    certs = make_server_certs(root / "certs")
    passwords = {user: f"pw-{user}-{secrets.token_urlsafe(12)}" for user in USERS}
    users = [kafka.ScramUser(name, password) for name, password in passwords.items()]
    listener = kafka.SaslSslListener(certs, users[0], mechanism=MECHANISM, authorizer=True)
    layout = kafka.KafkaLayout(root / "kafka")
    layout.root.mkdir(parents=True)
    port, controller_port = free_port(), free_port()
    while controller_port == port:
        controller_port = free_port()
    overrides = kafka.sasl_ssl_overrides(layout, port, controller_port, listener)
    kafka.prepare(java, arts.kafka_libs, layout, port, controller_port, overrides,
                  scram_users=users, scram_mechanism=MECHANISM)  # fmt: skip
    pid = kafka.start(java, arts.kafka_libs, layout)
    secured = SecuredKafka(f"{LOOPBACK}:{port}", certs.ca, layout.log, passwords)
    try:
        _wait_healthy(secured, pid, layout)
        grant(secured, [
            *allow("alice", ResourceType.TOPIC, "*", ACLOperation.ALL),
            *allow("alice", ResourceType.GROUP, "*", ACLOperation.ALL),
        ])  # fmt: skip
        yield secured
    finally:
        processes.stop(pid, layout.marker, timeout=20)
        # The key store and the configuration (inter-broker password) go; the log stays.
        for secret_file in (certs.key, layout.root / "keystore.pem", layout.config):
            secret_file.unlink(missing_ok=True)
