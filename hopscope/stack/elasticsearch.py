"""Elasticsearch (the integ-test-zip distribution), single node, security off, on loopback.

Elasticsearch refuses to run as root and has no flag to allow it. When the launcher runs as
root it creates a dedicated system user (:data:`ES_USER`) and runs the node as that user; the
node's directories are then owned by it, and its distribution must be readable by it.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hopscope.stack import processes
from hopscope.stack.errors import StackError
from hopscope.stack.java import JavaRuntime
from hopscope.stack.ports import LOOPBACK

ES_USER = "hopscope-es"
# Enough for tests and the demo; Elasticsearch would otherwise take half the machine's RAM.
ES_HEAP = "-Xms1g\n-Xmx1g\n"


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
    def marker(self) -> str:
        """Appears in the node's command line (``-Des.path.conf``): how we recognise it."""
        return str(self.config)


def node_settings(
    layout: EsLayout,
    http_port: int,
    transport_port: int,
    overrides: Mapping[str, str] | None = None,
) -> str:
    """Settings appended to the distribution's elasticsearch.yml."""
    settings = {
        "cluster.name": "hopscope-local",
        "node.name": "hopscope-local-1",
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
    settings.update(overrides or {})
    return "\n# hopscope local stack\n" + "".join(f"{k}: {v}\n" for k, v in settings.items())


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
) -> Path:
    """Write the node's configuration; return the Elasticsearch home to run from.

    As root, also create the system user, hand it the node's directories, and mirror the
    distribution into the state directory when the user cannot reach the cache.
    """
    if layout.config.exists():
        shutil.rmtree(layout.config)
    layout.root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(es_home / "config", layout.config)
    with (layout.config / "elasticsearch.yml").open("a") as yml:
        yml.write(node_settings(layout, http_port, transport_port, overrides))
    (layout.config / "jvm.options.d").mkdir(exist_ok=True)
    (layout.config / "jvm.options.d" / "hopscope-heap.options").write_text(ES_HEAP)
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


def _get(url: str, timeout: float) -> tuple[int, dict[str, str], bytes]:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an HTTP URL: {url!r}")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers.items()), error.read()


def health(url: str, timeout: float = 2.0) -> str | None:
    """Cluster status ('green'/'yellow'/'red') of a genuine Elasticsearch, else None.

    The ``X-Elastic-Product: Elasticsearch`` header is required: without it the Python client
    refuses to talk to the server (OpenSearch, a proxy's error page...).
    """
    try:
        status, headers, body = _get(f"{url}/_cluster/health", timeout)
    except (OSError, ValueError):
        return None
    product = {k.lower(): v for k, v in headers.items()}.get("x-elastic-product")
    if status != 200 or product != "Elasticsearch":
        return None
    return str(json.loads(body).get("status"))


def is_healthy(url: str) -> bool:
    """True when the cluster is yellow or green (a one-node cluster is yellow with replicas)."""
    return health(url) in {"yellow", "green"}


def version(url: str) -> str | None:
    """The node's version number.

    Read from ``GET /_nodes/_local``: the integ-test-zip lacks the ``rest-root`` module, so
    ``GET /`` (and the Python client's ``info()``) answers 405 there.
    """
    try:
        status, _headers, body = _get(f"{url}/_nodes/_local?filter_path=nodes.*.version", 2.0)
    except (OSError, ValueError):
        return None
    if status != 200:
        return None
    nodes = json.loads(body).get("nodes", {})
    return next((str(node["version"]) for node in nodes.values()), None)
