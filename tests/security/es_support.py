"""A secured Elasticsearch node for the security tests: HTTPS with a private CA, roles, users.

The node is the same integ-test-zip distribution the local stack runs, started through
``hopscope.stack.elasticsearch`` with security on (see that module's docstring for the steps),
its own ports and a temporary state directory under /tmp (mode 755: when the tests run as root
the node runs as a system user, which must traverse it).

Its principals are file-based, written before the start: roles in ``roles.yml`` (the JSON of
``hopscope.core.es_security``'s role functions, as ``PUT /_security/role`` would take it) and
file-realm users, each with a fresh random password. The zip cannot create the security index
(its mapping needs the ``analysis-common`` module), so native roles, native users and API keys
do not exist on this node.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elastic_transport import TransportError
from elasticsearch import ApiError, AuthenticationException, Elasticsearch

from hopscope.core.es_security import EsSecurity, es_client
from hopscope.core.settings import default_cache_dir
from hopscope.stack import artifacts, processes
from hopscope.stack import elasticsearch as es
from hopscope.stack.errors import ServiceExitedError
from hopscope.stack.java import find_java
from hopscope.stack.ports import LOOPBACK, free_port

ADMIN_USER = "hopscope-admin"
START_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class SecuredNode:
    """A running secured node: its HTTPS URL, the CA file, and every user's settings."""

    url: str
    ca: Path
    users: dict[str, EsSecurity] = field(repr=False)
    layout: es.EsLayout

    @property
    def admin(self) -> EsSecurity:
        return self.users[ADMIN_USER]

    def admin_client(self) -> Elasticsearch:
        return es_client(self.url, self.admin, request_timeout=60)

    def security(self, **credentials: Any) -> EsSecurity:
        """Settings trusting this node's CA with the given credentials."""
        return EsSecurity(ca_certs=self.ca, **credentials)


@contextlib.contextmanager
def secured_node(
    roles: Mapping[str, Mapping[str, Any]], users: Mapping[str, Sequence[str]]
) -> Iterator[SecuredNode]:
    """Start a secured single node with these roles and users (name -> roles) plus a
    superuser; wait until it answers over HTTPS with auth; stop it and delete its files after."""
    java = find_java(None)
    arts = artifacts.fetch_artifacts(default_cache_dir(), java)
    root = Path(tempfile.mkdtemp(prefix="hopscope-es-secured-", dir="/tmp"))
    root.chmod(0o755)
    layout = es.EsLayout(root / "elasticsearch")
    http_port = free_port()
    transport_port = free_port()
    while transport_port == http_port:
        transport_port = free_port()
    pid = 0
    try:
        run_home = es.prepare(
            arts.es_home, layout, http_port, transport_port, es.security_settings()
        )
        certs = es.write_certs(layout)
        es.write_roles(layout, roles)
        accounts = {
            name: (f"pw-{secrets.token_urlsafe(16)}", list(user_roles))
            for name, user_roles in {ADMIN_USER: ["superuser"], **users}.items()
        }
        es.write_users(layout, accounts)
        settings = {
            name: EsSecurity(username=name, password=password, ca_certs=certs.ca)
            for name, (password, _roles) in accounts.items()
        }
        pid = es.start(java, run_home, layout)
        url = f"https://{LOOPBACK}:{http_port}"
        _wait_healthy(url, settings[ADMIN_USER], pid, layout)
        yield SecuredNode(url=url, ca=certs.ca, users=settings, layout=layout)
    finally:
        processes.stop(pid, layout.marker, timeout=30)
        shutil.rmtree(root, ignore_errors=True)


def _wait_healthy(url: str, admin: EsSecurity, pid: int, layout: es.EsLayout) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        code = processes.exited(pid)
        if code is not None:
            raise ServiceExitedError(
                f"the secured Elasticsearch exited with code {code}; last lines of "
                f"{layout.log}:\n{processes.log_excerpt(layout.log)}"
            )
        if es.is_healthy(url, authorization=admin.authorization(), context=admin.ssl_context()):
            return
        _refuse_wrong_credentials(url, admin)
        time.sleep(0.5)
    raise ServiceExitedError(
        f"the secured Elasticsearch did not become healthy within {START_TIMEOUT_S:.0f} s; "
        f"last lines of {layout.log}:\n{processes.log_excerpt(layout.log)}"
    )


def _refuse_wrong_credentials(url: str, admin: EsSecurity) -> None:
    """Fail at once when the started node answers 401 to the superuser: waiting cannot help."""
    try:
        socket.create_connection((LOOPBACK, int(url.rsplit(":", 1)[1])), timeout=2).close()
    except OSError:
        return  # not listening yet
    with es_client(url, admin, request_timeout=5, max_retries=0) as client:
        try:
            client.security.authenticate()
        except AuthenticationException:
            raise ServiceExitedError(
                f"the secured Elasticsearch at {url} refuses the file-realm superuser "
                f"{ADMIN_USER!r}: its users file was not understood"
            ) from None
        except (TransportError, ApiError):
            pass  # still starting
