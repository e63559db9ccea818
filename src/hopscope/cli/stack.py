"""``hopscope stack``: the local Kafka + Elasticsearch from Maven Central (no Docker needed)."""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from hopscope import stack as stack_api
from hopscope.cli._support import err, hopscope_command, out, reports_errors
from hopscope.core.settings import default_cache_dir, default_state_dir

stack_app = typer.Typer(
    help="Local Kafka + Elasticsearch from Maven Central (no Docker needed).",
    no_args_is_help=True,
)


StateDir = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="Stack data, logs and state file (env HOPSCOPE_STATE_DIR; default "
        "~/.local/state/hopscope/stack, /var/lib/hopscope/stack as root).",
        show_default=False,
    ),
]


def _state_dir(value: Path | None) -> Path:
    return (value or default_state_dir()).expanduser().resolve()


def _key_values(items: list[str] | None, option: str) -> dict[str, str]:
    result = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint=option)
        result[key.strip()] = value.strip()
    return result


@stack_app.command("up")
@reports_errors
def stack_up(
    state_dir: StateDir = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            help="Maven artifact cache (env HOPSCOPE_CACHE_DIR; ~/.cache/hopscope).",
            show_default=False,
        ),
    ] = None,
    kafka_port: Annotated[
        int | None, typer.Option(help="Kafka port on 127.0.0.1 (default: a free one).")
    ] = None,
    es_port: Annotated[
        int | None, typer.Option(help="Elasticsearch HTTP port on 127.0.0.1 (default: free).")
    ] = None,
    java_home: Annotated[
        Path | None, typer.Option(help="JDK to run both services (env HOPSCOPE_JAVA_HOME).")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for health.")] = 180.0,
    kafka_config: Annotated[
        list[str] | None,
        typer.Option("--kafka-config", help="Extra broker property KEY=VALUE (repeatable)."),
    ] = None,
    es_setting: Annotated[
        list[str] | None,
        typer.Option("--es-setting", help="Extra Elasticsearch setting KEY=VALUE (repeatable)."),
    ] = None,
    kafka_brokers: Annotated[
        int,
        typer.Option(
            min=1,
            max=5,
            help="Kafka brokers (KRaft, each also a controller); more than one: topics with "
            "3 replicas (fewer on 2), min.insync.replicas 2, 6 partitions.",
        ),
    ] = 1,
    es_nodes: Annotated[
        int,
        typer.Option(
            min=1,
            max=5,
            help="Elasticsearch nodes in one cluster (512 MB heap each when more than one); "
            "the processors' index templates then ask for one replica.",
        ),
    ] = 1,
) -> None:
    """Fetch (once), start and health-check Kafka (KRaft) and Elasticsearch on loopback.

    With --kafka-brokers/--es-nodes above 1, a cluster of each on loopback ports; `stack env`
    then lists every broker and node."""
    options = stack_api.StackOptions(
        cache_dir=(cache_dir or default_cache_dir()).expanduser().resolve(),
        state_dir=_state_dir(state_dir),
        kafka_port=kafka_port,
        es_port=es_port,
        java_home=java_home,
        start_timeout=timeout,
        kafka_config=_key_values(kafka_config, "--kafka-config"),
        es_settings=_key_values(es_setting, "--es-setting"),
        kafka_brokers=kafka_brokers,
        es_nodes=es_nodes,
    )
    with err.status("starting the local stack") as spinner:

        def report(message: str) -> None:
            spinner.update(message)
            err.print(Text.assemble(("· ", "dim"), message), soft_wrap=True)

        state = stack_api.up(options, report=report)
    for svc in state.services.values():
        out.print(f"{svc.name:<16} {svc.version:<9} {svc.endpoint}  (pid {svc.pid})",
                  markup=False, highlight=False, soft_wrap=True)  # fmt: skip
    err.print(f"point commands and tests at it: {env_hint(Path(state.state_dir))}",
              markup=False, highlight=False, soft_wrap=True)  # fmt: skip


def env_hint(state_dir: Path) -> str:
    """The shell command that exports the endpoints of the stack in ``state_dir``.

    Printed for the user to paste: it names hopscope the way it can be run from their shell
    (:func:`hopscope_command`), so it works as shown even before the environment is active.
    """
    command = f"{hopscope_command()} stack env --state-dir {shlex.quote(str(state_dir))}"
    return f'eval "$({command})"'


@stack_app.command("down")
@reports_errors
def stack_down(
    state_dir: StateDir = None,
    timeout: Annotated[float, typer.Option(help="Seconds between SIGTERM and SIGKILL.")] = 30.0,
) -> None:
    """Stop every service, each node of a cluster (SIGTERM, then SIGKILL after the timeout)."""
    stopped = stack_api.down(_state_dir(state_dir), timeout=timeout)
    out.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@stack_app.command("status")
@reports_errors
def stack_status(
    state_dir: StateDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Each service up or down, with pid, port and version. Exits 3 when not all are up."""
    statuses = stack_api.status(_state_dir(state_dir))
    if as_json:
        sys.stdout.write(json.dumps({s.name: asdict(s) for s in statuses}, indent=2) + "\n")
    else:
        table = Table("service", "state", "pid", "port", "version", "endpoint")
        for s in statuses:
            table.add_row(
                s.name, "[green]up[/]" if s.up else "[red]down[/]", str(s.pid or "-"),
                str(s.port or "-"), s.version or "-", s.endpoint or "-",
            )  # fmt: skip
        out.print(table)
    if not all(s.up for s in statuses):
        raise typer.Exit(3)


@stack_app.command("env")
@reports_errors
def stack_env(state_dir: StateDir = None) -> None:
    """Print `export HOPSCOPE_…` lines for the running stack (use with eval)."""
    sys.stdout.write(stack_api.env_lines(_state_dir(state_dir)))


@stack_app.command("logs")
@reports_errors
def stack_logs(
    service: Annotated[
        str, typer.Argument(help="kafka, elasticsearch, a cluster node (kafka-2) or all.")
    ] = "all",
    state_dir: StateDir = None,
    lines: Annotated[int, typer.Option("-n", "--lines", help="Lines per service.")] = 40,
) -> None:
    """Show the last lines of the services' logs."""
    from hopscope.stack.processes import tail

    state_dir_path = _state_dir(state_dir)
    if service == "all":
        state = stack_api.StackState.load(state_dir_path)
        names = list(state.services) if state else ["kafka", "elasticsearch"]
    else:
        names = [service]
    for name in names:
        try:
            stack_api.service_kind(name)
        except stack_api.StackError:
            raise typer.BadParameter(f"unknown service {name!r}", param_hint="SERVICE") from None
        path = stack_api.log_path(state_dir_path, name)
        err.print(Text.assemble((f"== {name}: ", "bold"), str(path)), soft_wrap=True)
        sys.stdout.write(tail(path, lines) + "\n")
