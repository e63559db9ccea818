"""``hopscope simulate``: a payment network with an injected fault, into Kafka."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hopscope.cli._support import err, out
from hopscope.ingest import conventions
from hopscope.stack import resolve_settings


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
    seed: Annotated[
        int, typer.Option(help="Seeds the traffic; with --run-id and --start, same telemetry.")
    ] = 0,
    run_id: Annotated[
        str | None,
        typer.Option(
            help="Names the run (resource attribute hopscope.run.id) and, with --seed, seeds "
            "the trace ids. Default: a fresh random id, so runs never overwrite each other; pin "
            "it with --seed and --start to reproduce a run exactly.",
            show_default=False,
        ),
    ] = None,
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
    ] = conventions.TOPIC_SPANS,
    logs_topic: Annotated[
        str, typer.Option(envvar="HOPSCOPE_LOGS_TOPIC", help="Topic for OTLP logs.")
    ] = conventions.TOPIC_LOGS,
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

    from hopscope.core.kafka_security import kafka_client_options
    from hopscope.core.kafka_topics import ensure_topics
    from hopscope.core.settings import Settings
    from hopscope.ingest.simulator import (
        Scenario,
        SimulationConfig,
        default_start_ns,
        parse_iso8601_ns,
        simulate_to_kafka,
    )

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
            start_ns=start_ns, scenario=Scenario(scenario), seed=seed, run_id=run_id,
            traces=traces, rate=rate, duration_s=duration, lb_strategy=lb_strategy,
            foreign_pans=foreign_pans,
        )  # fmt: skip
    except ValueError as error:
        hint = "--run-id" if str(error).startswith("run_id") else None
        raise typer.BadParameter(str(error), param_hint=hint) from None
    bootstrap = bootstrap or Settings.from_env().kafka_bootstrap
    bootstrap = bootstrap or resolve_settings().kafka_bootstrap
    assert bootstrap is not None  # resolved() raises rather than return no endpoint

    # Before the progress bar: an unreachable broker is then the one line on stderr.
    ensure_topics(bootstrap, (spans_topic, logs_topic), kafka_client_options(),
                  what="the simulator")  # fmt: skip
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
        f"records (scenario {config.scenario.value}, seed {config.seed}, run id {config.run})",
        markup=False, highlight=False, soft_wrap=True,
    )  # fmt: skip
    if foreign_pans:
        foreign = result.ground_truth["foreign"]
        out.print(
            f"other SDKs: {foreign['spans']} spans, {foreign['log_records']} log records, "
            f"{len(foreign['seeded_pans'])} card numbers",
            markup=False, highlight=False, soft_wrap=True,
        )  # fmt: skip
