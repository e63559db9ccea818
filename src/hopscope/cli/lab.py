"""``hopscope lab``: the reference payment system (deploy/reference/payments/) with real
Postgres, Redis and an OpenTelemetry Collector, and faults injected by real tools."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from hopscope import lab as lab_api
from hopscope import stack as stack_api
from hopscope.cli._support import err, out, reports_errors
from hopscope.core.settings import default_cache_dir, default_state_dir

lab_app = typer.Typer(
    help="The reference payment system: real services, Collector, Postgres, Redis, faults.",
    no_args_is_help=True,
)

StateDir = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="Lab state, logs, ground truth and reports (default: next to the stack's, "
        "in a folder `lab`).",
        show_default=False,
    ),
]
SpansTopic = Annotated[str, typer.Option(help="The Collector's spans topic.")]
LogsTopic = Annotated[str, typer.Option(help="The Collector's logs topic.")]
IndexPrefix = Annotated[str, typer.Option(help="The processors' Elasticsearch index prefix.")]
Lb = Annotated[str, typer.Option(help="Gateway load balancing: round_robin, least_conn, ip_hash.")]


def _state_dir(value: Path | None) -> Path:
    return (value or default_state_dir().parent / "lab").expanduser().resolve()


def _ensure_stack() -> None:
    """Kafka and Elasticsearch: the environment's, else the local stack (started if down)."""
    if os.environ.get("HOPSCOPE_KAFKA_BOOTSTRAP") and os.environ.get("HOPSCOPE_ES_URL"):
        return
    state_dir = default_state_dir()
    err.print(f"· no HOPSCOPE_KAFKA_BOOTSTRAP/HOPSCOPE_ES_URL: the local stack in {state_dir}")
    if not all(s.up for s in stack_api.status(state_dir)):
        stack_api.up(
            stack_api.StackOptions(cache_dir=default_cache_dir(), state_dir=state_dir),
            report=lambda message: err.print(f"· {message}"),
        )
    for line in stack_api.env_lines(state_dir).splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export ") :].partition("=")
            os.environ[name] = shlex.split(value)[0] if value else ""


def _user_config(ctx: typer.Context) -> Path | None:
    """The root ``--config`` (or ``HOPSCOPE_CONFIG``), else ``./hopscope.toml`` when present:
    the file whose tables the lab passes on to the processors it starts."""
    given = ctx.find_root().params.get("config")
    if given is not None:
        return Path(given).resolve()
    local = Path("hopscope.toml")
    return local.resolve() if local.is_file() else None


def _options(
    ctx: typer.Context, state_dir: Path | None, spans_topic: str, logs_topic: str,
    index_prefix: str, lb: str,
) -> lab_api.LabOptions:  # fmt: skip
    if lb not in {"round_robin", "least_conn", "ip_hash"}:
        raise typer.BadParameter("round_robin, least_conn or ip_hash", param_hint="--lb")
    return lab_api.LabOptions(
        state_dir=_state_dir(state_dir), spans_topic=spans_topic, logs_topic=logs_topic,
        index_prefix=index_prefix, lb=lb, config=_user_config(ctx),
    )  # fmt: skip


@lab_app.command("up")
@reports_errors
def lab_up(
    ctx: typer.Context,
    state_dir: StateDir = None,
    spans_topic: SpansTopic = "otlp_spans",
    logs_topic: LogsTopic = "otlp_logs",
    index_prefix: IndexPrefix = "hopscope-lab",
    lb: Lb = "round_robin",
) -> None:
    """Start Postgres (primary + replica), Redis, the Collector and the payment services."""
    _ensure_stack()
    state = lab_api.up(_options(ctx, state_dir, spans_topic, logs_topic, index_prefix, lb))
    for process in state.processes:
        out.print(f"{process.name:<12} pid {process.pid}", markup=False, highlight=False)
    out.print(f"gateway: http://127.0.0.1:{state.config['gateway']['port']}/v1/payments")


@lab_app.command("down")
@reports_errors
def lab_down(state_dir: StateDir = None) -> None:
    """Stop everything `lab up` started (by pid) and the Postgres clusters."""
    stopped = lab_api.down(_state_dir(state_dir))
    out.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@lab_app.command("run")
@reports_errors
def lab_run(
    ctx: typer.Context,
    fault: Annotated[
        str, typer.Option(help=f"The fault to inject: {', '.join(lab_api.FAULTS)}.")
    ] = "none",
    minutes: Annotated[float, typer.Option(help="Minutes of traffic (half baseline).")] = 2.0,
    rate: Annotated[float, typer.Option(help="Payments per second.")] = 8.0,
    keep_up: Annotated[bool, typer.Option(help="Leave the lab running afterwards.")] = False,
    state_dir: StateDir = None,
    spans_topic: SpansTopic = "otlp_spans",
    logs_topic: LogsTopic = "otlp_logs",
    index_prefix: IndexPrefix = "hopscope-lab",
    lb: Lb = "round_robin",
    as_json: Annotated[
        bool, typer.Option("--json", help="Ground truth and report as JSON.")
    ] = False,
) -> None:
    """Start the lab, drive traffic, inject the fault, process, report beside the ground truth."""
    if fault not in lab_api.FAULTS:
        raise typer.BadParameter(f"one of {', '.join(lab_api.FAULTS)}", param_hint="--fault")
    _ensure_stack()
    options = _options(ctx, state_dir, spans_topic, logs_topic, index_prefix, lb)
    result = lab_api.run(
        options, fault, minutes, rate=rate, keep_up=keep_up,
        progress=lambda message: err.print(Text.assemble(("· ", "dim"), message)),
    )  # fmt: skip
    if as_json:
        document = {"ground_truth": result.ground_truth, "report": result.report}
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return
    out.print(_side_by_side(result.ground_truth, lab_api.top_findings(result.report)))
    err.print(f"ground truth: {result.ground_truth_path}\nreport: {result.report_path}")


def _side_by_side(truth: dict[str, Any], findings: list[dict[str, Any]]) -> Table:
    table = Table("ground truth", "report's top findings", title=f"lab run: {truth['fault']}")
    where = truth["where"]
    told = "\n".join(
        [truth["what"], f"tool: {truth['tool']}",
         f"where: {where['service']} / {where['node']} / {where['resource']}",
         f"from {truth['from']}", f"to   {truth['to']}",
         f"load: {json.dumps(truth.get('load', {}).get('outcomes', {}))}"]
    )  # fmt: skip
    found = "\n".join(
        f"{i}. {f.get('impact')}: {f.get('title')} ({f.get('job')}/{f.get('kind')})"
        + (" [already in the baseline]" if (f.get("evidence") or {}).get("in_baseline") else "")
        for i, f in enumerate(findings, 1)
    )
    table.add_row(Text(told), Text(found or "no finding"))
    return table
