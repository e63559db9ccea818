"""``lab up``, ``lab run`` and ``lab down``: the reference payment system end to end.

``up`` starts, in order: Postgres primary and replica, Redis, the Collector (OTLP/HTTP →
Kafka), the issuer stub, the bank adapter behind the lab's TCP proxy, the ledger, risk, the
payment nodes and the gateway; every process is recorded by pid in ``state.json``. ``run``
drives traffic (a warm-up, a baseline, then the fault window), injects the fault, writes its
ground truth, runs the processors over the topics (``hopscope process --drain``) and ends with
``hopscope analyze report`` over the fault window against the baseline. ``down`` stops what
``up`` started, by pid, and the Postgres clusters with ``pg_ctl``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hopscope.lab._infra import (
    collector_binary,
    postgres_root,
    repo_root,
    start_collector,
    start_postgres,
    start_redis,
    stop_postgres,
)
from hopscope.lab._procs import LabState, free_port, wait_port
from hopscope.lab.errors import LabError
from hopscope.lab.faults import make_fault, remove_fault_cgroups

PAYMENT_NODES = ("payment-1", "payment-2", "payment-3")
# Seconds of traffic before the baseline window opens (connection pools, caches warm up).
WARMUP_S = 15.0
# Seconds after the load stops for the SDKs (0.5 s batches) and the Collector to flush.
FLUSH_S = 4.0


@dataclass(frozen=True)
class LabOptions:
    """Where the lab runs and what it writes to.

    Attributes:
        state_dir: state file, logs, configuration, ground truth and reports.
        spans_topic, logs_topic: the Collector's Kafka topics.
        index_prefix: the processors' Elasticsearch index prefix.
        lb: the gateway's balancing strategy (``round_robin``, ``least_conn``, ``ip_hash``).
        build_collector: build the Collector when none is cached (minutes).
        config: the user's ``hopscope.toml`` (the root ``--config``), whose tables the lab's
            own file keeps for the processors it starts: ``[semconv]`` statement rules and
            endpoints (after the lab's), ``[process]`` defaults. None: the lab's map alone.
    """

    state_dir: Path
    spans_topic: str = "otlp_spans"
    logs_topic: str = "otlp_logs"
    index_prefix: str = "hopscope-lab"
    lb: str = "round_robin"
    build_collector: bool = True
    config: Path | None = None


def _payments_dir() -> Path:
    return repo_root() / "deploy" / "reference" / "payments"


def _kafka_bootstrap() -> str:
    bootstrap = os.environ.get("HOPSCOPE_KAFKA_BOOTSTRAP")
    if not bootstrap or not os.environ.get("HOPSCOPE_ES_URL"):
        raise LabError(
            "the lab needs Kafka and Elasticsearch: set HOPSCOPE_KAFKA_BOOTSTRAP and "
            'HOPSCOPE_ES_URL (eval "$(hopscope stack env)" after `hopscope stack up`)'
        )
    return bootstrap


def start_service(state: LabState, service: str, node: str) -> None:
    """Start one service process of ``deploy/reference/payments`` and wait for its port."""
    config_path = state.state_dir / "lab.json"
    config = state.config
    ports = {"gateway": config["gateway"]["port"], "risk": config["risk"]["port"],
             "ledger": config["ledger"]["port"], "bank": config["bank"]["port"],
             "issuer": config["issuer"]["port"]}  # fmt: skip
    for entry in config["payment_nodes"]:
        ports[entry["node"]] = entry["port"]
    argv = [sys.executable, str(_payments_dir() / f"{service}.py"), "--config", str(config_path),
            "--node", node]  # fmt: skip
    if service == "risk" and shutil.which("taskset") and os.cpu_count():
        # pinned, so the cpu fault's stress-ng competes with it on that core
        argv = ["taskset", "-c", str(config["risk"]["cpu"]), *argv]
    started = state.start(node, argv, cwd=_payments_dir())
    port = ports[node] if node in ports else ports[service]
    wait_port(port, timeout_s=60, what=f"{service} ({node})", pid=started.pid)


def up(options: LabOptions) -> LabState:
    """Start everything; returns the state (``state.json`` in ``options.state_dir``)."""
    brokers = _kafka_bootstrap()
    options.state_dir.mkdir(parents=True, exist_ok=True)
    if (options.state_dir / "state.json").exists():
        raise LabError(f"a lab is already up in {options.state_dir}: `hopscope lab down` first")
    binary = collector_binary(build=options.build_collector)
    state = LabState(state_dir=options.state_dir)
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    control = options.state_dir / "proxy-bank.json"
    control.write_text(json.dumps({"latency_ms": 0}), encoding="utf-8")
    config: dict[str, Any] = {
        "run_id": run_id,
        "otlp_http_endpoint": "",
        "gateway": {"port": free_port(), "lb": options.lb, "attempts": 3, "timeout_s": 1.5},
        "payment_nodes": [{"node": n, "port": free_port()} for n in PAYMENT_NODES],
        "risk": {"port": free_port(), "cpu": (os.cpu_count() or 1) - 1},
        "ledger": {"port": free_port()},
        "bank": {"port": free_port()},
        "issuer": {"port": free_port()},
        "redis": {"port": free_port()},
        "proxies": {"bank": {"port": free_port(), "control": str(control)}},
        "kafka": {"spans_topic": options.spans_topic, "logs_topic": options.logs_topic},
        "index_prefix": options.index_prefix,
    }
    otlp_port = free_port()
    config["otlp_http_endpoint"] = f"http://127.0.0.1:{otlp_port}"
    state.config = config
    state.save()
    try:
        config["postgres"] = start_postgres(state, free_port(), free_port())
        # The services reach the primary through an address of its own (the lab's proxy, as a
        # virtual IP or a pooler in front of a database), which a switchover moves.
        postgres_control = options.state_dir / "proxy-postgres.json"
        postgres_control.write_text(json.dumps({"latency_ms": 0}), encoding="utf-8")
        config["proxies"]["postgres"] = {"port": free_port(), "control": str(postgres_control)}
        config["postgres"]["primary"] = {
            "host": "127.0.0.1", "port": config["proxies"]["postgres"]["port"]
        }  # fmt: skip
        start_redis(state, config["redis"]["port"])
        start_collector(state, binary, port=otlp_port, brokers=brokers,
                        spans_topic=options.spans_topic, logs_topic=options.logs_topic)  # fmt: skip
        config["urls"] = {
            "risk": f"http://127.0.0.1:{config['risk']['port']}",
            "ledger": f"http://127.0.0.1:{config['ledger']['port']}",
            "bank": f"http://127.0.0.1:{config['proxies']['bank']['port']}",
            "issuer": f"http://127.0.0.1:{config['issuer']['port']}",
        }
        state.config = config
        state.save()
        (options.state_dir / "lab.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        (options.state_dir / "hopscope.toml").write_text(
            endpoint_map(config, user_config(options.config)), encoding="utf-8"
        )
        targets = {"bank": config["bank"]["port"],
                   "postgres": config["postgres"]["clusters"]["primary"]["port"]}  # fmt: skip
        for name, target in targets.items():
            proxy = config["proxies"][name]
            started = state.start(f"proxy-{name}", [
                sys.executable, "-m", "hopscope.lab.proxy", "--listen", str(proxy["port"]),
                "--target", str(target), "--control", proxy["control"]])  # fmt: skip
            wait_port(proxy["port"], timeout_s=20, what=f"the {name} proxy", pid=started.pid)
        for service, node in [("issuer", "issuer-1"), ("bank", "bank-1"), ("ledger", "ledger-1"),
                              ("risk", "risk-1")]:  # fmt: skip
            start_service(state, service, node)
        for node in PAYMENT_NODES:
            start_service(state, "payment", node)
        start_service(state, "gateway", "gateway-1")
    except BaseException:
        down(options.state_dir)
        raise
    return state


def user_config(path: Path | None) -> dict[str, Any]:
    """The tables of the user's ``hopscope.toml`` (empty without one)."""
    if path is None:
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise LabError(f"cannot read the configuration {path}: {error}") from error


def _toml(value: Any) -> str:
    """A TOML value: strings quoted (JSON escapes are TOML's), lists and tables inline."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value), ensure_ascii=False)


def _user_tables(user: dict[str, Any]) -> list[str]:
    """The user's tables as TOML lines: ``[semconv]``'s statement rules and endpoints as arrays
    of tables (the lab's endpoints come first: the first entry that matches wins), every other
    table as it was."""
    lines: list[str] = []
    semconv = dict(user.get("semconv") or {})
    for array in ("statements", "endpoints"):
        for entry in semconv.pop(array, None) or []:
            lines.append(f"[[semconv.{array}]]")
            lines += [f"{json.dumps(k)} = {_toml(v)}" for k, v in entry.items()]
            lines.append("")
    for name, table in [("semconv", semconv), *((k, v) for k, v in user.items() if k != "semconv")]:
        if isinstance(table, dict) and table:
            lines.append(f"[{json.dumps(name)}]")
            lines += [f"{json.dumps(k)} = {_toml(v)}" for k, v in table.items()]
            lines.append("")
    return lines


def endpoint_map(config: dict[str, Any], user: dict[str, Any] | None = None) -> str:
    """The lab's ``hopscope.toml``: its endpoint map (``[[semconv.endpoints]]``), which
    names what the standard instrumentations record only as ``server.address`` and
    ``server.port`` (derive/semconv.py in the processors), then the tables of the user's
    configuration (``user``, see :func:`_user_tables`)."""
    rows: list[tuple[int, str, str, dict[str, str]]] = []
    pg = config.get("postgres", {})
    if pg:
        rows.append((pg["primary"]["port"], "postgres", "ledger-primary", {"db_role": "primary"}))
        rows.append((pg["replica"]["port"], "postgres", "ledger-replica-1", {"db_role": "replica"}))
    rows.append((config["redis"]["port"], "redis", "redis-1", {"cache": "risk-rules"}))
    for entry in config["payment_nodes"]:
        rows.append((entry["port"], "payment", entry["node"], {}))
    for service in ("risk", "ledger", "issuer"):
        rows.append((config[service]["port"], service, f"{service}-1", {}))
    rows.append((config["proxies"]["bank"]["port"], "bank", "bank-1", {}))
    lines = ["# Written by `hopscope lab up`: what each loopback port of the lab is.", ""]
    for port, service, node, extra in rows:
        lines += ["[[semconv.endpoints]]", 'address = "127.0.0.1"', f"port = {port}",
                  f'service = "{service}"', f'node = "{node}"']  # fmt: skip
        lines += [f'{key} = "{value}"' for key, value in extra.items()]
        lines.append("")
    if user:
        lines += ["# From the user's configuration.", "", *_user_tables(user)]
    return "\n".join(lines)


def down(state_dir: Path) -> list[str]:
    """Stop every process ``up`` started (by pid, newest first) and the Postgres clusters;
    returns the names stopped. The state directory's logs and reports stay."""
    state = LabState.load(state_dir)
    stopped = []
    for process in reversed(list(state.processes)):
        state.stop(process.name)
        stopped.append(process.name)
    remove_fault_cgroups(state)
    stop_postgres(state)
    root = postgres_root(state_dir)
    if root.exists():
        shutil.rmtree(root, ignore_errors=True)
    state.path.unlink(missing_ok=True)
    return stopped


def _iso(moment: float) -> str:
    return (
        datetime.fromtimestamp(moment, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


@dataclass(frozen=True)
class RunResult:
    """What ``lab run`` produced: the ground truth, the report (JSON) and their files."""

    ground_truth: dict[str, Any]
    report: dict[str, Any]
    ground_truth_path: Path
    report_path: Path
    load: dict[str, Any]


def _hopscope(
    *args: str, stdout: Any = None, config: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOPSCOPE_CONFIG": str(config)} if config else None
    return subprocess.run(
        [sys.executable, "-m", "hopscope.cli", *args], text=True, check=False, stdout=stdout,
        env=env,
    )  # fmt: skip


def drive(
    state: LabState, fault_name: str, seconds: float, *, rate: float = 8.0,
    progress: Any = print,
) -> dict[str, Any]:  # fmt: skip
    """Traffic for ``seconds``: a warm-up of :data:`WARMUP_S`, the baseline until half time,
    then the fault until the end; returns the ground truth (also written to
    ``ground-truth-<fault>.json``)."""
    fault = make_fault(fault_name)
    loadgen = state.start("loadgen", [
        sys.executable, str(_payments_dir() / "loadgen.py"), "--config",
        str(state.state_dir / "lab.json"), "--rate", str(rate)])  # fmt: skip
    began = time.time()
    baseline_from = began + min(WARMUP_S, seconds / 4)
    fault_from = began + seconds / 2
    progress(f"lab: traffic at {rate}/s; baseline from {_iso(baseline_from)}")
    time.sleep(max(0.0, fault_from - time.time()))
    fault_from = time.time()
    progress(f"lab: injecting {fault.name}: {fault.what}")
    try:
        fault.inject(state)
        time.sleep(max(0.0, began + seconds - time.time()))
        fault_to = time.time()
    finally:
        fault.revert(state)
    progress(f"lab: {fault.name} reverted")
    state.stop(loadgen.name, timeout_s=20)
    truth = {
        **fault.ground_truth(),
        "from": _iso(fault_from),
        "to": _iso(fault_to),
        "baseline": {"from": _iso(baseline_from), "to": _iso(fault_from)},
        "rate_per_s": rate,
        "load": _last_json_line(Path(loadgen.log)),
        "run_id": state.config.get("run_id"),
    }
    path = state.state_dir / f"ground-truth-{fault.name}.json"
    path.write_text(json.dumps(truth, indent=2), encoding="utf-8")
    return truth


def process(options: LabOptions, state: LabState, *, group: str) -> None:
    """``hopscope process --drain`` over the lab's topics, with the lab's endpoint map. The
    records are also archived as Parquet in ``<state dir>/archive`` (``--archive-dir``): the
    run's windows stay readable after its indices are gone (``benchmarks/rca_accuracy.py
    --lab-dir`` reads them with the ground truth's bounds)."""
    time.sleep(FLUSH_S)
    kafka = state.config["kafka"]
    processed = _hopscope(
        "process", "--drain", "--group", group, "--index-prefix", options.index_prefix,
        "--spans-topic", kafka["spans_topic"], "--logs-topic", kafka["logs_topic"],
        "--dlq-topic", f"{kafka['spans_topic']}.dlq", "--archive-dir",
        str(state.state_dir / "archive"), config=state.state_dir / "hopscope.toml",
    )  # fmt: skip
    if processed.returncode != 0:
        raise LabError(f"hopscope process failed ({processed.returncode})")


def report(options: LabOptions, truth: dict[str, Any]) -> tuple[dict[str, Any], Path]:
    """``hopscope analyze report --json`` over the fault window against its baseline."""
    path = options.state_dir / f"report-{truth['fault']}.json"
    window = ["--since", truth["from"], "--until", truth["to"], "--baseline-since",
              truth["baseline"]["from"], "--baseline-until", truth["baseline"]["to"],
              "--index-prefix", options.index_prefix]  # fmt: skip
    with path.open("w", encoding="utf-8") as sink:
        _hopscope("analyze", "report", *window, "--json", stdout=sink)
    try:
        return json.loads(path.read_text(encoding="utf-8")), path
    except ValueError as error:
        raise LabError(f"the report in {path} is not JSON: {error}") from error


def run(
    options: LabOptions, fault_name: str, minutes: float, *, rate: float = 8.0,
    keep_up: bool = False, progress: Any = print,
) -> RunResult:  # fmt: skip
    """Up (unless already up), :func:`drive`, :func:`process`, :func:`report`; then down
    unless ``keep_up``. The report covers the fault window, the baseline the window before
    it (warm-up excluded)."""
    make_fault(fault_name)  # an unknown name fails before anything starts
    if not (options.state_dir / "state.json").exists():
        progress("lab: starting Postgres, Redis, the Collector and the services")
        state = up(options)
    else:
        state = LabState.load(options.state_dir)
    try:
        truth = drive(state, fault_name, max(40.0, minutes * 60.0), rate=rate, progress=progress)
        progress("lab: processing the topics (hopscope process --drain)")
        process(options, state, group=f"hopscope-lab-{state.config['run_id']}-{fault_name}")
        found, path = report(options, truth)
        truth_path = options.state_dir / f"ground-truth-{fault_name}.json"
        return RunResult(truth, found, truth_path, path, dict(truth.get("load") or {}))
    finally:
        if not keep_up:
            down(options.state_dir)


def _last_json_line(path: Path) -> dict[str, Any]:
    for line in reversed(path.read_text(encoding="utf-8", errors="replace").splitlines()):
        if line.startswith("{"):
            try:
                return dict(json.loads(line))
            except ValueError:
                continue
    return {}


def top_findings(report: dict[str, Any], count: int = 3) -> list[dict[str, Any]]:
    """The report's first ``count`` findings (suspects lead with a baseline)."""
    findings = report.get("findings") or []
    return [dict(f) for f in findings[:count]]
