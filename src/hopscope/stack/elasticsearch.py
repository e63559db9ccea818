"""Elasticsearch (the integ-test-zip distribution), single node, security off, on loopback.

Elasticsearch refuses to run as root and has no flag to allow it. When the launcher runs as
root it creates a dedicated system user (:data:`ES_USER`) and runs the node as that user; the
node's directories are then owned by it, and its distribution must be readable by it.

A secured node (the security module ships in the zip) takes three more steps, for the tests
of authentication and TLS:

1. :func:`prepare` with :func:`security_settings` as overrides: security on, HTTPS with PEM
   files under ``config/certs`` (Elasticsearch reads TLS files only inside its config
   directory). Transport TLS is not needed: a ``single-node`` cluster bound to loopback passes
   the bootstrap checks without it;
2. :func:`write_certs`: a throwaway CA and the node's HTTP certificate, handed to the system
   user;
3. :func:`write_roles` and :func:`write_users`: file-based roles and file-realm users. The
   integ-test-zip cannot create the security index (see :func:`write_roles`), so these are its
   only principals: no native users, no API keys.

The probes (:func:`health`, :func:`version`) take an ``Authorization`` header value and an SSL
context for such a node.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pwd
import secrets
import shutil
import ssl
import stat
import subprocess
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hopscope.stack import processes
from hopscope.stack.certs import ServerCerts, make_server_certs
from hopscope.stack.errors import StackError
from hopscope.stack.java import JavaRuntime
from hopscope.stack.ports import LOOPBACK

ES_USER = "hopscope-es"
# Enough for tests and the demo; Elasticsearch would otherwise take half the machine's RAM.
ES_HEAP_MB = 1024
# Each node of a local cluster: three of them share the machine with Kafka and the tests.
CLUSTER_HEAP_MB = 512
# Relative to the config directory, the only place Elasticsearch reads TLS files from.
CERTS_DIR = "certs"


@dataclass(frozen=True)
class EsLayout:
    """Where one Elasticsearch node keeps its files under the stack's state directory."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def home_mirror(self) -> Path:
        return self.root / "home"

    @property
    def log(self) -> Path:
        return self.root / "console.log"

    @property
    def pid_file(self) -> Path:
        return self.root / "es.pid"

    @property
    def certs(self) -> Path:
        """The HTTP certificate, its key and the CA of a secured node."""
        return self.config / CERTS_DIR

    @property
    def marker(self) -> str:
        """Appears in the node's command line (``-Des.path.conf``): how we recognise it."""
        return str(self.config)


@dataclass(frozen=True)
class EsCluster:
    """This node's place in a local multi-node cluster: its number (from 1) and every node's
    transport port (the seed hosts), in node order."""

    node: int
    transport_ports: tuple[int, ...]

    @property
    def node_names(self) -> list[str]:
        return [node_name(n) for n in range(1, len(self.transport_ports) + 1)]


def node_name(node: int) -> str:
    """The name of node ``node`` (from 1) of the local stack."""
    return f"hopscope-local-{node}"


def node_settings(
    layout: EsLayout,
    http_port: int,
    transport_port: int,
    overrides: Mapping[str, str] | None = None,
    cluster: EsCluster | None = None,
) -> str:
    """Settings appended to the distribution's elasticsearch.yml.

    Without ``cluster``, a single-node cluster. With it, a node that discovers its peers on
    their loopback transport ports; every node is master-eligible and holds data, and the
    first start elects a master among all of them (``cluster.initial_master_nodes``, ignored
    once the cluster has formed). Bound to loopback only, the nodes run in development mode
    (no bootstrap checks), and with security off the transport needs no TLS.
    """
    settings = {
        "cluster.name": "hopscope-local",
        "node.name": node_name(1),
        "discovery.type": "single-node",
        "network.host": LOOPBACK,
        "http.port": str(http_port),
        "transport.port": str(transport_port),
        "path.data": str(layout.data),
        "path.logs": str(layout.logs),
        # A local development node: no TLS, no users (the security module ships in the zip).
        "xpack.security.enabled": "false",
        # Disks on shared machines are often above the 90 % watermark; never go read-only.
        "cluster.routing.allocation.disk.threshold_enabled": "false",
        # Tests delete their indices by pattern (hopscope-test-xyz-*).
        "action.destructive_requires_name": "false",
    }
    if cluster is not None:
        del settings["discovery.type"]
        settings["cluster.name"] = "hopscope-local-cluster"
        settings["node.name"] = node_name(cluster.node)
        seeds = ", ".join(f'"{LOOPBACK}:{port}"' for port in cluster.transport_ports)
        settings["discovery.seed_hosts"] = f"[{seeds}]"
        names = ", ".join(f'"{name}"' for name in cluster.node_names)
        settings["cluster.initial_master_nodes"] = f"[{names}]"
    settings.update(overrides or {})
    return "\n# hopscope local stack\n" + "".join(f"{k}: {v}\n" for k, v in settings.items())


def security_settings() -> dict[str, str]:
    """Overrides for :func:`prepare` that secure the node: authentication on, HTTP over TLS.

    The PEM paths are relative to the config directory; :func:`write_certs` creates the files.
    The transport layer stays plain: a ``single-node`` cluster on loopback has no peers, and
    the bootstrap check that demands transport TLS is skipped for it.
    """
    return {
        "xpack.security.enabled": "true",
        "xpack.security.http.ssl.enabled": "true",
        "xpack.security.http.ssl.certificate": f"{CERTS_DIR}/server.crt",
        "xpack.security.http.ssl.key": f"{CERTS_DIR}/server.key",
        "xpack.security.http.ssl.certificate_authorities": f"{CERTS_DIR}/ca.crt",
    }


def write_certs(layout: EsLayout) -> ServerCerts:
    """Create the CA and the node's HTTP certificate in ``layout.certs`` (after :func:`prepare`).

    As root the files go to the system user, which must read the private key (owner-only).
    """
    certs = make_server_certs(layout.certs)
    _hand_to_user([layout.certs, certs.ca, certs.cert, certs.key])
    return certs


def write_roles(layout: EsLayout, roles: Mapping[str, Mapping[str, Any]]) -> None:
    """Define file-based roles in ``config/roles.yml`` (after :func:`prepare`).

    Each role is the JSON body ``PUT /_security/role/<name>`` takes (JSON is YAML). File roles
    need no security index: the integ-test-zip cannot create one (its mapping uses analyzers
    of the ``analysis-common`` module, which the zip lacks), so native roles, native users and
    API keys are unavailable there, and the file realm is how such a node gets its principals.
    """
    text = "".join(f"{json.dumps(name)}: {json.dumps(role)}\n" for name, role in roles.items())
    (layout.config / "roles.yml").write_text(text)
    _hand_to_user([layout.config / "roles.yml"])


def write_users(layout: EsLayout, users: Mapping[str, tuple[str, Sequence[str]]]) -> None:
    """Define file-realm users (name -> (password, roles)) in ``config/users`` and
    ``config/users_roles`` (after :func:`prepare`), replacing the ones there.

    The files are what ``bin/elasticsearch-users useradd`` writes, with the passwords as
    salted PBKDF2 hashes (``{PBKDF2}<cost>$<salt>$<key>``, HMAC-SHA512, one of the file realm's
    documented hash formats), computed here rather than by starting a JVM per user. Neither
    file holds a password in clear; both are readable by their owner only.
    """
    lines = []
    members: dict[str, list[str]] = {}
    for name, (password, roles) in users.items():
        if not name or any(c in name for c in ":, \n") or not password:
            raise ValueError(f"unusable file-realm user name or empty password for {name!r}")
        lines.append(f"{name}:{pbkdf2_hash(password)}\n")
        for role in roles:
            members.setdefault(role, []).append(name)
    written = [layout.config / "users", layout.config / "users_roles"]
    texts = ["".join(lines), "".join(f"{r}:{','.join(n)}\n" for r, n in members.items())]
    for path, text in zip(written, texts, strict=True):
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
        path.write_text(text)
    _hand_to_user(written)


# Elasticsearch's default PBKDF2 cost; its hash parser expects 32 bytes of salt and of key.
PBKDF2_COST = 10_000


def pbkdf2_hash(password: str, salt: bytes | None = None) -> str:
    """A file-realm password hash, as ``elasticsearch-users`` writes it with
    ``xpack.security.authc.password_hashing.algorithm: pbkdf2``.

    PBKDF2 with HMAC-SHA512, 10,000 rounds, a 256-bit key; salt and key in base64. ``salt``
    (32 bytes) is random unless given (for a known-answer check).
    """
    salt = secrets.token_bytes(32) if salt is None else salt
    key = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_COST, 32)
    encode = base64.b64encode
    return f"{{PBKDF2}}{PBKDF2_COST}${encode(salt).decode()}${encode(key).decode()}"


def _hand_to_user(paths: Sequence[Path]) -> None:
    """As root, give files written after :func:`prepare` to the node's system user."""
    if not _must_drop_root():
        return
    user = ensure_user()
    for path in paths:
        os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)


def _must_drop_root() -> bool:
    return os.geteuid() == 0


def ensure_user() -> pwd.struct_passwd:
    """Create the dedicated system user when missing; return its passwd entry."""
    try:
        return pwd.getpwnam(ES_USER)
    except KeyError:
        pass
    proc = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", ES_USER],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0 and "already exists" not in proc.stderr:
        raise StackError(
            f"Elasticsearch refuses to run as root, and creating the system user {ES_USER!r} "
            f"failed: {proc.stderr.strip()} (useradd exit {proc.returncode})"
        )
    return pwd.getpwnam(ES_USER)


def _blocking_parent(path: Path, uid: int) -> Path | None:
    """The first directory on the way to ``path`` that user ``uid`` cannot traverse."""
    for parent in [*reversed(path.parents), path]:
        if not parent.exists():
            return None
        info = parent.stat()
        if info.st_uid == uid:
            continue
        if not info.st_mode & stat.S_IXOTH:
            return parent
    return None


def _mirror_tree(source: Path, target: Path) -> None:
    """Recreate ``source`` at ``target`` with hard links (copies across file systems)."""
    if target.exists():
        shutil.rmtree(target)

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link, symlinks=True)
    for directory, _subdirs, _files in os.walk(target):
        Path(directory).chmod(0o755)


def prepare(
    es_home: Path,
    layout: EsLayout,
    http_port: int,
    transport_port: int,
    overrides: Mapping[str, str] | None = None,
    *,
    cluster: EsCluster | None = None,
    heap_mb: int = ES_HEAP_MB,
) -> Path:
    """Write the node's configuration; return the Elasticsearch home to run from.

    ``cluster``: the node's place in a multi-node cluster (:func:`node_settings`); ``heap_mb``
    its fixed JVM heap.

    As root, also create the system user, hand it the node's directories, and mirror the
    distribution into the state directory when the user cannot reach the cache.
    """
    if layout.config.exists():
        shutil.rmtree(layout.config)
    layout.root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(es_home / "config", layout.config)
    with (layout.config / "elasticsearch.yml").open("a") as yml:
        yml.write(node_settings(layout, http_port, transport_port, overrides, cluster))
    (layout.config / "jvm.options.d").mkdir(exist_ok=True)
    (layout.config / "jvm.options.d" / "hopscope-heap.options").write_text(
        f"-Xms{heap_mb}m\n-Xmx{heap_mb}m\n"
    )
    for directory in (layout.data, layout.logs, layout.tmp):
        directory.mkdir(parents=True, exist_ok=True)

    run_home = es_home
    if _must_drop_root():
        user = ensure_user()
        blocked = _blocking_parent(layout.root, user.pw_uid)
        if blocked is not None:
            raise StackError(
                f"Elasticsearch runs as the system user {ES_USER!r}, which cannot reach the "
                f"state directory {layout.root} ({blocked} is not traversable by other users); "
                f"choose a --state-dir elsewhere (e.g. under /var/lib or /tmp)"
            )
        if _blocking_parent(es_home, user.pw_uid) is not None:
            _mirror_tree(es_home, layout.home_mirror)
            run_home = layout.home_mirror
        for path in [layout.root, *layout.root.rglob("*")]:
            if run_home == layout.home_mirror and layout.home_mirror in [path, *path.parents]:
                continue  # the distribution stays root-owned and read-only
            os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)
        _check_readable_by_user(run_home / "lib")
    return run_home


def _check_readable_by_user(path: Path) -> None:
    """Fail early, naming the path, when the system user cannot list ``path``."""
    proc = subprocess.run(
        ["runuser", "-u", ES_USER, "--", "ls", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise StackError(
            f"the Elasticsearch system user {ES_USER!r} cannot read {path}: {proc.stderr.strip()}"
        )


def start(java: JavaRuntime, run_home: Path, layout: EsLayout) -> int:
    """Start the node; return the pid of its launcher (the process group id)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(layout.root),
        # bin/elasticsearch ignores JAVA_HOME; ES_JAVA_HOME picks the runtime.
        "ES_JAVA_HOME": str(java.home),
        "ES_PATH_CONF": str(layout.config),
        "ES_TMPDIR": str(layout.tmp),
    }
    command = [str(run_home / "bin" / "elasticsearch"), "-p", str(layout.pid_file)]
    user = ES_USER if _must_drop_root() else None
    return processes.start(command, log_file=layout.log, env=env, cwd=layout.root, user=user).pid


def _get(
    url: str,
    timeout: float,
    authorization: str | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[int, dict[str, str], bytes]:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an HTTP URL: {url!r}")
    headers = {"Accept": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    request = urllib.request.Request(url, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers.items()), error.read()


def health(
    url: str,
    timeout: float = 2.0,
    *,
    authorization: str | None = None,
    context: ssl.SSLContext | None = None,
) -> str | None:
    """Cluster status ('green'/'yellow'/'red') of a genuine Elasticsearch, else None.

    The ``X-Elastic-Product: Elasticsearch`` header is required: without it the Python client
    refuses to talk to the server (OpenSearch, a proxy's error page...). A secured node needs
    ``authorization`` (an ``Authorization`` header value) and, for a private CA, ``context``;
    without them it answers 401 or fails the handshake, and the answer is None.
    """
    try:
        status, headers, body = _get(f"{url}/_cluster/health", timeout, authorization, context)
    except (OSError, ValueError):
        return None
    product = {k.lower(): v for k, v in headers.items()}.get("x-elastic-product")
    if status != 200 or product != "Elasticsearch":
        return None
    return str(json.loads(body).get("status"))


def is_healthy(
    url: str, *, authorization: str | None = None, context: ssl.SSLContext | None = None
) -> bool:
    """True when the cluster is yellow or green (a one-node cluster is yellow with replicas)."""
    return health(url, authorization=authorization, context=context) in {"yellow", "green"}


def node_count(url: str, timeout: float = 2.0) -> int:
    """Nodes in the cluster as ``url`` sees it (0 when it does not answer or has no master)."""
    try:
        status, _headers, body = _get(f"{url}/_cluster/health", timeout)
    except (OSError, ValueError):
        return 0
    return int(json.loads(body).get("number_of_nodes", 0)) if status == 200 else 0


def version(
    url: str, *, authorization: str | None = None, context: ssl.SSLContext | None = None
) -> str | None:
    """The node's version number.

    Read from ``GET /_nodes/_local``: the integ-test-zip lacks the ``rest-root`` module, so
    ``GET /`` (and the Python client's ``info()``) answers 405 there. ``authorization`` and
    ``context`` as for :func:`health`.
    """
    try:
        status, _headers, body = _get(
            f"{url}/_nodes/_local?filter_path=nodes.*.version", 2.0, authorization, context
        )
    except (OSError, ValueError):
        return None
    if status != 200:
        return None
    nodes = json.loads(body).get("nodes", {})
    return next((str(node["version"]) for node in nodes.values()), None)
