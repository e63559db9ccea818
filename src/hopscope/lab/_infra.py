"""The real parts under the services: PostgreSQL 15 primary and streaming replica, Redis, and
the OpenTelemetry Collector (OTLP/HTTP in, Kafka out).

Every program is looked up on the machine; a missing one raises :class:`MissingToolError`
with the command that installs it. Postgres refuses to run as root: as root the clusters run
as the ``postgres`` system user (the Debian package creates it) in a directory that user can
reach.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from hopscope.core.settings import default_cache_dir
from hopscope.lab._procs import LabState, wait_port
from hopscope.lab.errors import LabError, MissingToolError

POSTGRES_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/local/bin", "/usr/bin")
APT = "apt-get install -y"
# Rows of the risk rules table: enough that aggregating one merchant class scans for a few
# milliseconds, which is what the Redis cache in front of it saves.
RISK_RULE_ROWS = 60_000
ACCOUNTS = 500

SCHEMA = f"""
CREATE TABLE accounts (id integer PRIMARY KEY, balance numeric NOT NULL,
                       version integer NOT NULL DEFAULT 0);
CREATE TABLE entries (id bigserial PRIMARY KEY, account_id integer NOT NULL,
                      payment_id text NOT NULL, amount numeric NOT NULL,
                      at timestamptz NOT NULL DEFAULT now());
CREATE TABLE risk_rules (merchant_class text NOT NULL, max_amount numeric NOT NULL,
                         score real NOT NULL);
INSERT INTO accounts (id, balance) SELECT g, 1000000000 FROM generate_series(1, {ACCOUNTS}) g;
INSERT INTO risk_rules
  SELECT (ARRAY['retail','travel','grocery','fuel','digital','dining'])[1 + g % 6],
         150 + (g % 100), random() FROM generate_series(1, {RISK_RULE_ROWS}) g;
ANALYZE;
"""  # noqa: S608 - module constants, no input


def postgres_bin() -> Path:
    """The directory holding ``initdb``, ``pg_ctl``, ``postgres`` and ``pg_basebackup``."""
    for folder in POSTGRES_DIRS:
        if all((Path(folder) / tool).exists() for tool in ("initdb", "pg_ctl", "postgres")):
            if (Path(folder) / "pg_basebackup").exists():
                return Path(folder)
            if (Path("/usr/lib/postgresql/15/bin") / "pg_basebackup").exists():
                return Path("/usr/lib/postgresql/15/bin")
    raise MissingToolError(
        f"PostgreSQL server programs (initdb, pg_ctl) not found in {', '.join(POSTGRES_DIRS)}: "
        f"install them with `{APT} postgresql-15` (Debian 12)"
    )


def tool(name: str, package: str) -> str:
    """The path of ``name`` on PATH, else :class:`MissingToolError` naming ``package``."""
    found = shutil.which(name)
    if found is None and Path(f"/usr/bin/{name}").exists():
        found = f"/usr/bin/{name}"
    if found is None:
        raise MissingToolError(f"{name} not found: install it with `{APT} {package}`")
    return found


def _as_postgres(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


def postgres_root(state_dir: Path) -> Path:
    """Where the clusters live: in the state directory, or as root in a directory of the
    temporary folder the ``postgres`` user can reach (state directories under root's home or
    pytest's are not traversable by it)."""
    if os.geteuid() != 0:
        return state_dir / "postgres"
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"hopscope-lab-pg-{digest}"


def _run(argv: list[str], what: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)
    if done.returncode != 0:
        raise LabError(f"{what} failed ({done.returncode}): {done.stderr.strip()[-800:]}")
    return done.stdout


def _pg_conf(port: int, socket_dir: Path) -> str:
    return "\n".join(
        [
            "listen_addresses = '127.0.0.1'",
            f"port = {port}",
            f"unix_socket_directories = '{socket_dir}'",
            "max_connections = 100",
            "shared_buffers = 64MB",
            "fsync = off",  # a lab: durability is not what is measured
            "synchronous_commit = off",
            "full_page_writes = off",
            "wal_level = replica",
            "max_wal_senders = 5",
            "hot_standby = on",
            "hot_standby_feedback = on",
            # a replica applying late must not cancel its readers' queries
            "max_standby_streaming_delay = -1",
            "log_min_messages = warning",
            "",
        ]
    )


def start_postgres(state: LabState, primary_port: int, replica_port: int) -> dict[str, Any]:
    """Step 1: initdb the primary, start it, load the schema; step 2: ``pg_basebackup -R``
    the replica from it and start it streaming. Returns the services' ``postgres`` config."""
    binaries = postgres_bin()
    root = postgres_root(state.state_dir)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(mode=0o755, parents=True)
    primary, replica = root / "primary", root / "replica"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    state.postgres_bin = str(binaries)
    # Step 1: the primary.
    _run(
        _as_postgres([str(binaries / "initdb"), "-D", str(primary), "-U", "postgres",
                      "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]),
        "initdb",
    )  # fmt: skip
    with (primary / "postgresql.auto.conf").open("a", encoding="utf-8") as conf:
        conf.write(_pg_conf(primary_port, root))
    state.postgres_dirs.append(str(primary))
    state.save()
    _pg_ctl_start(binaries, primary, state)
    wait_port(primary_port, timeout_s=30, what="postgres primary")
    psql = str(binaries / "psql")
    if not (binaries / "psql").exists():
        psql = tool("psql", "postgresql-client")
    _run(_as_postgres([psql, "-h", "127.0.0.1", "-p", str(primary_port), "-U", "postgres",
                       "-c", "CREATE DATABASE ledger"]), "create database")  # fmt: skip
    _run(_as_postgres([psql, "-h", "127.0.0.1", "-p", str(primary_port), "-U", "postgres",
                       "-d", "ledger", "-v", "ON_ERROR_STOP=1", "-c", SCHEMA]),
         "schema")  # fmt: skip
    # Step 2: the replica, streaming from the primary (-R writes primary_conninfo and
    # standby.signal); a fast checkpoint, or pg_basebackup waits for a spread one (minutes).
    _run(
        _as_postgres([str(binaries / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary_port),
                      "-U", "postgres", "-D", str(replica), "-R", "-X", "stream",
                      "--checkpoint=fast", "--no-sync"]),
        "pg_basebackup",
    )  # fmt: skip
    with (replica / "postgresql.auto.conf").open("a", encoding="utf-8") as conf:
        conf.write(f"port = {replica_port}\n")
    state.postgres_dirs.append(str(replica))
    state.save()
    _pg_ctl_start(binaries, replica, state)
    wait_port(replica_port, timeout_s=30, what="postgres replica")
    return {
        "primary": {"host": "127.0.0.1", "port": primary_port},
        "replica": {"host": "127.0.0.1", "port": replica_port},
        # The clusters themselves (``primary`` above may become an address in front of them).
        "clusters": {
            "primary": {"port": primary_port, "data": str(primary)},
            "replica": {"port": replica_port, "data": str(replica)},
        },
        "dbname": "ledger",
        "user": "postgres",
        "psql": psql,
    }


def _pg_ctl_start(binaries: Path, data: Path, state: LabState) -> None:
    log = data.parent / f"{data.name}.log"
    _run(
        _as_postgres([str(binaries / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
                      "start"]),
        f"pg_ctl start {data.name}",
    )  # fmt: skip


def stop_postgres(state: LabState) -> None:
    """``pg_ctl stop -m fast`` on every cluster the lab started (replica first)."""
    binaries = Path(state.postgres_bin) if state.postgres_bin else None
    for data in reversed(state.postgres_dirs):
        if binaries is None or not (Path(data) / "postmaster.pid").exists():
            continue
        subprocess.run(
            _as_postgres([str(binaries / "pg_ctl"), "-D", data, "-m", "fast", "-w", "stop"]),
            capture_output=True, check=False, timeout=60,
        )  # fmt: skip


def switch_primary(state: LabState) -> None:
    """A primary switchover: ``pg_ctl stop -m fast`` on the primary (its sessions end), then
    ``pg_ctl promote`` on the replica, which returns once the replica accepts writes."""
    pg_ctl = str(Path(state.postgres_bin) / "pg_ctl")
    clusters = state.config["postgres"]["clusters"]
    _run(_as_postgres([pg_ctl, "-D", clusters["primary"]["data"], "-m", "fast", "-w", "stop"]),
         "pg_ctl stop on the primary")  # fmt: skip
    _run(_as_postgres([pg_ctl, "-D", clusters["replica"]["data"], "-w", "-t", "60", "promote"]),
         "pg_ctl promote on the replica")  # fmt: skip


def psql(config: dict[str, Any], role: str, sql: str) -> str:
    """Run ``sql`` on the primary or the replica cluster; its output (unaligned, tuples
    only)."""
    pg = config["postgres"]
    port = pg["clusters"][role]["port"]
    return _run(
        _as_postgres([pg["psql"], "-h", "127.0.0.1", "-p", str(port), "-U",
                      "postgres", "-d", pg["dbname"], "-At", "-c", sql]),
        f"psql on the {role}",
    )  # fmt: skip


def start_redis(state: LabState, port: int) -> None:
    """A Redis server on 127.0.0.1:port, no persistence."""
    redis = tool("redis-server", "redis-server")
    started = state.start(
        "redis",
        [redis, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(state.state_dir)],
    )  # fmt: skip
    wait_port(port, timeout_s=15, what="redis", pid=started.pid)


COLLECTOR_CONFIG = """\
# The lab's Collector: OTLP/HTTP from the services, batch, the kafka exporter writing OTLP
# protobuf keyed by trace id (hopscope's Kafka contract, DESIGN.md §3).
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:${env:LAB_OTLP_HTTP_PORT}
processors:
  batch:
    timeout: 500ms
exporters:
  kafka:
    brokers: ["${env:LAB_KAFKA_BROKERS}"]
    client_id: hopscope-lab-otelcol
    traces:
      topic: ${env:LAB_SPANS_TOPIC}
      encoding: otlp_proto
    logs:
      topic: ${env:LAB_LOGS_TOPIC}
      encoding: otlp_proto
    partition_traces_by_id: true
    partition_logs_by_trace_id: true
    sending_queue:
      block_on_overflow: true
service:
  telemetry:
    logs:
      level: warn
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [kafka]
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [kafka]
"""


def build_script() -> Path:
    """``deploy/reference/otelcol/build-collector.sh`` of this checkout."""
    return repo_root() / "deploy" / "reference" / "otelcol" / "build-collector.sh"


def repo_root() -> Path:
    """The checkout this package runs from (the lab is a developer tool: editable installs)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "deploy" / "reference" / "payments").is_dir():
            return parent
    raise LabError(
        f"the lab's services (deploy/reference/payments/) are not above {here}: run the lab "
        "from a hopscope checkout (make install)"
    )


def collector_binary(*, build: bool) -> Path:
    """The Collector built by ``build-collector.sh`` (cached under HOPSCOPE_CACHE_DIR);
    built now when ``build`` (minutes the first time), else :class:`MissingToolError`."""
    if value := os.environ.get("HOPSCOPE_OTELCOL_BIN"):
        return Path(value)
    cache = default_cache_dir() / "otelcol"
    found = sorted(cache.glob("v*/otelcol-*"), key=lambda p: p.stat().st_mtime)
    found = [p for p in found if p.is_file() and os.access(p, os.X_OK) and p.suffix != ".tmp"]
    if found:
        return found[-1]
    if not build:
        raise MissingToolError(
            f"no Collector under {cache}: build it once with {build_script()} (Go >= 1.25; "
            "several minutes on 2 cores)"
        )
    done = subprocess.run([str(build_script())], stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise LabError(f"building the Collector failed ({done.returncode}); see the output above")
    return Path(done.stdout.strip().splitlines()[-1])


def start_collector(
    state: LabState, binary: Path, *, port: int, brokers: str, spans_topic: str, logs_topic: str
) -> None:
    """The Collector with :data:`COLLECTOR_CONFIG`, its OTLP/HTTP receiver on ``port``."""
    config = state.state_dir / "otelcol.yaml"
    config.write_text(COLLECTOR_CONFIG, encoding="utf-8")
    started = state.start(
        "otelcol",
        [str(binary), "--config", str(config)],
        env={
            "LAB_OTLP_HTTP_PORT": str(port),
            "LAB_KAFKA_BROKERS": brokers,
            "LAB_SPANS_TOPIC": spans_topic,
            "LAB_LOGS_TOPIC": logs_topic,
        },
    )
    wait_port(port, timeout_s=60, what="the Collector", pid=started.pid)
    time.sleep(0.5)
