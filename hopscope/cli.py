"""The ``hopscope`` command line: thin commands that call the library and print its results.

Results go to stdout, progress and diagnostics to stderr; a :class:`HopscopeError` is printed as
``Type: message`` (no traceback) and exits 1.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.table import Table
from rich.text import Text

from hopscope import __version__
from hopscope import stack as stack_api
from hopscope.analyze_cli import analyze_command
from hopscope.cli_support import err, out, reports_errors
from hopscope.kibana_cli import kibana_app, trace_url
from hopscope.settings import default_cache_dir, default_state_dir

P = ParamSpec("P")
R = TypeVar("R")


app = typer.Typer(
    name="hopscope",
    help="Trace and log analytics for payment systems: OpenTelemetry → Kafka → Elasticsearch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
stack_app = typer.Typer(
    help="Local Kafka + Elasticsearch from Maven Central (no Docker needed).",
    no_args_is_help=True,
)
app.add_typer(stack_app, name="stack")


app.add_typer(kibana_app, name="kibana")
app.command("trace-url")(trace_url)


def _version(value: bool) -> None:
    if value:
        out.print(f"hopscope {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            envvar="HOPSCOPE_CONFIG",
            help="TOML file of option defaults, one table per command, e.g. [process] "
            "trace_idle = 3.0 (default: ./hopscope.toml when present). Flags and HOPSCOPE_* "
            "variables still win.",
            show_default=False,
        ),
    ] = None,
    log_level: Annotated[
        str,
        typer.Option(
            envvar="HOPSCOPE_LOG_LEVEL",
            help="Diagnostics on stderr from this level: debug, info, warning, error.",
        ),
    ] = "warning",
) -> None:
    """hopscope: where does the time go between the card swipe and the bank's answer?"""
    _configure_logging(log_level)
    defaults = _config_defaults(config)
    if defaults:
        # Click's precedence is exactly ours: flag, then environment, then default_map.
        ctx.default_map = {**(ctx.default_map or {}), **defaults}


def _configure_logging(level: str) -> None:
    """Timestamped diagnostics on stderr (results stay on stdout). Below debug, the Kafka and
    Elasticsearch clients' loggers stay at warning (a line per connection, per request)."""

    number = logging.getLevelName(level.upper())
    if not isinstance(number, int):
        raise typer.BadParameter(
            f"unknown level {level!r}: debug, info, warning or error", param_hint="--log-level"
        )
    root = logging.getLogger()
    # One handler of ours, however often the CLI runs in one process (tests); handlers that
    # others installed (pytest's capture) stay.
    for handler in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(number)
    if number > logging.DEBUG:
        for noisy in ("kafka", "elastic_transport"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of the record, not at creation: a
    test runner replaces and closes the stream between runs."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def _config_defaults(path: Path | None) -> dict[str, Any]:
    import tomllib

    if path is None:
        path = Path("hopscope.toml")
        if not path.is_file():
            return {}
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise typer.BadParameter(f"cannot read {path}: {error}", param_hint="--config") from None
    if not all(isinstance(table, dict) for table in document.values()):
        raise typer.BadParameter(
            f"{path}: expected one table per command, e.g. [process]", param_hint="--config"
        )
    # Option names as written on the command line (trace-idle) or in Python (trace_idle).
    return {
        command: {key.replace("-", "_"): value for key, value in table.items()}
        for command, table in document.items()
    }


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
) -> None:
    """Fetch (once), start and health-check Kafka (KRaft) and Elasticsearch on loopback."""
    options = stack_api.StackOptions(
        cache_dir=(cache_dir or default_cache_dir()).expanduser().resolve(),
        state_dir=_state_dir(state_dir),
        kafka_port=kafka_port,
        es_port=es_port,
        java_home=java_home,
        start_timeout=timeout,
        kafka_config=_key_values(kafka_config, "--kafka-config"),
        es_settings=_key_values(es_setting, "--es-setting"),
    )
    with err.status("starting the local stack") as spinner:

        def report(message: str) -> None:
            spinner.update(message)
            err.print(Text.assemble(("· ", "dim"), message), soft_wrap=True)

        state = stack_api.up(options, report=report)
    for svc in state.services.values():
        out.print(f"{svc.name:<14} {svc.version:<9} {svc.endpoint}  (pid {svc.pid})",
                  markup=False, highlight=False, soft_wrap=True)  # fmt: skip
    err.print(f'point commands and tests at it: eval "$(hopscope stack env '
              f'--state-dir {state.state_dir})"', markup=False, highlight=False,
              soft_wrap=True)  # fmt: skip


@stack_app.command("down")
@reports_errors
def stack_down(
    state_dir: StateDir = None,
    timeout: Annotated[float, typer.Option(help="Seconds between SIGTERM and SIGKILL.")] = 30.0,
) -> None:
    """Stop both services (SIGTERM, then SIGKILL after the timeout)."""
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
    service: Annotated[str, typer.Argument(help="kafka, elasticsearch or all.")] = "all",
    state_dir: StateDir = None,
    lines: Annotated[int, typer.Option("-n", "--lines", help="Lines per service.")] = 40,
) -> None:
    """Show the last lines of the services' logs."""
    from hopscope.stack.processes import tail

    names = ("kafka", "elasticsearch") if service == "all" else (service,)
    for name in names:
        if name not in ("kafka", "elasticsearch"):
            raise typer.BadParameter(f"unknown service {name!r}", param_hint="SERVICE")
        path = stack_api.log_path(_state_dir(state_dir), name)
        err.print(Text.assemble((f"== {name}: ", "bold"), str(path)), soft_wrap=True)
        sys.stdout.write(tail(path, lines) + "\n")


@app.command("demo")
@reports_errors
def demo_command() -> None:
    """Send real OTLP spans through Kafka into Elasticsearch and search them back."""
    from hopscope.demo import run_demo

    run_demo(out, err)


@app.command("simulate")
@reports_errors
def simulate_command(
    scenario: Annotated[
        str,
        typer.Option(
            help="Fault to inject: baseline, node-failure, slow-hop, lock-contention, "
            "slow-replica, cache-degradation, lb-skew, clock-skew."
        ),
    ] = "baseline",
    traces: Annotated[
        int | None,
        typer.Option(
            help="Number of traces (default 1000, or rate × duration).", show_default=False
        ),
    ] = None,
    rate: Annotated[float, typer.Option(help="Arrivals per virtual second (Poisson).")] = 100.0,
    duration: Annotated[
        float | None,
        typer.Option(
            help="Virtual seconds of arrivals; traces = rate × duration.", show_default=False
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Same seed and start, same telemetry.")] = 0,
    start: Annotated[
        str | None,
        typer.Option(
            help="Virtual start time, ISO 8601 (default: now, to the second).", show_default=False
        ),
    ] = None,
    ground_truth: Annotated[
        Path | None,
        typer.Option(
            help="Write the ground truth (injected fault, expected effect, exact "
            "counts, leaked card numbers) as JSON to this file.",
            show_default=False,
            dir_okay=False,
        ),
    ] = None,
    lb_strategy: Annotated[
        str | None,
        typer.Option(
            help="round_robin, least_conn or ip_hash (default: ip_hash for lb-skew, "
            "else round_robin).",
            show_default=False,
        ),
    ] = None,
    bootstrap: Annotated[
        str | None,
        typer.Option(
            help="Kafka bootstrap servers (default: env HOPSCOPE_KAFKA_BOOTSTRAP, else the "
            "local stack).",
            show_default=False,
        ),
    ] = None,
    spans_topic: Annotated[
        str, typer.Option(envvar="HOPSCOPE_SPANS_TOPIC", help="Topic for OTLP spans.")
    ] = "otlp_spans",
    logs_topic: Annotated[
        str, typer.Option(envvar="HOPSCOPE_LOGS_TOPIC", help="Topic for OTLP logs.")
    ] = "otlp_logs",
    foreign_pans: Annotated[
        bool,
        typer.Option(
            "--foreign-pans",
            help="Also write other SDKs' telemetry (Java, Go) straight to Kafka, with card "
            "numbers everywhere: the processors' masking audit.",
        ),
    ] = False,
) -> None:
    """Simulate a payment network into Kafka: OTLP spans and logs in virtual time."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from hopscope.ingest import conventions
    from hopscope.ingest.simulator import (
        Scenario,
        SimulationConfig,
        default_start_ns,
        parse_iso8601_ns,
        simulate_to_kafka,
    )
    from hopscope.settings import Settings

    # Each bad value is a parameter error naming its option.
    if scenario not in {s.value for s in Scenario}:
        raise typer.BadParameter(
            f"{scenario!r} is not one of {', '.join(s.value for s in Scenario)}",
            param_hint="--scenario",
        )
    if lb_strategy is not None and lb_strategy not in conventions.LB_STRATEGIES:
        raise typer.BadParameter(
            f"{lb_strategy!r} is not one of {', '.join(sorted(conventions.LB_STRATEGIES))}",
            param_hint="--lb-strategy",
        )
    try:
        start_ns = default_start_ns() if start is None else parse_iso8601_ns(start)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--start") from None
    try:
        config = SimulationConfig(
            start_ns=start_ns, scenario=Scenario(scenario), seed=seed, traces=traces,
            rate=rate, duration_s=duration, lb_strategy=lb_strategy, foreign_pans=foreign_pans,
        )  # fmt: skip
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    bootstrap = bootstrap or Settings.from_env().kafka_bootstrap
    bootstrap = bootstrap or Settings.from_env().resolved().kafka_bootstrap
    assert bootstrap is not None  # resolved() raises rather than return no endpoint

    total = config.trace_count
    with Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=err,
    ) as progress:  # fmt: skip
        task = progress.add_task(f"simulating {config.scenario.value}", total=total)

        def advance(done: int) -> None:
            # The bar redraws a few times a second; updating per trace would only cost.
            if done % 50 == 0 or done == total:
                progress.update(task, completed=done)

        run = simulate_to_kafka(
            config, bootstrap=bootstrap, spans_topic=spans_topic, logs_topic=logs_topic,
            progress=advance,
        )  # fmt: skip
    if ground_truth is not None:
        ground_truth.write_text(run.result.ground_truth_json(), encoding="utf-8")
    result = run.result
    out.print(
        f"simulated {result.traces} traces, {result.spans} spans, {result.log_records} log "
        f"records (scenario {config.scenario.value}, seed {config.seed})",
        markup=False, highlight=False, soft_wrap=True,
    )  # fmt: skip
    if foreign_pans:
        foreign = result.ground_truth["foreign"]
        out.print(
            f"other SDKs: {foreign['spans']} spans, {foreign['log_records']} log records, "
            f"{len(foreign['seeded_pans'])} card numbers",
            markup=False, highlight=False, soft_wrap=True,
        )  # fmt: skip


app.command("analyze")(reports_errors(analyze_command))


@app.command("process")
@reports_errors
def process_command(
    drain: Annotated[
        bool, typer.Option(help="Stop once caught up with the topics (batch use, demo, tests).")
    ] = False,
    group: Annotated[str, typer.Option(help="Consumer group.")] = "hopscope-processors",
    index_prefix: Annotated[
        str, typer.Option(envvar="HOPSCOPE_INDEX_PREFIX", help="Elasticsearch index prefix.")
    ] = "hopscope",
    spans_topic: Annotated[str, typer.Option(envvar="HOPSCOPE_SPANS_TOPIC")] = "otlp_spans",
    logs_topic: Annotated[str, typer.Option(envvar="HOPSCOPE_LOGS_TOPIC")] = "otlp_logs",
    dlq_topic: Annotated[str, typer.Option(envvar="HOPSCOPE_DLQ_TOPIC")] = "hopscope.dlq",
    trace_idle: Annotated[
        float, typer.Option(help="Seconds without a new span after which a trace is complete.")
    ] = 5.0,
    max_open_spans: Annotated[
        int, typer.Option(help="Memory bound: open spans before the oldest traces are flushed.")
    ] = 200_000,
    max_memory_mb: Annotated[
        int | None,
        typer.Option(
            help="Memory bound in MB of resident memory: sets the open traces' byte bound "
            "(and lowers --max-open-spans to fit); traces past it are flushed incomplete."
        ),
    ] = None,
    max_trace_spans: Annotated[
        int, typer.Option(help="Spans of one trace before it is flushed incomplete.")
    ] = 100_000,
    session_timeout: Annotated[
        float,
        typer.Option(
            help="Seconds before the group gives a silent member's partitions to the others."
        ),
    ] = 10.0,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus metrics on ADDR:PORT/metrics.")
    ] = None,
    metrics_addr: Annotated[
        str,
        typer.Option(
            envvar="HOPSCOPE_METRICS_ADDR",
            help="Address the metrics listen on (0.0.0.0 in a container).",
        ),
    ] = "127.0.0.1",
    archive_dir: Annotated[
        Path | None,
        typer.Option(
            help="Also write the records as hourly Parquet files here (after ES "
            "acknowledged them), for the batch analysis."
        ),
    ] = None,
) -> None:
    """Consume OTLP from Kafka; index spans, logs, hops, failovers, coordination and trace
    summaries into Elasticsearch; commit offsets only after Elasticsearch acknowledged.

    A secured Elasticsearch: HOPSCOPE_ES_API_KEY, or HOPSCOPE_ES_USERNAME and
    HOPSCOPE_ES_PASSWORD; HOPSCOPE_ES_CA_CERTS for a private CA.

    A secured Kafka: HOPSCOPE_KAFKA_SECURITY_PROTOCOL (e.g. SASL_SSL),
    HOPSCOPE_KAFKA_SASL_MECHANISM, _USERNAME and _PASSWORD; HOPSCOPE_KAFKA_SSL_CAFILE."""
    import signal

    from hopscope.es_security import EsSecurity
    from hopscope.kafka_security import KafkaSecurity
    from hopscope.processors.runtime import Processor, ProcessorSettings
    from hopscope.settings import Settings

    settings = Settings.from_env().resolved()
    assert settings.kafka_bootstrap and settings.es_url
    # Read (and checked) before anything connects: HOPSCOPE_ES_API_KEY, _USERNAME/_PASSWORD,
    # _CA_CERTS, _VERIFY_CERTS.
    es_security = EsSecurity.from_env()
    max_open_bytes = None
    if max_memory_mb is not None:
        from hopscope.processors.assembly import memory_bounds

        try:
            spans_fit, max_open_bytes = memory_bounds(max_memory_mb)
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--max-memory-mb") from None
        max_open_spans = min(max_open_spans, spans_fit)
    processor_settings = ProcessorSettings(
        kafka_bootstrap=settings.kafka_bootstrap, es_url=settings.es_url, group=group,
        spans_topic=spans_topic, logs_topic=logs_topic, dlq_topic=dlq_topic,
        index_prefix=index_prefix, trace_idle_s=trace_idle, max_open_spans=max_open_spans,
        session_timeout_s=session_timeout,
        metrics_port=metrics_port, metrics_addr=metrics_addr, archive_dir=archive_dir,
        es_security=es_security, max_open_bytes=max_open_bytes, max_trace_spans=max_trace_spans,
        # Checked before anything connects, like the Elasticsearch settings.
        kafka_options=KafkaSecurity.from_env().client_options(),
    )  # fmt: skip
    with Processor.from_settings(processor_settings) as processor:
        # Signals only request the stop; the loop finishes its iteration and commits.
        signal.signal(signal.SIGTERM, lambda *_: processor.stop())
        signal.signal(signal.SIGINT, lambda *_: processor.stop())
        with err.status("processing") as status:
            counts = processor.run(
                drain=drain,
                progress=lambda n: status.update(
                    f"processing: {n.messages} messages, "
                    + ", ".join(f"{k} {v}" for k, v in sorted(n.indexed.items()))
                ),
            )
    indexed = ", ".join(f"{kind} {count}" for kind, count in sorted(counts.indexed.items()))
    out.print(
        f"processed {counts.messages} messages: {indexed or 'nothing indexed'}; "
        f"dead letters {counts.dead_letters}, retries {counts.retries}, "
        f"incomplete traces {counts.incomplete_traces}, late spans {counts.late_spans}, "
        f"sanitized {counts.sanitized.total()}",
        markup=False, highlight=False, soft_wrap=True,
    )  # fmt: skip


def main() -> None:
    """Entry point of the ``hopscope`` script."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
